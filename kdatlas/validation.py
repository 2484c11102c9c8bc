"""The data checks: what the parsed taxonomy and bibliography say is wrong, read from nothing else.

Unique ids, references between taxonomy and bibliography (bib keys, ``see_also``
implementation ids), bibliography fields, safe URLs and text, duplicate papers, and
``bib/provenance.yaml`` against the bibliography.
:func:`kdatlas.loader.load_with_problems` runs :func:`data_problems` on every
load; the checks that look at files and imports are in :mod:`kdatlas.checks`.
All are linear in the size of the knowledge base: each walks the data once with
dictionaries, never comparing pairs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Any

from kdatlas.bibliography import BibEntry, arxiv_id, doi, normalise_title
from kdatlas.knowledge_base import KnowledgeBase, Location
from kdatlas.limits import forbidden_character
from kdatlas.models import AREA_IDS, BIB_KEY, PROVENANCE_ID, SURVEYS_ID
from kdatlas.problems import Problem, Severity

REQUIRED_FIELDS = ("title", "year", "url")
# Fields whose whole value is a link: they must be http(s) URLs.
URL_FIELDS = frozenset(
    {"url", "code", "pdf", "homepage", "project", "website", "video", "slides", "poster", "demo"}
)
HTTP_URL = re.compile(r"^https?://[^\s<>\"'`{}|\\^]+$", re.IGNORECASE)
# Any scheme written as 'name://' anywhere in a value, and schemes that run code or embed data.
ANY_SCHEME = re.compile(r"(?<![\w+.-])([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
DANGEROUS_SCHEME = re.compile(r"(?<![\w-])(javascript|vbscript|data|file)\s*:(?=\S)", re.IGNORECASE)
LATEX_LINK = re.compile(r"\\(?:url|href)\s*\{\s*([^}]*)\}")
HTML = re.compile(
    r"<\s*/?\s*[a-z][a-z0-9:-]*(?:\s[^<>]*)?/?\s*>|<!--|<!\[cdata\[|<!doctype", re.IGNORECASE
)
YEAR = re.compile(r"^\d{4}$")


def _shown(value: str, limit: int = 60) -> str:
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


# --------------------------------------------------------------------------- text safety


def unsafe_text(value: str) -> str | None:
    """Why a piece of text (title, summary, bib field) is unsafe to show, or None."""
    if reason := forbidden_character(value):
        return reason
    if HTML.search(value):
        return f"holds HTML markup ({_shown(HTML.search(value).group(0), 30)})"
    scheme = DANGEROUS_SCHEME.search(value)
    if scheme:
        return f"holds a '{scheme.group(1).lower()}:' link"
    for match in ANY_SCHEME.finditer(value):
        if match.group(1).lower() not in ("http", "https"):
            return f"holds a '{match.group(1).lower()}://' link; only http and https are allowed"
    for link in LATEX_LINK.findall(value):
        if not HTTP_URL.match(link.strip()):
            return f"holds a link that is not http(s): {_shown(link)}"
    return None


def url_problem(value: str) -> str | None:
    """Why a URL field's value is not an acceptable link, or None."""
    value = value.strip()
    if reason := forbidden_character(value):
        return reason
    if HTML.search(value):
        return "holds HTML markup"
    if not HTTP_URL.match(value):
        return f"must be an http(s) URL, found '{_shown(value)}'"
    return None


# --------------------------------------------------------------------------- bibliography


def entry_problems(entry: BibEntry) -> list[Problem]:
    """Problems of one bib entry on its own: key, required fields, URLs, markup."""
    where = (entry.path or "bib", entry.line)
    problems: list[Problem] = []
    if not BIB_KEY.match(entry.key):
        problems.append(Problem(*where, f"'{entry.key}' is not a valid bib key"))
    for name in REQUIRED_FIELDS:
        if not entry.fields.get(name, "").strip():
            problems.append(Problem(*where, f"{entry.key}: missing required field '{name}'"))
    year = entry.fields.get("year", "").strip()
    if year and not YEAR.match(year):
        problems.append(
            Problem(*where, f"{entry.key}: year must be four digits, found '{_shown(year)}'")
        )
    for name, value in entry.fields.items():
        if reason := forbidden_character(name):
            problems.append(Problem(*where, f"{entry.key}: a field name {reason}"))
            continue
        if not value.strip():
            continue
        reason = url_problem(value) if name in URL_FIELDS else unsafe_text(value)
        # A control character is pointed at on its field's own line.
        line = entry.field_lines.get(name, entry.line) if forbidden_character(value) else entry.line
        if reason:
            problems.append(Problem(where[0], line, f"{entry.key}: field '{name}' {reason}"))
    return problems


