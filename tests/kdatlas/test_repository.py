"""The repository's own knowledge base passes ``kdatlas check --no-imports`` and ``fmt --check``.

These are the only tests that read the real data (marked ``repository``); every
other test builds its own knowledge base in a temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.repository


def test_repository_passes_check(run_cli):
    result = run_cli(REPOSITORY, "check", "--no-imports")
    assert result.exit_code == 0, result.output


def test_repository_is_formatted(run_cli):
    result = run_cli(REPOSITORY, "fmt", "--check")
    assert result.exit_code == 0, result.output
