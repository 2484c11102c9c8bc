"""Bad input through the CLI: each case names the exact ``file:line``, exits 1 and changes nothing.

Every case starts from the valid fixture knowledge base (``conftest.py``; its
line numbers are written beside its text), breaks one thing, runs
``kdatlas check`` and asserts the one-line message, the exit code, that no
traceback appears and that no file under the root changed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

EXTRA_IMPLEMENTATION = (
    "      - id: kd\n"
    "        title: KD again\n"
    "        object: {package}.losses:KDLoss\n"
    "        papers:\n"
    "          - hinton2015distilling\n"
)
EXTRA_TOPIC = (
    "      - id: calibration\n"
    "        title: Calibration again\n"
    "        summary: >-\n"
    "          A second topic that reuses the first one's id.\n"
)


def _append_bib(kb, entry: str) -> None:
    kb.write("bib/kd.bib", kb.read("bib/kd.bib") + "\n" + entry)


def _insert_after_line(kb, relative: str, line: int, text: str) -> None:
    lines = kb.read(relative).splitlines(keepends=True)
    lines.insert(line, text.replace("{package}", kb.package))
    kb.write(relative, "".join(lines))


# (id, mutation, expected line of output)
CASES: list[tuple[str, Callable, str]] = [
    (
        "malformed-yaml",
        lambda kb: kb.replace(
            "taxonomy/sources.yaml", "title: Distillation Sources", "title: A: B"
        ),
        "taxonomy/sources.yaml:3: error: YAML syntax error: mapping values are not allowed here",
    ),
    (
        "duplicate-yaml-key",
        lambda kb: kb.replace(
            "taxonomy/schemes.yaml", "title: Distillation Schemes\n", "title: A\ntitle: B\n"
        ),
        "taxonomy/schemes.yaml:4: error: YAML syntax error: found duplicate key",
    ),
    (
        "empty-yaml",
        lambda kb: kb.write("taxonomy/schemes.yaml", "# nothing here\n"),
        "taxonomy/schemes.yaml:1: error: expected a mapping of area keys, found an empty file",
    ),
    (
        "malformed-bibtex",
        lambda kb: kb.replace(
            "bib/kd.bib",
            "title = {FitNets: Hints for Thin Deep Nets},",
            "title = {FitNets: Hints for Thin Deep Nets,",
        ),
        "bib/kd.bib:11: error: BibTeX syntax error in block '@inproceedings{romero2015fitnets,'",
    ),
    (
        "unknown-key",
        lambda kb: _insert_after_line(kb, "taxonomy/sources.yaml", 10, "    colour: red\n"),
        "taxonomy/sources.yaml:11: error: unknown key 'colour'",
    ),
    (
        "missing-key",
        lambda kb: kb.replace(
            "taxonomy/sources.yaml", "    title: Feature-based Distillation\n", ""
        ),
        "taxonomy/sources.yaml:28: error: missing required key 'title'",
    ),
    (
        "bad-slug",
        lambda kb: kb.replace("taxonomy/sources.yaml", "  - id: feature", "  - id: Feature_Maps"),
        "taxonomy/sources.yaml:28: error: leaves.1.id: 'Feature_Maps' is not a slug",
    ),
    (
        "duplicate-leaf-id",
        lambda kb: kb.replace("taxonomy/schemes.yaml", "  - id: offline", "  - id: logit"),
        "taxonomy/schemes.yaml:7: error: leaf id 'logit' is already used at taxonomy/sources.yaml:7",
    ),
    (
        "duplicate-topic-id",
        lambda kb: _insert_after_line(kb, "taxonomy/sources.yaml", 21, EXTRA_TOPIC),
        "taxonomy/sources.yaml:22: error: topic id 'calibration' is already used at "
        "taxonomy/sources.yaml:16",
    ),
    (
        "duplicate-implementation-id",
        lambda kb: _insert_after_line(kb, "taxonomy/sources.yaml", 27, EXTRA_IMPLEMENTATION),
        "taxonomy/sources.yaml:28: error: implementation id 'kd' is already used at "
        "taxonomy/sources.yaml:23",
    ),
    (
        "dangling-bib-key",
        lambda kb: kb.replace(
            "taxonomy/sources.yaml", "- zhao2022decoupled", "- nobody2020missing"
        ),
        "taxonomy/sources.yaml:14: error: bib key 'nobody2020missing' is not in bib/",
    ),
    (
        "duplicate-paper-title",
        lambda kb: _append_bib(
            kb,
            "@misc{other2022decoupled,\n  title = {Decoupled {K}nowledge distillation.},\n"
            "  year = {2022},\n  url = {https://example.org/dkd},\n}\n",
        ),
        "bib/kd.bib:38: error: other2022decoupled: duplicate paper, same title as "
        "zhao2022decoupled (bib/kd.bib:27)",
    ),
    (
        "duplicate-paper-arxiv",
        lambda kb: _append_bib(
            kb,
            "@misc{copy2015dark,\n  title = {Dark Knowledge},\n  year = {2015},\n"
            "  url = {https://example.org/dark},\n  eprint = {1503.02531v2},\n}\n",
        ),
        "bib/kd.bib:38: error: copy2015dark: duplicate paper, same arXiv id as "
        "hinton2015distilling (bib/kd.bib:1)",
    ),
    (
        "duplicate-paper-doi",
        lambda kb: _append_bib(
            kb,
            "@misc{copy2024standard,\n  title = {Standardised Logits},\n  year = {2024},\n"
            "  url = {https://example.org/ls},\n  doi = {10.1109/cvpr52733.2024.01489},\n}\n",
        ),
        "bib/kd.bib:38: error: copy2024standard: duplicate paper, same DOI as sun2024logit "
        "(bib/kd.bib:19)",
    ),
    (
        "duplicate-bib-key",
        lambda kb: _append_bib(
            kb,
            "@misc{zhao2022decoupled,\n  title = {Another Paper},\n  year = {2022},\n"
            "  url = {https://example.org/x},\n}\n",
        ),
        "bib/kd.bib:38: error: duplicate bib key 'zhao2022decoupled'",
    ),
    (
        "missing-comma-between-fields",  # bibtexparser reads one long value; 'year' went missing
        lambda kb: kb.replace("bib/kd.bib", "  booktitle = {ICLR},\n", "  booktitle = {ICLR}\n"),
        "bib/kd.bib:14: error: BibTeX syntax error: missing comma after field 'booktitle' "
        "(its value runs into 'year =')",
    ),
    (
        "free-text-between-entries",  # fmt and add would have dropped it
        lambda kb: _insert_after_line(kb, "bib/kd.bib", 10, "Feature papers follow.\n"),
        "bib/kd.bib:11: error: 'Feature papers follow.' is not an entry",
    ),
    (
        "missing-required-field",
        lambda kb: kb.replace("bib/kd.bib", "  url = {https://arxiv.org/abs/1412.6550},\n", ""),
        "bib/kd.bib:11: error: romero2015fitnets: missing required field 'url'",
    ),
    (
        "bad-year",
        lambda kb: kb.replace("bib/kd.bib", "  year = {2024},", "  year = {circa 2024},"),
        "bib/kd.bib:19: error: sun2024logit: year must be four digits, found 'circa 2024'",
    ),
    (
        "javascript-url",
        lambda kb: kb.replace(
            "bib/kd.bib", "url = {https://arxiv.org/abs/1412.6550}", "url = {javascript:alert(1)}"
        ),
        "bib/kd.bib:11: error: romero2015fitnets: field 'url' must be an http(s) URL, "
        "found 'javascript:alert(1)'",
    ),
    (
        "data-url",
        lambda kb: kb.replace(
            "bib/kd.bib",
            "code = {https://github.com/megvii-research/mdistiller}",
            "code = {data:text/html;base64,PHNjcmlwdD4=}",
        ),
        "bib/kd.bib:27: error: zhao2022decoupled: field 'code' must be an http(s) URL, "
        "found 'data:text/html;base64,PHNjcmlwdD4='",
    ),
    (
        "javascript-in-other-field",
        lambda kb: kb.replace(
            "bib/kd.bib",
            "  booktitle = {ICLR},",
            "  booktitle = {ICLR},\n  note = {javascript:alert(1)},",
        ),
        "bib/kd.bib:11: error: romero2015fitnets: field 'note' holds a 'javascript:' link",
    ),
    (
        "html-in-bib-title",
        lambda kb: kb.replace(
            "bib/kd.bib",
            "{FitNets: Hints for Thin Deep Nets}",
            "{FitNets <script>alert(1)</script>}",
        ),
        "bib/kd.bib:11: error: romero2015fitnets: field 'title' holds HTML markup (<script>)",
    ),
    (
        "html-in-leaf-title",
        lambda kb: kb.replace(
            "taxonomy/sources.yaml",
            "title: Logit-based Distillation",
            "title: Logit <img src=x onerror=alert(1)>",
        ),
        "taxonomy/sources.yaml:8: error: title holds HTML markup (<img src=x onerror=alert(1)>)",
    ),
    (
        "html-in-implementation-finding",
        lambda kb: kb.replace(
            "taxonomy/sources.yaml",
            "        title: KD (Hinton et al., 2015)\n",
            "        title: KD (Hinton et al., 2015)\n        finding: Lifted <b>it</b> by 3 points\n",
        ),
        "taxonomy/sources.yaml:25: error: finding holds HTML markup (<b>)",
    ),
    (
        "javascript-link-in-summary",
        lambda kb: kb.replace(
            "taxonomy/sources.yaml",
            "  Where in the teacher the knowledge is taken from.",
            "  Where the knowledge is taken from; [see](javascript:alert(1)).",
        ),
        "taxonomy/sources.yaml:4: error: summary holds a 'javascript:' link",
    ),
    (
        "object-does-not-import",
        lambda kb: kb.replace("taxonomy/sources.yaml", ".losses:KDLoss", ".nowhere:KDLoss"),
        "taxonomy/sources.yaml:25: error: object '{package}.nowhere:KDLoss' does not import: "
        "ModuleNotFoundError",
    ),
    (
        "object-missing-attribute",
        lambda kb: kb.replace("taxonomy/sources.yaml", ".losses:KDLoss", ".losses:NoSuchLoss"),
        "taxonomy/sources.yaml:25: error: object '{package}.losses:NoSuchLoss' does not import: "
        "AttributeError",
    ),
    (
        "object-not-a-class",
        lambda kb: kb.replace("taxonomy/sources.yaml", ".losses:KDLoss", ".losses:kd_function"),
        "taxonomy/sources.yaml:25: error: object '{package}.losses:kd_function' is a function, "
        "not a class",
    ),
    (
        "missing-notebook",
        lambda kb: kb.path("docs/notebooks/sources/logit.py").unlink(),
        "taxonomy/sources.yaml:11: error: notebook 'docs/notebooks/sources/logit.py' does not exist",
    ),
    (
        "notebook-outside-repository",
        lambda kb: kb.replace(
            "taxonomy/sources.yaml",
            "notebook: docs/notebooks/sources/logit.py",
            "notebook: ../x.py",
        ),
        "taxonomy/sources.yaml:11: error: notebook must be a relative path inside the repository",
    ),
    (
        "implementations-without-notebook",
        lambda kb: kb.replace(
            "taxonomy/sources.yaml", "    notebook: docs/notebooks/sources/logit.py\n", ""
        ),
        "taxonomy/sources.yaml:7: error: leaf 'logit' has implementations but no notebook",
    ),
    (
        "area-id-not-file-name",
        lambda kb: kb.replace("taxonomy/sources.yaml", "id: sources", "id: origins"),
        "taxonomy/sources.yaml:2: error: area id 'origins' must equal the file name 'sources'",
    ),
    (
        "unexpected-area-file",
        lambda kb: kb.write("taxonomy/extras.yaml", kb.read("taxonomy/schemes.yaml")),
        "taxonomy/extras.yaml: error: unexpected taxonomy file",
    ),
    (
        "missing-area-file",
        lambda kb: kb.path("taxonomy/applications.yaml").unlink(),
        "taxonomy/applications.yaml: error: missing area file",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check_reports_file_and_line(fixture_kb, run_cli, mutate, expected):
    mutate(fixture_kb)
    before = fixture_kb.snapshot()
    result = run_cli(fixture_kb.root, "check")
    expected = expected.replace("{package}", fixture_kb.package)
    lines = result.output.splitlines()
    assert any(line.startswith(expected) for line in lines), result.output
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert fixture_kb.snapshot() == before


def test_the_fixture_itself_is_clean(fixture_kb, run_cli):
    result = run_cli(fixture_kb.root, "check")
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


def test_unused_entry_is_a_warning_not_an_error(fixture_kb, run_cli):
    _append_bib(
        fixture_kb,
        "@misc{lonely2020paper,\n  title = {A Lonely Paper},\n  year = {2020},\n"
        "  url = {https://example.org/lonely},\n}\n",
    )
    result = run_cli(fixture_kb.root, "check", "--no-imports")
    assert result.exit_code == 0, result.output
    assert "bib/kd.bib:38: warning: lonely2020paper: not used by any leaf" in result.output
    assert run_cli(fixture_kb.root, "check", "--no-imports", "--strict").exit_code == 1


def test_the_survey_is_used_once_surveys_yaml_names_it(fixture_kb, run_cli):
    """No special case: the survey is unused (a warning) until taxonomy/surveys.yaml names it."""
    _append_bib(
        fixture_kb,
        "@article{mansourian2025comprehensive,\n"
        "  title = {A Comprehensive Survey on Knowledge Distillation},\n  year = {2025},\n"
        "  url = {https://openreview.net/forum?id=3cbJzdR78B},\n}\n",
    )
    result = run_cli(fixture_kb.root, "check", "--no-imports", "--strict")
    assert result.exit_code == 1
    assert "warning: mansourian2025comprehensive: not used by any leaf" in result.output
    fixture_kb.write("taxonomy/surveys.yaml", "survey: mansourian2025comprehensive\n")
    result = run_cli(fixture_kb.root, "check", "--no-imports", "--strict")
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


def test_no_imports_skips_the_object_check(fixture_kb, run_cli):
    fixture_kb.replace("taxonomy/sources.yaml", ":KDLoss", ":NoSuchLoss")
    assert run_cli(fixture_kb.root, "check", "--no-imports").exit_code == 0
    assert run_cli(fixture_kb.root, "check").exit_code == 1


def test_fmt_never_rewrites_a_file_it_cannot_parse(fixture_kb, run_cli):
    fixture_kb.replace("taxonomy/sources.yaml", "title: Distillation Sources", "title: A: B")
    fixture_kb.replace("bib/kd.bib", "Thin Deep Nets},", "Thin Deep Nets,")
    before = fixture_kb.snapshot()
    for args in (("fmt",), ("fmt", "--check")):
        result = run_cli(fixture_kb.root, *args)
        assert result.exit_code == 1
        assert "taxonomy/sources.yaml:3: error: YAML syntax error" in result.output
        assert "bib/kd.bib:11: error: BibTeX syntax error" in result.output
        assert fixture_kb.snapshot() == before


def test_root_without_taxonomy_is_one_line(tmp_path, run_cli):
    result = run_cli(tmp_path, "check")
    assert result.exit_code == 2
    assert result.output.strip().endswith(
        "error: not a KD Atlas root (no taxonomy/ and bib/ there)"
    )


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (CASES[0][1], "taxonomy/sources.yaml:3: error: YAML syntax error"),
        (CASES[3][1], "bib/kd.bib:11: error: BibTeX syntax error"),
        (CASES[5][1], "taxonomy/sources.yaml:28: error: missing required key 'title'"),
    ],
    ids=["yaml", "bibtex", "schema"],
)
def test_subprocess_has_no_traceback(fixture_kb, mutate, expected):
    mutate(fixture_kb)
    completed = subprocess.run(
        [sys.executable, "-m", "kdatlas", "--root", str(fixture_kb.root), "check", "--no-imports"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert completed.returncode == 1
    assert expected in completed.stdout
    assert "Traceback" not in completed.stdout + completed.stderr
