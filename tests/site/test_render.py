"""Unit tests of the site's rendering helpers: escaping, links, tables, diagram, chart, records."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import markdown
import pytest

from kdatlas.bibliography import BibEntry
from kdatlas.site.pages import (
    _page_url,
    _relative,
    how_to_call,
    notebook_findings,
    rewrite_repo_links,
)
from kdatlas.site.records import latest_outcomes
from kdatlas.site.render import (
    html_text,
    md_text,
    paper_from_entry,
    papers_per_year_svg,
    papers_table,
    safe_markdown,
    safe_url,
)

PAYLOADS = [
    '<script>alert("x")</script>',
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "**bold** _em_ `code` # h | pipe $x$ $$y$$ \\(z\\) ![i](x.png) <b>raw</b>",
    "a & b &amp; &lt;tag&gt; ]] --> x",
]
MD = markdown.Markdown(
    extensions=["attr_list", "md_in_html", "tables", "pymdownx.arithmatex", "pymdownx.superfences"],
    extension_configs={"pymdownx.arithmatex": {"generic": True}},
)


class Elements(HTMLParser):
    """Collects tags and attributes, to look for anything that could run."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((name, value or "") for name, value in attrs)

    def handle_data(self, data):
        self.text.append(data)


def parsed(fragment: str) -> Elements:
    parser = Elements()
    parser.feed(fragment)
    return parser


@pytest.mark.parametrize("payload", PAYLOADS)
def test_md_text_renders_as_the_same_text_and_nothing_else(payload):
    rendered = MD.reset().convert(md_text(payload))
    elements = parsed(rendered)
    assert elements.tags == ["p"]  # no link, emphasis, code, math or raw HTML element
    assert "".join(elements.text) == payload


@pytest.mark.parametrize("payload", PAYLOADS)
def test_md_text_in_a_heading_gives_an_html_safe_title(payload):
    rendered = MD.reset().convert("# " + md_text(payload))
    assert parsed(rendered).tags == ["h1"]
    assert html.unescape(re.sub(r"<[^>]+>", "", rendered)) == payload


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:x",
        "//evil.example/x",
        "/relative",
        'https://a.example/"onmouseover="x',
        "https://a.example/ x",
        "https://",
        "",
        None,
    ],
)
def test_safe_url_refuses_anything_but_absolute_http(url):
    assert safe_url(url) is None


@pytest.mark.parametrize(
    "url", ["https://arxiv.org/abs/2203.08679", "http://example.org/a?b=c&d=e#f"]
)
def test_safe_url_keeps_http_and_https(url):
    assert safe_url(url) == url


def evil_entry() -> BibEntry:
    return BibEntry(
        key="evil2024paper",
        entry_type="inproceedings",
        fields={
            "title": '<script>alert("t")</script> [x](javascript:alert(1))',
            "author": 'Evil, Eve and <b onmouseover="alert(2)">Bold</b>, Bob',
            "booktitle": "<img src=x onerror=alert(3)>",
            "year": "2024",
            "url": "javascript:alert(4)",
            "code": "https://github.com/example/code",
            "doi": '10.1234/"onmouseover="alert(5)',
        },
    )


def test_papers_table_renders_payloads_inert():
    paper = paper_from_entry(evil_entry())
    table = papers_table([paper], anchored=set())
    elements = parsed(table)
    assert "script" not in elements.tags and "img" not in elements.tags and "b" not in elements.tags
    assert not [name for name, _ in elements.attrs if name.startswith("on")]
    hrefs = [value for name, value in elements.attrs if name == "href"]
    assert hrefs, "the code link and the permalink are there"
    assert all(h.startswith(("https://", "http://", "#")) for h in hrefs)
    assert "https://github.com/example/code" in hrefs
    assert not any("javascript" in h.lower() for h in hrefs)
    text = "".join(elements.text)
    assert '<script>alert("t")</script>' in text  # shown as text
    assert "<img src=x onerror=alert(3)>" in text


def test_papers_table_anchors_each_paper_once_and_keeps_its_bibtex():
    entry = BibEntry(
        "zhao2022decoupled",
        "inproceedings",
        {
            "title": "Decoupled {Knowledge} Distillation",
            "year": "2022",
            "url": "https://arxiv.org/abs/2203.08679",
        },
    )
    paper = paper_from_entry(entry)
    anchored: set[str] = set()
    first = papers_table([paper], anchored=anchored)
    second = papers_table([paper], anchored=anchored)
    assert first.count('id="zhao2022decoupled"') == 1
    assert 'id="zhao2022decoupled"' not in second
    assert "@inproceedings{zhao2022decoupled," in html.unescape(first)
    assert "Decoupled Knowledge Distillation" in first  # LaTeX braces decoded for display
    assert "\n\n" not in first  # a blank line would end Markdown's raw HTML block


