"""Load the knowledge base (``taxonomy/*.yaml``, ``bib/*.bib``, ``bib/provenance.yaml``) into
typed objects.

Each file is parsed once. YAML is read with ruamel.yaml's round-trip loader so
every problem can name the line it comes from: a pydantic error location such
as ``("leaves", 2, "topics", 0, "id")`` is walked through the parsed nodes,
whose ``.lc`` attributes carry their line numbers.

``load_with_problems`` returns what the data itself says is wrong (syntax,
schema, file layout, and the data checks of :mod:`kdatlas.validation`: ids,
references, bibliography fields); the checks that look outside the data
(notebooks, implementation files and tests, imports) live in
:mod:`kdatlas.checks` and are run by ``kdatlas check``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.reader import ReaderError

from kdatlas.bibliography import BibEntry, read_bib_dir
from kdatlas.knowledge_base import BIB_DIR as BIB_DIR
from kdatlas.knowledge_base import TAXONOMY_DIR as TAXONOMY_DIR
from kdatlas.knowledge_base import KnowledgeBase as KnowledgeBase
from kdatlas.knowledge_base import Location as Location
from kdatlas.knowledge_base import Membership as Membership
from kdatlas.knowledge_base import yaml_line as yaml_line
from kdatlas.limits import MAX_NESTING_DEPTH, forbidden_line, read_bounded, too_long
from kdatlas.models import (
    AREA_IDS,
    PROVENANCE_ID,
    REPORTED_DIR,
    REPORTED_SETTINGS_FILE,
    SURVEYS_ID,
    Area,
    Provenance,
    ReportedFile,
    ReportedSettings,
    Surveys,
)
from kdatlas.problems import KnowledgeBaseError, Problem, Severity
from kdatlas.validation import data_problems

M = TypeVar("M", Area, Surveys, Provenance, ReportedFile, ReportedSettings)

# ``X as X`` above: the knowledge base types are re-exported, callers import them from here.
YAML_SUFFIXES = (".yaml", ".yml")
PROVENANCE_FILE = "provenance.yaml"  # in bib/: where filled bibliography values came from


# --------------------------------------------------------------------------- root


def is_root(path: Path) -> bool:
    return (path / TAXONOMY_DIR).is_dir() and (path / BIB_DIR).is_dir()


def find_root(start: Path | None = None) -> Path | None:
    """``start`` (default: the current directory) or its nearest parent holding taxonomy/ and bib/."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if is_root(candidate):
            return candidate
    return None


# --------------------------------------------------------------------------- YAML


def round_trip_yaml() -> YAML:
    """The one YAML reader/writer: round-trip (comments kept), 2-space indent, no re-wrapping."""
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = False
    return yaml


def read_yaml(path: Path, display_path: Path | str) -> tuple[Any, list[Problem]]:
    """Parse one taxonomy file within the limits of :mod:`kdatlas.limits`.

    Every reader of taxonomy files (check, fmt, add, export, the site) comes here. The
    file is read no further than its size limit; its events are then scanned once
    (linear in its size) for what could make composing it unbounded (anchors, aliases,
    tags, deep nesting, huge scalars) before ruamel builds anything. A problem is
    returned at its line, never raised.
    """
    text, problems = read_bounded(path, display_path)
    if text is None:
        return None, problems
    if found := forbidden_line(text):
        line, reason = found
        return None, [Problem(display_path, line, f"the file {reason}")]
    try:
        if problem := _unbounded_structure(text, display_path):
            return None, [problem]
        return round_trip_yaml().load(text), []
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        what = error.problem or error.context or "invalid YAML"
        return None, [Problem(display_path, line, f"YAML syntax error: {_one_line(what)}")]
    except ReaderError as error:  # a character YAML does not allow
        line = text.count("\n", 0, error.position) + 1
        return None, [Problem(display_path, line, f"YAML error: {_one_line(error.reason)}")]
    except YAMLError as error:
        return None, [Problem(display_path, None, f"YAML error: {_one_line(str(error))}")]
    except ValueError as error:  # a plain value shaped like a date that is none (2026-13-40)
        line, value = _impossible_date(text)
        what = f"{value!r} is not a valid date" if value else "a value is not a valid date"
        return None, [Problem(display_path, line, f"YAML error: {what} ({_one_line(str(error))})")]


