"""The notebook executor: another kernel when one dies while starting (and only then), local
sockets instead of TCP, and outputs tidied for reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdatlas import notebooks


def _failing(times: int, error: Exception):
    calls = []

    def execute_once(notebook: Path, root: Path, timeout: int):
        calls.append(notebook)
        if len(calls) <= times:
            raise error
        return "executed"

    return execute_once, calls


STARTUP = RuntimeError("Kernel died before replying to kernel_info")


def test_a_kernel_that_dies_while_starting_is_started_again(monkeypatch, capsys):
    execute_once, calls = _failing(2, STARTUP)
    monkeypatch.setattr(notebooks, "_execute_once", execute_once)
    assert notebooks.execute(Path("nb.py"), Path(".")) == "executed"
    assert len(calls) == 3
    assert "the kernel died while starting" in capsys.readouterr().out


def test_after_the_last_attempt_the_startup_error_is_raised(monkeypatch):
    execute_once, calls = _failing(notebooks.KERNEL_START_ATTEMPTS, STARTUP)
    monkeypatch.setattr(notebooks, "_execute_once", execute_once)
    with pytest.raises(RuntimeError, match="kernel_info"):
        notebooks.execute(Path("nb.py"), Path("."))
    assert len(calls) == notebooks.KERNEL_START_ATTEMPTS


def test_an_error_of_the_notebook_itself_is_not_retried(monkeypatch):
    execute_once, calls = _failing(1, RuntimeError("Kernel died"))  # died while running cells
    monkeypatch.setattr(notebooks, "_execute_once", execute_once)
    with pytest.raises(RuntimeError, match="Kernel died"):
        notebooks.execute(Path("nb.py"), Path("."))
    assert len(calls) == 1


PROGRESS_AND_WARNING = """\
# %%
import sys
for done in (0, 50, 100):
    sys.stderr.write(f"\\r{done:3d}%|{'#' * (done // 10):10s}| {done}/100")
sys.stderr.write("\\n")
print("trained")

# %%
_ = sys.stderr.write("\\r")

# %%
_ = sys.stderr.write("UserWarning: a real warning\\n")
"""


def test_a_real_notebook_runs_over_local_sockets_with_progress_as_plain_output(tmp_path, capfd):
    source = tmp_path / "nb.py"
    source.write_text(PROGRESS_AND_WARNING)
    nb = notebooks.execute(source, tmp_path, timeout=120)
    progress, empty, warning = (cell.outputs for cell in nb.cells)
    assert {o.name for o in progress} == {"stdout"}  # the bar, in its final state, is plain output
    assert sorted(o.text for o in progress) == ["100%|##########| 100/100\n", "trained\n"]
    assert empty == []  # a stream left empty is no box at all
    assert [(o.name, o.text) for o in warning] == [("stderr", "UserWarning: a real warning\n")]
    printed = capfd.readouterr()
    assert "TCP" not in printed.out + printed.err


def test_tidy_streams_keeps_the_last_rewrite_of_each_line():
    assert notebooks._final_state("a\rb\rc\nd\n") == "c\nd\n"
