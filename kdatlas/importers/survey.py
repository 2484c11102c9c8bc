"""The one-time import of the survey's paper lists into ``bib/kd.bib`` and the taxonomy.

A migration, not part of the tool's core: it was run once to seed the knowledge
base (``bib/DATA_NOTES.md`` says how to re-run it and what it decided); since then
``bib/`` and ``taxonomy/`` are the source of truth. Its per-paper corrections
live in ``survey.yaml`` beside this file; the areas and leaves it files papers
under are read from ``taxonomy/*.yaml``.

The survey's lists look like::

    ### Leaf heading
    #### Topic heading
    - **Title**, Venue Year, [ :link: ](url)[ :octocat: ](code)
    - **Bold sub-heading without link or venue**
        - **Title**, ...

A heading that names a leaf of the file's area opens that leaf; the first level
below it (a heading or a bold-only bullet) is a topic; deeper sub-headings are
folded into their topic (the taxonomy has three levels). Bullets are grouped
into papers (same normalised title, arXiv id or DOI), their defects repaired by
the rules below and recorded as decisions, and merged with ``metadata.tsv``
(authors, DOI, arXiv id). Existing bib entries and keys always win; new
memberships are appended; taxonomy files are edited with ruamel.yaml's
round-trip mode so comments and hand-written text survive a re-import. Every
line that could not be read is reported with ``file:line``.
"""

from __future__ import annotations

import csv
import functools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import typer
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import FoldedScalarString

from kdatlas.atomic import replace_files
from kdatlas.bibliography import (
    BibEntry,
    arxiv_id,
    doi,
    is_known_venue,
    make_key,
    normalise_title,
    normalise_venue,
    read_bib_dir,
    render_bib,
)
from kdatlas.fmt import dump_yaml
from kdatlas.loader import BIB_DIR, TAXONOMY_DIR, round_trip_yaml
from kdatlas.models import AREA_IDS
from kdatlas.problems import Problem, Severity

DATA_FILE = Path(__file__).with_name("survey.yaml")
PLACEHOLDER_SUMMARY = "Summary to be written: {title}."
AREA_ORDER = AREA_IDS  # the survey's order; key collisions resolve the same way every run

# ---------------------------------------------------------------- curated data


@dataclass(frozen=True)
class Curated:
    """The per-paper corrections of ``survey.yaml`` (bib/DATA_NOTES.md gives their reasons),
    indexed by normalised title."""

    area_headings: dict[str, tuple[str, ...]]  # area id -> headings besides its title
    leaf_headings: dict[str, tuple[str, ...]]  # area/leaf -> headings besides its title
    keys: dict[str, str]  # key fixed by the implementation table -> title
    venue_corrections: dict[str, tuple[str, str, str]]  # title -> (venue, year, reason)
    title_fixes: dict[str, str]  # listed title -> title
    link_replacements: dict[str, dict[str, str]]  # title -> url, doi, author, reason
    moves: tuple[tuple[str, str, str, str], ...]  # (title, from leaf, to leaf, reason)
    offline_papers: tuple[str, ...]  # titles
    publisher_only: frozenset[str]
    acm_proceedings: dict[str, tuple[str, str]]  # DOI prefix -> (venue, year)
    icml_volumes: dict[str, str]  # PMLR volume -> year


@functools.cache
def curated() -> Curated:
    data = YAML(typ="safe").load(DATA_FILE.read_text(encoding="utf-8"))
    return Curated(
        area_headings={area: tuple(names) for area, names in data["area_headings"].items()},
        leaf_headings={leaf: tuple(names) for leaf, names in data["leaf_headings"].items()},
        keys=dict(data["keys"]),
        venue_corrections={
            normalise_title(row["title"]): (row["venue"], row["year"], row["reason"])
            for row in data["venue_corrections"]
        },
        title_fixes={normalise_title(row["listed"]): row["title"] for row in data["title_fixes"]},
        link_replacements={
            normalise_title(row["title"]): {k: v for k, v in row.items() if k != "title"}
            for row in data["link_replacements"]
        },
        moves=tuple(
            (normalise_title(row["title"]), row["from"], row["to"], row["reason"])
            for row in data["moves"]
        ),
        offline_papers=tuple(normalise_title(title) for title in data["offline_papers"]),
        publisher_only=frozenset(data["publisher_only"]),
        acm_proceedings={k: (v[0], v[1]) for k, v in data["acm_proceedings"].items()},
        icml_volumes=dict(data["icml_volumes"]),
    )


# ---------------------------------------------------------------- the taxonomy's structure


@dataclass(frozen=True)
class Structure:
    """Areas and leaves as the taxonomy files hold them, with the headings that name them."""

    area_names: dict[str, tuple[str, ...]]  # area id -> its title and other headings
    leaves: dict[str, tuple[tuple[str, tuple[str, ...]], ...]]  # area -> (leaf id, headings)

    @classmethod
    def of(cls, areas: dict[str, CommentedMap]) -> Structure:
        data = curated()
        area_names = {
            area_id: (str(document["title"]), *data.area_headings.get(area_id, ()))
            for area_id, document in areas.items()
        }
        leaves = {
            area_id: tuple(
                (
                    str(leaf["id"]),
                    (str(leaf["title"]), *data.leaf_headings.get(f"{area_id}/{leaf['id']}", ())),
                )
                for leaf in document.get("leaves") or []
            )
            for area_id, document in areas.items()
        }
        return cls(area_names, leaves)


# ---------------------------------------------------------------- data types


