"""``bib/provenance.yaml``: its model, loader errors at file:line, its checks against the bib,
and its JSON Schema."""

from __future__ import annotations

import json

import pytest

from kdatlas.export import PROVENANCE_SCHEMA_PATH, provenance_json_schema
from kdatlas.loader import load_with_problems

PROVENANCE = (
    "# yaml-language-server: $schema=../kdatlas/schemas/provenance.schema.json\n"  # 1
    "filled:\n"  # 2
    "  hinton2015distilling:\n"  # 3
    "    author:\n"  # 4
    "      source: https://arxiv.org/abs/1503.02531\n"  # 5
    "      checked: 2026-11-30\n"  # 6
    "      by: manual\n"  # 7
    "    eprint:\n"  # 8
    "      source: https://api.openalex.org/works/W1821462560\n"  # 9
    "      checked: '2026-11-30'\n"  # 10
    "      by: kdatlas enrich (openalex)\n"  # 11
    "unidentified:\n"  # 12
    "  sun2024logit: searched the title on arXiv and DBLP; no paper has it\n"  # 13
)
PATH = "bib/provenance.yaml"


def _messages(root) -> list[str]:
    _kb, problems = load_with_problems(root)
    return [str(problem) for problem in problems if problem.is_error]


def test_a_good_file_loads_into_the_knowledge_base(fixture_kb):
    fixture_kb.write(PATH, PROVENANCE)
    kb, problems = load_with_problems(fixture_kb.root)
    assert [p for p in problems if p.is_error] == []
    assert kb.provenance is not None
    sources = kb.provenance.filled["hinton2015distilling"]
    assert sources["author"].source == "https://arxiv.org/abs/1503.02531"
    assert str(sources["eprint"].checked) == "2026-11-30"
    assert sources["eprint"].by == "kdatlas enrich (openalex)"
    assert list(kb.provenance.unidentified) == ["sun2024logit"]


def test_the_file_is_optional(fixture_kb):
    kb, problems = load_with_problems(fixture_kb.root)
    assert kb.provenance is None and [p for p in problems if p.is_error] == []


def test_a_key_not_in_the_bibliography_is_an_error_at_its_line(fixture_kb):
    fixture_kb.write(PATH, PROVENANCE.replace("  hinton2015distilling:", "  nobody2020missing:"))
    assert f"{PATH}:3: error: filled: bib key 'nobody2020missing' is not in bib/" in _messages(
        fixture_kb.root
    )


def test_a_field_not_set_in_the_entry_is_an_error_at_its_line(fixture_kb):
    # romero2015fitnets has authors but no eprint.
    fixture_kb.write(PATH, PROVENANCE.replace("  hinton2015distilling:", "  romero2015fitnets:"))
    messages = _messages(fixture_kb.root)
    expected = (
        f"{PATH}:8: error: filled: romero2015fitnets: field 'eprint' is not set in its bib entry"
    )
    assert expected in messages, messages
    assert not any(":4: " in m for m in messages), messages


@pytest.mark.parametrize(
    ("old", "new", "line", "expected"),
    [
        (
            "source: https://arxiv.org/abs/1503.02531",
            "source: javascript:alert(1)",
            5,
            "source must be an http(s) URL",
        ),
        ("source: https://arxiv.org/abs/1503.02531", "source: arxiv.org/abs/1", 5, "http(s) URL"),
        ("checked: 2026-11-30", "checked: 30/11/2026", 6, "ISO date (YYYY-MM-DD)"),
        ("checked: 2026-11-30", "checked: 1764460800", 6, "ISO date (YYYY-MM-DD)"),
        ("checked: 2026-11-30", "checked: 2026-13-40", 6, "not a valid date"),
        ("checked: 2026-11-30", "checked: 2026-11-30 10:00:00", 6, "without a time"),
        ("by: manual", "by: guessed", 7, "by must be 'manual' or 'kdatlas enrich"),
        ("    author:\n", "    Author Name:\n", 4, "is not a bib field name"),
    ],
)
def test_a_bad_value_is_an_error_at_its_line(fixture_kb, old, new, line, expected):
    fixture_kb.write(PATH, PROVENANCE.replace(old, new, 1))
    messages = _messages(fixture_kb.root)
    assert any(m.startswith(f"{PATH}:{line}: error: ") and expected in m for m in messages), (
        messages
    )


def test_missing_and_unknown_keys_are_errors_at_their_lines(fixture_kb):
    text = PROVENANCE.replace("      by: manual\n", "      by_whom: manual\n")
    fixture_kb.write(PATH, text)
    messages = _messages(fixture_kb.root)
    assert f"{PATH}:7: error: unknown key 'by_whom'" in messages
    assert f"{PATH}:4: error: missing required key 'by'" in messages


def test_an_unknown_top_level_key_and_a_non_mapping_are_errors(fixture_kb):
    fixture_kb.write(PATH, PROVENANCE + "sources: {}\n")
    assert f"{PATH}:14: error: unknown key 'sources'" in _messages(fixture_kb.root)
    fixture_kb.write(PATH, "- hinton2015distilling\n")
    assert any(
        m.startswith(f"{PATH}:1: error: expected a mapping of provenance keys, found a ")
        for m in _messages(fixture_kb.root)
    )


def test_unidentified_keys_must_exist_and_have_no_filled_authors(fixture_kb):
    text = PROVENANCE.replace("  sun2024logit:", "  hinton2015distilling:")
    text += "  nobody2020missing: searched everywhere for this title, found nothing\n"
    fixture_kb.write(PATH, text)
    messages = _messages(fixture_kb.root)
    assert (
        f"{PATH}:13: error: unidentified: hinton2015distilling has filled authors; remove it "
        "from one of the lists"
    ) in messages
    assert f"{PATH}:14: error: unidentified: bib key 'nobody2020missing' is not in bib/" in (
        messages
    )


def test_a_syntax_error_and_an_alias_are_errors_at_their_lines(fixture_kb):
    fixture_kb.write(PATH, PROVENANCE.replace("      by: manual\n", "      by: [manual\n"))
    assert any(m.startswith(f"{PATH}:") and "YAML" in m for m in _messages(fixture_kb.root))
    fixture_kb.write(PATH, "filled: &a {}\nunidentified: *a\n")
    assert f"{PATH}:1: error: YAML anchors and aliases are not allowed" in _messages(
        fixture_kb.root
    )


def test_check_cli_reports_provenance_problems(fixture_kb, run_cli):
    fixture_kb.write(PATH, PROVENANCE.replace("by: manual", "by: guessed"))
    result = run_cli(fixture_kb.root, "check", "--no-imports")
    assert result.exit_code != 0
    assert f"{PATH}:7: error: " in result.output


def test_committed_schema_is_generated_from_the_model():
    schema = provenance_json_schema()
    assert json.loads(PROVENANCE_SCHEMA_PATH.read_text(encoding="utf-8")) == schema
    assert schema["title"] == "KD Atlas provenance file (bib/provenance.yaml)"
    assert set(schema["properties"]) == {"filled", "unidentified"}
    assert schema["additionalProperties"] is False
