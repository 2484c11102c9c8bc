"""Exports of the knowledge base (``kdatlas export``) and the JSON Schemas (``kdatlas schema``).

The JSON export holds the whole tree (areas -> leaves -> topics, with the
implementations of each leaf) and every paper with its display fields (LaTeX
decoded) and where it is filed; ``kdatlas/schemas/export.schema.json`` describes
it. The BibTeX export is the canonical text of all entries or of one leaf's.
The taxonomy schema is generated from the pydantic models, for editors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdatlas import __version__
from kdatlas.bibliography import (
    BibEntry,
    arxiv_id,
    author_names,
    display,
    doi,
    entry_to_bibtex,
    render_bib,
)
from kdatlas.loader import KnowledgeBase
from kdatlas.models import Area, Leaf, Provenance, ReportedFile, ReportedSettings, Surveys

EXPORT_FORMAT_VERSION = 1
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
TAXONOMY_SCHEMA_PATH = SCHEMA_DIR / "taxonomy.schema.json"
EXPORT_SCHEMA_PATH = SCHEMA_DIR / "export.schema.json"
SURVEYS_SCHEMA_PATH = SCHEMA_DIR / "surveys.schema.json"
PROVENANCE_SCHEMA_PATH = SCHEMA_DIR / "provenance.schema.json"
REPORTED_SCHEMA_PATH = SCHEMA_DIR / "reported.schema.json"
REPORTED_SETTINGS_SCHEMA_PATH = SCHEMA_DIR / "reported-settings.schema.json"
VENUE_FIELDS = ("booktitle", "journal", "howpublished")


# --------------------------------------------------------------------------- JSON


def _leaf_record(leaf: Leaf) -> dict[str, Any]:
    return {
        "id": leaf.id,
        "title": leaf.title,
        "summary": leaf.summary,
        "notebook": leaf.notebook,
        "papers": list(leaf.papers),
        "topics": [
            {"id": t.id, "title": t.title, "summary": t.summary, "papers": list(t.papers)}
            for t in leaf.topics
        ],
        "implementations": [
            {"id": i.id, "title": i.title, "object": i.object, "papers": list(i.papers)}
            for i in leaf.implementations
        ],
        # Ids of implementations filed under other leaves, shown here too ("see also").
        "see_also": list(leaf.see_also),
    }


def _area_record(area: Area) -> dict[str, Any]:
    return {
        "id": area.id,
        "title": area.title,
        "summary": area.summary,
        "leaves": [_leaf_record(leaf) for leaf in area.leaves],
    }


def _optional(entry: BibEntry, name: str) -> str | None:
    value = entry.fields.get(name, "").strip()
    return value or None


def paper_record(kb: KnowledgeBase, entry: BibEntry) -> dict[str, Any]:
    """One paper as the export (and the site) shows it."""
    year = entry.fields.get("year", "").strip()
    venue = next((entry.fields[name] for name in VENUE_FIELDS if entry.fields.get(name)), None)
    return {
        "key": entry.key,
        "type": entry.entry_type,
        "title": display(entry.fields.get("title", "")),
        "authors": author_names(entry),
        "year": int(year) if year.isdigit() else None,
        "venue": display(venue) if venue else None,
        "url": _optional(entry, "url"),
        "code": _optional(entry, "code"),
        "arxiv": arxiv_id(entry),
        "doi": doi(entry),
        "memberships": [
            {"area": m.area, "leaf": m.leaf, "topic": m.topic} for m in kb.memberships(entry.key)
        ],
        "bibtex": entry_to_bibtex(entry),
    }


def export_data(kb: KnowledgeBase) -> dict[str, Any]:
    """The whole knowledge base as JSON-ready data (no timestamps: the same input, the same output)."""
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "generator": f"kdatlas {__version__}",
        "areas": [_area_record(area) for area in kb.areas],
        "papers": [paper_record(kb, kb.entries[key]) for key in sorted(kb.entries)],
    }


def export_json(kb: KnowledgeBase) -> str:
    return json.dumps(export_data(kb), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- BibTeX


def leaf_keys(kb: KnowledgeBase, leaf_path: str) -> list[str]:
    """Bib keys of ``area/leaf``: its papers, its topics' papers, its implementations' papers."""
    area_id, _, leaf_id = leaf_path.strip("/").partition("/")
    leaf = kb.leaf(area_id, leaf_id)
    keys = dict.fromkeys(leaf.all_papers())
    for implementation in leaf.implementations:
        keys.update(dict.fromkeys(implementation.papers))
    return list(keys)


def export_bib(kb: KnowledgeBase, leaf_path: str | None = None) -> str:
    """Canonical BibTeX of every entry, or of one leaf's (``"sources/logit"``)."""
    if leaf_path is None:
        return render_bib(kb.entries.values())
    return render_bib(kb.entries[key] for key in leaf_keys(kb, leaf_path) if key in kb.entries)


# --------------------------------------------------------------------------- schemas


def taxonomy_json_schema() -> dict[str, Any]:
    """The JSON Schema of one taxonomy file, generated from :class:`kdatlas.models.Area`."""
    schema = Area.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "KD Atlas taxonomy area file (taxonomy/<area>.yaml)",
    }


def surveys_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``taxonomy/surveys.yaml``, generated from :class:`kdatlas.models.Surveys`."""
    schema = Surveys.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "KD Atlas surveys file (taxonomy/surveys.yaml)",
    }


def provenance_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``bib/provenance.yaml``, generated from :class:`kdatlas.models.Provenance`."""
    schema = Provenance.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "KD Atlas provenance file (bib/provenance.yaml)",
    }


def reported_json_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON Schemas of ``benchmarks/reported/<source>.yaml`` and of its ``settings.yaml``."""
    head = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    return (
        {**head, **ReportedFile.model_json_schema(), "title": "KD Atlas reported results file"},
        {
            **head,
            **ReportedSettings.model_json_schema(),
            "title": "KD Atlas reported settings file (benchmarks/reported/settings.yaml)",
        },
    )


def generated_schemas() -> dict[Path, dict[str, Any]]:
    """Every schema ``kdatlas schema`` writes, by its committed path."""
    return {
        TAXONOMY_SCHEMA_PATH: taxonomy_json_schema(),
        SURVEYS_SCHEMA_PATH: surveys_json_schema(),
        PROVENANCE_SCHEMA_PATH: provenance_json_schema(),
        REPORTED_SCHEMA_PATH: reported_json_schemas()[0],
        REPORTED_SETTINGS_SCHEMA_PATH: reported_json_schemas()[1],
    }


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def export_json_schema() -> dict[str, Any]:
    return json.loads(EXPORT_SCHEMA_PATH.read_text(encoding="utf-8"))
