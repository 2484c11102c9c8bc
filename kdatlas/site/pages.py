"""Generate every data-driven page of the site from the knowledge base (pure: no mkdocs import).

:func:`generate` returns ``{path under docs/: content}`` (text, bytes, or a file to
copy) plus the navigation; ``docs/gen_pages.py`` hands it to mkdocs-gen-files. Output
is deterministic: everything is sorted or in taxonomy order and nothing holds a time.

Page titles that come from data are HTML-escaped, because MkDocs and Material put
``page.title`` into the HTML as it is; the navigation file names generated pages
with :data:`TITLE_FROM_PAGE`, which ``kdatlas/site/mkdocs_hooks.py`` replaces by the
page's own (escaped) title.
"""

from __future__ import annotations

import ast
import contextlib
import html
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kdatlas.bibliography import BibEntry
from kdatlas.loader import KnowledgeBase
from kdatlas.models import SURVEYS_ID, Area, AuthorsCode, Implementation, Leaf, NoReleasedCode
from kdatlas.official import OfficialRecord, read_official_records, short_float
from kdatlas.site.comparison import (
    comparison_lines,
    leaf_reported_lines,
    reported_lines,
    reported_rows,
)
from kdatlas.site.records import ModuleOutcome, latest_outcomes, read_records
from kdatlas.site.render import (
    Paper,
    bibtex_listing,
    html_attr,
    html_text,
    link,
    md_text,
    paper_from_entry,
    papers_per_year_svg,
    papers_table,
    safe_markdown,
)

TITLE_FROM_PAGE = "kdatlas-page-title"
SURVEYS_PAGE = "surveys.md"
# The sections of the Surveys page, by the list of taxonomy/surveys.yaml they show.
SURVEY_SECTIONS = {
    "survey": ("the-survey", "the survey followed"),
    "cite": ("citation", "cited with the survey"),
    "existing": ("earlier-surveys", "an earlier survey"),
}
PARTIALS = Path("docs") / "partials"
BIB_SOURCE = "bib/kd.bib"  # where every paper's metadata is written (its edit link)
API_ROOT = "api"
PAPERS_PAGE = "papers/index.md"
TAXONOMY_PAGE = "taxonomy/index.md"
GUIDE_PAGE = "which-method.md"
_MODULE_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Content = str | bytes | Path


@dataclass
class Site:
    """The generated files and the navigation (literate-nav's SUMMARY.md)."""

    files: dict[str, Content] = field(default_factory=dict)
    nav: list[str] = field(default_factory=list)
    # page -> the file a reader edits to change it (POSIX, relative to the repository root):
    # the target of the page's "Edit this page" link.
    sources: dict[str, str] = field(default_factory=dict)

    def add(self, path: str, content: Content, source: Path | str | None = None) -> None:
        if path in self.files:
            raise ValueError(f"two generated pages want {path}")
        self.files[path] = content
        if source is not None:
            self.sources[path] = Path(source).as_posix()


@dataclass(frozen=True)
class Notebook:
    area: str
    leaf: str
    source: Path  # docs/notebooks/<area>/<leaf>.py

    @property
    def page(self) -> str:
        return f"notebooks/{self.area}/{self.leaf}.ipynb"

    @property
    def download(self) -> str:
        return f"downloads/notebooks/{self.area}/{self.leaf}.py"


def front_matter(title: str, hide_toc: bool = False) -> str:
    # JSON is valid YAML and quotes anything; the title is already HTML-escaped.
    hide = "hide:\n  - toc\n" if hide_toc else ""
    return f"---\ntitle: {json.dumps(html.escape(title, quote=True))}\n{hide}---\n\n"


def _relative(from_page: str, to: str) -> str:
    """A relative link between two docs paths (Markdown links, which MkDocs then checks)."""
    from_parts = from_page.split("/")[:-1]
    to_parts = to.split("/")
    common = 0
    while (
        common < min(len(from_parts), len(to_parts) - 1) and from_parts[common] == to_parts[common]
    ):
        common += 1
    return "/".join([".."] * (len(from_parts) - common) + to_parts[common:])


def _directory(page: str) -> list[str]:
    """The folders of a page's built URL: ``a/b.md`` is served at ``a/b/``, ``a/index.md`` at ``a/``."""
    parts = page.removesuffix(".md").split("/")
    return parts[:-1] if parts[-1] == "index" else parts


def _page_url(from_page: str, to_page: str) -> str:
    """A relative URL between two pages' built locations, for raw HTML (which MkDocs does not
    rewrite or check; the site tests check every link of the built site)."""
    here, there = _directory(from_page), _directory(to_page)
    common = 0
    while common < min(len(here), len(there)) and here[common] == there[common]:
        common += 1
    parts = [".."] * (len(here) - common) + there[common:]
    return "/".join(parts) + "/" if parts else "./"


# ---------------------------------------------------------------- inputs


def find_notebooks(root: Path) -> dict[tuple[str, str], Notebook]:
    """``docs/notebooks/<area>/<leaf>.py`` under the knowledge base's root."""
    found = {}
    for path in sorted((root / "docs" / "notebooks").glob("*/*.py")):
        area, leaf = path.parent.name, path.stem
        if re.fullmatch(r"[a-z0-9][a-z0-9-]*", leaf) and re.fullmatch(r"[a-z0-9-]+", area):
            found[(area, leaf)] = Notebook(area, leaf, path)
    return found


def api_modules(repo_root: Path) -> dict[str, Path]:
    """``{dotted module: file}`` for every module of reference_impls (packages excluded)."""
    modules = {}
    for path in sorted((repo_root / "reference_impls").rglob("*.py")):
        relative = path.relative_to(repo_root).with_suffix("")
        parts = relative.parts
        if path.name == "__init__.py" or not all(_MODULE_PART.match(p) for p in parts):
            continue
        modules[".".join(parts)] = path
    return modules


def api_page(module: str) -> str:
    return f"{API_ROOT}/{module.replace('.', '/')}.md"


# ---------------------------------------------------------------- generation


