"""Property-based fuzzing of contributed files (issue 15): whatever a pull request holds,
``kdatlas check`` exits 0 or 1 without a traceback, answers within a few seconds, changes
no file, and the site's page generation refuses exactly what ``check`` refuses.

Each example starts from a seed (the valid fixture knowledge base's own files, or real
files of this repository: a taxonomy area, the first entries of ``bib/kd.bib``), applies
one to three mutations (structural edits, random bytes, deep nesting, YAML aliases, huge
fields, control characters, other encodings, BOMs, CRLF) and writes the result over one
file of the fixture knowledge base. The seed is fixed (the ``ci`` profile of
``tests/conftest.py`` is derandomized and bounded); ``--hypothesis-profile=long`` runs
many more examples.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from kdatlas.cli import app
from kdatlas.limits import MAX_FIELD_CHARS, MAX_NESTING_DEPTH
from kdatlas.problems import KnowledgeBaseError
from kdatlas.site.build import load_knowledge_base
from kdatlas.site.pages import generate

REPOSITORY = Path(__file__).resolve().parents[2]
TARGETS = ("taxonomy/sources.yaml", "taxonomy/schemes.yaml", "bib/kd.bib")
SECONDS = 5.0  # "answers within a few seconds" (a valid fixture check takes about 0.1 s)


def _real_seeds() -> dict[str, list[str]]:
    """Real files of this repository, by the fixture file they may replace."""
    bib = (REPOSITORY / "bib" / "kd.bib").read_text(encoding="utf-8")
    first_entries = "\n@".join(bib.split("\n@")[:25])  # a slice keeps each check fast
    return {
        "taxonomy/sources.yaml": [
            (REPOSITORY / "taxonomy" / "sources.yaml").read_text(encoding="utf-8")
        ],
        "taxonomy/schemes.yaml": [
            (REPOSITORY / "taxonomy" / "schemes.yaml").read_text(encoding="utf-8")
        ],
        "bib/kd.bib": [first_entries],
    }


REAL_SEEDS = _real_seeds()
ALIAS_BOMB = 'a0: &a0 ["lol"]\n' + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
)


# --------------------------------------------------------------------------- mutations


def _insert(data: bytes, at: int, piece: bytes) -> bytes:
    at %= len(data) + 1
    return data[:at] + piece + data[at:]


@st.composite
def mutation(draw, data: bytes) -> bytes:
    """One edit of ``data`` (bytes, so encodings and broken UTF-8 are reachable)."""
    kind = draw(
        st.sampled_from(
            [
                "random-bytes",
                "delete-span",
                "duplicate-span",
                "swap-lines",
                "deep-nesting",
                "alias",
                "huge-field",
                "control-character",
                "unicode-text",
                "encoding",
                "bom",
                "crlf",
                "truncate",
            ]
        )
    )
    at = draw(st.integers(0, max(len(data), 1)))
    if kind == "random-bytes":
        return _insert(data, at, draw(st.binary(min_size=1, max_size=16)))
    if kind == "delete-span":
        length = draw(st.integers(1, 200))
        return data[:at] + data[at + length :]
    if kind == "duplicate-span":
        length = draw(st.integers(1, 400))
        return _insert(data, draw(st.integers(0, len(data))), data[at : at + length])
    if kind == "swap-lines":
        lines = data.split(b"\n")
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    if kind == "deep-nesting":
        depth = draw(st.sampled_from([MAX_NESTING_DEPTH - 2, MAX_NESTING_DEPTH + 1, 5000]))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b"{", b"}"), (b"{a: ", b"}")]))
        return _insert(data, at, opener * depth + b"x" + closer * depth)
    if kind == "alias":
        bomb = draw(st.sampled_from([ALIAS_BOMB, "x: &a 1\ny: *a\n", "<<: *a\n"]))
        return _insert(data, at, bomb.encode())
    if kind == "huge-field":
        size = draw(st.sampled_from([MAX_FIELD_CHARS, MAX_FIELD_CHARS + 1, 300_000]))
        return _insert(data, at, b"x" * size)
    if kind == "control-character":
        char = draw(st.sampled_from(["\x00", "\x07", "\x1b", "\x85", "\u202e", "\u2066", "\\a"]))
        return _insert(data, at, char.encode())
    if kind == "unicode-text":
        return _insert(data, at, draw(st.sampled_from(["é", "αβγ", "知识蒸馏", "🙂"])).encode())
    if kind == "encoding":
        codec = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"]))
        return data.decode("utf-8", errors="replace").encode(codec, errors="replace")
    if kind == "bom":
        return draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])) + data
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    return data[:at]  # truncate


@st.composite
def contribution(draw, fixture_texts: dict[str, str]) -> tuple[str, bytes]:
    """A file of the fixture knowledge base and the mutated bytes to write over it."""
    target = draw(st.sampled_from(TARGETS))
    seed = draw(st.sampled_from([fixture_texts[target], *REAL_SEEDS[target]]))
    data = seed.encode("utf-8")
    for _ in range(draw(st.integers(1, 3))):
        data = draw(mutation(data))
    return target, data


# --------------------------------------------------------------------------- the property


def _site_refuses(root: Path) -> bool:
    """Whether the site build refuses the knowledge base (its pages are generated otherwise)."""
    try:
        kb = load_knowledge_base(root)
    except KnowledgeBaseError:
        return True
    generate(kb, REPOSITORY)
    return False


def test_fuzzed_contributions_are_answered_safely(fixture_kb, monkeypatch):
    monkeypatch.delenv("KDATLAS_SITE_ALLOW_PROBLEMS", raising=False)
    fixture_texts = {target: fixture_kb.read(target) for target in TARGETS}
    runner = CliRunner()
    outcomes: dict[int, int] = {}

    @given(contribution(fixture_texts))
    def check_one(change: tuple[str, bytes]) -> None:
        target, data = change
        for name, text in fixture_texts.items():  # every example starts from the fixture
            fixture_kb.write(name, text)
        fixture_kb.path(target).write_bytes(data)
        before = fixture_kb.snapshot()
        start = time.monotonic()
        result = runner.invoke(app, ["--root", str(fixture_kb.root), "check", "--no-imports"])
        elapsed = time.monotonic() - start
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"traceback: {result.exception!r}"
        )
        assert result.exit_code in (0, 1), result.output
        assert elapsed < SECONDS, f"check took {elapsed:.1f} s"
        assert "Traceback" not in result.output
        assert fixture_kb.snapshot() == before, "check changed a file"
        assert _site_refuses(fixture_kb.root) == (result.exit_code == 1), result.output
        assert fixture_kb.snapshot() == before, "the site build changed a file"
        outcomes[result.exit_code] = outcomes.get(result.exit_code, 0) + 1

    check_one()
    # The generated cases reach both answers, so neither half of the property is vacuous.
    assert outcomes.get(0) and outcomes.get(1), outcomes


@pytest.mark.slow
def test_check_of_a_hostile_file_returns_within_its_timeout(fixture_kb, check_refuses_fast):
    """The timeout property at process level, as CI runs it: a large file of nested
    aliases, deep flow nesting and huge fields (just under the size limit)."""
    hostile = (ALIAS_BOMB + "[" * 100_000 + "]" * 100_000 + "\n" + "x: " + "y" * 1_500_000) + "\n"
    fixture_kb.write("taxonomy/schemes.yaml", hostile)
    fixture_kb.write("bib/kd.bib", fixture_kb.BIB + "@misc{a," + "{" * 500_000 + "\n")
    check_refuses_fast("taxonomy/schemes.yaml:1: error: YAML anchors and aliases are not allowed")
