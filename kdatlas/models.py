"""The schema of the taxonomy files and of ``bib/provenance.yaml``, as pydantic models.

These models are the one definition of the format: the loader validates
against them, ``kdatlas schema`` turns them into the JSON Schema that editors
use while typing, and the site renders from them. Unknown keys are errors.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
BIB_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_:.+-]*$")
OBJECT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
AREA_IDS = ("sources", "schemes", "algorithms", "modalities", "applications")
SURVEYS_ID = "surveys"  # taxonomy/surveys.yaml: the survey followed and the lists beside it


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


# The patterns are repeated in the JSON Schema (json_schema_extra) so editors flag bad values
# while typing; validation itself stays in the validators, for their clearer messages.
Slug = Annotated[
    str,
    _matching(SLUG, "a slug (lowercase letters, digits and single hyphens)"),
    Field(json_schema_extra={"pattern": SLUG.pattern}),
]
BibKey = Annotated[
    str,
    _matching(BIB_KEY, "a valid BibTeX key"),
    Field(json_schema_extra={"pattern": BIB_KEY.pattern}),
]
ObjectPath = Annotated[
    str,
    _matching(OBJECT_PATH, "an import path of the form 'package.module:Class'"),
    Field(json_schema_extra={"pattern": OBJECT_PATH.pattern}),
]
Summary = Annotated[str, Field(min_length=20, max_length=1500)]
Title = Annotated[str, Field(min_length=1, max_length=200)]
Finding = Annotated[str, Field(min_length=10, max_length=240)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


GITHUB_REPOSITORY = re.compile(r"^https://github\.com/[A-Za-z0-9][A-Za-z0-9_-]*/[A-Za-z0-9._-]+$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
REPO_FILE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*\.py$")
SYMBOL = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
LINES = re.compile(r"^[1-9][0-9]*-[1-9][0-9]*$")


GitHubRepository = Annotated[
    str,
    _matching(GITHUB_REPOSITORY, "a GitHub repository URL (https://github.com/<owner>/<name>)"),
    Field(json_schema_extra={"pattern": GITHUB_REPOSITORY.pattern}),
]
Commit = Annotated[
    str,
    _matching(COMMIT, "a full commit hash (40 lowercase hex digits)"),
    Field(json_schema_extra={"pattern": COMMIT.pattern}),
]
RepositoryFile = Annotated[
    str,
    _matching(REPO_FILE, "a repository-relative path of a .py file"),
    Field(json_schema_extra={"pattern": REPO_FILE.pattern}),
]
Symbol = Annotated[
    str,
    _matching(SYMBOL, "a function or class name"),
    Field(json_schema_extra={"pattern": SYMBOL.pattern}),
]
LineRange = Annotated[
    str,
    _matching(LINES, "a line range 'first-last'"),
    Field(json_schema_extra={"pattern": LINES.pattern}),
]


class AuthorsCode(Strict):
    """Where the code an implementation is compared with lives, and how it is compared.

    ``scripts/verify_official.py`` loads ``symbol`` (or the statements at ``lines``) from
    ``file`` of ``repository`` at ``commit`` and writes ``tests/official_runs/<id>.json``.
    """

    repository: GitHubRepository = Field(description="https://github.com/<owner>/<name>.")
    commit: Commit = Field(description="The commit compared with (40 hex digits).")
    file: RepositoryFile = Field(description="Path of the Python file in the repository.")
    symbol: Symbol = Field(
        description="The function or class compared (its definition and the definitions, "
        "constants and imports it needs are loaded, nothing else of the file); with "
        "``lines``, the name the runner gives those statements."
    )
    lines: LineRange | None = Field(
        default=None,
        description="For statements inside a training loop: the 1-based, inclusive line range "
        "of ``file`` that is run (dedented) in place of a definition.",
    )
    configuration: str = Field(
        min_length=1,
        max_length=600,
        description="How the two are called for the comparison: hyper-parameters, the training "
        "weight folded in, and, where it is not our default, what differs at our defaults.",
    )
    differs_at_defaults: str | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        description="Where ``configuration`` is not our defaults (a declared deviation): what "
        "differs at the defaults, in a phrase the site shows beside the record.",
    )
    known_difference: str | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        description="A difference the comparison is expected to show, with its reason (e.g. "
        "an epsilon placed differently, a computation kept in float32): the record is then "
        "'explained' rather than equal.",
    )
    authors: bool = Field(
        default=True,
        description="False when the repository is not the paper's authors' (no code released: "
        "a reference re-implementation such as mdistiller's is compared instead).",
    )


class NoReleasedCode(Strict):
    """No code to compare with: the implementation follows the paper's equations."""

    none: str = Field(
        min_length=1, max_length=600, description="Why there is nothing to compare with."
    )


