"""``taxonomy/surveys.yaml``: its model, loader errors at file:line, its checks, fmt, stats."""

from __future__ import annotations

import json

from kdatlas.loader import load_with_problems

SURVEYS = (
    "# yaml-language-server: $schema=../kdatlas/schemas/surveys.schema.json\n"  # 1
    "survey: hinton2015distilling\n"  # 2
    "cite:\n"  # 3
    "  - romero2015fitnets\n"  # 4
    "existing:\n"  # 5
    "  - sun2024logit\n"  # 6
    "  - zhao2022decoupled\n"  # 7
)


def _messages(kb_root) -> list[str]:
    _kb, problems = load_with_problems(kb_root)
    return [str(problem) for problem in problems]


def test_surveys_file_loads_into_the_knowledge_base(fixture_kb):
    fixture_kb.write("taxonomy/surveys.yaml", SURVEYS)
    kb, problems = load_with_problems(fixture_kb.root)
    assert [p for p in problems if p.is_error] == []
    assert kb.surveys is not None
    assert kb.surveys.survey == "hinton2015distilling"
    assert kb.surveys.cite == ["romero2015fitnets"]
    assert kb.surveys.existing == ["sun2024logit", "zhao2022decoupled"]
    assert {"romero2015fitnets", "sun2024logit"} <= kb.referenced_keys()


def test_surveys_file_is_optional(fixture_kb):
    kb, problems = load_with_problems(fixture_kb.root)
    assert kb.surveys is None and [p for p in problems if p.is_error] == []


def test_unknown_key_is_an_error_at_its_line(fixture_kb):
    fixture_kb.write("taxonomy/surveys.yaml", SURVEYS + "earlier:\n  - sun2024logit\n")
    assert "taxonomy/surveys.yaml:8: error: unknown key 'earlier'" in _messages(fixture_kb.root)


def test_missing_survey_and_bad_key_are_errors_at_their_lines(fixture_kb):
    fixture_kb.write("taxonomy/surveys.yaml", "cite:\n  - ok2020key\n  - not a key\n")
    messages = _messages(fixture_kb.root)
    assert "taxonomy/surveys.yaml:1: error: missing required key 'survey'" in messages
    assert any(
        m.startswith("taxonomy/surveys.yaml:3: error: cite.1: 'not a key' is not a valid BibTeX")
        for m in messages
    ), messages


def test_not_a_mapping_is_an_error(fixture_kb):
    fixture_kb.write("taxonomy/surveys.yaml", "- hinton2015distilling\n")
    messages = _messages(fixture_kb.root)
    assert "taxonomy/surveys.yaml:1: error: expected a mapping of surveys keys, found a " in (
        "\n".join(messages)
    )


def test_keys_must_be_in_the_bibliography_and_listed_once(fixture_kb):
    text = SURVEYS.replace("  - sun2024logit\n", "  - nobody2020missing\n  - romero2015fitnets\n")
    fixture_kb.write("taxonomy/surveys.yaml", text)
    messages = _messages(fixture_kb.root)
    assert "taxonomy/surveys.yaml:6: error: bib key 'nobody2020missing' is not in bib/" in messages
    assert (
        "taxonomy/surveys.yaml:7: error: bib key 'romero2015fitnets' is already listed at "
        "taxonomy/surveys.yaml:4"
    ) in messages


def test_the_survey_cannot_also_be_an_earlier_survey(fixture_kb):
    fixture_kb.write(
        "taxonomy/surveys.yaml", SURVEYS.replace("  - sun2024logit\n", "  - hinton2015distilling\n")
    )
    assert (
        "taxonomy/surveys.yaml:6: error: bib key 'hinton2015distilling' is already listed at "
        "taxonomy/surveys.yaml:2"
    ) in _messages(fixture_kb.root)


def test_entries_only_the_surveys_file_names_are_used(fixture_kb, run_cli):
    fixture_kb.write(
        "bib/kd.bib",
        fixture_kb.read("bib/kd.bib")
        + "\n@article{gou2021knowledge,\n  title = {Knowledge Distillation: A Survey},\n"
        "  journal = {IJCV},\n  year = {2021},\n  url = {https://arxiv.org/abs/2006.05525},\n}\n",
    )
    result = run_cli(fixture_kb.root, "check", "--no-imports", "--strict")
    assert result.exit_code == 1 and "gou2021knowledge: not used" in result.output
    fixture_kb.write("taxonomy/surveys.yaml", SURVEYS + "  - gou2021knowledge\n")
    result = run_cli(fixture_kb.root, "check", "--no-imports", "--strict")
    assert result.exit_code == 0, result.output


def test_fmt_orders_keys_by_the_model_and_keeps_comments(fixture_kb, run_cli):
    fixture_kb.write(
        "taxonomy/surveys.yaml",
        "existing: [zhao2022decoupled]  # earlier\ncite: [romero2015fitnets]\n"
        "survey: hinton2015distilling\n",
    )
    assert run_cli(fixture_kb.root, "fmt").exit_code == 0
    text = fixture_kb.read("taxonomy/surveys.yaml")
    assert "# earlier" in text
    assert [line.split("#")[0].rstrip() for line in text.splitlines()][1:] == [
        "survey: hinton2015distilling",
        "cite:",
        "  - romero2015fitnets",
        "existing:",
        "  - zhao2022decoupled",
    ]
    assert text.startswith(
        "# yaml-language-server: $schema=../kdatlas/schemas/surveys.schema.json\n"
    )
    assert run_cli(fixture_kb.root, "fmt", "--check").exit_code == 0


def test_stats_count_both_lists(fixture_kb, run_cli):
    result = run_cli(fixture_kb.root, "stats", "--json")
    assert json.loads(result.output)["surveys"] == {"survey": None, "cite": 0, "existing": 0}
    fixture_kb.write("taxonomy/surveys.yaml", SURVEYS)
    result = run_cli(fixture_kb.root, "stats", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["surveys"] == {"survey": "hinton2015distilling", "cite": 1, "existing": 2}
    table = run_cli(fixture_kb.root, "stats").output
    assert "earlier surveys listed" in table and "papers its authors ask to cite" in table


def test_committed_surveys_schema_is_up_to_date_and_validates_the_file():
    import jsonschema

    from kdatlas.export import SURVEYS_SCHEMA_PATH, schema_text, surveys_json_schema
    from kdatlas.loader import plain, round_trip_yaml

    assert SURVEYS_SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(surveys_json_schema())
    schema = surveys_json_schema()
    jsonschema.validate(plain(round_trip_yaml().load(SURVEYS)), schema)
    try:
        jsonschema.validate({"survey": "x2020y", "earlier": []}, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the schema accepted an unknown key")
