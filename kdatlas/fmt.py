"""The canonical form of the taxonomy YAML and the BibTeX files (``kdatlas fmt``).

YAML: ruamel.yaml round trip, so comments stay; 2-space indentation with list
items indented under their key; block style everywhere (one item a line, so
diffs are one line a change); keys in the order the models declare them; the
``yaml-language-server`` schema comment first. BibTeX: whatever
:func:`kdatlas.bibliography.render_bib` writes (bibtexparser's writer). Formatting is
idempotent, and a file that does not parse, or holds anything but entries (free text,
comments, ``@string``), is reported with ``file:line``, never rewritten: nothing is dropped.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from kdatlas.atomic import replace_files
from kdatlas.bibliography import read_bib_file, render_bib
from kdatlas.loader import BIB_DIR, TAXONOMY_DIR, YAML_SUFFIXES, read_yaml, round_trip_yaml
from kdatlas.models import SURVEYS_ID, Area, Implementation, Leaf, Surveys, Topic
from kdatlas.problems import Problem, Severity

SCHEMA_COMMENT = "# yaml-language-server: $schema=../kdatlas/schemas/taxonomy.schema.json"
SURVEYS_SCHEMA_COMMENT = "# yaml-language-server: $schema=../kdatlas/schemas/surveys.schema.json"
# Which model describes the items of each list key, to order their keys.
CHILD_MODELS: dict[str, type[BaseModel]] = {
    "leaves": Leaf,
    "topics": Topic,
    "implementations": Implementation,
}


def _order_keys(node: CommentedMap, model: type[BaseModel]) -> None:
    """Reorder ``node`` in place: the model's fields first, in declaration order, then the rest."""
    declared = [name for name in model.model_fields if name in node]
    wanted = declared + [key for key in node if key not in model.model_fields]
    if list(node) != wanted:
        for key in wanted:
            node.move_to_end(key)


def _canonicalise(node: Any, model: type[BaseModel] | None) -> None:
    if isinstance(node, CommentedMap):
        node.fa.set_block_style()
        if model is not None:
            _order_keys(node, model)
        for key, value in node.items():
            _canonicalise(value, CHILD_MODELS.get(key) if model is not None else None)
    elif isinstance(node, CommentedSeq):
        node.fa.set_block_style()
        for item in node:
            _canonicalise(item, model)


def _with_schema_comment(text: str, comment: str) -> str:
    first, newline, rest = text.partition("\n")
    if first == comment:
        return text
    if first.startswith("# yaml-language-server:"):
        return comment + newline + rest
    return f"{comment}\n{text}"


def dump_yaml(
    document: Any, model: type[BaseModel] = Area, schema_comment: str = SCHEMA_COMMENT
) -> str:
    """Canonical text of a parsed taxonomy document (the document is changed in place): an
    area file by default, ``taxonomy/surveys.yaml`` with ``model=Surveys``."""
    _canonicalise(document, model)
    stream = io.StringIO()
    round_trip_yaml().dump(document, stream)
    return _with_schema_comment(stream.getvalue(), schema_comment)


def format_yaml(path: Path, display_path: Path | str) -> tuple[str | None, list[Problem]]:
    """The canonical text of one taxonomy file, or None and the problems if it does not parse."""
    document, problems = read_yaml(path, display_path)
    if problems:
        return None, problems
    surveys = Path(path).stem == SURVEYS_ID
    if not isinstance(document, CommentedMap):
        what = "surveys" if surveys else "area"
        return None, [Problem(display_path, 1, f"expected a mapping of {what} keys; not formatted")]
    if surveys:
        return dump_yaml(document, Surveys, SURVEYS_SCHEMA_COMMENT), []
    return dump_yaml(document), []


def format_bib(path: Path, display_path: Path | str) -> tuple[str | None, list[Problem]]:
    """The canonical text of one BibTeX file, or None and the problems if it does not parse."""
    entries, problems = read_bib_file(path, display_path)
    # Syntax errors, and anything that is not an entry (free text, comments, macros): the
    # canonical form holds entries only, so such a file is reported, never rewritten.
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if errors:
        return None, errors
    return render_bib(entries), []


@dataclass
class FormatReport:
    """What ``kdatlas fmt`` found: files that (would) change and files it could not parse."""

    changed: list[Path] = field(default_factory=list)  # root-relative
    problems: list[Problem] = field(default_factory=list)


def source_files(root: Path) -> list[Path]:
    """The files ``fmt`` owns: taxonomy YAML and bib/*.bib, sorted."""
    yaml_files = [
        p for p in (root / TAXONOMY_DIR).glob("*") if p.suffix in YAML_SUFFIXES and p.is_file()
    ]
    bib_files = [p for p in (root / BIB_DIR).glob("*.bib") if p.is_file()]
    return sorted(yaml_files) + sorted(bib_files)


def format_tree(root: Path, *, write: bool = True) -> FormatReport:
    """Format every source file under ``root``; with ``write=False`` only report what would change."""
    root = Path(root).resolve()
    report = FormatReport()
    new_texts: dict[Path, str] = {}
    for path in source_files(root):
        display = path.relative_to(root)
        formatter = format_bib if path.suffix == ".bib" else format_yaml
        text, problems = formatter(path, display)
        report.problems.extend(problems)
        if text is not None and text != path.read_bytes().decode("utf-8", errors="replace"):
            report.changed.append(display)
            new_texts[path] = text
    if write and new_texts:
        replace_files(new_texts)
    return report