class Implementation(Strict):
    """A reference implementation of a method, by import path."""

    id: Slug = Field(description="Permanent slug, unique over the taxonomy (a URL).")
    title: Title = Field(description="Human-readable name, e.g. 'DKD (Zhao et al., 2022)'.")
    object: ObjectPath = Field(description="Import path 'reference_impls.area.leaf.module:Class'.")
    papers: list[BibKey] = Field(min_length=1, description="Bib keys of the paper(s) implemented.")
    finding: Finding | None = Field(
        default=None,
        description="What the leaf's notebook showed of it, in one line with its figures "
        "(the leaf page shows it beside the implementation).",
    )
    notebook: str | None = Field(
        default=None,
        description="Path of a further notebook of the leaf that runs this implementation, "
        "from the repository root, where the leaf's own notebook would run past its 30 s "
        "budget (docs/notebooks/<area>/<leaf>-<topic>.py); by default the leaf's notebook.",
    )
    authors_code: AuthorsCode | NoReleasedCode | None = Field(
        default=None,
        description="The authors' released code this implementation is compared with by "
        "scripts/verify_official.py (record: tests/official_runs/<id>.json), or "
        "{none: reason} where no code was released.",
    )


class Topic(Strict):
    """A sub-group of a leaf (depth 3), e.g. a task under 3D Input."""

    id: Slug
    title: Title
    summary: Summary
    papers: list[BibKey] = Field(default_factory=list)


class Leaf(Strict):
    """A leaf of the survey's taxonomy (depth 2): a page of the site."""

    id: Slug = Field(description="Permanent slug, unique over all areas (a URL).")
    title: Title
    summary: Summary
    notebook: str | None = Field(
        default=None, description="Path of the leaf's jupytext notebook, from the repository root."
    )
    papers: list[BibKey] = Field(default_factory=list, description="Bib keys not under a topic.")
    topics: list[Topic] = Field(default_factory=list)
    implementations: list[Implementation] = Field(default_factory=list)
    see_also: list[Slug] = Field(
        default_factory=list,
        description="Ids of implementations filed under other leaves that this leaf also shows "
        "(e.g. AT, a feature-based method, under Attention Distillation); the files stay put.",
    )

    def all_papers(self) -> list[str]:
        """Every bib key of the leaf, its own first, then by topic, without repeats."""
        seen: dict[str, None] = dict.fromkeys(self.papers)
        for topic in self.topics:
            seen.update(dict.fromkeys(topic.papers))
        return list(seen)


class Area(Strict):
    """One of the survey's five areas; one YAML file in taxonomy/."""

    id: Slug
    title: Title
    summary: Summary
    leaves: list[Leaf] = Field(min_length=1)


class Surveys(Strict):
    """``taxonomy/surveys.yaml``: the survey the taxonomy follows and the two lists its README
    holds beside the taxonomy. Every value is a bib key; the papers' metadata stays in bib/."""

    survey: BibKey = Field(description="Bib key of the survey whose areas and leaves we follow.")
    cite: list[BibKey] = Field(
        default_factory=list,
        description="Papers by the survey's authors that its README asks readers to cite with "
        "it (its 'Citation' section), in its order.",
    )
    existing: list[BibKey] = Field(
        default_factory=list,
        description="Earlier surveys of knowledge distillation that it lists ('Existing Surveys "
        "on Knowledge Distillation'), in its order.",
    )

    def all_keys(self) -> list[str]:
        """Every bib key of the file: the survey, then the papers to cite, then the earlier
        surveys, without repeats."""
        return list(dict.fromkeys([self.survey, *self.cite, *self.existing]))


# --------------------------------------------------------------------------- provenance

