"""The bibliography: read, write and normalise the BibTeX files in ``bib/``.

``bib/*.bib`` is the one place where a paper's metadata is written. This module
parses it with bibtexparser 2 (no LaTeX middlewares, so nothing is rewritten
behind the user's back), renders it back in one canonical layout with
bibtexparser's writer and middlewares, builds keys in the scheme of
``docs/design.md`` (authors split by bibtexparser's BibTeX name rules) and
normalises venue names with the table of ``kdatlas/data/venues.yaml``. LaTeX is
decoded only for display (:func:`display`) and to compare titles
(:func:`normalise_title`), never written back.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import bibtexparser
from bibtexparser.middlewares import (
    AddEnclosingMiddleware,
    SortBlocksByTypeAndKeyMiddleware,
    SortFieldsAlphabeticallyMiddleware,
    SortFieldsCustomMiddleware,
)
from bibtexparser.middlewares.names import (
    parse_single_name_into_parts,
    split_multiple_persons_names,
)
from bibtexparser.model import (
    Block,
    DuplicateBlockKeyBlock,
    Entry,
    Field,
    ImplicitComment,
    ParsingFailedBlock,
)
from bibtexparser.writer import BibtexFormat
from pylatexenc.latex2text import LatexNodes2Text
from ruamel.yaml import YAML

from kdatlas.limits import MAX_FILE_BYTES, MAX_NESTING_DEPTH, read_bounded, too_long
from kdatlas.problems import Problem

__all__ = [
    "BibEntry",
    "arxiv_id",
    "author_names",
    "display",
    "doi",
    "entry_to_bibtex",
    "make_key",
    "normalise_title",
    "normalise_venue",
    "parse_bib",
    "read_bib_dir",
    "read_bib_file",
    "render_bib",
]


@dataclass(frozen=True)
class BibEntry:
    """One BibTeX entry with its raw field values (LaTeX kept, outer delimiters removed)."""

    key: str
    entry_type: str
    fields: dict[str, str]
    path: Path | None = None
    line: int | None = None
    # The 1-based line of each field where the entry was read from a file (not compared).
    field_lines: dict[str, int] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.fields.get(name, default)


# ---------------------------------------------------------------- parsing


def parse_bib(text: str, path: Path) -> tuple[list[BibEntry], list[Problem]]:
    """Parse BibTeX text; every problem carries its 1-based line.

    Problems: syntax errors (with bibtexparser's reason), a field that runs into the next one
    (a missing comma, which bibtexparser reads as one long value), duplicate keys, and any
    text that is not an entry (comments, ``@string``, ``@preamble``, free text): the
    canonical form holds entries only, so ``fmt`` and ``add`` would lose it. An entry with
    a syntax error is left out.
    """
    # bibtexparser logs every failed block; we report them ourselves, once, with the file name.
    logging.getLogger("bibtexparser").setLevel(logging.CRITICAL)
    if len(text) > MAX_FILE_BYTES:
        return [], [Problem(path, None, f"larger than the limit of {MAX_FILE_BYTES} characters")]
    library = bibtexparser.parse_string(text)
    entries: list[BibEntry] = []
    problems: list[Problem] = []
    previous: Block | None = None
    for block in library.blocks:
        line = _line(block.start_line)
        if isinstance(block, Entry):
            if run_on := _run_on_field(block):
                problems.append(Problem(path, _line(run_on.start_line) or line, _run_on(run_on)))
            elif unbounded := _unbounded_fields(block, path):
                problems.extend(unbounded)  # left out: nothing downstream decodes such a value
            else:
                fields = {f.key.lower(): str(f.value) for f in block.fields}
                lines = {f.key.lower(): _line(f.start_line) or line for f in block.fields}
                entries.append(
                    BibEntry(block.key, block.entry_type.lower(), fields, path, line, lines)
                )
        elif isinstance(block, DuplicateBlockKeyBlock):
            problems.append(Problem(path, line, f"duplicate bib key {block.key!r}"))
        elif isinstance(block, ParsingFailedBlock):
            problems.append(Problem(path, line, _syntax_error(block)))
        elif not (isinstance(block, ImplicitComment) and isinstance(previous, ParsingFailedBlock)):
            # (the rest of a failed entry comes back as free text: its error says enough)
            problems.append(Problem(path, line, _not_an_entry(block)))
        previous = block
    return entries, problems


def _brace_depth(value: str) -> int:
    depth = deepest = 0
    for char in value:
        if char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth -= 1
    return deepest


def _unbounded_fields(entry: Entry, path: Path) -> list[Problem]:
    """Fields over the limits of :mod:`kdatlas.limits` (length, nested braces)."""
    problems: list[Problem] = []
    for item in entry.fields:
        value = str(item.value)
        where = _line(item.start_line) or _line(entry.start_line)
        if reason := too_long(value):
            problems.append(Problem(path, where, f"{entry.key}: field '{item.key}' {reason}"))
        elif _brace_depth(value) > MAX_NESTING_DEPTH:
            message = f"braces nested deeper than the limit of {MAX_NESTING_DEPTH}"
            problems.append(Problem(path, where, f"{entry.key}: field '{item.key}' has {message}"))
    return problems


def _line(start_line: int | None) -> int | None:
    return start_line + 1 if start_line is not None else None


def _first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


def _syntax_error(block: ParsingFailedBlock) -> str:
    message = f"BibTeX syntax error in block {_first_line(block.raw)[:60]!r}"
    reason = getattr(block.error, "abort_reason", None)
    return f"{message}: {reason}" if reason else message


# A value that bibtexparser could not strip of its delimiters because another field follows it.
_NEXT_FIELD = re.compile(r"""[}"\w]\s+([A-Za-z][\w:.+-]*)\s*=""")