class DuplicateIndex:
    """Finds an entry describing the same paper: same normalised title, arXiv id or DOI."""

    def __init__(self) -> None:
        self._by_identity: dict[tuple[str, str], BibEntry] = {}

    @staticmethod
    def identities(entry: BibEntry) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        title = normalise_title(entry.fields.get("title", ""))
        if title:
            found.append(("title", title))
        if arxiv := arxiv_id(entry):
            found.append(("arXiv id", arxiv.lower()))
        if number := doi(entry):
            found.append(("DOI", number.lower()))
        return found

    def matches(self, entry: BibEntry) -> tuple[BibEntry, list[str]] | None:
        """The first earlier entry sharing an identity with ``entry`` and what they share."""
        for identity in self.identities(entry):
            other = self._by_identity.get(identity)
            if other is not None and other.key != entry.key:
                shared = [
                    kind
                    for kind, value in self.identities(entry)
                    if self._by_identity.get((kind, value)) is other
                ]
                return other, shared
        return None

    def add(self, entry: BibEntry) -> None:
        for identity in self.identities(entry):
            self._by_identity.setdefault(identity, entry)


def where_entry(entry: BibEntry) -> str:
    return f"{entry.path}:{entry.line}" if entry.line is not None else str(entry.path)


def duplicate_problems(entries: Iterable[BibEntry]) -> list[Problem]:
    index = DuplicateIndex()
    problems: list[Problem] = []
    ordered = sorted(entries, key=lambda e: (str(e.path), e.line or 0))
    for entry in ordered:
        match = index.matches(entry)
        if match:
            other, shared = match
            problems.append(
                Problem(
                    entry.path or "bib",
                    entry.line,
                    f"{entry.key}: duplicate paper, same {' and '.join(shared)} as "
                    f"{other.key} ({where_entry(other)})",
                )
            )
        index.add(entry)
    return problems


# --------------------------------------------------------------------------- taxonomy


def located(kb: KnowledgeBase, area_id: str, loc: Location, message: str, **kw: Any) -> Problem:
    """A problem at the line of ``loc`` in the area file ``area_id``."""
    path, line = kb.location(area_id, loc)
    return Problem(path, line, message, **kw)


def _key_references(kb: KnowledgeBase) -> Iterator[tuple[str, Location, str]]:
    """(area id or SURVEYS_ID, location, bib key) for every bib key written in the taxonomy."""
    yield from _survey_references(kb)
    for area in kb.areas:
        for i, leaf in enumerate(area.leaves):
            for k, key in enumerate(leaf.papers):
                yield area.id, ("leaves", i, "papers", k), key
            for j, topic in enumerate(leaf.topics):
                for k, key in enumerate(topic.papers):
                    yield area.id, ("leaves", i, "topics", j, "papers", k), key
            for j, implementation in enumerate(leaf.implementations):
                for k, key in enumerate(implementation.papers):
                    yield area.id, ("leaves", i, "implementations", j, "papers", k), key


def _survey_references(kb: KnowledgeBase) -> Iterator[tuple[str, Location, str]]:
    """(SURVEYS_ID, location, bib key) for every key of ``taxonomy/surveys.yaml``."""
    if kb.surveys is None:
        return
    yield SURVEYS_ID, ("survey",), kb.surveys.survey
    for list_name in ("cite", "existing"):
        for k, key in enumerate(getattr(kb.surveys, list_name)):
            yield SURVEYS_ID, (list_name, k), key