_DATE_SHAPED = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?![\d-])")


def _impossible_date(text: str) -> tuple[int | None, str | None]:
    """The line and value of the first plain scalar YAML would read as an impossible date."""
    for event in YAML(typ="rt").parse(text):
        if not isinstance(event, ScalarEvent) or event.style is not None:
            continue
        if match := _DATE_SHAPED.match(event.value):
            try:
                date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                line = event.start_mark.line + 1 if event.start_mark is not None else None
                return line, event.value
    return None, None


def _unbounded_structure(text: str, display_path: Path | str) -> Problem | None:
    """The first anchor, alias, tag, collection key, too deep or too long node, or None."""
    # Each open collection: True for a mapping expecting a key, False for one expecting a
    # value, None for a sequence.
    open_collections: list[bool | None] = []
    for event in YAML(typ="rt").parse(text):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, CollectionEndEvent):
            open_collections.pop()
            continue
        if not isinstance(event, NodeEvent):
            continue
        if isinstance(event, AliasEvent) or event.anchor is not None:
            return Problem(display_path, line, "YAML anchors and aliases are not allowed")
        if getattr(event, "tag", None) is not None:
            return Problem(display_path, line, f"YAML tags are not allowed ({event.tag})")
        starts = isinstance(event, CollectionStartEvent)
        if open_collections and open_collections[-1] is not None:
            if open_collections[-1] and starts:
                return Problem(display_path, line, "a mapping key must be a plain value")
            open_collections[-1] = not open_collections[-1]
        if starts:
            open_collections.append(True if isinstance(event, MappingStartEvent) else None)
            if len(open_collections) > MAX_NESTING_DEPTH:
                return Problem(
                    display_path, line, f"nested deeper than the limit of {MAX_NESTING_DEPTH}"
                )
        elif isinstance(event, ScalarEvent) and (reason := too_long(event.value)):
            return Problem(display_path, line, f"a value {reason}")
    return None


def plain(value: Any) -> Any:
    """ruamel's commented containers and scalar strings as plain dicts, lists and strs."""
    if isinstance(value, Mapping):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _pydantic_message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    loc = ".".join(str(part) for part in error.get("loc", ()))
    if kind == "extra_forbidden":
        return f"unknown key '{error['loc'][-1]}'"
    if kind == "missing":
        return f"missing required key '{error['loc'][-1]}'"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{loc}: {_one_line(message)}" if loc else _one_line(message)


def parse_model(
    path: Path, display_path: Path | str, model: type[M], what: str
) -> tuple[M | None, Any, list[Problem]]:
    """Parse one taxonomy file and validate it against ``model``: the model instance, the
    ruamel document, the problems (each at its line). ``what`` names the keys in messages."""
    document, problems = read_yaml(path, display_path)
    if problems:
        return None, None, problems
    if not isinstance(document, CommentedMap):
        found = "an empty file" if document is None else f"a {type(document).__name__}"
        return (
            None,
            None,
            [Problem(display_path, 1, f"expected a mapping of {what} keys, found {found}")],
        )
    try:
        parsed = model.model_validate(plain(document))
    except ValidationError as error:
        problems = [
            Problem(
                display_path, yaml_line(document, tuple(detail["loc"])), _pydantic_message(detail)
            )
            for detail in error.errors()
        ]
        return None, document, problems
    return parsed, document, []


def parse_area(path: Path, display_path: Path | str) -> tuple[Area | None, Any, list[Problem]]:
    """Parse and validate one area file: the model, the ruamel document, the problems."""
    return parse_model(path, display_path, Area, "area")


def parse_surveys(
    path: Path, display_path: Path | str
) -> tuple[Surveys | None, Any, list[Problem]]:
    """Parse and validate ``taxonomy/surveys.yaml``."""
    return parse_model(path, display_path, Surveys, "surveys")