def _run_on_field(entry: Entry) -> Field | None:
    """The first field whose value swallowed the next field (the comma between them is missing)."""
    for field in entry.fields:
        if field.enclosing == "no-enclosing" and _NEXT_FIELD.search(str(field.value)):
            return field
    return None


def _run_on(field: Field) -> str:
    following = _NEXT_FIELD.search(str(field.value))
    assert following is not None
    return (
        f"BibTeX syntax error: missing comma after field '{field.key}' "
        f"(its value runs into '{following.group(1)} =')"
    )


def _not_an_entry(block: Block) -> str:
    text = block.raw if block.raw is not None else getattr(block, "comment", "")
    return (
        f"'{_first_line(text)[:40]}' is not an entry and the canonical form keeps only entries; "
        "remove it (notes belong in bib/DATA_NOTES.md)"
    )


def read_bib_file(path: Path, display_path: Path | str) -> tuple[list[BibEntry], list[Problem]]:
    """Every reader of a bib file comes here: read within the limits of :mod:`kdatlas.limits`,
    then parse; problems name ``display_path``."""
    text, problems = read_bounded(path, display_path)
    if text is None:
        return [], problems
    return parse_bib(text, Path(display_path))


def read_bib_dir(bib_dir: Path) -> tuple[list[BibEntry], list[Problem]]:
    """Read every ``*.bib`` in ``bib_dir`` (sorted by file name); keys must be unique across files."""
    entries: list[BibEntry] = []
    problems: list[Problem] = []
    first_seen: dict[str, BibEntry] = {}
    for path in sorted(bib_dir.glob("*.bib")):
        file_entries, file_problems = read_bib_file(path, path)
        problems.extend(file_problems)
        for entry in file_entries:
            if entry.key in first_seen:
                other = first_seen[entry.key]
                problems.append(
                    Problem(
                        path,
                        entry.line,
                        f"duplicate bib key {entry.key!r} (first in {other.path}:{other.line})",
                    )
                )
                continue
            first_seen[entry.key] = entry
            entries.append(entry)
    return entries, problems


# ---------------------------------------------------------------- rendering

FIELD_ORDER = (
    "title",
    "author",
    "editor",
    "booktitle",
    "journal",
    "howpublished",
    "institution",
    "school",
    "year",
    "month",
    "volume",
    "number",
    "pages",
    "publisher",
    "organization",
    "address",
    "note",
    "url",
    "code",
    "eprint",
    "archiveprefix",
    "primaryclass",
    "doi",
)

# bibtexparser's writer does the layout: two-space indent, a trailing comma, one blank line
# between entries. Its middlewares do the rest, in order: fields alphabetically, then those of
# FIELD_ORDER first (a stable sort, so unknown fields stay alphabetical after them), every value
# in braces, entries sorted by key.
BIB_FORMAT = BibtexFormat()
BIB_FORMAT.indent = "  "
BIB_FORMAT.block_separator = "\n"
BIB_FORMAT.trailing_comma = True


def _unparse_stack() -> list:
    return [
        SortFieldsAlphabeticallyMiddleware(),
        SortFieldsCustomMiddleware(order=FIELD_ORDER),
        AddEnclosingMiddleware(
            reuse_previous_enclosing=False, enclose_integers=True, default_enclosing="{"
        ),
        SortBlocksByTypeAndKeyMiddleware(),
    ]