@dataclass
class Listing:
    """One bullet of a list: a paper as one section of the survey gives it."""

    path: Path
    line: int
    area: str
    leaf: str
    topic: str | None
    title: str
    venue_raw: str
    url: str | None
    code: str | None

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def leaf_path(self) -> str:
        return f"{self.area}/{self.leaf}"


@dataclass
class ImportReport:
    """What an import did and what it could not read."""

    entries_added: list[str] = field(default_factory=list)
    memberships_added: list[tuple[str, str | None, str]] = field(default_factory=list)
    not_understood: list[Problem] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    defect_counts: Counter[str] = field(default_factory=Counter)
    venue_spellings: Counter[tuple[str, str]] = field(default_factory=Counter)
    topics_created: list[str] = field(default_factory=list)
    listings: int = 0
    papers: int = 0
    metadata_matched: int = 0
    metadata_disagreements: list[str] = field(default_factory=list)
    files_written: list[Path] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        lines = [
            f"bullets read: {self.listings}; unique papers: {self.papers}; "
            f"matched in metadata.tsv: {self.metadata_matched}",
            f"entries added: {len(self.entries_added)}; memberships added: "
            f"{len(self.memberships_added)}; topics created: {len(self.topics_created)}",
        ]
        lines += [f"defect: {kind}: {count}" for kind, count in sorted(self.defect_counts.items())]
        lines += [f"decision: {decision}" for decision in self.decisions]
        lines += [f"not understood: {problem}" for problem in self.not_understood]
        return lines


# ---------------------------------------------------------------- markdown parsing

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_TOC_LINK = re.compile(r"^\s*\[[^\]]*\]\((#[^)]*|[A-Za-z]+/[^)]*)\)\s*$")
_YEAR = re.compile(r"(?<![\d.])((?:19|20)\d{2})(?![\d])")


def _slug(text: str) -> str:
    text = re.sub(r"\(.*?\)", "", text)  # "Speech Synthesis (Text-to-Speech)" -> speech-synthesis
    words = re.findall(r"[a-z0-9]+", text.lower().replace("+", " plus "))
    return "-".join(words) or "topic"


