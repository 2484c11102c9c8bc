"""Contributed files are untrusted: bounded parsing and clean text (issue 15).

Each limit of :mod:`kdatlas.limits` is met by a file just over it and answered with
``file:line``; the "billion laughs" taxonomy is refused fast, in a subprocess with a
timeout, as CI and the pre-commit hook run it; control and bidirectional characters
are refused in every text field while accents, Greek and CJK stay accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kdatlas.bibliography import read_bib_file
from kdatlas.limits import MAX_FIELD_CHARS, MAX_FILE_BYTES, MAX_NESTING_DEPTH
from kdatlas.loader import read_yaml
from kdatlas.problems import Problem

# Ten levels, nine aliases each: 9**9 (387 million) "lol"s once expanded, from 522 bytes.
BILLION_LAUGHS = 'lol0: &a0 ["lol"]\n' + "".join(
    f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
)


def _lines(result) -> list[str]:
    """The problems printed (without check's closing count)."""
    return [line for line in result.output.splitlines() if not line.startswith("kdatlas check:")]


def test_billion_laughs_fails_fast_with_file_and_line(fixture_kb, check_refuses_fast):
    assert len(BILLION_LAUGHS.encode()) < 600
    fixture_kb.write("taxonomy/schemes.yaml", fixture_kb.HEADER + BILLION_LAUGHS)
    check_refuses_fast("taxonomy/schemes.yaml:2: error: YAML anchors and aliases are not allowed")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a: &x 1\nb: *x\n", 1, "YAML anchors and aliases are not allowed"),
        ("a: 1\nb: <<\nc: !!str 2\n", 3, "YAML tags are not allowed"),
        ("a: 1\n? [k]\n: v\n", 2, "a mapping key must be a plain value"),
        (
            "a:\n  b: " + "[" * MAX_NESTING_DEPTH + "]" * MAX_NESTING_DEPTH + "\n",
            2,
            f"nested deeper than the limit of {MAX_NESTING_DEPTH}",
        ),
        (
            "a: 1\ntitle: " + "x" * (MAX_FIELD_CHARS + 1) + "\n",
            2,
            f"a value is {MAX_FIELD_CHARS + 1} characters long; the limit is {MAX_FIELD_CHARS}",
        ),
        ("a: 1\n# a comment \u202e hidden\n", 2, "the file holds a bidirectional control"),
        ("a: 1\nb: \x07\n", 2, "the file holds a control character (U+0007)"),
        ("a: 1\nb: 2\nc: \ufffe\n", 3, "YAML error: special characters are not allowed"),
    ],
    ids=["alias", "tag", "collection-key", "depth", "long-scalar", "bidi", "bel", "non-char"],
)
def test_yaml_limits_name_file_and_line(tmp_path: Path, text: str, line: int, message: str):
    path = tmp_path / "area.yaml"
    path.write_text(text, encoding="utf-8")
    document, problems = read_yaml(path, "taxonomy/area.yaml")
    assert document is None
    assert len(problems) == 1, problems
    assert (problems[0].path, problems[0].line) == ("taxonomy/area.yaml", line)
    assert problems[0].message.startswith(message), problems[0].message


def test_yaml_within_the_limits_loads(tmp_path: Path):
    depth = MAX_NESTING_DEPTH - 1  # plus the top-level mapping
    path = tmp_path / "area.yaml"
    text = "a: " + "[" * depth + "]" * depth + "\nb: " + "x" * MAX_FIELD_CHARS + "\n"
    path.write_text(text, encoding="utf-8")
    document, problems = read_yaml(path, "area.yaml")
    assert problems == []
    assert len(document["b"]) == MAX_FIELD_CHARS