def test_chart_stacks_papers_per_year_by_area():
    svg = papers_per_year_svg(
        {"a": {"2020": 2, "2021": 4}, "b": {"2021": 4}}, {"a": "Area A", "b": "Area <B>"}
    )
    heights = [int(h) for h in re.findall(r'<rect x="\d+" y="\d+" width="22" height="(\d+)"', svg)]
    assert sorted(heights) == [55, 110, 110]  # 2, 4 and 4 of a peak of 8 over 220 px
    assert "Area &lt;B&gt; (4)" in svg and "Area A (6)" in svg
    assert papers_per_year_svg({}, {"a": "A"}) == "<p>No dated papers yet.</p>"


def test_latest_outcomes_by_kind_and_module():
    def record(date, cuda, outcomes):
        return {
            "date": date,
            "cuda": cuda,
            "device": "GPU" if cuda else "CPU",
            "commit": "abc",
            "torch": "2.13.0",
            "tests": [
                {"nodeid": f"t{i}", "outcome": o, "implementation": m}
                for i, (m, o) in enumerate(outcomes)
            ],
        }

    outcomes = latest_outcomes(
        [
            record("2026-01-01", True, [("m.kd", "failed")]),
            record(
                "2026-02-01", True, [("m.kd", "passed"), ("m.kd", "skipped"), ("m.dkd", "failed")]
            ),
            record("2026-03-01", False, [("m.kd", "skipped"), ("m.kd", "skipped")]),
        ]
    )
    assert outcomes[("m.kd", "gpu")].outcome == "passed"
    assert outcomes[("m.kd", "gpu")].summary == "passed (1/1, 1 skipped)"
    assert outcomes[("m.kd", "cpu")].summary == "skipped"
    assert outcomes[("m.kd", "gpu")].date == "2026-02-01"
    assert outcomes[("m.dkd", "gpu")].outcome == "failed"
    assert outcomes[("m.kd", "cpu")].outcome == "skipped"
    assert ("m.dkd", "cpu") not in outcomes


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        ("papers/index.md", "sources/logit.md", "../sources/logit/"),
        ("index.md", "sources/logit.md", "sources/logit/"),
        ("sources/logit.md", "sources/index.md", "../"),
        ("sources/logit.md", "sources/logit.md", "./"),
    ],
)
def test_page_url_between_built_pages(source, target, expected):
    assert _page_url(source, target) == expected


def test_relative_markdown_links():
    assert (
        _relative("sources/logit.md", "downloads/leaves/logit.bib")
        == "../downloads/leaves/logit.bib"
    )
    assert _relative("index.md", "papers/index.md") == "papers/index.md"


def test_contributing_links_to_repository_files_become_paths():
    text = (
        "See [design](docs/design.md), [schema](kdatlas/schemas/x.json) and [web](https://e.org)."
    )
    assert rewrite_repo_links(text) == (
        "See [design](design.md), schema (`kdatlas/schemas/x.json`) and [web](https://e.org)."
    )


def test_html_text_is_one_line():
    assert html_text("a\n\nb <c>") == "a b &lt;c&gt;"


def test_notebook_source_mode_renders_without_running(tmp_path):
    import nbformat

    from kdatlas.site.build import notebook_renderer
    from kdatlas.site.pages import Notebook

    source = tmp_path / "docs" / "notebooks" / "sources" / "logit.py"
    source.parent.mkdir(parents=True)
    source.write_text("# %% [markdown]\n# # Title\n\n# %%\nraise SystemExit('must not run')\n")
    notebook = nbformat.reads(
        notebook_renderer("source")(Notebook("sources", "logit", source)).decode(), 4
    )
    assert [cell.cell_type for cell in notebook.cells] == ["markdown", "code"]
    assert all(not cell.get("outputs") for cell in notebook.cells)
    with pytest.raises(ValueError, match="KDATLAS_NOTEBOOKS"):
        notebook_renderer("run")