def survey_problems(kb: KnowledgeBase) -> list[Problem]:
    """Each key of ``taxonomy/surveys.yaml`` appears once in the file: the survey is not one of
    its own papers to cite or earlier surveys, and no list repeats a key."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for area_id, loc, key in _survey_references(kb):
        _first_use(kb, problems, seen, key, area_id, loc, "bib key", "listed")
    return problems


def _first_use(
    kb: KnowledgeBase,
    problems: list[Problem],
    seen: dict[str, str],
    value: str,
    area_id: str,
    loc: Location,
    what: str,
    verb: str = "used",
) -> None:
    """Remember where ``value`` first stands; a later use is a problem pointing back there."""
    path, line = kb.location(area_id, loc)
    if value in seen:
        problems.append(Problem(path, line, f"{what} '{value}' is already {verb} at {seen[value]}"))
    else:
        seen[value] = f"{path}:{line}"


def unique_id_problems(kb: KnowledgeBase) -> list[Problem]:
    """Leaf and implementation ids unique over all areas; topic ids and paper keys per leaf."""
    problems: list[Problem] = []
    seen_areas: dict[str, str] = {}
    seen_leaves: dict[str, str] = {}
    seen_implementations: dict[str, str] = {}

    def first_use(seen: dict[str, str], value: str, area_id: str, loc: Location, what: str) -> None:
        _first_use(kb, problems, seen, value, area_id, loc, what)

    for area in kb.areas:
        first_use(seen_areas, area.id, area.id, ("id",), "area id")
        for i, leaf in enumerate(area.leaves):
            first_use(seen_leaves, leaf.id, area.id, ("leaves", i, "id"), "leaf id")
            seen_topics: dict[str, str] = {}
            for j, topic in enumerate(leaf.topics):
                first_use(
                    seen_topics, topic.id, area.id, ("leaves", i, "topics", j, "id"), "topic id"
                )
            for j, implementation in enumerate(leaf.implementations):
                loc = ("leaves", i, "implementations", j, "id")
                first_use(
                    seen_implementations, implementation.id, area.id, loc, "implementation id"
                )
            seen_keys: dict[str, str] = {}
            for k, key in enumerate(leaf.papers):
                first_use(seen_keys, key, area.id, ("leaves", i, "papers", k), "bib key")
            for j, topic in enumerate(leaf.topics):
                for k, key in enumerate(topic.papers):
                    loc = ("leaves", i, "topics", j, "papers", k)
                    first_use(seen_keys, key, area.id, loc, "bib key")
    return problems


def reference_problems(kb: KnowledgeBase) -> list[Problem]:
    """Every bib key the taxonomy names exists (leaves, topics, implementations and
    ``taxonomy/surveys.yaml``); entries nothing names are warnings."""
    problems: list[Problem] = []
    used: set[str] = set()
    for area_id, loc, key in _key_references(kb):
        used.add(key)
        if key not in kb.entries:
            problems.append(located(kb, area_id, loc, f"bib key '{key}' is not in bib/"))
    if len(kb.areas) < len(AREA_IDS):
        return problems  # an area did not load: its references are unknown, so no 'unused' noise
    for key, entry in kb.entries.items():
        if key not in used:
            problems.append(
                Problem(
                    entry.path or "bib",
                    entry.line,
                    f"{key}: not used by any leaf, topic or implementation, "
                    "nor by taxonomy/surveys.yaml",
                    Severity.WARNING,
                )
            )
    return problems


def see_also_problems(kb: KnowledgeBase) -> list[Problem]:
    """Each ``see_also`` id names an implementation of another leaf, once per list."""
    homes = {i.id: leaf.id for _area, leaf, i in kb.implementations()}
    problems: list[Problem] = []
    for area in kb.areas:
        for i, leaf in enumerate(area.leaves):
            listed: set[str] = set()
            for k, implementation_id in enumerate(leaf.see_also):
                loc = ("leaves", i, "see_also", k)
                if implementation_id not in homes:
                    message = f"see_also: no implementation has the id '{implementation_id}'"
                elif homes[implementation_id] == leaf.id:
                    message = (
                        f"see_also: '{implementation_id}' is an implementation of this leaf; "
                        "list only implementations filed under other leaves"
                    )
                elif implementation_id in listed:
                    message = f"see_also: '{implementation_id}' is listed twice"
                else:
                    listed.add(implementation_id)
                    continue
                problems.append(located(kb, area.id, loc, message))
    return problems


def notebook_path_problem(notebook: str) -> str | None:
    if reason := forbidden_character(notebook):
        return f"notebook path {reason}"
    path = PurePosixPath(notebook)
    if path.is_absolute() or "\\" in notebook or ".." in path.parts or ":" in notebook:
        return f"notebook must be a relative path inside the repository, found '{_shown(notebook)}'"
    if path.suffix not in (".py", ".ipynb", ".md"):
        return f"notebook must be a .py (jupytext), .ipynb or .md file, found '{_shown(notebook)}'"
    return None


def taxonomy_text_problems(kb: KnowledgeBase) -> list[Problem]:
    """Titles and summaries hold no HTML or unsafe links; notebook paths stay in the repository."""
    problems: list[Problem] = []

    def check_text(area_id: str, loc: Location, value: str) -> None:
        reason = unsafe_text(value)
        if reason:
            problems.append(located(kb, area_id, loc, f"{loc[-1]} {reason}"))

    for area in kb.areas:
        check_text(area.id, ("title",), area.title)
        check_text(area.id, ("summary",), area.summary)
        for i, leaf in enumerate(area.leaves):
            base: Location = ("leaves", i)
            check_text(area.id, (*base, "title"), leaf.title)
            check_text(area.id, (*base, "summary"), leaf.summary)
            if leaf.notebook is not None and (reason := notebook_path_problem(leaf.notebook)):
                problems.append(located(kb, area.id, (*base, "notebook"), reason))
            for j, topic in enumerate(leaf.topics):
                check_text(area.id, (*base, "topics", j, "title"), topic.title)
                check_text(area.id, (*base, "topics", j, "summary"), topic.summary)
            for j, implementation in enumerate(leaf.implementations):
                check_text(area.id, (*base, "implementations", j, "title"), implementation.title)
                if implementation.notebook is not None and (
                    reason := notebook_path_problem(implementation.notebook)
                ):
                    loc = (*base, "implementations", j, "notebook")
                    problems.append(located(kb, area.id, loc, reason))
                if implementation.finding is not None:
                    where = (*base, "implementations", j, "finding")
                    check_text(area.id, where, implementation.finding)
    return problems


# --------------------------------------------------------------------------- provenance


def provenance_problems(kb: KnowledgeBase) -> list[Problem]:
    """``bib/provenance.yaml`` speaks of the bibliography as it is: every key it names is a bib
    entry, every field it records a source for is set in that entry, and an entry listed as
    unidentified has no filled authors. (Its sources are http(s) URLs and its dates ISO dates:
    the model checks those.)"""
    provenance = kb.provenance
    if provenance is None:
        return []
    problems: list[Problem] = []
    for key, fields in provenance.filled.items():
        entry = kb.entries.get(key)
        if entry is None:
            problems.append(
                located(
                    kb, PROVENANCE_ID, ("filled", key), f"filled: bib key '{key}' is not in bib/"
                )
            )
            continue
        for name in fields:
            if not entry.fields.get(name, "").strip():
                message = f"filled: {key}: field '{name}' is not set in its bib entry"
                problems.append(located(kb, PROVENANCE_ID, ("filled", key, name), message))
    for key in provenance.unidentified:
        loc: Location = ("unidentified", key)
        if key not in kb.entries:
            message = f"unidentified: bib key '{key}' is not in bib/"
        elif "author" in provenance.filled.get(key, {}):
            message = f"unidentified: {key} has filled authors; remove it from one of the lists"
        else:
            continue
        problems.append(located(kb, PROVENANCE_ID, loc, message))
    return problems


# --------------------------------------------------------------------------- reported results

REPORTED_SETTINGS_ID = "reported:settings"


def reported_problems(kb: KnowledgeBase) -> list[Problem]:
    """``benchmarks/reported/``: every bib key is an entry, every implementation id one of
    ours, every setting defined once in the settings file, and no (method, setting, source)
    twice; a file of numbers without the settings file is an error."""
    if not kb.reported and kb.reported_settings is None:
        return []
    problems: list[Problem] = []
    settings = kb.reported_settings.settings if kb.reported_settings is not None else []
    seen_settings: set[str] = set()
    for index, setting in enumerate(settings):
        if setting.id in seen_settings:
            message = f"setting '{setting.id}' is defined twice"
            problems.append(located(kb, REPORTED_SETTINGS_ID, ("settings", index, "id"), message))
        seen_settings.add(setting.id)
    implementations = {implementation.id for _, _, implementation in kb.implementations()}
    for file_id, reported in kb.reported.items():
        if kb.reported_settings is None:
            message = "settings.yaml is missing: the settings named here are defined nowhere"
            problems.append(located(kb, file_id, ("source",), message))
        if reported.source.reported_by not in kb.entries:
            key = reported.source.reported_by
            message = f"source.reported_by: bib key '{key}' is not in bib/"
            problems.append(located(kb, file_id, ("source", "reported_by"), message))
        for setting_id in reported.baselines:
            if kb.reported_settings is not None and setting_id not in seen_settings:
                message = f"baselines: setting '{setting_id}' is not in settings.yaml"
                problems.append(located(kb, file_id, ("baselines", setting_id), message))
        seen: dict[tuple[str, str], int] = {}
        for index, result in enumerate(reported.results):
            loc: Location = ("results", index)
            if result.paper not in kb.entries:
                message = f"results: bib key '{result.paper}' is not in bib/"
                problems.append(located(kb, file_id, (*loc, "paper"), message))
            if result.implementation and result.implementation not in implementations:
                message = f"results: '{result.implementation}' is not an implementation id"
                problems.append(located(kb, file_id, (*loc, "implementation"), message))
            if kb.reported_settings is not None and result.setting not in seen_settings:
                message = f"results: setting '{result.setting}' is not in settings.yaml"
                problems.append(located(kb, file_id, (*loc, "setting"), message))
            method = (result.implementation or result.paper, result.setting)
            if method in seen:
                message = (
                    f"results: {method[0]} in {method[1]} is listed twice in this source "
                    f"(first as result {seen[method] + 1})"
                )
                problems.append(located(kb, file_id, loc, message))
            seen.setdefault(method, index)
    return problems


def data_problems(kb: KnowledgeBase) -> list[Problem]:
    """Every check that looks only at the parsed data."""
    problems = unique_id_problems(kb)
    problems += survey_problems(kb)
    problems += reference_problems(kb)
    problems += see_also_problems(kb)
    problems += taxonomy_text_problems(kb)
    problems += provenance_problems(kb)
    problems += reported_problems(kb)
    for entry in kb.entries.values():
        problems += entry_problems(entry)
    problems += duplicate_problems(kb.entries.values())
    return problems