def parse_provenance(
    path: Path, display_path: Path | str
) -> tuple[Provenance | None, Any, list[Problem]]:
    """Parse and validate ``bib/provenance.yaml``."""
    return parse_model(path, display_path, Provenance, "provenance")


# --------------------------------------------------------------------------- loading


@dataclasses.dataclass
class _Taxonomy:
    """What the taxonomy files hold, before the bibliography is joined to them."""

    areas: list[Area]
    paths: dict[str, Path]  # area id or SURVEYS_ID -> root-relative file
    documents: dict[str, Any]  # area id or SURVEYS_ID -> ruamel document
    surveys: Surveys | None
    problems: list[Problem]


def _load_taxonomy(root: Path) -> _Taxonomy:
    """Parse the area files and the optional ``surveys.yaml``; the layout must be exactly
    ``taxonomy/<id>.yaml`` for the five area ids, plus ``taxonomy/surveys.yaml``."""
    taxonomy_dir = root / TAXONOMY_DIR
    problems: list[Problem] = []
    parsed: dict[str, Area] = {}
    paths: dict[str, Path] = {}
    documents: dict[str, Any] = {}
    surveys: Surveys | None = None
    files = sorted(p for p in taxonomy_dir.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())
    for path in files:
        display = path.relative_to(root)
        if path.suffix == ".yaml" and path.stem == SURVEYS_ID:
            surveys, document, file_problems = parse_surveys(path, display)
            problems.extend(file_problems)
            if document is not None:
                documents[SURVEYS_ID] = document
                paths[SURVEYS_ID] = display
            continue
        if path.suffix != ".yaml" or path.stem not in AREA_IDS:
            expected = ", ".join(f"{area}.yaml" for area in (*AREA_IDS, SURVEYS_ID))
            problems.append(
                Problem(display, None, f"unexpected taxonomy file; the files are {expected}")
            )
            continue
        area, document, file_problems = parse_area(path, display)
        problems.extend(file_problems)
        if document is not None:
            documents[path.stem] = document
            paths[path.stem] = display
        if area is None:
            continue
        if area.id != path.stem:
            line = yaml_line(document, ("id",))
            problems.append(
                Problem(
                    display, line, f"area id '{area.id}' must equal the file name '{path.stem}'"
                )
            )
            continue
        parsed[area.id] = area
    for area_id in AREA_IDS:
        if not (taxonomy_dir / f"{area_id}.yaml").is_file():
            problems.append(
                Problem(Path(TAXONOMY_DIR) / f"{area_id}.yaml", None, "missing area file")
            )
    areas = [parsed[area_id] for area_id in AREA_IDS if area_id in parsed]
    return _Taxonomy(areas, paths, documents, surveys, problems)


def relative_path(path: Path | str, root: Path) -> Path | str:
    """``path`` relative to ``root`` when it lies under it; otherwise unchanged."""
    candidate = Path(path)
    if candidate.is_absolute() and candidate.is_relative_to(root):
        return candidate.relative_to(root)
    return path


def relative_problem(problem: Problem, root: Path) -> Problem:
    """The same problem with its path made relative to the repository root where possible."""
    return dataclasses.replace(problem, path=relative_path(problem.path, root))


def read_bibliography(root: Path) -> tuple[list[BibEntry], list[Problem]]:
    """Every entry of ``bib/*.bib`` and the parse problems, with root-relative paths."""
    bib_entries, bib_problems = read_bib_dir(root / BIB_DIR)
    entries = [
        entry
        if entry.path is None
        else dataclasses.replace(entry, path=relative_path(entry.path, root))
        for entry in bib_entries
    ]
    return entries, [relative_problem(p, root) for p in bib_problems]


def _load_bibliography(root: Path) -> tuple[dict[str, BibEntry], list[Problem]]:
    bib_entries, problems = read_bibliography(root)
    entries: dict[str, BibEntry] = {}
    for entry in bib_entries:
        # The first definition wins; the bibliography module reports duplicate keys.
        entries.setdefault(entry.key, entry)
    return entries, problems