def test_vendor_takes_only_the_served_files_of_a_tarball():
    from kdatlas.site.vendor import PACKAGES, _wanted

    katex = next(p for p in PACKAGES if p.name == "katex")
    assert _wanted("package/dist/katex.min.js", katex) == "katex.min.js"
    assert (
        _wanted("package/dist/fonts/KaTeX_Main-Regular.woff2", katex)
        == "fonts/KaTeX_Main-Regular.woff2"
    )
    assert _wanted("package/dist/katex.js", katex) is None
    assert _wanted("package/dist/../../etc/passwd", katex) is None
    assert _wanted("package/src/katex.js", katex) is None


def test_vendor_refuses_a_tarball_whose_hash_is_not_pinned(tmp_path):
    import io
    import tarfile

    from kdatlas.site.vendor import PACKAGES, VendorFetchError, _extract

    tarball = tmp_path / "katex.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        data = b"alert(1)"
        info = tarfile.TarInfo("package/dist/katex.min.js")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    target = tmp_path / "katex"
    with pytest.raises(VendorFetchError, match="hash"):
        _extract(tarball, PACKAGES[0], target)
    assert not target.exists()


def test_benchmark_tables_show_ratios_per_size_and_step_overhead():
    from kdatlas.site.pages import _loss_tables

    step = {"step_ms": 101.5, "baseline_ms": 100.0, "overhead_pct": 1.5}
    procedure = {"step_ms": 250.0, "baseline_ms": 100.0, "overhead_pct": 150.0}
    fast = {
        "ours_ms": 1.0,
        "plain_ms": 1.25,
        "ratio": 0.8,
        "ours_peak_mib": 2.0,
        "plain_peak_mib": 4.0,
        "repeats": 9,
    }
    slow = {"ours_ms": 3.0, "plain_ms": 2.0, "ratio": 1.5, "repeats": 1}
    record = {
        "device": "CPU (x86_64, 1 threads)",
        "commit": "abc1234",
        "load": "load average 7.0",
        "repeats": 5,
        "per_call_sizes": {"logits": ["256x100", "1024x1000"], "features": ["8: 4x2x2"]},
        "per_call": {
            "kd": {"kind": "logits", "plain": True, "sizes": {"256x100": fast, "1024x1000": slow}},
            "ft": {"kind": "features", "plain": False, "sizes": {"8: 4x2x2": {"ours_ms": 7.0}}},
        },
        "notes": {"kd": "kept in log space"},
        "training_step": {"batch": 64, "methods": {"kd": step, "dml": procedure}},
    }
    text = "\n".join(_loss_tables("cpu", record))
    assert "| loss | 256x100 | 1024x1000 |" in text
    assert "| kd | **0.80×** · 1 ms · mem 0.50× | **1.50×** · 3 ms · 1 pair |" in text
    assert "| ft | 7 ms, no plain |" in text
    assert "- kd (1024x1000: 1.50×): kept in log space" in text
    assert "Ratios above 1, and why:" in text
    assert "| kd | 101.5 | 100.0 | +1.5 % |" in text
    assert "| dml | 250.0 | 100.0 | +150.0 % |" in text
    assert "## Distillation methods on CPU" in text and "abc1234" in text


def test_benchmark_tables_say_which_methods_were_not_timed():
    from kdatlas.site.pages import _loss_tables

    record = {
        "per_call_sizes": {"logits": ["8x100"]},
        "per_call": {},
        "training_step": {"batch": 4, "methods": {}},
        "not_benchmarked": {"training_step": {"takd": "trains its stages itself (run())"}},
    }
    text = "\n".join(_loss_tables("cpu", record))
    assert "- takd: trains its stages itself &#40;run&#40;&#41;&#41;" in text


def test_papers_table_rows_are_compact_and_carry_their_filters():
    paper = paper_from_entry(evil_entry())
    table = papers_table(
        [paper],
        anchored=set(),
        papers_page="../../papers/",
        implemented={"evil2024paper": '<a href="#x">EvilLoss</a>'},
        leaves={"evil2024paper": ["logit", "attention"]},
    )
    elements = parsed(table)
    assert not [name for name, _ in elements.attrs if name.startswith("on")]
    # the BibTeX sits behind a small control in the links cell, not under the title
    assert re.search(r'<td class="kd-links">.*<details class="kd-bibtex">', table)
    assert 'data-leaves="logit attention"' in table and 'data-implemented="1"' in table
    assert 'data-code="1"' in table  # the entry names its code
    hrefs = [value for name, value in elements.attrs if name == "href"]
    # each author links to their papers; names are URL-encoded, never markup
    assert "../../papers/?author=Eve%20Evil" in hrefs
    assert any(h.startswith("../../papers/?author=Bob%20%3Cb%20onmouseover%3D") for h in hrefs)
    assert 'class="kd-implemented"' in table


