"""Add a paper to the bibliography and file it under leaves or topics (``kdatlas add``).

The paper comes from a BibTeX snippet or from a few fields. A snippet from
Google Scholar, DBLP or arXiv is first put in the bibliography's conventions
(:func:`house_style`: key, venue, url; each change is reported). It is refused when
the bibliography already holds it (same key, normalised title, arXiv id or DOI;
the message names the existing entry) or when it fails the checks every entry
must pass. Then the bib file and each touched taxonomy file are rewritten in
canonical form, all together: every new text is written to a temporary file
beside its target, and only when all are written are they moved into place.
"""

from __future__ import annotations

import io
import os
import re
import select
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from kdatlas.atomic import replace_files
from kdatlas.bibliography import (
    BibEntry,
    arxiv_id,
    doi,
    is_known_venue,
    make_key,
    normalise_venue,
    parse_bib,
    read_bib_file,
    render_bib,
)
from kdatlas.checks import DuplicateIndex, entry_problems, where_entry
from kdatlas.fmt import dump_yaml
from kdatlas.loader import BIB_DIR, TAXONOMY_DIR, is_root, read_bibliography, read_yaml
from kdatlas.problems import Problem, Severity

DEFAULT_BIB_FILE = Path(BIB_DIR) / "kd.bib"
ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", re.IGNORECASE)
# The arXiv id in a venue, as Google Scholar writes it: 'arXiv preprint arXiv:1910.10699'.
ARXIV_IN_VENUE = re.compile(r"arxiv:\s*(\d{4}\.\d{4,5})", re.IGNORECASE)
# Keys of the house scheme (docs/design.md): lowercase ASCII, surname or word, year, word.
HOUSE_KEY = re.compile(r"^[a-z0-9]+(?:19|20)\d{2}[a-z0-9]*$")
VENUE_FIELDS = ("booktitle", "journal", "howpublished")
# Fields DBLP adds about its own record, not about the paper.
EXPORT_BOOKKEEPING = ("timestamp", "biburl", "bibsource")


class AddError(Exception):
    """The paper was not added; carries the problems, each naming a file and line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Target:
    """Where to file the paper: ``area/leaf`` or ``area/leaf/topic``."""

    area: str
    leaf: str
    topic: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        parts = text.strip().strip("/").split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise AddError([Problem("--to", None, f"'{text}' is not area/leaf or area/leaf/topic")])
        return cls(*parts)

    def __str__(self) -> str:
        return "/".join(part for part in (self.area, self.leaf, self.topic) if part)


# --------------------------------------------------------------------------- the new entry


def entry_from_bibtex(text: str, source: Path) -> BibEntry:
    """The single entry of a BibTeX snippet; parse problems carry the snippet's lines."""
    entries, problems = parse_bib(text, source)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if errors:
        raise AddError(errors)
    if len(entries) != 1:
        raise AddError([Problem(source, None, f"expected one BibTeX entry, found {len(entries)}")])
    return entries[0]


def house_style(entry: BibEntry, taken: set[str]) -> tuple[BibEntry, list[str]]:
    """A snippet from Google Scholar, DBLP or arXiv in the bibliography's conventions, and one
    note for each change: a key outside the house scheme (``DBLP:conf/cvpr/ParkKLC19``) is
    made anew, the venue is normalised with the import's table, an arXiv id or DOI gives the
    missing ``url``, DBLP's bookkeeping fields and LaTeX escapes in the url are dropped."""
    fields = dict(entry.fields)
    notes: list[str] = []
    dropped = [name for name in EXPORT_BOOKKEEPING if fields.pop(name, None) is not None]
    if dropped:
        notes.append(f"dropped {', '.join(dropped)} (the exporter's record, not the paper)")
    if "\\" in fields.get("url", ""):
        fields["url"] = re.sub(r"\\([_%#&~])", r"\1", fields["url"])  # DBLP writes content\_CVPR
    arxiv = _snippet_arxiv_id(entry)
    if arxiv and not fields.get("eprint"):
        fields["eprint"] = arxiv
    if arxiv:
        fields.pop("eprinttype", None)
        fields["archiveprefix"] = "arXiv"
    entry_type, venue_note = _table_venue(fields, entry.entry_type)
    url_note = _missing_url(fields, arxiv, doi(entry))
    notes += [note for note in (venue_note, url_note) if note]
    key = entry.key
    if not HOUSE_KEY.match(key):
        key = make_key(fields.get("author"), fields.get("year", ""), fields.get("title", ""), taken)
        notes.append(
            f"key '{entry.key}' rewritten to '{key}' (the house scheme: first author's "
            "surname, year, first significant title word)"
        )
    return BibEntry(key, entry_type, fields, entry.path, entry.line), notes