def _library(entries: Iterable[BibEntry]) -> bibtexparser.Library:
    return bibtexparser.Library(
        [
            Entry(
                entry.entry_type.lower(),
                entry.key,
                [Field(name, value) for name, value in entry.fields.items()],
            )
            for entry in entries
        ]
    )


def render_bib(entries: Iterable[BibEntry]) -> str:
    """Canonical text of a bibliography: entries sorted by key, one blank line between them,
    fields in FIELD_ORDER then alphabetically, two-space indent, braced values."""
    return bibtexparser.write_string(
        _library(entries), unparse_stack=_unparse_stack(), bibtex_format=BIB_FORMAT
    )


def entry_to_bibtex(entry: BibEntry) -> str:
    """One entry in canonical form."""
    return render_bib([entry])


# ---------------------------------------------------------------- keys and titles

# Words skipped when choosing a key's title word (as Google Scholar does: "Be Your Own
# Teacher" -> zhang2019your).
KEY_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "on",
        "in",
        "to",
        "for",
        "with",
        "from",
        "by",
        "at",
        "as",
        "is",
        "are",
        "be",
        "do",
        "does",
    ]
)


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return decomposed.encode("ascii", "ignore").decode("ascii")


def _plain_words(text: str) -> list[str]:
    """Lowercase ASCII words of a (possibly LaTeX) string; hyphens split words."""
    plain = _ascii(display(text)).lower()
    return re.findall(r"[a-z0-9]+", plain)


def _split_authors(authors: str) -> list[str]:
    """The names of a BibTeX author list (split on 'and' outside braces, by bibtexparser)."""
    return [name.strip() for name in split_multiple_persons_names(authors) if name.strip()]


def _name_parts(name: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """(first, von, last, jr) of one BibTeX name, by bibtexparser's rules."""
    try:
        parts = parse_single_name_into_parts(name, strict=False)
    except Exception:  # a name bibtexparser cannot read is one last name, never a crash
        return [], [], [name], []
    return parts.first, parts.von, parts.last, parts.jr


def _surname(name: str) -> str:
    """The last name without its 'von' part ('van der Maaten, Laurens' -> 'Maaten')."""
    return " ".join(_name_parts(name)[2])


def make_key(authors: str | None, year: int | str, title: str, taken: set[str]) -> str:
    """A new key ``<surname><year><first significant title word>``, unique against ``taken``.

    Without authors the key is ``<first word><year><second word>`` (significant words).
    Collisions get the suffix b, c, ... The caller adds the result to ``taken``.
    """
    words = [word for word in _plain_words(title) if word not in KEY_STOPWORDS]
    words = words or _plain_words(title) or ["untitled"]
    surname = ""
    if authors:
        names = [name for name in _split_authors(authors) if name.lower() != "others"]
        if names:
            surname = "".join(_plain_words(_surname(names[0])))
    year_text = str(year).strip()
    if surname:
        base = f"{surname}{year_text}{words[0]}"
    else:
        second = words[1] if len(words) > 1 else ""
        base = f"{words[0]}{year_text}{second}"
    key = base
    suffix = ord("b")
    while key in taken:
        key = f"{base}{chr(suffix)}"
        suffix += 1
    return key


def normalise_title(title: str) -> str:
    """A comparison form of a title: LaTeX decoded to Unicode (math too: ``$\\alpha$`` is α),
    compatibility-decomposed (NFKD), accents dropped, casefolded; only letters and digits kept,
    of every script, so "α-..." and "β-..." stay different titles."""
    text = unicodedata.normalize("NFKD", _unicode(title)).casefold()
    return "".join(char for char in text if char.isalnum())  # combining accents are not alnum


# ---------------------------------------------------------------- identifiers

_ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5})(v\d+)?")
_ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", re.IGNORECASE)
_DOI = re.compile(r"(10\.\d{4,9}/[^\s\"<>{}]+)")


def arxiv_id(entry: BibEntry) -> str | None:
    """The arXiv identifier (without version) from ``eprint`` or an arxiv.org ``url``."""
    eprint = entry.fields.get("eprint", "")
    prefix = entry.fields.get("archiveprefix", "arXiv").lower()
    if eprint and prefix == "arxiv":
        match = _ARXIV_ID.search(eprint)
        if match:
            return match.group(1)
    match = _ARXIV_URL.search(entry.fields.get("url", ""))
    return match.group(1) if match else None


def doi(entry: BibEntry) -> str | None:
    """The DOI (lowercased) from the ``doi`` field or a doi.org ``url``."""
    value = entry.fields.get("doi", "")
    if not value:
        url = entry.fields.get("url", "")
        value = url if "doi.org/" in url else ""
    match = _DOI.search(value)
    return match.group(1).rstrip(".").lower() if match else None