def _compact(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def _match_leaf(
    heading: str, area: str, heading_map: dict[str, str], structure: Structure
) -> tuple[str | None, bool]:
    """The leaf id a heading names in ``area`` and whether the match was fuzzy (a typo)."""
    compact = _compact(heading)
    for mapped, leaf_path in heading_map.items():
        if _compact(mapped) == compact:
            mapped_area, _, leaf_id = leaf_path.rpartition("/")
            if not mapped_area or mapped_area == area:
                return leaf_id, False
    names = {
        _compact(name): leaf_id for leaf_id, headings in structure.leaves[area] for name in headings
    }
    if compact in names:
        return names[compact], False
    for name, leaf_id in names.items():
        if len(compact) >= 6 and _edit_distance(compact, name) <= 2:
            return leaf_id, True
    return None, False


def _area_of_heading(heading: str, structure: Structure) -> str | None:
    compact = _compact(heading)
    for area_id, names in structure.area_names.items():
        if compact in {_compact(name) for name in names}:
            return area_id
    return None


def _read_link(text: str, label: str) -> tuple[str | None, bool]:
    """The target of ``[ :label: ](target)`` (balanced parentheses) and whether it was nested."""
    match = re.search(rf"\[\s*:{label}:\s*\]\(", text)
    if not match:
        return None, False
    depth, start = 1, match.end()
    index = start
    while index < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        index += 1
    target = text[start : index - 1].strip()
    nested = re.fullmatch(r"\[[^\]]*\]\(([^)]*)\)", target)
    if nested:
        return nested.group(1).strip(), True
    return target, False


@dataclass
class _Context:
    structure: Structure
    area: str | None
    leaf: str | None = None
    leaf_level: int = 0
    topic: str | None = None
    topic_level: int = 0


def parse_markdown(
    path: Path,
    text: str,
    area: str | None,
    heading_map: dict[str, str],
    report: ImportReport,
    structure: Structure,
) -> list[Listing]:
    """Read one list; unreadable lines go to ``report.not_understood`` with file:line."""
    context = _Context(structure, area=area)
    listings: list[Listing] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.strip() in {"---", "***"}:
            continue
        heading = _HEADING.match(line)
        if heading:
            _enter_heading(
                path, number, len(heading.group(1)), heading.group(2), context, heading_map, report
            )
            continue
        bullet = _BULLET.match(line)
        body = bullet.group(2).strip() if bullet else line.strip()
        level = 10 + len(bullet.group(1).expandtabs(4)) if bullet else 0
        if bullet and _TOC_LINK.match(body):
            continue  # a table-of-contents link
        if context.leaf is None:
            if bullet and context.area is not None:
                report.not_understood.append(
                    Problem(path, number, "bullet outside any known leaf", Severity.WARNING)
                )
            continue
        if not bullet:
            report.not_understood.append(
                Problem(path, number, f"not a heading or bullet: {body[:60]!r}", Severity.WARNING)
            )
            continue
        listing = _parse_bullet(path, number, body, level, context, report)
        if listing is not None:
            listings.append(listing)
    return listings


def _enter_heading(
    path: Path,
    number: int,
    level: int,
    text: str,
    context: _Context,
    heading_map: dict[str, str],
    report: ImportReport,
) -> None:
    found = _area_of_heading(text, context.structure)
    if found:
        context.area, context.leaf, context.topic = found, None, None
        return
    if context.area is None:
        report.not_understood.append(
            Problem(
                path, number, f"heading {text!r} before any area (use --area)", Severity.WARNING
            )
        )
        return
    leaf, fuzzy = _match_leaf(text, context.area, heading_map, context.structure)
    if leaf is not None and (context.leaf is None or level <= context.leaf_level):
        if fuzzy:
            report.defect_counts["leaf heading with a typo"] += 1
            report.decisions.append(
                f"{path.name}:{number}: heading {text!r} read as leaf {context.area}/{leaf}"
            )
        context.leaf, context.leaf_level, context.topic = leaf, level, None
        return
    if context.leaf is not None and level > context.leaf_level:
        _enter_subheading(level, text, context, report)
        return
    context.leaf, context.topic = None, None
    report.not_understood.append(
        Problem(path, number, f"heading {text!r} names no leaf of {context.area}", Severity.WARNING)
    )


def _enter_subheading(level: int, text: str, context: _Context, report: ImportReport) -> None:
    """The first level under a leaf is a topic; deeper sub-headings fold into it."""
    if context.topic is None or level <= context.topic_level:
        context.topic, context.topic_level = text.strip(), level
    else:
        report.defect_counts["sub-heading deeper than a topic, folded into its topic"] += 1


def _parse_bullet(
    path: Path, number: int, body: str, level: int, context: _Context, report: ImportReport
) -> Listing | None:
    bolds = _BOLD.findall(body)
    if not bolds:
        report.not_understood.append(
            Problem(path, number, f"bullet without a bold title: {body[:60]!r}", Severity.WARNING)
        )
        return None
    last_bold_end = body.rfind("**") + 2
    rest = body[last_bold_end:]
    url, nested_url = _read_link(rest, "link")
    code, nested_code = _read_link(rest, "octocat")
    venue_raw = rest.split("[", 1)[0].strip(" ,.;:\t")
    if not url and not code and not venue_raw and ":link:" not in rest:
        _enter_subheading(level, bolds[-1], context, report)
        return None
    if nested_url or nested_code:
        report.defect_counts["markdown link nested inside a link"] += 1
        report.decisions.append(
            f"{path.name}:{number}: nested link '[..](..)' inside a link; kept its target"
        )
    if len(bolds) > 1:
        report.defect_counts["label before the title ('**CLIP** : **Title**')"] += 1
    title = re.sub(r"\s+", " ", bolds[-1]).strip()
    if title != bolds[-1]:
        report.defect_counts["stray whitespace in a title"] += 1
    if not venue_raw:
        report.defect_counts["bullet without a venue"] += 1
    assert context.area is not None and context.leaf is not None
    return Listing(
        path,
        number,
        context.area,
        context.leaf,
        context.topic,
        title,
        venue_raw,
        url or None,
        code or None,
    )


# ---------------------------------------------------------------- link cleaning

_DROP_QUERY = {"srsltid", "frompaywallrec", "tab", "ref", "denied"}


def clean_url(raw: str | None, report: ImportReport, where: str) -> str | None:
    """Repair a link: escapes, arXiv pdf links, tracking queries; drop non-paper links."""
    if not raw:
        return None
    url = raw.strip()
    if url != raw:
        report.defect_counts["stray whitespace in a link"] += 1
    if "\\_" in url:
        url = url.replace("\\_", "_")
        report.defect_counts["escaped underscore '\\_' in a link"] += 1
    if not re.match(r"https?://", url):
        report.decisions.append(f"{where}: dropped link {url!r} (not http/https)")
        return None
    parts = urlsplit(url)
    host = parts.netloc.lower()
    if host == "www.google.com" and parts.path.startswith("/search"):
        report.decisions.append(f"{where}: dropped a Google search link (not the paper)")
        return None
    if "cloudfront.net" in host and "Expires=" in parts.query:
        report.decisions.append(f"{where}: dropped an expiring signed download link")
        return None
    arxiv = re.fullmatch(r"(?:www\.)?arxiv\.org", host) and re.match(
        r"/(abs|pdf)/(\d{4}\.\d{4,5})(v\d+)?(\.pdf)?/?$", parts.path
    )
    if arxiv:
        if arxiv.group(1) == "pdf" or host != "arxiv.org":
            report.defect_counts["arXiv pdf (or www.) link instead of abs"] += 1
        return f"https://arxiv.org/abs/{arxiv.group(2)}{arxiv.group(3) or ''}"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in _DROP_QUERY
    ]
    fragment = "" if parts.fragment.startswith(":~:") else parts.fragment
    if len(query) != len(parse_qsl(parts.query, keep_blank_values=True)) or (
        fragment != parts.fragment
    ):
        report.defect_counts["tracking query or text fragment in a link"] += 1
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), fragment))


def _doi_from_url(url: str | None) -> str | None:
    if not url:
        return None
    patterns = (
        r"dl\.acm\.org/doi/(?:abs/|pdf/|full/)?(10\.\d{4,9}/[^?#\s]+)",
        r"link\.springer\.com/(?:chapter|article)/(10\.\d{4,9}/[^?#\s]+)",
        r"doi\.org/(10\.\d{4,9}/[^?#\s]+)",
        r"(?:worldscientific\.com|epubs\.siam\.org)/doi/(?:abs/)?(10\.\d{4,9}/[^?#\s]+)",
        r"[?&]id=(10\.\d{4,9}/[^&#\s]+)",
    )
    for pattern in patterns:
        match = re.search(pattern, url)
        if match and not match.group(1).startswith("10.5555/"):  # ACM's internal pseudo-DOIs
            return match.group(1).rstrip("/")
    return None


def _arxiv_from_url(url: str | None) -> str | None:
    match = re.search(r"arxiv\.org/abs/(\d{4}\.\d{4,5})", url or "")
    return match.group(1) if match else None


