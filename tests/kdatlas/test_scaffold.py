"""``kdatlas new implementation``: the method file, its failing test stubs and the taxonomy
entry are written together, in the places ``kdatlas check`` looks; every refusal is one line
and leaves the tree byte-identical, even when writing fails half-way."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

import kdatlas.atomic
import reference_impls
from kdatlas.checks import check
from kdatlas.fmt import format_tree
from kdatlas.loader import load
from kdatlas.scaffold import INPUT_KINDS, Request, new_implementation, plan
from reference_impls.common import DistillationLoss, DistillationProcedure
from reference_impls.common.interfaces import INPUT_KINDS as DECLARED_INPUT_KINDS

NEW = ("new", "implementation")
DKD = ("--leaf", "sources/logit", "--id", "my-dkd", "--paper", "zhao2022decoupled")
METHOD = "reference_impls/sources/logit/my_dkd.py"
TESTS = "tests/reference_impls/sources/logit/test_my_dkd.py"


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder (None) under ``root``."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None
        for p in sorted(root.rglob("*"))
        if "__pycache__" not in p.parts
    }


def import_file(path: Path):
    """Import one generated module under a unique name (its own imports resolve as usual)."""
    spec = importlib.util.spec_from_file_location(f"scaffolded_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_shared_code(root: Path) -> None:
    """Give the fixture tree the repository's reference_impls.common, which generated code uses."""
    source = Path(reference_impls.__file__).parent / "common"
    shutil.copytree(
        source, root / "reference_impls" / "common", ignore=shutil.ignore_patterns("__pycache__")
    )


# --------------------------------------------------------------------------- happy path


def test_writes_method_tests_and_entry_that_check_accepts(fixture_kb, run_cli):
    with_shared_code(fixture_kb.root)
    result = run_cli(fixture_kb.root, *NEW, *DKD)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:5] == [
        f"wrote {METHOD}",
        f"wrote {TESTS}",
        "wrote reference_impls/sources/logit/__init__.py",
        "wrote taxonomy/sources.yaml",
        "added 'my-dkd' (reference_impls.sources.logit.my_dkd:MyDkdLoss) to taxonomy/sources.yaml",
    ]
    assert lines[5] == "next steps:"
    assert "use MyDkdLoss in the leaf's notebook docs/notebooks/sources/logit.py" in lines[8]

    sources = fixture_kb.read("taxonomy/sources.yaml")
    assert "      - hinton2015distilling  # the original\n" in sources  # comment kept
    assert (
        "      - id: my-dkd\n"
        "        title: My Dkd (Zhao et al., 2022)\n"
        "        object: reference_impls.sources.logit.my_dkd:MyDkdLoss\n"
        "        papers:\n"
        "          - zhao2022decoupled\n"
        "  - id: feature\n"
    ) in sources
    report = format_tree(fixture_kb.root, write=False)
    assert (report.changed, report.problems) == ([], [])
    implementations = load(fixture_kb.root).leaf("sources", "logit").implementations
    assert [(i.id, i.papers) for i in implementations][-1] == ("my-dkd", ["zhao2022decoupled"])

    method = fixture_kb.read(METHOD)
    sections = (
        "Citation: ``zhao2022decoupled`` (Zhao, Cui, Song, Qiu and Liang, CVPR 2022).",
        "Authors' code: https://github.com/megvii-research/mdistiller",
        "$$",
        "Defaults:",
        "Deviations:",
    )
    assert all(section in method for section in sections)

    # The one thing left for the contributor that check sees: the notebook must use the class.
    problems = [str(p) for p in check(fixture_kb.root, imports=False)]
    assert len(problems) == 1 and "notebook does not use implementation 'my-dkd'" in problems[0]
    notebook = fixture_kb.read("docs/notebooks/sources/logit.py")
    fixture_kb.write(
        "docs/notebooks/sources/logit.py",
        notebook + "\n# %%\nfrom reference_impls.sources.logit.my_dkd import MyDkdLoss\n",
    )
    assert check(fixture_kb.root, imports=True) == []


def test_generated_loss_is_a_distillation_loss_not_written_yet(fixture_kb, run_cli):
    result = run_cli(fixture_kb.root, *NEW, *DKD, "--class", "MyDKDLoss", "--needs-target")
    assert result.exit_code == 0, result.output
    loss_class = import_file(fixture_kb.path(METHOD)).MyDKDLoss
    assert issubclass(loss_class, DistillationLoss)
    assert (loss_class.inputs, loss_class.needs_target) == ("logits", True)
    loss = loss_class()
    with pytest.raises(NotImplementedError, match=r"MyDKDLoss\.forward is not written yet"):
        loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature must be positive"):
        loss_class(temperature=0.0)  # the argument check comes from common.validation


