"""Execute the jupytext notebooks under ``docs/notebooks/`` (tests and the site share this).

Notebooks are percent-format ``.py`` files. Executed copies (``.ipynb`` with
outputs) are cached under ``.cache/notebooks/``, keyed on the notebook text
*and* the source of ``reference_impls`` it imports, so a change to a method
re-runs the notebook (mkdocs-jupyter's own cache keys on the text alone).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

NOTEBOOK_DIR = Path("docs") / "notebooks"
CACHE_DIR = Path(".cache") / "notebooks"


@dataclass(frozen=True)
class ExecutedNotebook:
    source: Path
    output: Path
    seconds: float
    cached: bool


def discover(root: Path) -> list[Path]:
    """Every notebook source, sorted: ``docs/notebooks/<area>/<leaf>.py``."""
    return sorted((root / NOTEBOOK_DIR).glob("*/*.py"))


def _fingerprint(root: Path, notebook: Path) -> str:
    digest = hashlib.sha256(notebook.read_bytes())
    for path in sorted((root / "reference_impls").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


KERNEL_START_ATTEMPTS = 3


def _kernel_failed_to_start(error: RuntimeError) -> bool:
    # jupyter_client picks free TCP ports before the kernel binds them, so two processes
    # starting kernels at once (pytest-xdist workers) can race for a port; the kernel then
    # dies before its first reply. That is the machine's problem, not the notebook's.
    return "Kernel died before replying to kernel_info" in str(error)


def execute(notebook: Path, root: Path, timeout: int = 600):
    """Run one notebook in a fresh ``python3`` kernel from the repository root; return it with outputs.

    A kernel that dies while starting (before running any cell) is started again, up to
    ``KERNEL_START_ATTEMPTS`` times; an error in a cell is raised at once.
    """
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            return _execute_once(notebook, root, timeout)
        except RuntimeError as error:
            if not _kernel_failed_to_start(error) or attempt == KERNEL_START_ATTEMPTS:
                raise
            print(f"[notebooks] {notebook.name}: the kernel died while starting; starting another")
    raise AssertionError("unreachable")


def _execute_once(notebook: Path, root: Path, timeout: int):
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(notebook)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(root)}},
        coalesce_streams=True,  # one output per stream, not one per progress-bar update
    )
    client.execute()
    return nb


def executed_path(root: Path, notebook: Path) -> Path:
    relative = notebook.resolve().relative_to((root / NOTEBOOK_DIR).resolve())
    return root / CACHE_DIR / relative.with_suffix(".ipynb")


def execute_cached(root: Path, notebook: Path, force: bool = False) -> ExecutedNotebook:
    """Execute ``notebook`` unless an up-to-date executed copy is cached."""
    import nbformat

    output = executed_path(root, notebook)
    stamp = output.with_suffix(".sha256")
    fingerprint = _fingerprint(root, notebook)
    if not force and output.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return ExecutedNotebook(notebook, output, 0.0, cached=True)
    start = time.perf_counter()
    nb = execute(notebook, root)
    seconds = time.perf_counter() - start
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, output)
    stamp.write_text(fingerprint)
    return ExecutedNotebook(notebook, output, seconds, cached=False)