def _table_venue(fields: dict[str, str], entry_type: str) -> tuple[str, str | None]:
    """Rewrite the first venue field the table knows to its canonical name (and field, and
    entry type); the entry type and what changed."""
    for name in VENUE_FIELDS:
        if name in fields and is_known_venue(fields[name]):
            entry_type, venue_field, venue = normalise_venue(fields[name])
            if (venue_field, venue) == (name, fields[name]):
                return entry_type, None
            target = "" if venue_field == name else f"{venue_field} "
            note = f"{name} '{fields[name]}' -> {target}'{venue}' (the venue table)"
            del fields[name]
            fields[venue_field] = venue
            return entry_type, note
    return entry_type, None


def _missing_url(fields: dict[str, str], arxiv: str | None, number: str | None) -> str | None:
    """Fill a missing url from the arXiv id, else the DOI; what was done."""
    if fields.get("url", "").strip():
        return None
    if arxiv:
        fields["url"] = f"https://arxiv.org/abs/{arxiv}"
        return f"url {fields['url']} made from the arXiv id"
    if number:
        # the DOI as written: DOIs compare case-insensitively, but links keep the publisher's case
        written = fields.get("doi", "").strip()
        as_written = written if written.lower() == number else number
        fields["url"] = f"https://doi.org/{as_written}"
        return f"url {fields['url']} made from the DOI"
    return None


def _snippet_arxiv_id(entry: BibEntry) -> str | None:
    """The arXiv id from eprint (archiveprefix or DBLP's eprinttype), the url or the venue."""
    if entry.fields.get("eprinttype", "").lower() == "arxiv":
        entry = BibEntry(entry.key, entry.entry_type, {**entry.fields, "archiveprefix": "arXiv"})
    if found := arxiv_id(entry):
        return found
    for name in VENUE_FIELDS:
        if match := ARXIV_IN_VENUE.search(entry.fields.get(name, "")):
            return match.group(1)
    return None


def pending_stdin(stream: TextIO | None) -> str:
    """The text waiting on standard input, without ever waiting at a terminal or on a pipe
    nothing writes to: '' when there is none."""
    if stream is None or stream.isatty():
        return ""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, io.UnsupportedOperation):
        return stream.read()  # an in-memory stream (tests): reading never blocks
    if stat.S_ISREG(mode):
        return stream.read()  # `< entry.bib`
    try:
        ready, _, _ = select.select([stream], [], [], 0.05)
    except (OSError, ValueError):
        return ""
    return stream.read() if ready else ""


def entry_from_fields(
    *,
    title: str,
    year: str,
    url: str,
    authors: Iterable[str] = (),
    venue: str | None = None,
    code: str | None = None,
    doi: str | None = None,
    taken: set[str],
) -> BibEntry:
    """A new entry built from command-line fields, keyed by the design's key scheme."""
    names = [name.strip() for item in authors for name in item.split(" and ") if name.strip()]
    author = " and ".join(names) or None
    fields: dict[str, str] = {"title": title.strip()}
    if author:
        fields["author"] = author
    fields["year"] = str(year).strip()
    entry_type = "misc"
    if venue and venue.strip():
        # The venue table (kdatlas/data/venues.yaml): 'CVPR 2022' -> booktitle CVPR.
        entry_type, venue_field, venue_name = normalise_venue(venue)
        if venue_name:
            fields[venue_field] = venue_name
    if url.strip():
        fields["url"] = url.strip()
    if code and code.strip():
        fields["code"] = code.strip()
    if arxiv := ARXIV_URL.search(url):
        fields["eprint"] = arxiv.group(1)
        fields["archiveprefix"] = "arXiv"
    if doi:
        fields["doi"] = doi.strip()
    key = make_key(author, fields["year"], fields["title"], taken)
    return BibEntry(
        key=key, entry_type=entry_type, fields=fields, path=Path("<arguments>"), line=None
    )