# ---------------------------------------------------------------- venues

VENUES_FILE = "venues.yaml"  # in kdatlas/data/
_CONF = "inproceedings"
_JOUR = "article"


@dataclass(frozen=True)
class Venue:
    """A row of the venue table: a canonical name, its entry type and the names it matches."""

    name: str
    entry_type: str
    pattern: re.Pattern[str]


@functools.cache
def venue_table() -> tuple[Venue, ...]:
    """The venue table of ``kdatlas/data/venues.yaml``, in order (the first match wins)."""
    text = (resources.files("kdatlas") / "data" / VENUES_FILE).read_text(encoding="utf-8")
    rows = YAML(typ="safe").load(text)
    return tuple(
        Venue(row["name"], row["type"], re.compile(rf"(?:{row['pattern']})", re.IGNORECASE))
        for row in rows
    )


_FIELD_FOR_TYPE = {"inproceedings": "booktitle", "article": "journal", "misc": "howpublished"}


def clean_venue_name(raw: str) -> str:
    """The venue name of a raw 'Venue Year' string: LaTeX, year, stray punctuation and spaces
    removed."""
    text = re.sub(r"(?<![\d.])(19|20)\d{2}(?!\d|\.\d)", " ", display(raw))  # not arXiv ids
    return re.sub(r"\s+", " ", text).strip(" ,.;:-")


def _table_venue(raw: str) -> Venue | None:
    """The table's venue for a raw name, or None. A name that matches no row as a whole is
    tried once more up to its first comma: DBLP and publishers append place and dates
    ('IEEE Conference on Computer Vision and Pattern Recognition, CVPR 2019, Long Beach, ...')."""
    name = clean_venue_name(raw)
    candidates = [name]
    if "," in name:
        candidates.append(clean_venue_name(name.split(",", 1)[0]))
    for candidate in candidates:
        for venue in venue_table():
            if venue.pattern.fullmatch(candidate):
                return venue
    return None


def normalise_venue(raw: str) -> tuple[str, str, str]:
    """Map a raw venue ('CVPR 2022', 'Arxiv', 'AAAI Conf. Artif. Intell.') to
    ``(entry_type, field, canonical name)``; field is 'booktitle', 'journal' or 'howpublished'.

    Unknown names are kept as written (cleaned); they count as journals unless they say
    conference, symposium, workshop or proceedings.
    """
    venue = _table_venue(raw)
    if venue is not None:
        return venue.entry_type, _FIELD_FOR_TYPE[venue.entry_type], venue.name
    name = clean_venue_name(raw)
    if re.search(r"conference|symposium|workshop|proceedings|congress", name, re.I):
        return _CONF, "booktitle", name
    if not name:
        return "misc", "howpublished", ""
    return _JOUR, "journal", name


def is_known_venue(raw: str) -> bool:
    """Whether the venue is one of the table's (not kept as written)."""
    return _table_venue(raw) is not None


# ---------------------------------------------------------------- display

_TO_TEXT = LatexNodes2Text(math_mode="verbatim", strict_latex_spaces=True)
_TO_UNICODE = LatexNodes2Text(math_mode="text", strict_latex_spaces=True)
_LATEX_MARKS = ("\\", "{", "~", "--")


def _decode(value: str, converter: LatexNodes2Text, marks: tuple[str, ...]) -> str:
    if not any(mark in value for mark in marks):
        return value
    try:
        text = converter.latex_to_text(value)
    except Exception:  # pylatexenc is lenient, but never let decoding fail on odd input
        text = value.replace("{", "").replace("}", "")
    return re.sub(r"\s+", " ", text).strip()


def display(value: str) -> str:
    """``value`` with LaTeX decoded (math kept as written), for display only (never written
    back to a .bib file)."""
    return _decode(value, _TO_TEXT, _LATEX_MARKS)


def _unicode(value: str) -> str:
    """``value`` with LaTeX decoded to Unicode, math included (``$\\alpha$`` -> α)."""
    return _decode(value, _TO_UNICODE, (*_LATEX_MARKS, "$"))


def author_names(entry: BibEntry) -> list[str]:
    """Display names ("First von Last Jr") of the authors; a trailing ``others`` becomes "et al."."""
    names: list[str] = []
    for name in _split_authors(entry.fields.get("author", "")):
        if name.lower() == "others":
            names.append("et al.")
            continue
        first, von, last, jr = _name_parts(name)
        names.append(display(" ".join([*first, *von, *last, *jr])))
    return names


__all__ += ["BIB_FORMAT", "FIELD_ORDER", "clean_venue_name", "is_known_venue", "venue_table"]