def test_safe_markdown_keeps_emphasis_but_no_html_or_links():
    rendered = MD.reset().convert(
        safe_markdown("* **KD** lifted `x` by $2$ <img src=x onerror=alert(1)> [a](javascript:b)")
    )
    elements = parsed(rendered)
    assert "strong" in elements.tags and "code" in elements.tags
    assert "img" not in elements.tags and "a" not in elements.tags
    assert "<img src=x onerror=alert(1)>" in "".join(elements.text)


def test_notebook_findings_are_the_what_we_saw_section(tmp_path):
    notebook = tmp_path / "leaf.py"
    notebook.write_text(
        "# %% [markdown]\n# ## Method\n# text\n\n"
        "# %% [markdown]\n# ## What we saw\n#\n# * KD helped <b>x</b>.\n#   Second line.\n#\n"
        "# %%\nprint(1)\n"
    )
    assert notebook_findings(notebook) == ["* KD helped &lt;b&gt;x&lt;/b&gt;.", "  Second line."]
    notebook.write_text("# %%\nprint(1)\n")
    assert notebook_findings(notebook) == []


HOW_TO_CALL_SOURCE = """
class Base(DistillationLoss, abstract=True):
    needs_target = True

class PairLoss(Base):
    inputs: ClassVar[tuple[str, ...]] = ("features", "logits")

    def __init__(self, student_channels, teacher_channels, weight=1.0):
        ...

    def forward(self, student_feats, teacher_feats, student_logits, teacher_logits, target):
        ...

class Steps(DistillationProcedure):
    def __init__(self, student, teacher):
        ...

    def forward(self, x, y) -> dict:
        ...

    def run(self, data):
        ...
"""


def test_how_to_call_reads_the_declaration_and_signature_without_importing():
    loss = how_to_call("pkg.leaf.pair", "PairLoss", HOW_TO_CALL_SOURCE)
    assert "`inputs = ('features', 'logits')`" in loss
    assert "needs the labels" in loss  # inherited from the base class in the same module
    assert "loss_fn = PairLoss(student_channels, teacher_channels)" in loss
    assert (
        "loss = loss_fn(student_features, teacher_features, student_logits, teacher_logits, target)"
        in loss
    )
    assert "from pkg.leaf import PairLoss" in loss
    assert "from pkg.leaf.pair import PairLoss" in how_to_call(
        "pkg.leaf.pair", "PairLoss", HOW_TO_CALL_SOURCE, exported=False
    )
    procedure = how_to_call("pkg.leaf.steps", "Steps", HOW_TO_CALL_SOURCE)
    assert "procedure = Steps(student, teacher)" in procedure
    assert "terms = procedure(x, y)" in procedure and "procedure.run(data" in procedure
    assert "def forward(x, y) -> dict" in procedure
    assert how_to_call("pkg.m", "Missing", HOW_TO_CALL_SOURCE) == ""
    assert how_to_call("pkg.m", "PairLoss", "class (:") == ""  # a syntax error: nothing shown


def test_a_leaf_with_a_further_notebook_links_both_with_what_each_runs(tmp_path):
    from kdatlas.loader import load
    from kdatlas.site.pages import generate
    from tests.kdatlas.conftest import write_fixture

    kb = write_fixture(tmp_path / "kb")
    further = "docs/notebooks/sources/logit-calibration.py"
    kb.write(further, "# %%\nfrom reference_impls.sources.logit.losses import KDLoss\n")
    kb.replace(
        "taxonomy/sources.yaml",
        "losses:KDLoss\n",
        f"losses:KDLoss\n        notebook: {further}\n",
    )
    site = generate(load(kb.root), kb.root, notebook_renderer=lambda notebook: b"{}")
    leaf = site.files["sources/logit.md"]
    assert "## Notebooks" in leaf
    assert "**logit**\n" in leaf  # the leaf's own notebook now runs none of them
    assert "**logit-calibration** runs KD &#40;Hinton et al&#46;&#44; 2015&#41;." in leaf
    assert "(../notebooks/sources/logit-calibration.ipynb)" in leaf
    index = site.files["notebooks/index.md"]
    assert "2015&#41; | [open](sources/logit-calibration.ipynb)" in index
