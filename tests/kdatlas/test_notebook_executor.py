"""The notebook executor starts another kernel when one dies while starting, and only then."""

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
