"""The command shell: root discovery, the importer's registration, ``python -m kdatlas``."""

from __future__ import annotations

import sys

import pytest
import typer

import kdatlas.cli


def test_root_is_found_from_a_subdirectory(fixture_kb, runner, monkeypatch):
    monkeypatch.chdir(fixture_kb.path("docs/notebooks/sources"))
    result = runner.invoke(kdatlas.cli.app, ["check", "--no-imports"])
    assert result.exit_code == 0, result.output
    fixture_kb.replace("taxonomy/sources.yaml", "- zhao2022decoupled", "- missing2020key")
    result = runner.invoke(kdatlas.cli.app, ["check", "--no-imports"])
    assert result.exit_code == 1
    assert (
        "taxonomy/sources.yaml:14: error: bib key 'missing2020key' is not in bib/" in result.output
    )


def test_no_root_anywhere_is_a_usage_error(tmp_path, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(kdatlas.cli.app, ["stats"])
    assert result.exit_code == 2
    assert "no taxonomy/ and bib/ here or in a parent; use --root PATH" in result.output


def test_an_import_error_of_the_importer_is_not_hidden(monkeypatch):
    """The CLI used to swallow any error importing its importer and run on without it."""
    monkeypatch.setitem(sys.modules, "kdatlas.importers.survey", None)  # makes the import fail
    monkeypatch.setattr(kdatlas.cli, "app", typer.Typer())
    with pytest.raises(ImportError):
        kdatlas.cli._register_importer()