class Generator:
    def __init__(
        self,
        kb: KnowledgeBase,
        repo_root: Path,
        notebook_renderer: Callable[[Notebook], Content] | None = None,
    ) -> None:
        self.kb = kb
        self.repo_root = repo_root
        self.site = Site()
        self.papers: dict[str, Paper] = {
            k: paper_from_entry(e) for k, e in sorted(kb.entries.items())
        }
        self.notebooks = find_notebooks(kb.root)  # leaf.notebook paths are relative to it
        self.modules = api_modules(repo_root)
        self.outcomes = latest_outcomes(read_records(kb.root))
        self.official = read_official_records(kb.root)
        self.render_notebook = notebook_renderer
        # implementation id -> the leaves listing it under see_also
        self.listed_by: dict[str, list[tuple[Area, Leaf]]] = {}
        for area, leaf in kb.leaves():
            for implementation_id in leaf.see_also:
                self.listed_by.setdefault(implementation_id, []).append((area, leaf))

    # -- helpers

    def leaf_page(self, area: Area, leaf: Leaf) -> str:
        return f"{area.id}/{leaf.id}.md"

    def notebook_of(self, area: Area, leaf: Leaf) -> Notebook | None:
        if leaf.notebook:
            path = Path(leaf.notebook)
            if path.parts[:2] == ("docs", "notebooks") and len(path.parts) == 4:
                return self.notebooks.get((path.parts[2], path.stem))
            return None
        return self.notebooks.get((area.id, leaf.id))

    def notebooks_of(self, area: Area, leaf: Leaf) -> list[tuple[Notebook, list[Implementation]]]:
        """The leaf's notebook, then its further ones, each with the implementations it runs."""
        found: dict[str, tuple[Notebook, list[Implementation]]] = {}
        main = self.notebook_of(area, leaf)
        if main is not None:
            found[main.page] = (main, [])
        for implementation in leaf.implementations:
            notebook = main
            if implementation.notebook:
                path = Path(implementation.notebook)
                notebook = self.notebooks.get((path.parts[-2], path.stem))
            if notebook is not None:
                found.setdefault(notebook.page, (notebook, []))[1].append(implementation)
        return list(found.values())

    def area_source(self, area: Area) -> Path | None:
        """The YAML file an area and its leaves are written in."""
        return self.kb.area_paths.get(area.id)

    def leaf_papers(self, leaf: Leaf) -> list[str]:
        keys = dict.fromkeys(leaf.all_papers())
        for implementation in leaf.implementations:
            keys.update(dict.fromkeys(implementation.papers))
        return list(keys)

    def counts(self) -> dict[str, int]:
        """The home page's figures, each labelled with what it counts."""
        leaves = list(self.kb.leaves())
        filed = {key for _a, leaf in leaves for key in leaf.all_papers()}
        return {
            "papers filed in the taxonomy's leaves": len(filed),
            "entries in the bibliography (All papers)": len(self.papers),
            "leaves": len(leaves),
            "implementations": sum(1 for _ in self.kb.implementations()),
            "notebooks": sum(1 for a, leaf in leaves if self.notebook_of(a, leaf)),
        }

    def gpu_status(self, leaf: Leaf) -> tuple[str, str]:
        """A leaf's GPU evidence in a word and its CSS class: every implementation passed on a GPU
        with unchanged files, one failed, some changed since their run, or none ran on one."""
        modules = [i.object.partition(":")[0] for i in leaf.implementations]
        if not modules:
            return "", ""
        outcomes = [self.outcomes.get((module, "gpu")) for module in modules]
        if any(o is None for o in outcomes):
            return "GPU: not run", "none"
        if not all(o.is_current(self.kb.root, m) for o, m in zip(outcomes, modules, strict=True)):
            return "GPU: changed since its run", "changed"
        if all(o.outcome == "passed" for o in outcomes):
            return "GPU ✓", "passed"
        return "GPU ✗", "failed"

    def implemented_papers(self, page: str) -> dict[str, str]:
        """``{paper key: links to the implementations of it}`` (raw HTML, for paper tables)."""
        links: dict[str, list[str]] = {}
        for _area, _leaf, implementation in self.kb.implementations():
            module, _, name = implementation.object.partition(":")
            if module not in self.modules:
                continue
            url = _page_url(page, api_page(module)) + f"#{html_attr(module)}.{html_attr(name)}"
            anchor = f'<a href="{url}" title="reference implementation">{html_text(name)}</a>'
            for key in implementation.papers:
                links.setdefault(key, []).append(anchor)
        return {key: "code: " + ", ".join(dict.fromkeys(v)) for key, v in links.items()}

    # -- pages

    def generate(self) -> Site:
        """Every page; the navigation's top level (the site's tabs) is Home, Taxonomy, Papers,
        Notebooks, API reference, Benchmarks and Project."""
        self.home()
        self.site.nav.append("* [Home](index.md)")
        if (self.repo_root / PARTIALS / GUIDE_PAGE).exists():
            self.site.nav.append(f"* [Which method?]({GUIDE_PAGE})")
        self.taxonomy_index()
        self.site.nav.append(f"* [Taxonomy]({TAXONOMY_PAGE})")
        for area in self.kb.areas:
            self.area(area)
        self.site.nav.append("* Papers")
        self.papers_index()
        self.surveys()
        self.downloads()
        self.notebook_pages()
        self.api_pages()
        self.benchmarks()
        self.site.nav.append("* Project")
        self.contributing()
        self.site.nav.extend(["    * [Design](design.md)", "    * [About](about.md)"])
        self.guide()
        return self.site

    def guide(self) -> None:
        """ "Which method should I try?" (hand-written in docs/partials/): a link to a page this
        knowledge base does not generate (a leaf it lacks) is shown as plain text."""
        source = self.repo_root / PARTIALS / GUIDE_PAGE
        if not source.exists():
            return
        pages = set(self.site.files) | {
            p.relative_to(self.repo_root / "docs").as_posix()
            for p in (self.repo_root / "docs").glob("*.md")
        }

        def keep_or_unlink(match: re.Match[str]) -> str:
            label, target = match.group(1), match.group(2)
            page = target.partition("#")[0]
            if re.match(r"^[a-z]+:", target) or not page.endswith(".md") or page in pages:
                return match.group(0)
            return label

        text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", keep_or_unlink, source.read_text("utf-8"))
        self.site.add(GUIDE_PAGE, text, PARTIALS / GUIDE_PAGE)

    def home(self) -> None:
        """The introduction, the coverage map (one screen), the figures, the survey, the chart."""
        intro_path = self.repo_root / PARTIALS / "home.md"
        intro = intro_path.read_text(encoding="utf-8").strip() if intro_path.exists() else ""
        lines = [
            "# KD Atlas",
            "",
            intro,
            "",
            "Start with [which method to try](which-method.md), browse [all papers](papers/index.md),"
            " run a [notebook](notebooks/index.md), read the [API reference](api/index.md) or"
            " the [benchmarks](benchmarks.md).",
            "",
            "## The taxonomy",
            "",
            "One card per leaf: its papers, its reference implementations, whether a notebook"
            " runs them, and whether their tests passed on a GPU with the files as they are now.",
            "",
            self.coverage_map(),
            "",
            "## At a glance",
            "",
            '<div class="kd-counts">'
            + "".join(
                f'<div><span class="kd-count">{value}</span> {html_text(label)}</div>'
                for label, value in self.counts().items()
            )
            + "</div>",
            "",
        ]
        survey = self.papers.get(self.kb.surveys.survey) if self.kb.surveys else None
        if survey:
            lines += [
                "## The survey",
                "",
                "The taxonomy follows the areas and leaves of",
                "",
                '<p class="kd-citation">'
                + html_text(f"{survey.authors_text}.")
                + f" <em>{html_text(survey.title)}</em>. "
                + html_text(" ".join(p for p in (survey.venue, survey.year) if p))
                + ". "
                + " · ".join(
                    link(u, label)
                    for u, label in ((survey.paper_url, "paper"), (survey.code_url, "code"))
                    if u
                )
                + "</p>",
                "",
                f"[Its BibTeX and the papers its authors ask to be cited]({SURVEYS_PAGE}) · "
                "[how to cite KD Atlas](about.md)",
                "",
            ]
        lines += [
            "## Papers per year",
            "",
            "A paper filed in several areas counts once in each.",
            "",
            '<figure class="kd-figure">' + self.chart() + "</figure>",
            "",
        ]
        self.site.add(
            "index.md",
            "---\ntitle: Home\nhide:\n  - navigation\n  - toc\n---\n\n" + "\n".join(lines) + "\n",
            PARTIALS / "home.md",
        )

    def taxonomy_index(self) -> None:
        """The section page of the taxonomy: the coverage map and each area in a sentence."""
        lines = [
            "# Taxonomy",
            "",
            "Five areas, one card per leaf: its papers, its reference implementations, whether a"
            " notebook runs them, and whether their tests passed on a GPU with the files as they"
            " are now.",
            "",
            self.coverage_map(TAXONOMY_PAGE),
            "",
        ]
        for area in self.kb.areas:
            lines += [
                f"## [{md_text(area.title)}]({_relative(TAXONOMY_PAGE, f'{area.id}/index.md')})",
                "",
                md_text(area.summary),
                "",
            ]
        self.site.add(TAXONOMY_PAGE, front_matter("Taxonomy") + "\n".join(lines) + "\n")

    def coverage_map(self, page: str = "index.md") -> str:
        """Raw HTML: per area a row of leaf cards (papers, implementations, notebook, GPU)."""
        rows = []
        for area in self.kb.areas:
            cards = []
            for leaf in area.leaves:
                notebook = "notebook" if self.notebook_of(area, leaf) else "no notebook"
                gpu, gpu_class = self.gpu_status(leaf)
                implementations = len(leaf.implementations)
                facts = [
                    f"{len(leaf.all_papers())} papers",
                    f"{implementations} impl." if implementations else "no code yet",
                    notebook,
                ]
                state = " kd-card-empty" if not implementations else ""
                gpu_html = (
                    f' <span class="kd-gpu kd-gpu-{gpu_class}">{html_text(gpu)}</span>'
                    if gpu
                    else ""
                )
                cards.append(
                    f'<a class="kd-card{state}" href="{html_attr(_page_url(page, self.leaf_page(area, leaf)))}">'
                    f'<span class="kd-card-title">{html_text(leaf.title)}</span>'
                    f'<span class="kd-card-facts">{html_text(" · ".join(facts))}{gpu_html}</span></a>'
                )
            area_url = _page_url(page, f"{area.id}/index.md")
            rows.append(
                f'<div class="kd-coverage-area"><a class="kd-coverage-title" href="{html_attr(area_url)}">'
                f"{html_text(area.title)}</a>"
                f'<div class="kd-cards">{"".join(cards)}</div></div>'
            )
        return f'<div class="kd-coverage">{"".join(rows)}</div>'

    def chart(self) -> str:
        counts: dict[str, dict[str, int]] = {}
        for area in self.kb.areas:
            keys = {key for leaf in area.leaves for key in leaf.all_papers()}
            years = Counter(
                self.papers[k].year for k in keys if k in self.papers and self.papers[k].year
            )
            counts[area.id] = dict(years)
        return papers_per_year_svg(counts, {a.id: a.title for a in self.kb.areas})

    def area(self, area: Area) -> None:
        page = f"{area.id}/index.md"
        lines = [f"# {md_text(area.title)}", "", md_text(area.summary), ""]
        lines += ["| Leaf | Papers | Implementations | Notebook |", "| --- | ---: | ---: | --- |"]
        for leaf in area.leaves:
            notebook = self.notebook_of(area, leaf)
            notebook_cell = (
                f"[notebook]({_relative(page, notebook.page)})" if notebook else "not yet"
            )
            also = f" (+{len(leaf.see_also)} see also)" if leaf.see_also else ""
            lines.append(
                f"| [{md_text(leaf.title)}]({leaf.id}.md) | {len(leaf.all_papers())} "
                f"| {len(leaf.implementations)}{also} | {notebook_cell} |"
            )
        lines.append("")
        for leaf in area.leaves:
            lines += [f"## [{md_text(leaf.title)}]({leaf.id}.md)", "", md_text(leaf.summary), ""]
        self.site.add(page, front_matter(area.title) + "\n".join(lines), self.area_source(area))
        self.site.nav.append(f"    * [{TITLE_FROM_PAGE}]({page})")
        for leaf in area.leaves:
            self.leaf(area, leaf)
            self.site.nav.append(f"        * [{TITLE_FROM_PAGE}]({self.leaf_page(area, leaf)})")
            self.site.add(f"downloads/leaves/{leaf.id}.bib", self.bib(self.leaf_papers(leaf)))

    def bib(self, keys: Iterable[str]) -> str:
        from kdatlas.bibliography import render_bib

        entries: list[BibEntry] = [self.kb.entries[k] for k in keys if k in self.kb.entries]
        return render_bib(entries)

    def leaf(self, area: Area, leaf: Leaf) -> None:
        page = self.leaf_page(area, leaf)
        lines = [
            f"# {md_text(leaf.title)}",
            "",
            f"Area: [{md_text(area.title)}](index.md) · "
            f"{len(leaf.all_papers())} papers · "
            f"[download the leaf's BibTeX]({_relative(page, f'downloads/leaves/{leaf.id}.bib')})",
            "",
            md_text(leaf.summary),
            "",
        ]
        if leaf.topics:
            lines += [
                "Topics: "
                + " · ".join(f"[{md_text(t.title)}](#topic-{t.id})" for t in leaf.topics),
                "",
            ]
        lines += self.implementations_section(page, leaf)
        own = {implementation.id for implementation in leaf.implementations}
        reported = leaf_reported_lines(
            self.kb,
            reported_rows(self.kb, own),
            self.implementation_link(page),
            self.paper_link(page),
        )
        lines += [line.replace("BENCHMARKS", _relative(page, "benchmarks.md")) for line in reported]
        notebooks = self.notebooks_of(area, leaf)
        lines += ["## Notebooks" if len(notebooks) > 1 else "## Notebook", ""]
        for number, (notebook, runs) in enumerate(notebooks):
            if len(notebooks) > 1:
                names = ", ".join(md_text(i.title) for i in runs)
                heading = f"**{notebook.source.stem}**" + (f" runs {names}." if names else "")
                lines += ([""] if number else []) + [heading, ""]
            lines.append(
                f"[Open the executed notebook]({_relative(page, notebook.page)}) · "
                f"[download its source]({_relative(page, notebook.download)}) (jupytext percent format)"
            )
            findings = notebook_findings(notebook.source)
            if findings:
                lines += [
                    "",
                    '??? note "What the notebook showed (its \u201cWhat we saw\u201d)"',
                    "",
                ]
                lines += [f"    {line}" if line else "" for line in findings]
        if not notebooks:
            lines.append("No notebook yet.")
        lines += ["", "## Papers", ""]
        anchored: set[str] = set()
        implemented = self.implemented_papers(page)
        lines += self.paper_block(leaf.papers, anchored, page, implemented)
        for topic in leaf.topics:
            lines += [
                f"### {md_text(topic.title)} {{#topic-{topic.id}}}",
                "",
                md_text(topic.summary),
                "",
            ]
            lines += self.paper_block(topic.papers, anchored, page, implemented)
        self.site.add(
            page, front_matter(leaf.title) + "\n".join(lines) + "\n", self.area_source(area)
        )

    def paper_block(
        self,
        keys: list[str],
        anchored: set[str],
        page: str | None = None,
        implemented: dict[str, str] | None = None,
    ) -> list[str]:
        """A table of ``keys``; on ``page``, authors link to their papers on the all-papers page."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        known = [self.papers[k] for k in keys if k in self.papers]
        missing = [k for k in keys if k not in self.papers]
        papers_page = _page_url(page, PAPERS_PAGE) if page is not None else None
        table = papers_table(
            known,
            anchored=anchored,
            missing=missing,
            papers_page=papers_page,
            implemented=implemented,
        )
        return [table, ""]

    def implementations_section(self, page: str, leaf: Leaf) -> list[str]:
        """The leaf's own implementations, then those it lists from other leaves ("see also")."""
        lines = ["## Implementations", ""]
        see_also = self.kb.see_also(leaf)
        if not leaf.implementations and not see_also:
            return [*lines, "None yet.", ""]
        lines += [
            "| Implementation | Code | Tests | Papers |",
            "| --- | --- | --- | --- |",
        ]
        for implementation in leaf.implementations:
            listed_by = [
                f"[{md_text(other.title)}]({_relative(page, self.leaf_page(area, other))})"
                for area, other in self.listed_by.get(implementation.id, [])
            ]
            note = f" · also listed under {', '.join(listed_by)}" if listed_by else ""
            lines.append(self.implementation_row(page, implementation, note))
        for home_area, home, implementation in see_also:
            home_link = (
                f"[{md_text(home.title)}]({_relative(page, self.leaf_page(home_area, home))})"
            )
            note = f' · <span class="kd-see-also">see also</span>: filed under {home_link}'
            lines.append(self.implementation_row(page, implementation, note))
        lines += [
            "",
            "Test columns: the latest recorded run of each implementation's tests "
            "(`pytest --gpu-record`, `tests/gpu_runs/`), shown as current only while the "
            "method file and its test files are unchanged since that run. Code column: the "
            "recorded comparison with the authors' code (`scripts/verify_official.py`, "
            "`tests/official_runs/`): value and gradients on the same seeded inputs, largest "
            "relative error over them, current only while the method file is unchanged.",
            "",
        ]
        return lines

    def implementation_link(self, page: str) -> Callable[[str], str | None]:
        """From ``page``: the link of an implementation id to its leaf page (None if unknown)."""

        def link(implementation_id: str) -> str | None:
            try:
                area, leaf, _ = self.kb.implementation_home(implementation_id)
            except KeyError:
                return None
            return _relative(page, self.leaf_page(area, leaf))

        return link

    def paper_link(self, page: str) -> Callable[[str], str | None]:
        """From ``page``: the link of a bib key to its row on the papers page (None if unknown)."""
        return lambda key: (
            f"{_relative(page, 'papers/index.md')}#{key}" if key in self.papers else None
        )

    def implementation_row(self, page: str, implementation: Implementation, note: str = "") -> str:
        module, _, name = implementation.object.partition(":")
        code = f"<code>{html_text(implementation.object)}</code>"
        if module in self.modules:
            api = f"[`{name}`][{module}.{name}]"
            source = f"[{md_text(module.rsplit('.', 1)[-1])}.py]({_relative(page, api_page(module))}#source)"
        else:
            api, source = f"{code} (not found)", "-"
        papers = " ".join(
            f"[{md_text(k)}]({_relative(page, 'papers/index.md')}#{k})"
            if k in self.papers
            else md_text(k)
            for k in implementation.papers
        )
        finding = (
            f'<br><span class="kd-finding">{md_text(implementation.finding)}</span>'
            if implementation.finding
            else ""
        )
        cells = [
            md_text(implementation.title) + note + finding,
            f"{api}<br>{source}<br>{self.authors_code(implementation)}",
            f"{self.status(module, 'cpu')}<br>{self.status(module, 'gpu')}",
            papers,
        ]
        return "| " + " | ".join(cells) + " |"

    def authors_code(self, implementation: Implementation) -> str:
        """The comparison with the authors' code, in a line: equal (with the largest relative
        error), no released code, differs, not yet run, or changed since verified."""
        code = implementation.authors_code
        if isinstance(code, NoReleasedCode):
            return (
                f'<span class="kd-official kd-official-none" title="{html_attr(code.none)}">'
                "No released code: compared with the paper's equations</span>"
            )
        if not isinstance(code, AuthorsCode):
            return '<span class="kd-official">Authors\' code: not compared yet</span>'
        whose = "the authors' code" if code.authors else "a reference implementation"
        record: OfficialRecord | None = self.official.get(implementation.id)
        if record is None or record.commit != code.commit or record.file != code.file:
            return (
                f'<span class="kd-official">Compared with {whose}: not run yet '
                f"(<code>scripts/verify_official.py</code>)</span>"
            )
        url = f"{record.repository}/blob/{record.commit}/{record.file}"
        if record.lines:
            url += f"#L{record.lines.replace('-', '-L')}"
        # the link names the repository and commit; the file and symbol are in its tooltip
        label = f"{record.repository.rstrip('/').rsplit('/', 1)[-1]}@{record.commit[:7]}"
        where = (
            f'<a href="{html_attr(url)}" title="{html_attr(record.where)}">{html_text(label)}</a>'
        )
        errors = (
            f"max rel. error {short_float(record.max_relative_error)} (float32), "
            f"{short_float(record.max_relative_error_float64)} (float64)"
        )
        title = html_attr(
            f"{record.where}. {record.configuration} Compared {record.date[:10]}, torch "
            f"{record.torch}; float32 noise floor {short_float(record.float32_noise_floor)}."
        )
        if record.equal:
            kind, text = "equal", f"Equal to {whose} ({where}), {errors}"
        elif record.known_difference:
            kind = "explained"
            text = f"Close to {whose} ({where}), {errors}: {html_text(record.known_difference)}"
        else:
            kind, text = "differs", f"Differs from {whose} ({where}), {errors}"
        if record.differs_at_defaults:
            text += f"; at our defaults: {html_text(record.differs_at_defaults)}"
        if not record.is_current(self.kb.root):
            kind, text = "changed", f"{text} <strong>changed since verified</strong>"
        return f'<span class="kd-official kd-official-{kind}" title="{title}">{text}</span>'

    def status(self, module: str, kind: str) -> str:
        """The latest run's outcome, or, once the files it ran have changed, that they changed."""
        run = "GPU" if kind == "gpu" else "CPU"
        outcome: ModuleOutcome | None = self.outcomes.get((module, kind))
        if outcome is None:
            return f'<span class="kd-status">{run}: no record</span>'
        title = html_attr(f"{outcome.device}, torch {outcome.torch}, commit {outcome.commit}")
        if outcome.is_current(self.kb.root, module):
            return (
                f'<span class="kd-status kd-status-{html_attr(outcome.outcome)}" title="{title}">'
                f"{run}: {html_text(outcome.summary)}, {html_text(outcome.date)}</span>"
            )
        return (
            f'<span class="kd-status kd-status-changed" title="{title}">'
            f"changed since the last {run} run ({html_text(outcome.date)})"
            f"<small> that run: {html_text(outcome.summary)}</small></span>"
        )

    def papers_index(self) -> None:
        page = "papers/index.md"
        filed_under: dict[str, str] = {}
        leaf_titles = {(a.id, leaf.id): leaf.title for a, leaf in self.kb.leaves()}
        topic_titles = {
            (a.id, leaf.id, t.id): t.title for a, leaf in self.kb.leaves() for t in leaf.topics
        }
        for key in self.papers:
            places = []
            for m in self.kb.memberships(key):
                label = leaf_titles.get((m.area, m.leaf), m.leaf)
                if m.topic:
                    label += " › " + topic_titles.get((m.area, m.leaf, m.topic), m.topic)
                url = _page_url(page, f"{m.area}/{m.leaf}.md") + f"#{key}"
                places.append(f'<a href="{html_attr(url)}">{html_text(label)}</a>')
            places += self.survey_places(page, key)
            filed_under[key] = "<br>".join(dict.fromkeys(places))
        papers = sorted(
            self.papers.values(), key=lambda p: (-int(p.year or 0), p.title.lower(), p.key)
        )
        years = sorted({p.year for p in papers if p.year}, reverse=True)
        venues = sorted({p.venue for p in papers if p.venue}, key=str.lower)
        leaves_of = {key: [m.leaf for m in self.kb.memberships(key)] for key in self.papers}
        leaf_options = "".join(
            f'<option value="{html_attr(leaf.id)}">{html_text(area.title + " › " + leaf.title)}</option>'
            for area, leaf in self.kb.leaves()
        )
        filters = (
            '<form class="kd-filter" data-kd-filter="kd-all-papers">'
            '<label>Title or key <input type="search" name="text" autocomplete="off"></label> '
            '<label>Author <input type="search" name="author" autocomplete="off"></label> '
            f'<label>Year <select name="year"><option value="">any</option>{_options(years)}</select></label> '
            f'<label>Venue <select name="venue"><option value="">any</option>{_options(venues)}</select></label> '
            f'<label>Leaf <select name="leaf"><option value="">any</option>{leaf_options}</select></label> '
            '<label><input type="checkbox" name="code"> has code</label> '
            '<label><input type="checkbox" name="implemented"> implemented here</label> '
            '<output name="count"></output></form>'
        )
        lines = [
            "# All papers",
            "",
            f"{len(papers)} entries in the bibliography, newest first (the home page counts the "
            f"{len({k for _a, leaf in self.kb.leaves() for k in leaf.all_papers()})} filed in "
            "the taxonomy's leaves; the rest are named only by the Surveys page or an "
            "implementation). Each row lists the leaves that file the paper; the filters run in "
            "your browser, and an author's name shows their papers.",
            "",
            filters,
            "",
            papers_table(
                papers,
                anchored=set(),
                extra_column=("Filed under", filed_under),
                table_id="kd-all-papers",
                papers_page="./",
                implemented=self.implemented_papers(page),
                leaves=leaves_of,
            ),
            "",
        ]
        self.site.add(
            page, front_matter("All papers", hide_toc=True) + "\n".join(lines), BIB_SOURCE
        )
        self.site.nav.append(f"    * [All papers]({PAPERS_PAGE})")

    def survey_places(self, page: str, key: str) -> list[str]:
        """Links to the Surveys page sections that list ``key``."""
        surveys = self.kb.surveys
        if surveys is None:
            return []
        lists = {"survey": [surveys.survey], "cite": surveys.cite, "existing": surveys.existing}
        return [
            f'<a href="{html_attr(_page_url(page, SURVEYS_PAGE) + "#" + anchor)}">'
            f"{html_text('Surveys › ' + label)}</a>"
            for name, (anchor, label) in SURVEY_SECTIONS.items()
            if key in lists[name]
        ]

    def surveys(self) -> None:
        """The survey followed with its citation block (its BibTeX and the papers its authors ask
        to be cited, as its README gives them), and the earlier surveys it lists."""
        lines = ["# Surveys", ""]
        surveys = self.kb.surveys
        if surveys is None:
            lines.append("No `taxonomy/surveys.yaml` yet: the survey followed is not declared.")
        else:
            anchored: set[str] = set()
            cite = list(dict.fromkeys(surveys.cite))
            existing = list(dict.fromkeys(surveys.existing))
            lines += [
                f"## The survey {{#{SURVEY_SECTIONS['survey'][0]}}}",
                "",
                "The taxonomy of KD Atlas follows the areas and leaves of this survey.",
                "",
                *self.paper_block([surveys.survey], anchored),
                f"## Citation {{#{SURVEY_SECTIONS['cite'][0]}}}",
                "",
                f"The survey's authors ask readers who use it to cite the survey and these "
                f'{len(cite)} papers of theirs (its README\'s "Citation"). Their BibTeX, in '
                "the form of our bibliography:",
                "",
                bibtex_listing(
                    [self.papers[k] for k in [surveys.survey, *cite] if k in self.papers]
                ),
                "",
                *self.paper_block(cite, anchored),
                f"## Earlier surveys {{#{SURVEY_SECTIONS['existing'][0]}}}",
                "",
                f"The {len(existing)} earlier surveys of knowledge distillation that the survey "
                'lists ("Existing Surveys on Knowledge Distillation"), in its order.',
                "",
                *self.paper_block(existing, anchored),
            ]
        self.site.add(
            SURVEYS_PAGE,
            front_matter("Surveys") + "\n".join(lines) + "\n",
            self.kb.area_paths.get(SURVEYS_ID),
        )
        self.site.nav.append(f"    * [Surveys]({SURVEYS_PAGE})")

    def notebook_pages(self) -> None:
        if not self.notebooks or self.render_notebook is None:
            return
        self.notebooks_index()
        self.site.nav.append("* [Notebooks](notebooks/index.md)")
        for notebook in self.notebooks.values():
            self.site.add(
                notebook.page,
                self.render_notebook(notebook),
                notebook.source.relative_to(self.kb.root),
            )
            self.site.add(notebook.download, notebook.source)
            self.site.nav.append(f"    * [{TITLE_FROM_PAGE}]({notebook.page})")

    def notebooks_index(self) -> None:
        """One row per leaf that has a notebook: what it runs, and its source."""
        page = "notebooks/index.md"
        lines = [
            "# Notebooks",
            "",
            "One executable notebook per leaf, or more where one would run too long (jupytext "
            "percent format): it runs the leaf's "
            "reference implementations on a problem small enough for a laptop's CPU (under 30 s "
            "on two cores), draws what is transferred and ends with what we saw. Download the "
            "source and run it with `jupytext --to notebook --execute`, or open it in Jupyter "
            "with jupytext installed.",
            "",
            "| Leaf | Implementations | Notebook |",
            "| --- | --- | --- |",
        ]
        for area, leaf in self.kb.leaves():
            for notebook, runs in self.notebooks_of(area, leaf):
                names = ", ".join(md_text(i.title) for i in runs) or "-"
                lines.append(
                    f"| [{md_text(area.title)} › {md_text(leaf.title)}]"
                    f"({_relative(page, self.leaf_page(area, leaf))}) | {names} "
                    f"| [open]({_relative(page, notebook.page)}) · "
                    f"[source]({_relative(page, notebook.download)}) |"
                )
        self.site.add(page, front_matter("Notebooks") + "\n".join(lines) + "\n")

    def api_pages(self) -> None:
        if not self.modules:
            return
        self.api_index()
        self.site.nav.append(f"* [API reference]({API_ROOT}/index.md)")
        calls = {i.object: i for _a, _l, i in self.kb.implementations()}
        for module, path in self.modules.items():
            page = api_page(module)
            source = path.read_text(encoding="utf-8")
            fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", source)), default=0))
            package_init = path.parent / "__init__.py"
            exports = package_init.read_text(encoding="utf-8") if package_init.exists() else ""
            how = [
                how_to_call(module, name, source, exported=f'"{name}"' in exports)
                for object_path in calls
                for name in [object_path.partition(":")[2]]
                if object_path.partition(":")[0] == module
            ]
            text = (
                f"{front_matter(module)}# {md_text(module)}\n\n"
                + "".join(h for h in how if h)
                + f"::: {module}\n\n"
                f"## Source code {{#source}}\n\n"
                f"`{path.relative_to(self.repo_root).as_posix()}`\n\n"
                f"{fence}python\n{source.rstrip()}\n{fence}\n"
            )
            self.site.add(page, text, path.relative_to(self.repo_root))
            self.site.nav.append(f"    * [{module.removeprefix('reference_impls.')}]({page})")

    def api_index(self) -> None:
        """The reference implementations by leaf, then the shared modules."""
        page = f"{API_ROOT}/index.md"
        lines = [
            "# API reference",
            "",
            "Every reference implementation, by the leaf that files it; each page shows how to "
            "call it, its documentation with the paper's equation, and its whole source. "
            "Shared pieces (interfaces, losses, models, training) are in `reference_impls.common`.",
            "",
        ]
        for area, leaf in self.kb.leaves():
            if not leaf.implementations:
                continue
            lines += [f"## {md_text(area.title)} › {md_text(leaf.title)}", ""]
            for implementation in leaf.implementations:
                module, _, name = implementation.object.partition(":")
                if module in self.modules:
                    lines.append(
                        f"- [`{name}`]({_relative(page, api_page(module))}): "
                        f"{md_text(implementation.title)}"
                    )
            lines.append("")
        common = [m for m in self.modules if m.startswith("reference_impls.common.")]
        if common:
            lines += ["## Shared pieces", ""]
            lines += [f"- [`{m}`]({_relative(page, api_page(m))})" for m in common]
            lines.append("")
        self.site.add(page, front_matter("API reference") + "\n".join(lines) + "\n")

    def benchmarks(self) -> None:
        """Tables from ``benchmarks/results/*.json`` (written by the scripts in ``benchmarks/``)."""
        results = self.repo_root / "benchmarks" / "results"
        lines = [
            "# Benchmarks",
            "",
            "Measured by the scripts in `benchmarks/` (never by timed tests) and committed as "
            "JSON. Medians over repeats; the machines are shared, so compare ratios, not digits.",
            "",
        ]
        page = "benchmarks.md"
        for path in sorted(results.glob("compare-*.json")):
            if not path.stem.endswith("-quick"):  # the CI-sized check is not a result
                lines += comparison_lines(_read_json(path), self.implementation_link(page))
        lines += reported_lines(self.kb, self.implementation_link(page), self.paper_link(page))
        losses = _read_json(results / "losses.json")
        for device, record in sorted(losses.items()):
            lines += _loss_tables(device, record)
        check = _read_json(results / "check.json")
        if check.get("rows"):
            lines += [
                "## `kdatlas check --no-imports`",
                "",
                f"{md_text(str(check.get('what', '')))}.",
                "",
                "| data | papers | median wall (s) | median CPU (s) |",
                "| --- | ---: | ---: | ---: |",
            ]
            lines += [
                f"| {md_text(str(r['data']))} | {r['papers']} | {r['median_s']:.2f} "
                f"| {r['median_cpu_s']:.2f} |"
                for r in check["rows"]
            ]
            lines.append("")
        lines += _llm_kd_tables(_read_json(results / "llm_kd.json"))
        if len(lines) == 5:
            lines.append("No results committed yet: run `python -m benchmarks.compare`.")
        self.site.add("benchmarks.md", front_matter("Benchmarks") + "\n".join(lines) + "\n")
        self.site.nav.append("* [Benchmarks](benchmarks.md)")

    def downloads(self) -> None:
        from kdatlas.export import export_json

        self.site.add("downloads/all.bib", self.bib(sorted(self.kb.entries)))
        self.site.add("downloads/kdatlas.json", export_json(self.kb))
        lines = [
            "# Downloads",
            "",
            "Generated from `taxonomy/` and `bib/` when the site was built.",
            "",
            "- [all.bib](all.bib): every entry of the bibliography",
            "- [kdatlas.json](kdatlas.json): the whole knowledge base as JSON (`kdatlas export`)",
            "",
            "## One leaf's BibTeX",
            "",
        ]
        for area, leaf in self.kb.leaves():
            lines.append(
                f"- [{leaf.id}.bib](leaves/{leaf.id}.bib): {md_text(area.title)} › {md_text(leaf.title)}"
            )
        self.site.add("downloads/index.md", front_matter("Downloads") + "\n".join(lines) + "\n")
        self.site.nav.append("    * [Downloads](downloads/index.md)")

    def contributing(self) -> None:
        source = self.repo_root / "CONTRIBUTING.md"
        if source.exists():
            text = rewrite_repo_links(source.read_text(encoding="utf-8"))
        else:
            text = "# Contributing\n\nSee the repository's `CONTRIBUTING.md` and the [design page](design.md).\n"
        self.site.add("contributing.md", text, "CONTRIBUTING.md")
        self.site.nav.append("    * [Contributing](contributing.md)")


