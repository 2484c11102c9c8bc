"""The loaded knowledge base: areas, bib entries and the source lines of both.

Both :mod:`kdatlas.loader` (which builds a :class:`KnowledgeBase`) and the checks
(:mod:`kdatlas.validation`, :mod:`kdatlas.checks`, which read one) import this
module; it imports neither, so the tool's modules form no import cycle.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from kdatlas.bibliography import BibEntry
from kdatlas.models import (
    Area,
    Implementation,
    Leaf,
    Provenance,
    ReportedFile,
    ReportedSettings,
    Surveys,
)

TAXONOMY_DIR = "taxonomy"
BIB_DIR = "bib"

# A pydantic location: field names and list indices from the top of a file.
Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Membership:
    """Where one paper is filed: an area, a leaf and (optionally) a topic of that leaf."""

    area: str
    leaf: str
    topic: str | None


@dataclass
class KnowledgeBase:
    """The loaded taxonomy and bibliography, with what is needed to point at source lines."""

    root: Path
    areas: list[Area]  # ordered as models.AREA_IDS
    entries: dict[str, BibEntry]  # bib key -> entry
    area_paths: dict[str, Path] = field(default_factory=dict)  # area id -> file, root-relative
    documents: dict[str, Any] = field(default_factory=dict)  # area id -> ruamel document
    # taxonomy/surveys.yaml (optional): the survey followed, the papers to cite, earlier surveys.
    # Its path and document sit in area_paths/documents under the key SURVEYS_ID.
    surveys: Surveys | None = None
    # bib/provenance.yaml (optional): where filled bibliography values came from. Its path and
    # document sit in area_paths/documents under the key PROVENANCE_ID.
    provenance: Provenance | None = None
    # benchmarks/reported/ (optional): numbers reported by papers and READMEs, by file id
    # ("reported:<stem>"; "reported:settings" is the settings file). Paths and documents sit
    # in area_paths/documents under the same ids.
    reported: dict[str, ReportedFile] = field(default_factory=dict)
    reported_settings: ReportedSettings | None = None
    _memberships: dict[str, list[Membership]] | None = field(default=None, repr=False)

    def leaves(self) -> Iterator[tuple[Area, Leaf]]:
        for area in self.areas:
            for leaf in area.leaves:
                yield area, leaf

    def implementations(self) -> Iterator[tuple[Area, Leaf, Implementation]]:
        """Every implementation once, under its home leaf (``see_also`` lists are not followed)."""
        for area, leaf in self.leaves():
            for implementation in leaf.implementations:
                yield area, leaf, implementation

    def implementation_home(self, implementation_id: str) -> tuple[Area, Leaf, Implementation]:
        """The leaf an implementation is filed under (the first one, should an id repeat)."""
        for area, leaf, implementation in self.implementations():
            if implementation.id == implementation_id:
                return area, leaf, implementation
        raise KeyError(f"no implementation '{implementation_id}'")

    def see_also(self, leaf: Leaf) -> list[tuple[Area, Leaf, Implementation]]:
        """The implementations of other leaves that ``leaf`` lists under ``see_also``, with their
        home; ids that name no implementation are left out (the checks report them)."""
        found = []
        for implementation_id in leaf.see_also:
            try:
                found.append(self.implementation_home(implementation_id))
            except KeyError:
                continue
        return found

    def memberships(self, key: str) -> list[Membership]:
        """Every place the paper ``key`` is filed (leaf papers and topic papers)."""
        if self._memberships is None:
            self._memberships = _index_memberships(self.areas)
        return list(self._memberships.get(key, []))

    def leaf(self, area_id: str, leaf_id: str) -> Leaf:
        for area, leaf in self.leaves():
            if area.id == area_id and leaf.id == leaf_id:
                return leaf
        raise KeyError(f"no leaf {area_id}/{leaf_id}")

    def location(self, area_id: str, loc: Location) -> tuple[Path, int | None]:
        """The file and 1-based line of ``loc`` inside the area file ``area_id`` (or, for
        ``SURVEYS_ID``, inside ``taxonomy/surveys.yaml``; for ``PROVENANCE_ID``, inside
        ``bib/provenance.yaml``)."""
        path = self.area_paths.get(area_id, Path(TAXONOMY_DIR) / f"{area_id}.yaml")
        document = self.documents.get(area_id)
        return path, (yaml_line(document, loc) if document is not None else None)

    def survey_keys(self) -> list[str]:
        """The bib keys of ``taxonomy/surveys.yaml`` (none without the file)."""
        return self.surveys.all_keys() if self.surveys is not None else []

    def referenced_keys(self) -> set[str]:
        """Every bib key the taxonomy mentions (papers of leaves, topics and implementations,
        and the keys of ``taxonomy/surveys.yaml``)."""
        keys: set[str] = set(self.survey_keys())
        for _area, leaf in self.leaves():
            keys.update(leaf.all_papers())
            for implementation in leaf.implementations:
                keys.update(implementation.papers)
        return keys


def _index_memberships(areas: Sequence[Area]) -> dict[str, list[Membership]]:
    index: dict[str, list[Membership]] = {}
    for area in areas:
        for leaf in area.leaves:
            for key in dict.fromkeys(leaf.papers):
                index.setdefault(key, []).append(Membership(area.id, leaf.id, None))
            for topic in leaf.topics:
                for key in dict.fromkeys(topic.papers):
                    index.setdefault(key, []).append(Membership(area.id, leaf.id, topic.id))
    return index


def yaml_line(node: Any, loc: Location) -> int | None:
    """1-based line of the deepest node of ``loc`` present in the parsed document."""
    line = 1 if isinstance(node, CommentedMap | CommentedSeq) else None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line