def test_generated_procedure_is_a_distillation_procedure(fixture_kb, run_cli):
    args = ("--leaf", "sources/logit", "--id", "dml", "--paper", "hinton2015distilling")
    result = run_cli(fixture_kb.root, *NEW, *args, "--kind", "procedure")
    assert result.exit_code == 0, result.output
    procedure_class = import_file(fixture_kb.path("reference_impls/sources/logit/dml.py")).DML
    assert issubclass(procedure_class, DistillationProcedure)
    procedure = procedure_class(nn.Linear(4, 3))
    with pytest.raises(NotImplementedError, match=r"DML\.forward is not written yet"):
        procedure(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    assert "title: DML (Hinton et al., 2015)" in fixture_kb.read("taxonomy/sources.yaml")


def test_generated_test_file_fails_until_written(fixture_kb, run_cli):
    with_shared_code(fixture_kb.root)
    assert run_cli(fixture_kb.root, *NEW, *DKD).exit_code == 0
    completed = subprocess.run(
        # -rN: no short summary, whose lines repeat the messages only when the terminal is wide
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rN", "-n0", TESTS],
        cwd=fixture_kb.root,  # first on sys.path: the fixture's reference_impls
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "3 failed" in completed.stdout
    assert completed.stdout.count("Failed: not written yet: ") == 3


def test_a_leaf_without_implementations_folder_or_notebook(fixture_kb, run_cli):
    # modalities/3d: no implementations key, no notebook, and a leaf id that is no module name
    args = ("--leaf", "modalities/3d", "--id", "points", "--paper", "sun2024logit")
    result = run_cli(fixture_kb.root, *NEW, *args, "--inputs", "features")
    assert result.exit_code == 0, result.output
    assert "wrote reference_impls/modalities/__init__.py" in result.output
    assert "wrote reference_impls/modalities/_3d/points.py" in result.output
    assert "wrote tests/reference_impls/modalities/_3d/test_points.py" in result.output
    assert "the leaf modalities/3d has no notebook yet: create docs/notebooks/modalities/3d.py" in (
        result.output
    )
    assert "note: sun2024logit not filed under modalities/3d" not in result.output  # it is filed
    assert fixture_kb.read("taxonomy/modalities.yaml").endswith(
        "      - sun2024logit\n"
        "    implementations:\n"
        "      - id: points\n"
        "        title: Points (2024)\n"  # the paper has no authors
        "        object: reference_impls.modalities._3d.points:PointsLoss\n"
        "        papers:\n"
        "          - sun2024logit\n"
    )
    assert format_tree(fixture_kb.root, write=False).changed == []
    loss_class = import_file(fixture_kb.path("reference_impls/modalities/_3d/points.py")).PointsLoss
    assert loss_class.inputs == "features"
    assert loss_class(student_channels=(4, 8), teacher_channels=(8, 16)).weight == 1.0
    problems = [str(p) for p in check(fixture_kb.root, imports=False)]
    assert problems == [
        "taxonomy/modalities.yaml:7: error: leaf '3d' has implementations but no notebook"
    ]


def test_comment_lines_before_the_next_leaf_stay_there(fixture_kb, run_cli):
    fixture_kb.replace(
        "taxonomy/sources.yaml", "  - id: feature\n", "\n  # the feature leaf\n  - id: feature\n"
    )
    assert format_tree(fixture_kb.root, write=False).changed == []
    assert run_cli(fixture_kb.root, *NEW, *DKD).exit_code == 0
    assert (
        "          - zhao2022decoupled\n\n  # the feature leaf\n  - id: feature\n"
        in fixture_kb.read("taxonomy/sources.yaml")
    )
    assert format_tree(fixture_kb.root, write=False).changed == []


def test_a_paper_not_filed_under_the_leaf_is_noted(fixture_kb, run_cli):
    args = ("--leaf", "sources/feature", "--id", "hint", "--paper", "zhao2022decoupled")
    result = run_cli(fixture_kb.root, *NEW, *args, "--inputs", "preact_features")
    assert result.exit_code == 0, result.output
    assert "note: zhao2022decoupled not filed under sources/feature" in result.output
    # sources/feature has no package yet: the leaf's __init__.py comes with the method
    assert fixture_kb.path("reference_impls/sources/feature/__init__.py").is_file()


# --------------------------------------------------------------------------- generated code style


REQUESTS = [
    Request("sources/logit", "a", ["zhao2022decoupled"]),
    Request("sources/logit", "b", ["zhao2022decoupled"], needs_target=True),
    Request("sources/logit", "c", ["zhao2022decoupled"], inputs="features", needs_target=True),
    Request("sources/logit", "d", ["zhao2022decoupled"], inputs="preact_features"),
    Request("sources/logit", "e", ["zhao2022decoupled"], inputs="embeddings", needs_target=True),
    Request("sources/logit", "f", ["zhao2022decoupled", "hinton2015distilling"], kind="procedure"),
    Request(  # long names: the signature and the test's import wrap as ruff format wraps them
        "sources/logit",
        "a-rather-long-method-name-for-wrapping",
        ["sun2024logit"],
        class_name="ARatherLongClassNameThatPushesTheImportLinePastOneHundredColumnsLoss",
        inputs="features",
        needs_target=True,
    ),
]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_generated_code_is_ruff_clean(fixture_kb):
    paths = []
    for request in REQUESTS:
        created = new_implementation(fixture_kb.root, request).created
        paths += [str(p) for p in created if p.suffix == ".py"]
    config = Path(__file__).resolve().parents[2] / "pyproject.toml"
    for command in (["check"], ["format", "--check", "--diff"]):
        completed = subprocess.run(
            ["ruff", *command, "--config", str(config), *paths],
            cwd=fixture_kb.root,
            capture_output=True,
            text=True,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
    for request in REQUESTS[:-1]:  # every generated class imports and declares what it reads
        module = import_file(fixture_kb.path(f"reference_impls/sources/logit/{request.id}.py"))
        if request.kind == "loss":
            loss = getattr(module, f"{request.id.upper()}Loss")
            assert (loss.inputs, loss.needs_target) == (request.loss_inputs, request.needs_target)


def test_input_kinds_match_the_interfaces():
    assert INPUT_KINDS == DECLARED_INPUT_KINDS


# --------------------------------------------------------------------------- refusals


NEW_X = ("--leaf", "sources/logit", "--id", "x", "--paper", "zhao2022decoupled")
REFUSALS = {
    "id used in another leaf": (
        ("--leaf", "sources/feature", "--id", "kd", "--paper", "zhao2022decoupled"),
        "--id: error: implementation id 'kd' is already used at taxonomy/sources.yaml:23",
    ),
    "unknown leaf": (
        ("--leaf", "sources/relation", "--id", "x", "--paper", "zhao2022decoupled"),
        "--leaf: error: area 'sources' has no leaf 'relation'",
    ),
    "leaf under another area": (
        ("--leaf", "sources/attention", "--id", "x", "--paper", "zhao2022decoupled"),
        "--leaf: error: area 'sources' has no leaf 'attention' (it is under algorithms: "
        "--leaf algorithms/attention)",
    ),
    "unknown area": (
        ("--leaf", "methods/logit", "--id", "x", "--paper", "zhao2022decoupled"),
        "--leaf: error: no area 'methods'",
    ),
    "not area/leaf": (
        ("--leaf", "logit", "--id", "x", "--paper", "zhao2022decoupled"),
        "--leaf: error: 'logit' is not area/leaf",
    ),
    "unknown paper": (
        ("--leaf", "sources/logit", "--id", "x", "--paper", "nobody2020nothing"),
        "--paper: error: bib key 'nobody2020nothing' is not in bib/",
    ),
    "bad slug": (
        ("--leaf", "sources/logit", "--id", "My_Method", "--paper", "zhao2022decoupled"),
        "--id: error: 'My_Method' is not a slug",
    ),
    "id that is no module name": (
        ("--leaf", "sources/logit", "--id", "2step", "--paper", "zhao2022decoupled"),
        "--id: error: '2step' cannot name a Python module",
    ),
    "bad class name": (
        (*NEW_X, "--class", "A-B"),
        "--class: error: 'A-B' is not a Python class name",
    ),
    "inputs of a procedure": (
        (*NEW_X, "--kind", "procedure", "--inputs", "features"),
        "--inputs: error: applies to a loss",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusal_is_one_line_and_changes_nothing(fixture_kb, run_cli, case):
    args, message = REFUSALS[case]
    before = tree(fixture_kb.root)
    result = run_cli(fixture_kb.root, *NEW, *args)
    assert result.exit_code == 1
    assert len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith(message), result.output
    assert tree(fixture_kb.root) == before


@pytest.mark.parametrize("existing", [METHOD, TESTS])
def test_an_existing_target_file_is_refused(fixture_kb, run_cli, existing):
    fixture_kb.write(existing, "# someone's work\n")
    before = tree(fixture_kb.root)
    result = run_cli(fixture_kb.root, *NEW, *DKD)
    assert result.exit_code == 1
    assert (
        result.output
        == f"{existing}: error: already exists; choose another --id or remove the file\n"
    )
    assert tree(fixture_kb.root) == before


def test_a_taxonomy_file_that_does_not_parse_is_refused(fixture_kb, run_cli):
    fixture_kb.replace("taxonomy/schemes.yaml", "leaves:\n", "leaves: [\n")
    before = tree(fixture_kb.root)
    result = run_cli(fixture_kb.root, *NEW, *DKD)
    assert result.exit_code == 1
    assert result.output.startswith("taxonomy/schemes.yaml:"), result.output
    assert len(result.output.splitlines()) == 1
    assert tree(fixture_kb.root) == before


def test_a_failure_while_writing_leaves_the_tree_as_it_was(fixture_kb, monkeypatch):
    # sources/feature has no package folders yet: they are created, then removed again
    request = Request("sources/feature", "hint", ["romero2015fitnets"], inputs="features")
    scaffold = plan(fixture_kb.root, request)
    assert "reference_impls/sources/feature/__init__.py" in {p.as_posix() for p in scaffold.texts}
    before = tree(fixture_kb.root)

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(kdatlas.atomic.os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        new_implementation(fixture_kb.root, request)
    assert tree(fixture_kb.root) == before


def test_the_leaf_package_exports_each_new_class_sorted(fixture_kb, run_cli):
    with_shared_code(fixture_kb.root)
    init = "reference_impls/sources/logit/__init__.py"
    assert run_cli(fixture_kb.root, *NEW, *DKD).exit_code == 0
    other = ("--leaf", "sources/logit", "--id", "a-kd", "--paper", "zhao2022decoupled")
    assert run_cli(fixture_kb.root, *NEW, *other).exit_code == 0
    assert fixture_kb.read(init) == (
        '"""Reference implementations filed under this taxonomy node."""\n\n'
        "from reference_impls.sources.logit.a_kd import AKdLoss\n"
        "from reference_impls.sources.logit.my_dkd import MyDkdLoss\n\n"
        '__all__ = [\n    "AKdLoss",\n    "MyDkdLoss",\n]\n'
    )
    completed = subprocess.run(  # the obvious import works in the generated tree
        [sys.executable, "-c", "from reference_impls.sources.logit import MyDkdLoss, AKdLoss"],
        cwd=fixture_kb.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def test_a_hand_edited_leaf_package_is_left_alone_with_a_note(fixture_kb, run_cli):
    init = "reference_impls/sources/logit/__init__.py"
    hand_edited = "from reference_impls.sources.logit.losses import *  # noqa: F403\n"
    fixture_kb.write(init, hand_edited)
    result = run_cli(fixture_kb.root, *NEW, *DKD)
    assert result.exit_code == 0, result.output
    assert fixture_kb.read(init) == hand_edited
    assert (
        "note: reference_impls/sources/logit/__init__.py is not in the scaffold's form: add "
        '`from reference_impls.sources.logit.my_dkd import MyDkdLoss` and "MyDkdLoss" to its '
        "__all__ by hand"
    ) in result.output


def test_a_package_exporting_two_names_of_one_module_is_extended_as_ruff_writes_it():
    """ruff's isort merges ``from M import A`` and ``from M import B`` into one line; the
    scaffold reads and writes that form, so a leaf with a loss and its procedure in one
    file (GKD's loss and trainer) stays extendable."""
    from kdatlas.scaffold import export_from_package

    text = (
        '"""Leaf."""\n\n'
        "from reference_impls.x.leaf.gkd import GKD, GKDLoss\n\n"
        '__all__ = [\n    "GKD",\n    "GKDLoss",\n]\n'
    )
    extended = export_from_package(text, "reference_impls.x.leaf.gkd", "gkd_helper")
    assert extended is not None
    assert "from reference_impls.x.leaf.gkd import GKD, GKDLoss, gkd_helper\n" in extended
    long = export_from_package(
        extended, "reference_impls.x.leaf.gkd", "ZVeryLongClassNameThatPushesTheLinePastOneHundred"
    )
    assert "import (\n    GKD,\n    GKDLoss,\n    ZVeryLong" in long