def _venue_from_evidence(url: str | None, doi_value: str | None) -> tuple[str, str | None] | None:
    """(venue, year or None) that a link or DOI proves."""
    url = url or ""
    volumes = curated().icml_volumes
    patterns: tuple[tuple[str, Any], ...] = (
        (
            r"openaccess\.thecvf\.com/content_?(cvpr|iccv|eccv|wacv|accv)_?(\d{4})_?(w|workshops)",
            lambda m: (f"{m.group(1).upper()} Workshops", m.group(2)),
        ),
        (
            r"openaccess\.thecvf\.com/content/(cvpr|iccv|wacv)(\d{4})w/",
            lambda m: (f"{m.group(1).upper()} Workshops", m.group(2)),
        ),
        (
            r"openaccess\.thecvf\.com/content_?(cvpr|iccv|eccv|wacv|accv)_?(\d{4})/",
            lambda m: (m.group(1).upper(), m.group(2)),
        ),
        (
            r"openaccess\.thecvf\.com/content/(cvpr|iccv|wacv|accv)(\d{4})/",
            lambda m: (m.group(1).upper(), m.group(2)),
        ),
        (
            r"computer\.org/csdl/proceedings-article/(cvpr|iccv|wacv)w/(\d{4})/",
            lambda m: (f"{m.group(1).upper()} Workshops", m.group(2)),
        ),
        (
            r"computer\.org/csdl/proceedings-article/(cvpr|iccv|wacv)/(\d{4})/",
            lambda m: (m.group(1).upper(), m.group(2)),
        ),
        (
            r"(?:proceedings\.neurips\.cc|papers\.nips\.cc)/paper(?:_files/paper)?/(\d{4})/",
            lambda m: ("NeurIPS", m.group(1)),
        ),
        (r"ecva\.net/papers/eccv_(\d{4})/", lambda m: ("ECCV", m.group(1))),
        (r"isca-archive\.org/interspeech_(\d{4})/", lambda m: ("Interspeech", m.group(1))),
        (
            r"proceedings\.mlr\.press/v(\d+)/",
            lambda m: ("ICML", volumes[m.group(1)]) if m.group(1) in volumes else None,
        ),
        (r"nature\.com/articles/s41598", lambda m: ("Scientific Reports", None)),
        (r"(?:ojs\.aaai\.org|aaai\.org/ojs|cdn\.aaai\.org)", lambda m: ("AAAI", None)),
    )
    for pattern, make in patterns:
        match = re.search(pattern, url, re.IGNORECASE)
        if match:
            found = make(match)
            if found:
                return found
    if doi_value:
        if doi_value.lower().startswith("10.1609/aaai"):
            return ("AAAI", None)
        acm = re.match(r"10\.1145/(\d+)\.\d+", doi_value)
        proceedings = curated().acm_proceedings
        if acm and acm.group(1) in proceedings:
            return proceedings[acm.group(1)]
    return None


# ---------------------------------------------------------------- metadata.tsv


@dataclass(frozen=True)
class Metadata:
    title: str
    authors: str
    doi: str
    arxiv: str
    year: str
    venue: str


def read_metadata(path: Path) -> dict[str, Metadata]:
    """metadata.tsv rows by normalised title (and by title without an 'ACRONYM: ' label)."""
    rows: dict[str, Metadata] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            meta = Metadata(
                *(
                    str(row.get(name) or "").strip()
                    for name in ("title", "authors", "doi", "arxiv", "year", "venue")
                )
            )
            for variant in _title_variants(meta.title):
                rows.setdefault(variant, meta)
    return rows


def _title_variants(title: str) -> list[str]:
    variants = [normalise_title(title)]
    label = re.match(r"^\s*[\w.+-]{2,15}(?: [\w.+-]{1,10})?\s*:\s+(.+)$", title)
    if label:
        variants.append(normalise_title(label.group(1)))
    return [variant for variant in variants if variant]


# ---------------------------------------------------------------- papers


@dataclass
class Paper:
    """All listings of one paper and the entry resolved from them."""

    listings: list[Listing]
    title: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    entry_type: str = "misc"
    match_keys: set[str] = field(default_factory=set)


