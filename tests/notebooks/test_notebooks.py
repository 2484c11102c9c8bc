"""Every notebook under ``docs/notebooks/`` executes without error and keeps its promises.

The fast checks read the jupytext sources: a kernelspec header (without it
``jupytext --execute`` finds no kernel), a measured runtime stated in the text,
a "What we saw" section that has been written, imports from ``reference_impls``
(notebooks use the implementations, never re-implement them), and the shared
set-up of ``reference_impls.common.Experiment`` instead of a copy of it. The slow checks execute each notebook in a fresh kernel, never from the
cache, and fail on any error.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import jupytext
import pytest

from kdatlas.notebooks import NOTEBOOK_DIR, discover, execute

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = discover(ROOT)
IDS = [path.relative_to(ROOT / NOTEBOOK_DIR).with_suffix("").as_posix() for path in NOTEBOOKS]
FIRST_LEAVES = {
    "sources/logit",
    "sources/feature",
    "sources/similarity",
    "schemes/offline",
    "schemes/online",
    "schemes/self",
}


def markdown_text(notebook) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")


def code_text(notebook) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def test_the_first_six_leaves_have_notebooks():
    assert set(IDS) >= FIRST_LEAVES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_source_has_a_kernelspec_header(path: Path):
    header = path.read_text(encoding="utf-8").split("# ---", 2)[1]
    assert "format_name: percent" in header
    kernelspec = jupytext.read(path).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3"
    assert kernelspec.get("language") == "python"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_source_states_its_measured_runtime(path: Path):
    text = markdown_text(jupytext.read(path))
    assert "PLACEHOLDER" not in text
    match = re.search(r"\*\*Runtime\.\*\*[^\n]*?(\d+) s\b", text)
    assert match, "the introduction must say how long the notebook takes, in seconds"
    assert int(match.group(1)) < 30, "notebooks must run in under 30 s on a 2-core CPU"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_source_ends_with_what_we_saw(path: Path):
    notebook = jupytext.read(path)
    last = notebook.cells[-1]
    assert last.cell_type == "markdown"
    assert last.source.startswith("## What we saw")
    body = last.source.removeprefix("## What we saw").strip()
    assert len(body.split()) > 40, "say what the outputs showed, in a few sentences"
    assert "to be written" not in body.lower()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_source_imports_the_reference_implementations(path: Path):
    code = code_text(jupytext.read(path))
    assert re.search(
        r"^from reference_impls\.(sources|schemes|algorithms|modalities|applications)\.",
        code,
        flags=re.MULTILINE,
    )
    # Experiment seeds every run, picks CUDA when present and caches the teacher
    assert "Experiment(" in code, "notebooks share their set-up: reference_impls.common.Experiment"


# What Experiment does for every notebook; a notebook that writes it again has copied it.
SHARED_SET_UP = {
    "torch.set_num_threads(": "Experiment(threads=...)",
    "train_supervised(": "exp.teacher() (cached) or exp.train_alone(...)",
    'message="IProgress': "Experiment's progress bar",
    "notebook ran in": "exp.report_runtime()",
    "print_summary(": "exp.summary()",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_source_does_not_copy_the_shared_set_up(path: Path):
    code = code_text(jupytext.read(path))
    copied = {snippet: use for snippet, use in SHARED_SET_UP.items() if snippet in code}
    assert not copied, f"use the shared set-up instead: {copied}"


# Notebooks whose data come from a system program (skipped, saying so, where it is absent).
NEEDS_PROGRAM = {"modalities/speech": "espeak-ng"}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_executes_without_error(path: Path):
    leaf = path.relative_to(ROOT / NOTEBOOK_DIR).with_suffix("").as_posix()
    if (program := NEEDS_PROGRAM.get(leaf)) and shutil.which(program) is None:
        pytest.skip(f"{program} is needed to run {leaf} (apt-get install {program})")
    notebook = execute(path, ROOT)  # fresh kernel; raises CellExecutionError on any error
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) >= 2, "a notebook shows its results as figures"
    stderr = "".join(output.text for output in outputs if output.get("name") == "stderr")
    assert "Traceback" not in stderr
    assert "Warning" not in stderr, f"unexpected warning in the output: {stderr[-500:]}"
