"""``kdatlas stats``, ``export`` and ``schema`` on the fixture knowledge base."""

from __future__ import annotations

import json

import jsonschema
import pytest

from kdatlas.export import (
    EXPORT_SCHEMA_PATH,
    TAXONOMY_SCHEMA_PATH,
    export_data,
    schema_text,
    taxonomy_json_schema,
)
from kdatlas.loader import load, plain, read_yaml


def test_stats_json_counts(fixture_kb, run_cli):
    result = run_cli(fixture_kb.root, "stats", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["papers"] == 8  # memberships: logit 3, feature 1, and one in each other leaf
    assert figures["unique_papers"] == 4
    assert figures["bib_entries"] == 4
    assert figures["implementations"] == 1
    assert figures["notebooks"] == 1 and figures["further_notebooks"] == 0
    assert figures["leaves"] == 6
    assert figures["years"] == {"2015": 2, "2022": 1, "2024": 1}
    sources = figures["areas"][0]
    assert (sources["id"], sources["papers"], sources["unique_papers"]) == ("sources", 4, 4)
    logit = sources["leaves"][0]
    assert (logit["papers"], logit["implementations"], logit["notebook"]) == (3, 1, True)
    assert logit["topics"] == [{"id": "calibration", "title": "Calibration", "papers": 1}]
    assert figures["coverage"]["authors"] == {"count": 3, "total": 4, "percent": 75.0}
    assert figures["coverage"]["code"] == {"count": 1, "total": 4, "percent": 25.0}
    assert figures["coverage"]["arxiv"] == {"count": 3, "total": 4, "percent": 75.0}
    assert figures["missing_authors"] == {"count": 1, "keys": ["sun2024logit"]}


def test_stats_follow_the_data(fixture_kb, run_cli):
    fixture_kb.replace(
        "taxonomy/schemes.yaml",
        "      - romero2015fitnets\n",
        "      - romero2015fitnets\n      - zhao2022decoupled\n",
    )
    fixture_kb.replace("bib/kd.bib", "  booktitle = {CVPR},\n  year = {2024},", "  year = {2023},")
    result = run_cli(fixture_kb.root, "stats", "--json")
    assert result.stderr == ""
    figures = json.loads(result.stdout)
    assert figures["papers"] == 9
    assert figures["years"] == {"2015": 2, "2022": 1, "2023": 1}


def test_stats_tables(fixture_kb, run_cli):
    result = run_cli(fixture_kb.root, "stats", "--missing-authors")
    assert result.exit_code == 0
    assert "papers (memberships)" in result.output
    assert "calibration" in result.output
    assert "3/4 (75.0%)" in result.output
    assert result.output.splitlines()[-1] == "sun2024logit"


def test_export_json_matches_its_schema(fixture_kb, run_cli):
    fixture_kb.write(
        "taxonomy/algorithms.yaml",
        fixture_kb.read("taxonomy/algorithms.yaml") + "    see_also:\n      - kd\n",
    )
    result = run_cli(fixture_kb.root, "export", "--format", "json")
    assert result.exit_code == 0, result.output
    exported = json.loads(result.stdout)
    schema = json.loads(EXPORT_SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(exported, schema, cls=jsonschema.Draft202012Validator)

    assert [area["id"] for area in exported["areas"]] == [
        "sources",
        "schemes",
        "algorithms",
        "modalities",
        "applications",
    ]
    logit = exported["areas"][0]["leaves"][0]
    assert logit["topics"][0]["papers"] == ["sun2024logit"]
    assert logit["implementations"][0]["object"] == f"{fixture_kb.package}.losses:KDLoss"
    assert logit["see_also"] == []
    attention = exported["areas"][2]["leaves"][0]
    assert (attention["implementations"], attention["see_also"]) == ([], ["kd"])
    papers = {paper["key"]: paper for paper in exported["papers"]}
    zhao = papers["zhao2022decoupled"]
    assert zhao["authors"][:2] == ["Borui Zhao", "Quan Cui"]
    assert (zhao["year"], zhao["venue"], zhao["arxiv"]) == (2022, "CVPR", "2203.08679")
    assert zhao["memberships"] == [
        {"area": "sources", "leaf": "logit", "topic": None},
        {"area": "algorithms", "leaf": "attention", "topic": None},
    ]
    assert papers["sun2024logit"]["doi"] == "10.1109/cvpr52733.2024.01489"
    assert papers["sun2024logit"]["authors"] == []


def test_export_schema_rejects_a_broken_export(fixture_kb):
    exported = export_data(load(fixture_kb.root))
    exported["papers"][0]["url"] = "javascript:alert(1)"
    schema = json.loads(EXPORT_SCHEMA_PATH.read_text(encoding="utf-8"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(exported, schema, cls=jsonschema.Draft202012Validator)


def test_export_bib_all_and_by_leaf(fixture_kb, run_cli, tmp_path):
    everything = run_cli(fixture_kb.root, "export", "--format", "bib")
    assert everything.exit_code == 0
    assert everything.output == fixture_kb.BIB

    out = tmp_path / "logit.bib"
    result = run_cli(
        fixture_kb.root, "export", "--format", "bib", "--leaf", "sources/logit", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    keys = [line.split("{")[1].rstrip(",") for line in text.splitlines() if line.startswith("@")]
    assert keys == ["hinton2015distilling", "sun2024logit", "zhao2022decoupled"]

    feature = run_cli(fixture_kb.root, "export", "--format", "bib", "--leaf", "sources/feature")
    assert feature.output.startswith("@inproceedings{romero2015fitnets,")
    assert feature.output.count("@") == 1


def test_export_refuses_bad_requests_and_bad_data(fixture_kb, run_cli):
    unknown = run_cli(fixture_kb.root, "export", "--format", "bib", "--leaf", "sources/nope")
    assert unknown.exit_code == 2
    assert "no leaf 'sources/nope'" in unknown.output
    assert run_cli(fixture_kb.root, "export", "--leaf", "sources/logit").exit_code == 2

    fixture_kb.replace("taxonomy/sources.yaml", "- zhao2022decoupled", "- missing2020key")
    broken = run_cli(fixture_kb.root, "export")
    assert broken.exit_code == 1
    assert (
        "taxonomy/sources.yaml:14: error: bib key 'missing2020key' is not in bib/" in broken.output
    )


def test_committed_taxonomy_schema_is_up_to_date(run_cli, tmp_path):
    assert TAXONOMY_SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(taxonomy_json_schema())
    assert run_cli(tmp_path, "schema", "--check").exit_code == 0
    stale = tmp_path / "stale.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert run_cli(tmp_path, "schema", "--check", "-o", str(stale)).exit_code == 1
    assert run_cli(tmp_path, "schema", "-o", str(stale)).exit_code == 0
    assert stale.read_text(encoding="utf-8") == TAXONOMY_SCHEMA_PATH.read_text(encoding="utf-8")


def test_taxonomy_schema_agrees_with_the_models(fixture_kb):
    schema = json.loads(TAXONOMY_SCHEMA_PATH.read_text(encoding="utf-8"))
    document, problems = read_yaml(fixture_kb.path("taxonomy/sources.yaml"), "sources.yaml")
    assert problems == []
    data = plain(document)
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    data["leaves"][0]["colour"] = "red"
    with pytest.raises(jsonschema.ValidationError, match="colour"):
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    del data["leaves"][0]["colour"]
    data["leaves"][0]["id"] = "Not_A_Slug"
    with pytest.raises(jsonschema.ValidationError, match="Not_A_Slug"):
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