_WHAT_WE_SAW = re.compile(r"^#\s*#+\s*What we saw\s*$")


def notebook_findings(source: Path) -> list[str]:
    """The Markdown lines of a notebook's "What we saw" section (jupytext percent format),
    made inert (:func:`safe_markdown`); empty when it has none."""
    lines = source.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if _WHAT_WE_SAW.match(line)), None)
    if start is None:
        return []
    found = []
    for line in lines[start + 1 :]:
        if line.startswith("# %%") or not line.startswith("#"):
            break
        found.append(safe_markdown(line[2:] if line.startswith("# ") else line[1:]))
    while found and not found[-1].strip():
        found.pop()
    while found and not found[0].strip():
        found.pop(0)
    return found


# What a loss reads, as its call names the arguments and the shapes it expects.
INPUT_SHAPES = {
    "logits": ("student_logits", "teacher_logits", "logits `[B, C]`"),
    "features": (
        "student_features",
        "teacher_features",
        "feature maps: lists of `[B, C_i, H_i, W_i]`, one per tapped stage",
    ),
    "preact_features": (
        "student_features",
        "teacher_features",
        "pre-activation feature maps: lists of `[B, C_i, H_i, W_i]`, one per tapped stage",
    ),
    "embeddings": ("student_embeddings", "teacher_embeddings", "embeddings `[B, D]`"),
}


