"""The loader API: typed areas and entries, memberships, source lines, errors as problems."""

from __future__ import annotations

import pytest

from kdatlas.loader import Membership, find_root, load, load_with_problems
from kdatlas.models import AREA_IDS
from kdatlas.problems import KnowledgeBaseError


def test_load_gives_areas_in_order_and_entries(fixture_kb):
    kb = load(fixture_kb.root)
    assert [area.id for area in kb.areas] == list(AREA_IDS)
    assert sorted(kb.entries) == [
        "hinton2015distilling",
        "romero2015fitnets",
        "sun2024logit",
        "zhao2022decoupled",
    ]
    hinton = kb.entries["hinton2015distilling"]
    assert hinton.entry_type == "article"
    assert hinton.fields["eprint"] == "1503.02531"
    assert (str(hinton.path), hinton.line) == ("bib/kd.bib", 1)
    assert kb.entries["zhao2022decoupled"].line == 27


def test_leaves_implementations_and_leaf_lookup(fixture_kb):
    kb = load(fixture_kb.root)
    assert [(a.id, leaf.id) for a, leaf in kb.leaves()] == [
        ("sources", "logit"),
        ("sources", "feature"),
        ("schemes", "offline"),
        ("algorithms", "attention"),
        ("modalities", "3d"),
        ("applications", "llm"),
    ]
    [(area, leaf, implementation)] = list(kb.implementations())
    assert (area.id, leaf.id, implementation.id) == ("sources", "logit", "kd")
    assert implementation.object == f"{fixture_kb.package}.losses:KDLoss"
    logit = kb.leaf("sources", "logit")
    assert logit.all_papers() == ["hinton2015distilling", "zhao2022decoupled", "sun2024logit"]
    with pytest.raises(KeyError):
        kb.leaf("sources", "nope")


def test_memberships_cover_leaves_and_topics(fixture_kb):
    kb = load(fixture_kb.root)
    assert kb.memberships("sun2024logit") == [
        Membership("sources", "logit", "calibration"),
        Membership("modalities", "3d", None),
    ]
    assert kb.memberships("hinton2015distilling") == [
        Membership("sources", "logit", None),
        Membership("applications", "llm", None),
    ]
    assert kb.memberships("unknown") == []


def test_location_maps_a_model_path_to_its_yaml_line(fixture_kb):
    kb = load(fixture_kb.root)
    assert kb.location("sources", ("leaves", 0, "topics", 0, "papers", 0)) == (
        fixture_kb.path("taxonomy/sources.yaml").relative_to(fixture_kb.root),
        21,
    )
    assert kb.location("sources", ("leaves", 1, "id"))[1] == 28
    assert kb.location("sources", ("leaves", 0, "implementations", 0, "object"))[1] == 25


def test_load_raises_with_every_error(fixture_kb):
    fixture_kb.replace("taxonomy/sources.yaml", "- zhao2022decoupled", "- missing2020key")
    fixture_kb.replace("taxonomy/schemes.yaml", "  - id: offline", "  - id: Offline")
    with pytest.raises(KnowledgeBaseError) as raised:
        load(fixture_kb.root)
    messages = [str(p) for p in raised.value.problems]
    assert messages == [
        "taxonomy/schemes.yaml:7: error: leaves.0.id: 'Offline' is not a slug "
        "(lowercase letters, digits and single hyphens)",
        "taxonomy/sources.yaml:14: error: bib key 'missing2020key' is not in bib/",
    ]


def test_load_with_problems_keeps_what_loads(fixture_kb):
    fixture_kb.replace("taxonomy/schemes.yaml", "title: Distillation Schemes", "title: [oops")
    kb, problems = load_with_problems(fixture_kb.root)
    assert kb is not None
    assert [area.id for area in kb.areas] == ["sources", "algorithms", "modalities", "applications"]
    assert [p.path.as_posix() for p in problems if p.is_error] == ["taxonomy/schemes.yaml"]


def test_load_does_not_look_at_notebooks_or_imports(fixture_kb):
    fixture_kb.path("docs/notebooks/sources/logit.py").unlink()
    fixture_kb.replace("taxonomy/sources.yaml", ".losses:KDLoss", ".nowhere:KDLoss")
    assert load(fixture_kb.root).leaf("sources", "logit").notebook is not None


def test_not_a_root(tmp_path):
    kb, problems = load_with_problems(tmp_path)
    assert kb is None
    assert "not a KD Atlas root" in problems[0].message
    with pytest.raises(KnowledgeBaseError):
        load(tmp_path)


def test_find_root_walks_up(fixture_kb, monkeypatch):
    nested = fixture_kb.path("docs/notebooks/sources")
    assert find_root(nested) == fixture_kb.root.resolve()
    monkeypatch.chdir(nested)
    assert find_root() == fixture_kb.root.resolve()
    assert find_root(fixture_kb.root.parent) is None