PROVENANCE_ID = "provenance"  # bib/provenance.yaml: where filled bibliography values came from
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
HTTP_SOURCE = re.compile(r"^https?://[^\s<>\"'`{}|\\^]+$", re.IGNORECASE)
PROVENANCE_BY = re.compile(r"^(manual|kdatlas enrich \((openalex|crossref|arxiv)\))$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _http_source(value: str) -> str:
    if not HTTP_SOURCE.match(value):
        raise ValueError(f"source must be an http(s) URL a person can open, found {value!r}")
    return value


def _provenance_by(value: str) -> str:
    if not PROVENANCE_BY.match(value):
        raise ValueError(
            f"by must be 'manual' or 'kdatlas enrich (openalex|crossref|arxiv)', found {value!r}"
        )
    return value


def _iso_date(value: object) -> object:
    """A date as YAML writes it (``2026-11-30``, loaded as a date) or an ISO string; never a
    timestamp with a time, nor a number (which pydantic would otherwise read as epoch seconds)."""
    if isinstance(value, datetime):
        raise ValueError(f"checked must be a date (YYYY-MM-DD) without a time, found {value!r}")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and ISO_DATE.match(value):
        return value
    raise ValueError(f"checked must be an ISO date (YYYY-MM-DD), found {value!r}")


FieldName = Annotated[
    str,
    _matching(FIELD_NAME, "a bib field name (lowercase letters, digits, - and _)"),
    Field(json_schema_extra={"pattern": FIELD_NAME.pattern}),
]
HttpSource = Annotated[
    str, AfterValidator(_http_source), Field(json_schema_extra={"pattern": HTTP_SOURCE.pattern})
]
ProvenanceBy = Annotated[
    str,
    AfterValidator(_provenance_by),
    Field(json_schema_extra={"pattern": PROVENANCE_BY.pattern}),
]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]


class FieldSource(Strict):
    """Where one filled value of one bib entry was read, when, and by whom."""

    source: HttpSource = Field(
        description="The page the value was read from (arXiv abstract page, publisher, DBLP, "
        "OpenReview, the authors' repository, or the API record enrich used)."
    )
    checked: IsoDate = Field(description="When the value was read (YYYY-MM-DD).")
    by: ProvenanceBy = Field(description="'manual', or 'kdatlas enrich (<service>)'.")


class Provenance(Strict):
    """``bib/provenance.yaml``: the source of each value filled into ``bib/*.bib`` after the
    survey import, and the titles whose real paper could not be identified."""

    filled: dict[BibKey, dict[FieldName, FieldSource]] = Field(
        default_factory=dict,
        description="Bib key -> field name (author, doi, eprint, ...) -> where its value came from.",
    )
    unidentified: dict[BibKey, Annotated[str, Field(min_length=10, max_length=1500)]] = Field(
        default_factory=dict,
        description="Bib key -> what was tried to identify the paper and why it failed.",
    )


# --------------------------------------------------------------------------- reported results

REPORTED_DIR = "benchmarks/reported"  # numbers from papers and authors' READMEs, never ours
REPORTED_SETTINGS_FILE = "settings.yaml"  # in REPORTED_DIR: the settings the numbers are for
ReportedNote = Annotated[str, Field(min_length=3, max_length=400)]


class ReportedSetting(Strict):
    """A standard comparison setting: data set, teacher, student and the metric reported."""

    id: Slug
    dataset: Title = Field(description="The data set and split, e.g. 'CIFAR-100 (test)'.")
    teacher: Title
    student: Title
    metric: Title = Field(description="What the numbers are, e.g. 'top-1 accuracy (%)'.")


class ReportedSettings(Strict):
    """``benchmarks/reported/settings.yaml``: every setting a reported number may name."""

    settings: list[ReportedSetting] = Field(min_length=1)


class ReportedSource(Strict):
    """Where a file's numbers were read: one table of one README or paper."""

    title: Title = Field(description="The table, as a reader would name it.")
    url: HttpSource = Field(
        description="The table itself: a README at a fixed commit with its line range "
        "(#L77-L92), or the paper's page."
    )
    table: Title = Field(description="Which table (README section, 'Table 3 of the paper').")
    reported_by: BibKey = Field(description="Bib key of the paper whose authors report them.")
    retrieved: IsoDate = Field(description="When the numbers were copied (YYYY-MM-DD).")
    note: ReportedNote | None = Field(
        default=None, description="How the numbers were obtained (runs averaged, reruns...)."
    )


class ReportedBaseline(Strict):
    """The teacher's and the student's own result (trained alone) in a source's setting."""

    teacher: float
    student: float


class ReportedResult(Strict):
    """One number: a method, in a setting, as the source reports it."""

    paper: BibKey = Field(description="Bib key of the method's paper.")
    implementation: Slug | None = Field(
        default=None, description="Id of our implementation of the method, when we have one."
    )
    setting: Slug = Field(description="Id of a setting of benchmarks/reported/settings.yaml.")
    value: float
    std: float | None = Field(default=None, ge=0, description="± as the source gives it.")
    note: ReportedNote | None = None


class ReportedFile(Strict):
    """``benchmarks/reported/<source>.yaml``: the numbers of one source table."""

    source: ReportedSource
    baselines: dict[Slug, ReportedBaseline] = Field(
        default_factory=dict, description="Setting id -> teacher and student trained alone."
    )
    results: list[ReportedResult] = Field(min_length=1)