def _load_provenance(root: Path) -> tuple[Provenance | None, Path, Any, list[Problem]]:
    """``bib/provenance.yaml`` if present: the model, its root-relative path, the ruamel
    document and the problems (none, and no model, without the file)."""
    display = Path(BIB_DIR) / PROVENANCE_FILE
    path = root / display
    if not path.is_file():
        return None, display, None, []
    provenance, document, problems = parse_provenance(path, display)
    return provenance, display, document, problems


def _load_reported(
    root: Path,
) -> tuple[dict[str, ReportedFile], ReportedSettings | None, dict[str, Any], list[Problem]]:
    """``benchmarks/reported/*.yaml`` if present: the source files by id
    (``reported:<stem>``), the settings file, ``{id: (path, document)}`` and the problems."""
    folder = root / REPORTED_DIR
    files: dict[str, ReportedFile] = {}
    settings: ReportedSettings | None = None
    located: dict[str, Any] = {}
    problems: list[Problem] = []
    if not folder.is_dir():
        return files, settings, located, problems
    for path in sorted(folder.glob("*.yaml")):
        display = Path(REPORTED_DIR) / path.name
        file_id = f"reported:{path.stem}"
        if path.name == REPORTED_SETTINGS_FILE:
            parsed, document, found = parse_model(path, display, ReportedSettings, "settings")
            settings = parsed
        else:
            parsed, document, found = parse_model(path, display, ReportedFile, "reported")
            if parsed is not None:
                files[file_id] = parsed
        problems.extend(found)
        if document is not None:
            located[file_id] = (display, document)
    return files, settings, located, problems


def load_with_problems(root: Path) -> tuple[KnowledgeBase | None, list[Problem]]:
    """Load everything that parses and report every problem the data holds.

    Returns ``None`` for the knowledge base only when ``root`` holds no
    ``taxonomy/`` and ``bib/``. Problems are sorted by file and line; paths are
    relative to ``root``. Notebook files and implementation imports are not
    looked at here (see :func:`kdatlas.checks.check`).
    """
    root = Path(root).resolve()
    if not is_root(root):
        return None, [
            Problem(root, None, f"not a KD Atlas root: no {TAXONOMY_DIR}/ and {BIB_DIR}/")
        ]
    taxonomy = _load_taxonomy(root)
    problems = taxonomy.problems
    entries, bib_problems = _load_bibliography(root)
    problems.extend(bib_problems)
    provenance, provenance_path, provenance_document, provenance_problems = _load_provenance(root)
    problems.extend(provenance_problems)
    if provenance_document is not None:
        taxonomy.documents[PROVENANCE_ID] = provenance_document
        taxonomy.paths[PROVENANCE_ID] = provenance_path
    reported, reported_settings, reported_documents, reported_problems = _load_reported(root)
    problems.extend(reported_problems)
    for file_id, (display, document) in reported_documents.items():
        taxonomy.documents[file_id] = document
        taxonomy.paths[file_id] = display
    kb = KnowledgeBase(
        root=root,
        areas=taxonomy.areas,
        entries=entries,
        area_paths=taxonomy.paths,
        documents=taxonomy.documents,
        surveys=taxonomy.surveys,
        provenance=provenance,
        reported=reported,
        reported_settings=reported_settings,
    )
    problems.extend(data_problems(kb))
    return kb, sort_problems(problems)


def load(root: Path) -> KnowledgeBase:
    """Load the knowledge base; raise :class:`KnowledgeBaseError` on any error-level problem."""
    kb, problems = load_with_problems(root)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if kb is None or errors:
        raise KnowledgeBaseError(errors or problems)
    return kb


def sort_problems(problems: Sequence[Problem]) -> list[Problem]:
    """By file, then line (unknown lines first), without exact repeats."""
    unique = dict.fromkeys(problems)
    return sorted(
        unique, key=lambda p: (str(p.path), p.line or 0, p.severity != "error", p.message)
    )