def _group_listings(listings: Sequence[Listing]) -> list[list[Listing]]:
    """Union listings that share a normalised title (or its label-less form) or an arXiv id."""
    parent = list(range(len(listings)))

    def find(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    seen: dict[str, int] = {}
    for index, listing in enumerate(listings):
        title = curated().title_fixes.get(normalise_title(listing.title), listing.title)
        keys = [f"t:{variant}" for variant in _title_variants(title)]
        arxiv = _arxiv_from_url(clean_url(listing.url, ImportReport(), ""))
        if arxiv:
            keys.append(f"a:{arxiv}")
        for key in keys:
            if key in seen:
                parent[find(index)] = find(seen[key])
            else:
                seen[key] = index
    groups: dict[int, list[Listing]] = defaultdict(list)
    for index, listing in enumerate(listings):
        groups[find(index)].append(listing)
    return list(groups.values())


def drop_copied_links(
    listings: Sequence[Listing], metadata: dict[str, Metadata], report: ImportReport
) -> None:
    """A link given to two different papers belongs to the one whose metadata DOI it carries;
    the other listing loses the link (and the same code link): it was copied by mistake."""
    by_url: dict[str, list[Listing]] = defaultdict(list)
    for listing in listings:
        if listing.url:
            by_url[listing.url.strip()].append(listing)
    for url, holders in by_url.items():
        titles = {normalise_title(listing.title) for listing in holders}
        link_doi = _doi_from_url(url)
        if len(titles) < 2 or not link_doi:
            continue
        owners = {
            title
            for title in titles
            if title in metadata and metadata[title].doi.lower() == link_doi.lower()
        }
        if len(owners) != 1:
            continue
        owner_codes = {
            listing.code for listing in holders if normalise_title(listing.title) in owners
        }
        for listing in holders:
            if normalise_title(listing.title) in owners:
                continue
            report.defect_counts["link copied from another paper"] += 1
            report.decisions.append(
                f"{listing.where}: {listing.title!r}: its link {url} (and code link) belong to "
                "another paper (DOI of that paper in metadata.tsv); dropped"
            )
            listing.url = None
            if listing.code in owner_codes:
                listing.code = None


def _capitals(text: str) -> int:
    return sum(char.isupper() for char in text)


def _bibtex_text(text: str) -> str:
    """Plain text made safe for a BibTeX field (special characters escaped)."""
    text = re.sub(r"(?<!\\)([&%#_$])", r"\\\1", text)
    return text.replace("“", "``").replace("”", "''").replace("’", "'").replace("–", "--")


@dataclass
class _Occurrence:
    listing: Listing
    venue: str
    entry_type: str
    year: str | None
    url: str | None
    code: str | None
    evidence: bool


def resolve_paper(
    listings: list[Listing], metadata: dict[str, Metadata], report: ImportReport
) -> Paper:
    """One entry from all listings of a paper, repairing what the lists get wrong."""
    occurrences = [_occurrence(listing, report) for listing in listings]
    winner = _pick_occurrence(occurrences, report)
    title = curated().title_fixes.get(normalise_title(winner.listing.title))
    if title:
        report.decisions.append(
            f"{winner.listing.where}: title {winner.listing.title!r} -> {title!r}"
        )
    else:
        same = [
            o.listing.title
            for o in occurrences
            if normalise_title(o.listing.title) == normalise_title(winner.listing.title)
        ]
        title = max(same, key=_capitals)
    meta = next((metadata[v] for v in _title_variants(title) if v in metadata), None)
    if meta is None:
        meta = next(
            (
                metadata[v]
                for o in occurrences
                for v in _title_variants(o.listing.title)
                if v in metadata
            ),
            None,
        )
    if meta is not None:
        report.metadata_matched += 1
    venue, entry_type, year = winner.venue, winner.entry_type, winner.year
    correction = curated().venue_corrections.get(normalise_title(title))
    if correction:
        venue, year = correction[0], correction[1]
        entry_type = normalise_venue(venue)[0]
        report.decisions.append(
            f"{winner.listing.where}: {title!r}: {venue} {year}: {correction[2]}"
        )
    urls = [o.url for o in occurrences if o.url]
    arxiv = next((a for a in map(_arxiv_from_url, urls) if a), None) or (
        meta.arxiv if meta else None
    )
    doi_value = next((d for d in map(_doi_from_url, urls) if d), None) or (
        meta.doi if meta else None
    )
    venue, entry_type, year = _fill_from_metadata(venue, entry_type, year, meta, winner, report)
    year = _check_year(title, venue, year, arxiv, winner, report)
    if meta and meta.venue and venue and year:
        meta_venue = normalise_venue(meta.venue)[2]
        if meta_venue not in {venue, "arXiv preprint"} and is_known_venue(meta.venue):
            report.metadata_disagreements.append(
                f"{winner.listing.where}: {title!r}: list {venue} {year}, metadata.tsv {meta_venue} "
                f"{meta.year} (list kept)"
            )
    fields: dict[str, str] = {"title": _bibtex_text(title)}
    if meta and meta.authors:
        fields["author"] = meta.authors
    if venue:
        fields[normalise_venue(venue)[1] if entry_type != "misc" else "howpublished"] = (
            _bibtex_text(venue)
        )
    if year:
        fields["year"] = year
    replacement = curated().link_replacements.get(normalise_title(title))
    if replacement and not urls:
        urls = [replacement["url"]]
        doi_value = doi_value or replacement.get("doi")
        if "author" in replacement and not (meta and meta.authors):
            fields["author"] = replacement["author"]
        report.decisions.append(f"{winner.listing.where}: {title!r}: {replacement['reason']}")
    url = winner.url or next(iter(urls), None)
    if not url and arxiv:
        url = f"https://arxiv.org/abs/{arxiv}"
    if url:
        fields["url"] = url
    code = winner.code or next((o.code for o in occurrences if o.code), None)
    if code:
        fields["code"] = code
    if arxiv:
        fields["eprint"], fields["archiveprefix"] = arxiv, "arXiv"
    if doi_value:
        fields["doi"] = doi_value
    match_keys = {f"t:{v}" for o in occurrences for v in _title_variants(o.listing.title)}
    match_keys |= {f"t:{v}" for v in _title_variants(title)}
    if arxiv:
        match_keys.add(f"a:{arxiv}")
    if doi_value:
        match_keys.add(f"d:{doi_value.lower()}")
    return Paper(listings, title, fields, entry_type if venue else "misc", match_keys)


def _occurrence(listing: Listing, report: ImportReport) -> _Occurrence:
    url = clean_url(listing.url, report, listing.where)
    code = clean_url(listing.code, report, listing.where)
    raw = listing.venue_raw
    year_match = _YEAR.findall(raw)
    year = year_match[-1] if year_match else None
    if re.search(r"[A-Za-z](19|20)\d{2}", raw):
        report.defect_counts["venue glued to its year ('AAAI2019')"] += 1
    entry_type, _, venue = normalise_venue(raw)
    cleaned = re.sub(r"\s+", " ", _YEAR.sub(" ", raw)).strip(" ,.;:-")
    if cleaned and cleaned.lower() != venue.lower():
        report.venue_spellings[(cleaned, venue)] += 1
    evidence = _venue_from_evidence(url, _doi_from_url(url))
    has_evidence = False
    if evidence:
        ev_venue, ev_year = evidence
        ev_type = normalise_venue(ev_venue)[0]
        publisher = cleaned.lower() in curated().publisher_only or not cleaned
        both_conferences = ev_type == "inproceedings" and entry_type == "inproceedings"
        wrong_venue = ev_venue != venue and (
            both_conferences or publisher or ev_venue == "Scientific Reports"
        )
        wrong_year = (
            ev_year is not None
            and year is not None
            and ev_year != year
            and (ev_venue == venue or wrong_venue)
        )
        if wrong_venue or wrong_year:
            new_year = ev_year or year
            report.decisions.append(
                f"{listing.where}: {listing.title!r}: listed as {raw!r}, the link/DOI says "
                f"{ev_venue} {new_year or ''}".rstrip()
                + f"; using {ev_venue} {new_year or ''}".rstrip()
            )
            venue, year, entry_type = ev_venue, new_year, ev_type
        has_evidence = ev_venue == venue and (ev_year is None or ev_year == year)
    if venue.lower() == "ieee/acm":
        venue, entry_type = "IEEE/ACM TASLP", "article"
        report.decisions.append(
            f"{listing.where}: {listing.title!r}: venue 'IEEE/ACM' read as IEEE/ACM Transactions "
            "on Audio, Speech, and Language Processing (the IEEE/ACM journal of the field)"
        )
    return _Occurrence(listing, venue, entry_type, year, url, code, has_evidence)


def _rank(occurrence: _Occurrence) -> tuple[int, int, int]:
    venue = occurrence.venue.lower()
    specific = 0 if venue in curated().publisher_only or not venue else 1
    preprint = 0 if venue == "arxiv preprint" else 1
    return (int(occurrence.evidence), specific, preprint)


def _pick_occurrence(occurrences: list[_Occurrence], report: ImportReport) -> _Occurrence:
    """The listing whose venue wins: proven by its link, then specific, then not a preprint,
    then the most frequent, then the first."""
    counts = Counter((o.venue, o.year) for o in occurrences)
    best = max(occurrences, key=lambda o: (_rank(o), counts[(o.venue, o.year)]))
    variants = {(o.venue, o.year) for o in occurrences}
    if len(variants) > 1:
        report.defect_counts["same paper listed with different venues or years"] += 1
        listed = "; ".join(f"{o.listing.where} {o.venue} {o.year}" for o in occurrences)
        report.decisions.append(
            f"{best.listing.title!r} listed as {listed}: using {best.venue} {best.year}"
        )
    return best


def _fill_from_metadata(
    venue: str,
    entry_type: str,
    year: str | None,
    meta: Metadata | None,
    winner: _Occurrence,
    report: ImportReport,
) -> tuple[str, str, str | None]:
    if meta is None:
        return venue, entry_type, year
    specific_meta = meta.venue and is_known_venue(meta.venue)
    if (not venue or venue.lower() in curated().publisher_only) and specific_meta:
        new_type, _, new_venue = normalise_venue(meta.venue)
        report.decisions.append(
            f"{winner.listing.where}: {winner.listing.title!r}: venue {venue or 'missing'!r} "
            f"-> {new_venue} (metadata.tsv)"
        )
        venue, entry_type = new_venue, new_type
    meta_venue = normalise_venue(meta.venue)[2] if specific_meta else ""
    meta_year = (_YEAR.findall(meta.year) or [None])[0]
    if meta_venue == f"{venue} Workshops" and meta_year == year:
        # Workshop papers are often listed under their main conference.
        report.decisions.append(
            f"{winner.listing.where}: {winner.listing.title!r}: listed as {venue} {year}, "
            f"metadata.tsv says {meta_venue}; using {meta_venue}"
        )
        venue = meta_venue
    if not year and meta.year:
        report.decisions.append(
            f"{winner.listing.where}: {winner.listing.title!r}: year missing -> {meta.year} "
            "(metadata.tsv)"
        )
        year = meta.year
    return venue, entry_type, year


def _check_year(
    title: str,
    venue: str,
    year: str | None,
    arxiv: str | None,
    winner: _Occurrence,
    report: ImportReport,
) -> str | None:
    """A year before the arXiv posting, or ECCV/ICCV in the wrong parity, is clearly wrong."""
    arxiv_year = f"20{arxiv[:2]}" if arxiv else None
    if year is None and arxiv_year:
        report.decisions.append(
            f"{winner.listing.where}: {title!r}: year missing -> {arxiv_year} (arXiv id)"
        )
        return arxiv_year
    if year and arxiv_year and int(year) < int(arxiv_year):
        report.defect_counts["year before the arXiv posting"] += 1
        if venue == "arXiv preprint":
            report.decisions.append(
                f"{winner.listing.where}: {title!r}: listed as arXiv {year}, before its arXiv "
                f"posting {arxiv} -> {arxiv_year}"
            )
            year = arxiv_year
        elif normalise_title(title) not in curated().venue_corrections:
            # Papers are often posted to arXiv after the conference: flag, keep the list.
            report.decisions.append(
                f"{winner.listing.where}: {title!r}: listed as {venue} {year}, arXiv {arxiv} "
                "is later; posted after publication, list kept"
            )
    parity = {"ECCV": 0, "ICCV": 1}.get(venue)
    if year and parity is not None and int(year) % 2 != parity:
        fixed = str(int(year) - 1)
        report.decisions.append(
            f"{winner.listing.where}: {title!r}: {venue} is held only in "
            f"{'even' if parity == 0 else 'odd'} years; {year} -> {fixed}"
        )
        year = fixed
    return year


# ---------------------------------------------------------------- merging into the bib


def _entry_match_keys(entry: BibEntry) -> set[str]:
    keys = {f"t:{v}" for v in _title_variants(entry.fields.get("title", ""))}
    if arxiv_id(entry):
        keys.add(f"a:{arxiv_id(entry)}")
    if doi(entry):
        keys.add(f"d:{doi(entry)}")
    return keys


def _required_key(paper: Paper) -> str | None:
    for key, title in curated().keys.items():
        if f"t:{normalise_title(title)}" in paper.match_keys:
            return key
    return None


def _apply_required(paper: Paper, key: str) -> None:
    paper.fields["title"] = _bibtex_text(curated().keys[key])


def merge_papers(
    papers: list[Paper], existing: list[BibEntry], report: ImportReport
) -> tuple[list[BibEntry], dict[int, str]]:
    """New entries for papers not yet in the bib; every paper's key by its index."""
    index: dict[str, str] = {}
    for entry in existing:
        for match in _entry_match_keys(entry):
            index.setdefault(match, entry.key)
    taken = {entry.key for entry in existing} | set(curated().keys)
    added: list[BibEntry] = []
    keys: dict[int, str] = {}
    for number, paper in enumerate(papers):
        known = next((index[m] for m in sorted(paper.match_keys) if m in index), None)
        if known:
            keys[number] = known
            continue
        key = _required_key(paper)
        if key:
            _apply_required(paper, key)
        else:
            key = make_key(
                paper.fields.get("author"), paper.fields.get("year", ""), paper.title, taken
            )
        taken.add(key)
        entry = BibEntry(key, paper.entry_type, dict(paper.fields))
        added.append(entry)
        keys[number] = key
        for match in paper.match_keys | _entry_match_keys(entry):
            index.setdefault(match, key)
    return added, keys


# ---------------------------------------------------------------- taxonomy files


def _yaml() -> YAML:
    """The project's one round-trip reader/writer (comments kept, no re-wrapping)."""
    return round_trip_yaml()


def _find(items: Iterable[CommentedMap], item_id: str) -> CommentedMap | None:
    return next((item for item in items if item.get("id") == item_id), None)


def _leaf_papers(leaf: CommentedMap) -> set[str]:
    keys = set(leaf.get("papers") or [])
    for topic in leaf.get("topics") or []:
        keys.update(topic.get("papers") or [])
    return keys


def _append(container: CommentedMap, key: str, before: tuple[str, ...] = ()) -> None:
    if "papers" not in container:
        position = next((i for i, k in enumerate(container) if k in before), len(container))
        container.insert(position, "papers", CommentedSeq())
    elif container["papers"] is None:  # "papers:" left empty by hand
        container["papers"] = CommentedSeq()
    container["papers"].append(key)


def add_membership(
    area_data: CommentedMap, leaf_id: str, topic_title: str | None, key: str, report: ImportReport
) -> bool:
    """File ``key`` in a leaf (under its topic); False if the leaf already holds it anywhere."""
    leaf = _find(area_data["leaves"], leaf_id)
    assert leaf is not None, leaf_id  # leaves are read from this very document (Structure.of)
    if key in _leaf_papers(leaf):
        return False
    if topic_title is None:
        _append(leaf, key, before=("topics", "implementations"))
        return True
    topic_id = _slug(topic_title)
    if "topics" not in leaf:
        position = next((i for i, k in enumerate(leaf) if k == "implementations"), len(leaf))
        leaf.insert(position, "topics", CommentedSeq())
    topic = _find(leaf["topics"], topic_id)
    if topic is None:
        topic = CommentedMap()
        topic["id"] = topic_id
        topic["title"] = topic_title
        topic["summary"] = FoldedScalarString(PLACEHOLDER_SUMMARY.format(title=topic_title))
        leaf["topics"].append(topic)
        report.topics_created.append(f"{area_data['id']}/{leaf_id}/{topic_id}")
    _append(topic, key)
    return True


# ---------------------------------------------------------------- the import


def _read_inputs(
    files: Sequence[Path],
    area: str | None,
    heading_map: dict[str, str],
    report: ImportReport,
    structure: Structure,
) -> list[Listing]:
    parsed: list[tuple[int, str, list[Listing]]] = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        listings = parse_markdown(path, text, area, heading_map, report, structure)
        first_area = listings[0].area if listings else area
        order = AREA_ORDER.index(first_area) if first_area in AREA_ORDER else len(AREA_ORDER)
        parsed.append((order, path.name, listings))
    # Key collisions depend on order: import areas in the survey's order, whatever the argv order.
    return [
        listing for _, _, listings in sorted(parsed, key=lambda p: p[:2]) for listing in listings
    ]


def import_markdown(
    files: Sequence[Path],
    *,
    root: Path = Path("."),
    area: str | None = None,
    heading_map: dict[str, str] | None = None,
    metadata: Path | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import markdown lists into ``root/bib/kd.bib`` and the leaves of ``root/taxonomy/``."""
    report = ImportReport()
    areas = _load_areas(root, report)
    listings = _read_inputs(files, area, heading_map or {}, report, Structure.of(areas))
    report.listings = len(listings)
    meta = read_metadata(metadata) if metadata else {}
    drop_copied_links(listings, meta, report)
    papers = [resolve_paper(group, meta, report) for group in _group_listings(listings)]
    report.papers = len(papers)

    bib_dir = root / BIB_DIR
    existing, problems = read_bib_dir(bib_dir) if bib_dir.is_dir() else ([], [])
    if any(problem.is_error for problem in problems):
        report.not_understood.extend(problems)
        raise ImportStopped(report, "bib/ has errors; fix them before importing")
    added, keys = merge_papers(papers, existing, report)
    report.entries_added = [entry.key for entry in added]

    memberships = _memberships(listings, papers, keys, report)
    for leaf_path, topic, key in memberships:
        area_id, leaf_id = leaf_path.split("/")
        if add_membership(areas[area_id], leaf_id, topic, key, report):
            report.memberships_added.append((leaf_path, topic, key))
    if not dry_run:
        _write(root, existing, added, areas, report)
    return report


class ImportStopped(Exception):
    """The import stopped before writing anything."""

    def __init__(self, report: ImportReport, message: str) -> None:
        self.report = report
        super().__init__(message)


def _memberships(
    listings: Sequence[Listing], papers: list[Paper], keys: dict[int, str], report: ImportReport
) -> list[tuple[str, str | None, str]]:
    """(leaf path, topic, key) in the order of the lists, so topics keep the survey's order."""
    position = {id(listing): index for index, listing in enumerate(listings)}
    placed: list[tuple[int, tuple[str, str | None, str]]] = []
    by_title: dict[str, str] = {}
    for number, paper in enumerate(papers):
        key = keys[number]
        for match in paper.match_keys:
            by_title.setdefault(match, key)
        for listing in paper.listings:
            target = (listing.leaf_path, listing.topic)
            for title, source, destination, reason in curated().moves:
                if f"t:{title}" in paper.match_keys and listing.leaf_path == source:
                    target = (destination, None)
                    report.decisions.append(
                        f"{listing.where}: {key} filed in {destination} "
                        f"instead of {source}: {reason}"
                    )
            placed.append((position[id(listing)], (*target, key)))
    result: list[tuple[str, str | None, str]] = []
    for _, membership in sorted(placed, key=lambda item: item[0]):
        if membership not in result:
            result.append(membership)
    for title in curated().offline_papers:
        key = by_title.get(f"t:{title}")
        if key and ("schemes/offline", None, key) not in result:
            result.append(("schemes/offline", None, key))
            report.decisions.append(
                f"{key} filed in schemes/offline (the lists' Offline section is empty)"
            )
    return result


def _load_areas(root: Path, report: ImportReport) -> dict[str, CommentedMap]:
    """The five taxonomy files (round trip): the import files papers under their leaves."""
    areas: dict[str, CommentedMap] = {}
    for area_id in AREA_ORDER:
        path = root / TAXONOMY_DIR / f"{area_id}.yaml"
        if not path.is_file():
            raise ImportStopped(report, f"{path}: missing; the import fills the leaves it holds")
        areas[area_id] = _yaml().load(path.read_text(encoding="utf-8"))
    return areas


def _write(
    root: Path,
    existing: list[BibEntry],
    added: list[BibEntry],
    areas: dict[str, CommentedMap],
    report: ImportReport,
) -> None:
    """Write what changed, all files together (kdatlas.atomic): all of them change or none."""
    new_texts: dict[Path, str] = {}
    if added:
        in_kd = [
            entry for entry in existing if entry.path is not None and entry.path.name == "kd.bib"
        ]
        new_texts[root / BIB_DIR / "kd.bib"] = render_bib([*in_kd, *added])
    for area_id, data in areas.items():
        path = root / TAXONOMY_DIR / f"{area_id}.yaml"
        text = dump_yaml(data)  # the canonical form of `kdatlas fmt`, so fmt finds nothing to do
        if text != path.read_text(encoding="utf-8"):
            new_texts[path] = text
    if new_texts:
        (root / BIB_DIR).mkdir(parents=True, exist_ok=True)
        replace_files(new_texts)
    report.files_written.extend(new_texts)


# ---------------------------------------------------------------- command line


def _parse_map(items: Sequence[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in items:
        heading, separator, leaf = item.rpartition("=")
        if not separator or not heading.strip() or not leaf.strip():
            raise typer.BadParameter(f"{item!r} is not HEADING=LEAF (e.g. 'Multi-veiw=multi-view')")
        mapping[heading.strip()] = leaf.strip()
    return mapping


def import_markdown_command(
    files: Annotated[
        list[Path], typer.Argument(help="Markdown list(s) to import.", exists=True, dir_okay=False)
    ],
    area: Annotated[
        str | None, typer.Option("--area", help="Area of files whose headings do not say it.")
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="Heading to leaf, HEADING=LEAF or HEADING=AREA/LEAF (repeat)."),
    ] = None,
    metadata: Annotated[
        Path | None,
        typer.Option(
            "--metadata",
            help="TSV of facts: title, authors, doi, arxiv, year, venue.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; write nothing.")] = False,
    root: Annotated[Path, typer.Option("--root", help="Repository root.")] = Path("."),
) -> None:
    """Import awesome-style markdown lists into bib/kd.bib and taxonomy/*.yaml."""
    if area is not None and area not in AREA_ORDER:
        raise typer.BadParameter(f"unknown area {area!r}; one of {', '.join(AREA_ORDER)}")
    try:
        report = import_markdown(
            files,
            root=root,
            area=area,
            heading_map=_parse_map(mapping or []),
            metadata=metadata,
            dry_run=dry_run,
        )
    except ImportStopped as error:
        for problem in error.report.not_understood:
            typer.echo(str(problem), err=True)
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    for line in report.summary_lines():
        typer.echo(line)
    for path in report.files_written:
        typer.echo(f"wrote {path}")
    if dry_run:
        typer.echo("dry run: nothing written")


__all__ = [
    "ImportReport",
    "Listing",
    "import_markdown",
    "import_markdown_command",
    "parse_markdown",
    "read_metadata",
]
