"""The repository's own knowledge base passes ``kdatlas check --no-imports --strict`` and
``fmt --check``, and holds what the site needs of every implemented paper.

These are the only tests that read the real data (marked ``repository``); every
other test builds its own knowledge base in a temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kdatlas.bibliography import read_bib_dir
from kdatlas.loader import load, round_trip_yaml

REPOSITORY = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.repository


def test_repository_passes_check(run_cli):
    result = run_cli(REPOSITORY, "check", "--no-imports", "--strict")  # warnings fail too
    assert result.exit_code == 0, result.output


def test_at_is_also_listed_under_attention_distillation():
    kb = load(REPOSITORY)
    listed = [
        (a.id, leaf.id, i.id) for a, leaf, i in kb.see_also(kb.leaf("algorithms", "attention"))
    ]
    assert ("sources", "feature", "at") in listed


def test_implemented_papers_have_the_metadata_the_site_shows():
    """Every implementation's paper (and the survey) is in bib/ with what the site shows, and
    the import's corrections of the implemented papers hold. No count: methods are added."""
    entries = {entry.key: entry for entry in read_bib_dir(REPOSITORY / "bib")[0]}
    implemented: set[str] = set()
    survey = round_trip_yaml().load((REPOSITORY / "taxonomy" / "surveys.yaml").read_text())
    for path in sorted((REPOSITORY / "taxonomy").glob("*.yaml")):
        if path.stem == "surveys":
            continue
        for leaf in round_trip_yaml().load(path.read_text(encoding="utf-8"))["leaves"]:
            for implementation in leaf.get("implementations") or []:
                implemented.update(implementation["papers"])
    assert "hinton2015distilling" in implemented
    for key in sorted(implemented | {survey["survey"]}):
        fields = entries[key].fields
        missing = {"title", "author", "year", "url"} - set(fields)
        assert not missing, (key, missing)
        assert fields.get("booktitle") or fields.get("journal"), key
    assert entries["zhang2019your"].fields["booktitle"] == "ICCV"  # listed as CVPR 2019
    assert entries["xu2019data"].fields["booktitle"] == "AAAI"  # listed as CVPR 2019
    assert entries["zhang2020self"].fields["year"] == "2020"  # listed as NeurIPS 2019


def test_repository_is_formatted(run_cli):
    result = run_cli(REPOSITORY, "fmt", "--check")
    assert result.exit_code == 0, result.output


def test_the_surveys_lists_are_the_seeds():
    """taxonomy/surveys.yaml holds the survey's "Citation" (7 papers) and "Existing Surveys"
    (6) lists; every listed paper has authors (but the one no source names), venue and a link."""
    kb = load(REPOSITORY)
    assert kb.surveys is not None
    assert kb.surveys.survey == "mansourian2025comprehensive"
    assert len(kb.surveys.cite) == 7 and len(kb.surveys.existing) == 6
    assert "mansourian2023efficient" in kb.surveys.cite
    for key in kb.surveys.all_keys():
        fields = kb.entries[key].fields
        assert fields.get("url") and (fields.get("journal") or fields.get("booktitle")), key
        assert fields.get("author") or key == "teacher2023student", key