_DECLARED = ("inputs", "needs_target")


def _class_facts(tree: ast.Module, name: str) -> dict[str, object] | None:
    """``inputs``, ``needs_target``, base names and methods of class ``name``, read statically
    (the site never imports contributed code); a base class in the same module is followed."""
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    node = classes.get(name)
    if node is None:
        return None
    facts: dict[str, object] = {"bases": [], "methods": {}}
    chain = [node]
    while chain[-1].bases and isinstance(chain[-1].bases[0], ast.Name):
        base = chain[-1].bases[0].id
        facts["bases"].append(base)  # type: ignore[attr-defined]
        if base not in classes or classes[base] in chain:
            break
        chain.append(classes[base])
    for cls in reversed(chain):  # the class's own definitions win
        for item in cls.body:
            target = item.target if isinstance(item, ast.AnnAssign) else None
            if isinstance(item, ast.Assign) and len(item.targets) == 1:
                target = item.targets[0]
            value = getattr(item, "value", None)
            if isinstance(target, ast.Name) and target.id in _DECLARED and value is not None:
                with contextlib.suppress(ValueError, SyntaxError):
                    facts[target.id] = ast.literal_eval(value)
            if isinstance(item, ast.FunctionDef):
                facts["methods"][item.name] = item  # type: ignore[index]
    return facts