# --------------------------------------------------------------------------- checks


def _existing_entries(root: Path) -> list[BibEntry]:
    entries, problems = read_bibliography(root)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if errors:
        raise AddError([*errors, Problem(BIB_DIR, None, "fix the bibliography before adding")])
    return entries


def refuse_duplicate(entry: BibEntry, existing: Sequence[BibEntry]) -> None:
    """Raise if ``existing`` holds the same key or the same paper."""
    index = DuplicateIndex()
    for other in existing:
        if other.key == entry.key:
            raise AddError(
                [
                    Problem(
                        entry.path,
                        entry.line,
                        f"key '{entry.key}' already exists at {where_entry(other)}",
                    )
                ]
            )
        index.add(other)
    match = index.matches(entry)
    if match:
        other, shared = match
        raise AddError(
            [
                Problem(
                    entry.path,
                    entry.line,
                    f"already in the bibliography as '{other.key}' ({where_entry(other)}): "
                    f"same {' and '.join(shared)}; add '{other.key}' to the taxonomy instead",
                )
            ]
        )


def _leaf_node(document: Any, target: Target, display: Path) -> CommentedMap:
    for leaf in document.get("leaves") or []:
        if isinstance(leaf, CommentedMap) and leaf.get("id") == target.leaf:
            if target.topic is None:
                return leaf
            for topic in leaf.get("topics") or []:
                if isinstance(topic, CommentedMap) and topic.get("id") == target.topic:
                    return topic
            raise AddError(
                [Problem(display, None, f"leaf '{target.leaf}' has no topic '{target.topic}'")]
            )
    raise AddError([Problem(display, None, f"area '{target.area}' has no leaf '{target.leaf}'")])


def _file_under(document: Any, target: Target, key: str, display: Path) -> None:
    node = _leaf_node(document, target, display)
    papers = node.get("papers")
    if papers is None:
        papers = CommentedSeq()
        node["papers"] = papers
    if not isinstance(papers, list):
        raise AddError([Problem(display, None, f"'papers' of {target} is not a list")])
    if key not in papers:
        papers.append(key)


# --------------------------------------------------------------------------- adding


@dataclass(frozen=True)
class AddResult:
    key: str
    files: list[Path]  # root-relative, in the order written


def add_paper(
    root: Path,
    entry: BibEntry,
    targets: Sequence[Target],
    *,
    bib_file: Path = DEFAULT_BIB_FILE,
) -> AddResult:
    """Add ``entry`` to ``bib_file`` and file it under every target; all files change or none."""
    root = Path(root).resolve()
    if not is_root(root):
        raise AddError(
            [Problem(root, None, f"not a KD Atlas root: no {TAXONOMY_DIR}/ and {BIB_DIR}/")]
        )
    if not targets:
        raise AddError(
            [Problem("--to", None, "give at least one leaf or topic to file the paper under")]
        )
    problems = [p for p in entry_problems(entry) if p.severity is Severity.ERROR]
    if problems:
        raise AddError(problems)
    refuse_duplicate(entry, _existing_entries(root))

    new_texts: dict[Path, str] = {}
    documents: dict[str, Any] = {}
    for target in targets:
        display = Path(TAXONOMY_DIR) / f"{target.area}.yaml"
        if target.area not in documents:
            if not (root / display).is_file():
                raise AddError([Problem(display, None, f"no area '{target.area}'")])
            document, read_problems = read_yaml(root / display, display)
            if read_problems:
                raise AddError(read_problems)
            documents[target.area] = document
        _file_under(documents[target.area], target, entry.key, display)
    for area_id, document in documents.items():
        new_texts[root / TAXONOMY_DIR / f"{area_id}.yaml"] = dump_yaml(document)

    bib_path = root / bib_file
    old_entries: list[BibEntry] = []
    if bib_path.exists():
        old_entries, bib_problems = read_bib_file(bib_path, bib_file)
        if any(p.severity is Severity.ERROR for p in bib_problems):
            raise AddError(bib_problems)
    new_texts[bib_path] = render_bib([*old_entries, entry])

    replace_files(new_texts)
    return AddResult(entry.key, [path.relative_to(root) for path in new_texts])
