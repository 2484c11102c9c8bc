"""Counts over the knowledge base (``kdatlas stats``): papers per area, leaf, topic and year,
implementations, notebooks, the lists of ``taxonomy/surveys.yaml`` (the survey followed, the
papers its authors ask to be cited, the earlier surveys), and how many entries have authors,
code links and arXiv ids.

``papers`` counts memberships (a paper filed in two leaves counts twice);
``unique_papers`` counts distinct bib keys filed in the taxonomy. Per-year
counts and coverage are over the bibliography's entries.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kdatlas.bibliography import arxiv_id
from kdatlas.loader import KnowledgeBase
from kdatlas.models import Leaf


def _share(count: int, total: int) -> dict[str, Any]:
    return {
        "count": count,
        "total": total,
        "percent": round(100 * count / total, 1) if total else 0.0,
    }


def _leaf_stats(kb: KnowledgeBase, leaf: Leaf) -> dict[str, Any]:
    return {
        "id": leaf.id,
        "title": leaf.title,
        "papers": len(leaf.all_papers()),
        "topics": [
            {"id": topic.id, "title": topic.title, "papers": len(dict.fromkeys(topic.papers))}
            for topic in leaf.topics
        ],
        "implementations": len(leaf.implementations),
        "notebook": leaf.notebook is not None and (kb.root / leaf.notebook).is_file(),
    }


def _survey_stats(kb: KnowledgeBase) -> dict[str, Any]:
    """The survey followed (its key, or None) and the lengths of its two lists."""
    surveys = kb.surveys
    return {
        "survey": surveys.survey if surveys else None,
        "cite": len(dict.fromkeys(surveys.cite)) if surveys else 0,
        "existing": len(dict.fromkeys(surveys.existing)) if surveys else 0,
    }


def compute_stats(kb: KnowledgeBase) -> dict[str, Any]:
    """Every figure ``kdatlas stats`` shows, as plain JSON-ready data."""
    areas = []
    filed: set[str] = set()
    memberships = 0
    for area in kb.areas:
        leaves = [_leaf_stats(kb, leaf) for leaf in area.leaves]
        area_keys = {key for leaf in area.leaves for key in leaf.all_papers()}
        filed |= area_keys
        area_memberships = sum(leaf["papers"] for leaf in leaves)
        memberships += area_memberships
        areas.append(
            {
                "id": area.id,
                "title": area.title,
                "papers": area_memberships,
                "unique_papers": len(area_keys),
                "leaves": leaves,
            }
        )
    entries = list(kb.entries.values())
    years = Counter(entry.fields.get("year", "").strip() or "unknown" for entry in entries)
    without_authors = sorted(e.key for e in entries if not e.fields.get("author", "").strip())
    total = len(entries)
    return {
        "papers": memberships,
        "unique_papers": len(filed),
        "bib_entries": total,
        "areas": areas,
        "years": dict(sorted(years.items())),
        "implementations": sum(1 for _ in kb.implementations()),
        "notebooks": sum(leaf["notebook"] for area in areas for leaf in area["leaves"]),
        "further_notebooks": len(
            {
                i.notebook
                for _a, _l, i in kb.implementations()
                if i.notebook and (kb.root / i.notebook).is_file()
            }
        ),
        "leaves": sum(len(area["leaves"]) for area in areas),
        "surveys": _survey_stats(kb),
        "coverage": {
            "authors": _share(total - len(without_authors), total),
            "code": _share(sum(bool(e.fields.get("code", "").strip()) for e in entries), total),
            "arxiv": _share(sum(arxiv_id(e) is not None for e in entries), total),
        },
        "missing_authors": {"count": len(without_authors), "keys": without_authors},
    }
