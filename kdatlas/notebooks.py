"""Execute the jupytext notebooks under ``docs/notebooks/`` (tests and the site share this).

Notebooks are percent-format ``.py`` files. Executed copies (``.ipynb`` with
outputs) are cached under ``.cache/notebooks/``, keyed on the notebook text
*and* the source of ``reference_impls`` it imports, so a change to a method
re-runs the notebook (mkdocs-jupyter's own cache keys on the text alone).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
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
_PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar: "45%|████▌     | 9/20 [...]"


def _kernel_failed_to_start(error: RuntimeError) -> bool:
    # A kernel can die before its first reply when the machine is short of resources;
    # that is the machine's problem, not the notebook's, so it is started again.
    return "Kernel died before replying to kernel_info" in str(error)


def execute(notebook: Path, root: Path, timeout: int = 600):
    """Run one notebook in a fresh ``python3`` kernel from the repository root; return it with outputs.

    A kernel that dies while starting (before running any cell) is started again, up to
    ``KERNEL_START_ATTEMPTS`` times; an error in a cell is raised at once. The outputs
    are tidied for reading (:func:`tidy_streams`).
    """
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            return _execute_once(notebook, root, timeout)
        except RuntimeError as error:
            if not _kernel_failed_to_start(error) or attempt == KERNEL_START_ATTEMPTS:
                raise
            print(f"[notebooks] {notebook.name}: the kernel died while starting; starting another")
    raise AssertionError("unreachable")


def _ipc_kernel_manager(directory: Path) -> type:
    """A kernel manager that talks to its kernel over Unix sockets in ``directory``.

    The default TCP transport picks free ports before the kernel binds them (two
    processes starting kernels at once can race for one) and prints "Kernel is running
    over TCP without encryption" for every notebook; local sockets have neither problem.
    """
    from jupyter_client.manager import KernelManager

    class IPCKernelManager(KernelManager):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(transport="ipc", ip=str(directory / "kernel"), **kwargs)

    return IPCKernelManager


def _execute_once(notebook: Path, root: Path, timeout: int):
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(notebook)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    with tempfile.TemporaryDirectory(prefix="kdatlas-kernel-") as sockets:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            kernel_manager_class=_ipc_kernel_manager(Path(sockets)),
            resources={"metadata": {"path": str(root)}},
            coalesce_streams=True,  # one output per stream, not one per progress-bar update
            record_timing=False,  # no timestamps: an executed notebook depends on its code alone
        )
        client.execute()
    return tidy_streams(nb)


def _final_state(text: str) -> str:
    """What a terminal shows of ``text``: each line as its last carriage-return rewrite."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def tidy_streams(nb):
    """Outputs for reading: progress bars (tqdm writes them to stderr, redrawn with ``\\r``)
    become plain output showing their final state, and a stream left empty is dropped, so a
    rendered page shows no empty or red boxes for progress. Real stderr text stays stderr."""
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                raw = output.get("text", "")
                text = _final_state(raw)
                if not text.strip():
                    continue
                if output.get("name") == "stderr" and ("\r" in raw or _PROGRESS.search(text)):
                    output["name"] = "stdout"
                output["text"] = text
            kept.append(output)
        cell["outputs"] = kept
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