def test_file_size_and_encoding_limits(tmp_path: Path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: 1\n" + b"#" * MAX_FILE_BYTES)
    assert read_yaml(big, "big.yaml") == (
        None,
        [Problem("big.yaml", None, f"file is larger than the limit of {MAX_FILE_BYTES} bytes")],
    )
    latin = tmp_path / "latin.bib"
    latin.write_bytes("@misc{a,\n  title = {Caf\u00e9},\n}\n".encode("latin-1"))
    entries, problems = read_bib_file(latin, "bib/latin.bib")
    assert entries == []
    assert [(p.path, p.line) for p in problems] == [("bib/latin.bib", 2)]
    assert problems[0].message.startswith("not UTF-8 text")


def test_symbolic_link_is_refused(tmp_path: Path):
    target = tmp_path / "elsewhere.bib"
    target.write_text("", encoding="utf-8")
    link = tmp_path / "kd.bib"
    link.symlink_to(target)
    entries, problems = read_bib_file(link, "bib/kd.bib")
    assert entries == []
    assert [str(p) for p in problems] == [
        "bib/kd.bib: error: is a symbolic link; commit the file itself"
    ]


def test_bib_field_limits(tmp_path: Path):
    path = tmp_path / "kd.bib"
    deep = "{" * (MAX_NESTING_DEPTH + 1) + "x" + "}" * (MAX_NESTING_DEPTH + 1)
    path.write_text(
        "@misc{a2020long,\n  year = {2020},\n  title = {"
        + "x" * (MAX_FIELD_CHARS + 1)
        + "},\n}\n\n@misc{b2020deep,\n  title = {"
        + deep
        + "},\n}\n",
        encoding="utf-8",
    )
    entries, problems = read_bib_file(path, "bib/kd.bib")
    assert entries == []
    assert [str(p) for p in problems] == [
        f"bib/kd.bib:3: error: a2020long: field 'title' is {MAX_FIELD_CHARS + 1} characters "
        f"long; the limit is {MAX_FIELD_CHARS}",
        f"bib/kd.bib:7: error: b2020deep: field 'title' has braces nested deeper than the "
        f"limit of {MAX_NESTING_DEPTH}",
    ]


# --------------------------------------------------------------------------- clean text


@pytest.mark.parametrize(
    ("char", "kind"),
    [
        ("\x00", "a control character (U+0000)"),
        ("\x07", "a control character (U+0007)"),
        ("\x1b", "a control character (U+001B)"),
        ("\x7f", "a control character (U+007F)"),
        ("\x85", "a control character (U+0085)"),
        ("\u202e", "a bidirectional control character (U+202E)"),
        ("\u2066", "a bidirectional control character (U+2066)"),
        ("\u200f", "a bidirectional control character (U+200F)"),
    ],
)
@pytest.mark.parametrize("field", ["title", "author", "booktitle"])
def test_control_characters_in_bib_text_are_refused(fixture_kb, run_cli, char, kind, field):
    # zhao2022decoupled starts on line 27: title 28, author 29, booktitle 30.
    line = {"title": 28, "author": 29, "booktitle": 30}[field]
    old = {"title": "Decoupled", "author": "Zhao, Borui", "booktitle": "CVPR"}[field]
    text = fixture_kb.read("bib/kd.bib")
    start = text.index("@inproceedings{zhao2022decoupled")
    at = text.index(old, start)
    fixture_kb.write("bib/kd.bib", text[:at] + char + text[at:])
    before = fixture_kb.snapshot()
    result = run_cli(fixture_kb.root, "check", "--no-imports")
    assert result.exit_code == 1
    assert _lines(result) == [
        f"bib/kd.bib:{line}: error: zhao2022decoupled: field '{field}' holds {kind}; remove it"
    ]
    assert fixture_kb.snapshot() == before


@pytest.mark.parametrize(
    ("escape", "code"), [("\\0", "U+0000"), ("\\a", "U+0007"), ("\\u202E", "U+202E")]
)
def test_control_characters_in_taxonomy_text_are_refused(fixture_kb, run_cli, escape, code):
    # An escape in a double-quoted scalar reaches the value although the file itself is clean.
    fixture_kb.replace(
        "taxonomy/sources.yaml",
        "    title: Logit-based Distillation\n",
        f'    title: "Logit-based {escape}Distillation"\n',
    )
    result = run_cli(fixture_kb.root, "check", "--no-imports")
    assert result.exit_code == 1
    assert len(_lines(result)) == 1
    assert _lines(result)[0].startswith("taxonomy/sources.yaml:8: error: title holds a ")
    assert _lines(result)[0].endswith(f"({code}); remove it")


def test_legitimate_unicode_is_accepted(fixture_kb, run_cli):
    fixture_kb.replace(
        "taxonomy/sources.yaml",
        "    title: Logit-based Distillation\n",
        "    title: Logit-based Distillation, αβγ, café, 知识蒸馏, עברית, عربي\n",
    )
    fixture_kb.replace("bib/kd.bib", "Zhao, Borui", "Zhào, Βoρui and 赵, 博睿 and Müller, Jörg")
    fixture_kb.replace("bib/kd.bib", "Decoupled Knowledge", "Découpled Κnowledge 知识\tDistilled")
    result = run_cli(fixture_kb.root, "check", "--no-imports", "--strict")
    assert result.exit_code == 0, result.output


def test_problem_output_escapes_unprintable_characters():
    problem = Problem("bib/kd.bib", 3, "unknown key 'a\x1b[31m\u202eb'")
    assert str(problem) == "bib/kd.bib:3: error: unknown key 'a\\x1b[31m\\u202eb'"