def _top_level_split(text: str) -> list[str]:
    """``text`` split at the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()] if current.strip() else parts


def _signature(function: ast.FunctionDef) -> str:
    """``name(arguments) -> returns`` without ``self``; one argument per line when long."""
    arguments = [a for a in _top_level_split(ast.unparse(function.args)) if a != "self"]
    returns = f" -> {ast.unparse(function.returns)}" if function.returns else ""
    flat = f"{function.name}({', '.join(arguments)}){returns}"
    if len(flat) <= 88:
        return flat
    return f"{function.name}(\n" + "".join(f"    {a},\n" for a in arguments) + f"){returns}"


def _required(function: ast.FunctionDef | None) -> list[str]:
    """Parameters of ``__init__`` without a default (the placeholders of the example)."""
    if function is None:
        return []
    positional = [*function.args.posonlyargs, *function.args.args][1:]
    required = positional[: len(positional) - len(function.args.defaults)]
    keyword = [
        a.arg
        for a, default in zip(function.args.kwonlyargs, function.args.kw_defaults, strict=True)
        if default is None
    ]
    return [a.arg for a in required] + keyword


def how_to_call(module: str, name: str, source: str, exported: bool = True) -> str:
    """Markdown: what ``module:name`` reads, whether it needs the labels, its ``forward``'s
    signature and three lines that use it, read from its source without importing it."""
    try:
        facts = _class_facts(ast.parse(source), name)
    except SyntaxError:
        return ""
    if facts is None:
        return ""
    methods: dict[str, ast.FunctionDef] = facts["methods"]  # type: ignore[assignment]
    package = module.rsplit(".", 1)[0] if exported else module
    construct = f"{name}({', '.join(_required(methods.get('__init__')))})"
    lines = [f"## How to call `{name}` {{#how-to-call-{name.lower()}}}", ""]
    kinds = facts.get("inputs")
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    if isinstance(kinds, tuple) and kinds and all(k in INPUT_SHAPES for k in kinds):
        needs_target = facts.get("needs_target") is True
        arguments = [a for k in kinds for a in INPUT_SHAPES[k][:2]]
        if needs_target:
            arguments.append("target")
        read = "; then ".join(INPUT_SHAPES[k][2] for k in kinds)
        label = (
            "needs the labels (`target`: class indices `[B]`, last)"
            if needs_target
            else "does not need the labels"
        )
        lines += [
            f"A distillation loss (`inputs = {facts['inputs']!r}`): it reads the student's and the teacher's {read}, and {label}. It returns "
            "a scalar, the batch mean, and never passes gradient to the teacher's outputs.",
            "",
            "```python",
            f"from {package} import {name}",
            "",
            f"loss_fn = {construct}",
            f"loss = loss_fn({', '.join(arguments)})",
            "```",
            "",
        ]
    elif "forward" in methods:
        forward = methods["forward"]
        parameters = [a.arg for a in forward.args.args[1:]]
        lines += [
            "A distillation procedure: it owns its models, and one call is one training step's "
            'terms (a dict with the total under `"loss"`).',
            "",
            "```python",
            f"from {package} import {name}",
            "",
            f"procedure = {construct}",
            f"terms = procedure({', '.join(parameters)})",
            'terms["loss"].backward()',
            "```",
            "",
        ]
        if "run" in methods:
            lines += [
                "It also trains its stages itself: `procedure.run(data, ...)` returns one "
                "history per stage.",
                "",
            ]
    else:
        return ""
    if "forward" in methods:
        lines += ["```python", f"def {_signature(methods['forward'])}", "```", ""]
    return "\n".join(lines) + "\n"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


_CALL_KINDS = (
    ("logits", "Logit losses, B x C"),
    ("features", "Feature-map losses, batch: stages"),
    ("embeddings", "Embedding losses, B x D"),
)


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _call_cell(row: dict | None) -> str:
    """``0.84× · 1.2 ms · mem 0.9×``: ours / plain time, our time, ours / plain peak memory."""
    if not row:
        return "-"
    if "ratio" not in row:
        return f"{_ms(row['ours_ms'])} ms, no plain"
    cell = f"**{row['ratio']:.2f}×** · {_ms(row['ours_ms'])} ms"
    if row.get("plain_peak_mib"):
        cell += f" · mem {row['ours_peak_mib'] / row['plain_peak_mib']:.2f}×"
    if row.get("repeats") == 1:
        cell += " · 1 pair"
    return cell


def _per_call_tables(record: dict) -> list[str]:
    """Ours against the plain formulation, forward + backward, one table per input kind."""
    calls = record.get("per_call", {})
    sizes = record.get("per_call_sizes", {})
    lines = [
        "Per call: each loss's forward + backward against its plain formulation (the "
        "paper's equation typed directly, `benchmarks/plain_losses.py`, the same "
        "hyperparameters and connectors), alternated call by call; each cell is "
        "**ours / plain** time (median of the paired ratios: below 1 ours is faster), our "
        "median time, and ours / plain peak memory "
        f"({md_text(str(record.get('memory', 'peak memory')))}).",
        "",
    ]
    for kind, title in _CALL_KINDS:
        labels = sizes.get(kind, [])
        names = [n for n, c in calls.items() if c.get("kind") == kind and "sizes" in c]
        if not labels or not names:
            continue
        lines += [
            f"### {title}",
            "",
            "| loss | " + " | ".join(md_text(label) for label in labels) + " |",
            "| --- |" + " ---: |" * len(labels),
        ]
        for name in names:
            rows = calls[name]["sizes"]
            cells = [_call_cell(rows.get(label)) for label in labels]
            lines.append(f"| {md_text(name)} | " + " | ".join(cells) + " |")
        lines.append("")
    notes = record.get("notes", {})
    slow = [
        n
        for n, c in calls.items()
        if any(r.get("ratio", 0) > 1.0 for r in c.get("sizes", {}).values())
    ]
    if slow:
        lines += ["Ratios above 1, and why:", ""]
        for name in slow:
            ratios = ", ".join(
                f"{md_text(label)}: {r['ratio']:.2f}×"
                for label, r in calls[name]["sizes"].items()
                if r.get("ratio", 0) > 1.0
            )
            why = notes.get(name, "not explained yet")
            lines.append(f"- {md_text(name)} ({ratios}): {md_text(why)}")
        lines.append("")
    return lines


def _loss_tables(device: str, record: dict) -> list[str]:
    """Per-call ratios against the plain formulations and training-step overhead on one device."""
    step = record.get("training_step", {})
    provenance = ", ".join(
        md_text(str(record[key]))
        for key in ("torch", "date", "commit", "machine", "load", "note")
        if record.get(key)
    )
    lines = [
        f"## Distillation methods on {md_text(str(record.get('device', device)))}",
        "",
        f"{provenance}; at most {record.get('repeats', '?')} repeats per measure.",
        "",
    ]
    if "per_call_sizes" in record:
        lines += _per_call_tables(record)
    steps = step.get("methods", {})
    if steps:
        lines += [
            "### Inside a training step",
            "",
            f"Forward, backward and SGD on a batch of {step.get('batch', '?')} images of "
            "3 x 32 x 32, 100 classes, alternating with the cross-entropy step (with the teacher "
            "forward for methods that have a pre-trained teacher, the student alone otherwise); "
            "the overhead is the median of the paired ratios"
            + (f" (run of {md_text(str(step['date']))})" if step.get("date") else "")
            + ".",
            "",
            "| method | step (ms) | cross-entropy step (ms) | overhead |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, row in steps.items():
            lines.append(
                f"| {md_text(name)} | {row['step_ms']:.1f} | {row['baseline_ms']:.1f} "
                f"| {row['overhead_pct']:+.1f} % |"
            )
        lines.append("")
    skipped = {
        name: reason
        for part in ("per_call", "training_step")
        for name, reason in record.get("not_benchmarked", {}).get(part, {}).items()
    }
    if skipped:
        lines += ["Not timed by the generic path:", ""]
        lines += [f"- {md_text(name)}: {md_text(str(reason))}" for name, reason in skipped.items()]
        lines.append("")
    return lines


def _llm_kd_tables(results: dict) -> list[str]:
    """Chunked and LM-head-fused token-level KD vs the naive loss (``bench_llm_kd.py``)."""
    lines: list[str] = []
    for device, record in sorted(results.items()):
        lines += [
            "## Token-level KD at LLM vocabulary sizes on "
            + md_text(str(record.get("device", device))),
            "",
            f"torch {md_text(str(record.get('torch', '?')))}, {md_text(str(record.get('date', '')))}, "
            f"{md_text(str(record.get('dtype', 'float32')))}, forward + backward, medians of "
            f"{record.get('repeats', '?')} repeats; LM heads of H = {record.get('hidden', '?')}. "
            "`chunked` takes the [N, V] logits, `fused` the hidden states and head weights "
            "(`reference_impls/applications/llm/token_losses.py`); each is compared with the naive "
            "loss on the same inputs (`naive`, and `naive_head`: the heads applied in full, then "
            f"`naive`). Peak: {md_text(str(record.get('memory', '')))}. Time ratios are of CPU "
            "time (the wall-clock ratio in brackets); goal: memory ratio at most 0.25, time ratio "
            "at most 1.2.",
            "",
            "| divergence | N x V | chunked: peak (MiB, ratio) | chunked: time ratio "
            "| fused: peak (MiB, ratio) | fused: time ratio |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for row in record.get("rows", []):
            cells = [md_text(str(row["divergence"])), f"{row['tokens']} x {row['vocab']}"]
            for ours, naive in (("chunked", "naive"), ("fused", "naive_head")):
                if f"{ours}_memory_ratio" not in row:
                    error = row.get(ours, {}).get("error") or row.get(naive, {}).get("error")
                    cells += [md_text(str(error or "-")), "-"]
                    continue
                cells += [
                    f"{row[ours]['peak_extra_mib']:.0f} of {row[naive]['peak_extra_mib']:.0f} "
                    f"({row[f'{ours}_memory_ratio']:.2f})",
                    f"{row[f'{ours}_cpu_time_ratio']:.2f} ({row[f'{ours}_time_ratio']:.2f})",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


_MD_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def _options(values: Iterable[str]) -> str:
    return "".join(f'<option value="{html_attr(v)}">{html_text(v)}</option>' for v in values)


def rewrite_repo_links(text: str) -> str:
    """Links in CONTRIBUTING.md point into the repository; on the site ``docs/x.md`` is ``x.md``
    and other repository files are shown as code, not as links that would not resolve."""

    def fix(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        if target.startswith("docs/") and not target.startswith("docs/notebooks/"):
            return f"{match.group(1)}{target.removeprefix('docs/')}{match.group(3)}"
        return match.group(0)

    text = _MD_LINK.sub(fix, text)
    # Remaining relative links to repository files become inline code of the path.
    return re.sub(
        r"\[([^\]]+)\]\((?!https?:|mailto:|#)([^)\s]+)\)",
        lambda m: (
            m.group(0)
            if m.group(2).endswith(".md") and "/" not in m.group(2)
            else f"{m.group(1)} (`{m.group(2)}`)"
        ),
        text,
    )


def generate(
    kb: KnowledgeBase,
    repo_root: Path,
    notebook_renderer: Callable[[Notebook], Content] | None = None,
) -> Site:
    """Every generated file of the site, and its navigation."""
    return Generator(kb, repo_root, notebook_renderer).generate()
