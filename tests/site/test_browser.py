"""A real browser (Debian's Chromium, driven by Playwright) on the built sites, served on 127.0.0.1.

Chromium is installed from the test itself when missing (``apt-get``, as root); elsewhere
the test is skipped with the reason. Screenshots go to ``test-artifacts/site/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import REPO, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts" / "site"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's chromium, installed with apt-get when missing and running as root."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            "Chromium is not installed and cannot be installed here (needs root and apt-get): "
            "run `apt-get install -y chromium` as root to enable the browser test"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
    ):
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        assert result.returncode == 0, (
            f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def real_url(real_site: Path) -> Iterator[str]:
    yield from serve(real_site)


class Watched:
    """A page that records every request, every dialog and every page error."""

    def __init__(self, browser, base_url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.base_url = base_url

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def other_hosts(self) -> list[str]:
        return [
            u
            for u in self.requests
            if urlsplit(u).hostname != "127.0.0.1" and not u.startswith(("data:", "blob:"))
        ]

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)

    def close(self) -> None:
        self.context.close()


def leaf_count() -> int:
    from kdatlas.loader import load

    return sum(1 for _ in load(REPO).leaves())


def test_tour_of_the_real_site(browser, real_url: str):
    tab = Watched(browser, real_url)
    page = tab.page
    try:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(real_url + "/")
        # the coverage map: one card per leaf, the whole map within one screen at 1280 x 900
        coverage = page.locator(".kd-coverage")
        coverage.scroll_into_view_if_needed()
        box = coverage.bounding_box()
        assert box and box["height"] <= 900 and box["x"] + box["width"] <= 1280, box
        assert page.locator(".kd-coverage a.kd-card").count() == leaf_count()
        assert page.locator("svg.kd-chart rect").count() > 5
        for tab_name in ("Taxonomy", "Papers", "Notebooks", "API reference", "Benchmarks"):
            assert page.locator(".md-tabs__link", has_text=tab_name).count() == 1, tab_name
        tab.shot("01-home-coverage-map")

        page.locator("a.kd-card", has_text="Logit-based Distillation").click()
        page.wait_for_url("**/sources/logit/")
        assert "Logit-based Distillation" in page.locator("h1").first.inner_text()
        # the implementations table fits the content column: nothing to scroll sideways
        wrapper = page.locator("#implementations ~ .md-typeset__scrollwrap").first
        assert wrapper.evaluate("w => w.scrollWidth <= w.clientWidth + 1")
        tab.shot("02-leaf")

        page.locator("label.md-search__icon, .md-search__input").first.click()
        search = page.locator("input.md-search__input")
        search.press_sequentially("Decoupled", delay=60)
        # Several pages list the paper (its leaves, the all-papers index, the API): take the leaf's.
        result = page.locator(
            ".md-search-result__item a[href*='/sources/logit/?h=decoupled#']"
        ).first
        result.wait_for(state="visible", timeout=20_000)
        tab.shot("03-search")
        result.click()
        page.wait_for_load_state()
        row = page.locator("tr#zhao2022decoupled")
        row.wait_for(state="attached", timeout=20_000)
        assert "Decoupled Knowledge Distillation" in row.locator(".kd-paper-title").inner_text()
        # compact rows: the BibTeX control is a small link, not a full-width box
        summary = row.locator("details.kd-bibtex summary")
        assert summary.bounding_box()["width"] < 100
        assert row.bounding_box()["height"] < 200
        summary.click()
        code = row.locator("details.kd-bibtex pre code")
        code.wait_for(state="visible")
        assert "@inproceedings{zhao2022decoupled," in code.inner_text()
        assert row.locator("button.md-code__button[data-md-type=copy]").count() == 1  # Material's
        row.scroll_into_view_if_needed()
        tab.shot("04-bibtex")

        # an author's name shows their papers on the all-papers page
        # the all-papers page is large (every entry, its BibTeX): allow a loaded machine time
        row.locator("a.kd-author", has_text="Borui Zhao").click(no_wait_after=True)
        page.wait_for_url(
            "**/papers/?author=Borui%20Zhao", wait_until="domcontentloaded", timeout=180_000
        )
        page.locator("form.kd-filter output[name=count]").filter(has_text="of").wait_for(
            timeout=180_000
        )
        author = page.locator("form.kd-filter input[name=author]")
        assert author.input_value() == "Borui Zhao"
        shown = page.locator("#kd-all-papers tbody tr:visible")
        assert shown.count() >= 1
        assert all("Borui Zhao" in r.locator("td.kd-authors").inner_text() for r in shown.all())
        # the filter boxes are visible: a border of at least one pixel, not the background's colour
        style = author.evaluate(
            "e => { const s = getComputedStyle(e); return [s.borderTopWidth, s.borderTopColor,"
            " getComputedStyle(document.body).backgroundColor]; }"
        )
        assert float(style[0].removesuffix("px")) >= 1 and style[1] != style[2], style
        page.locator("form.kd-filter input[name=implemented]").check()
        assert all(r.get_attribute("data-implemented") == "1" for r in shown.all())
        tab.shot("05-author-filter")

        page.goto(real_url + "/sources/logit/")
        page.locator("a", has_text="DKDLoss").first.click()
        page.wait_for_url("**/api/reference_impls/sources/logit/dkd/**")
        assert (
            "loss_fn(student_logits, teacher_logits, target)"
            in page.locator("#how-to-call-dkdloss ~ .highlight").first.inner_text()
        )
        equation = page.locator(".arithmatex .katex-display").first
        equation.wait_for(state="visible", timeout=20_000)
        equation.scroll_into_view_if_needed()
        assert page.locator(".arithmatex .katex").count() >= 2
        assert page.locator(".katex-error").count() == 0
        tab.shot("06-api-equation")

        # a phone: no page scrolls sideways; wide tables scroll inside their own box
        page.set_viewport_size({"width": 390, "height": 844})
        for path, name in (("/", "07-phone-home"), ("/sources/logit/", "08-phone-leaf")):
            page.goto(real_url + path)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
            tab.shot(name)
        page.goto(
            real_url + "/papers/?author=Hinton", wait_until="domcontentloaded", timeout=180_000
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        tab.shot("09-phone-papers")

        assert tab.other_hosts() == []
        assert tab.dialogs == [] and tab.errors == []
    finally:
        tab.close()


PAYLOAD_PAGES = [
    "",
    "algorithms/",
    "algorithms/attention/",
    "sources/logit/",
    "papers/",
    "surveys/",
    "downloads/",
]


def test_payloads_run_no_script(browser, fixture_url: str):
    tab = Watched(browser, fixture_url)
    page = tab.page
    try:
        for path in PAYLOAD_PAGES:
            page.goto(f"{fixture_url}/{path}")
            page.wait_for_load_state("load")
            page.wait_for_timeout(300)  # leave time to onerror/onload handlers and Mermaid
            assert page.evaluate("typeof window.__xss") == "undefined", path
        page.goto(f"{fixture_url}/algorithms/attention/")
        heading = page.locator("h1").first.inner_text()
        assert "<img src=x onerror=\"window.__xss = 'leaf title'\">" in heading  # shown as text
        tab.shot("06-payloads-as-text")
        page.goto(f"{fixture_url}/papers/")
        search = page.locator("form.kd-filter input[name=text]")
        search.press_sequentially("payload", delay=30)
        rows = page.locator("#kd-all-papers tbody tr:visible")
        assert rows.count() == 1
        assert "<script>" in rows.first.locator(".kd-paper-title").inner_text()
        search.fill("")
        search.dispatch_event("input")
        page.select_option("form.kd-filter select[name=year]", "2022")
        assert [r.get_attribute("id") for r in rows.all()] == ["zhao2022decoupled"]
        page.select_option("form.kd-filter select[name=year]", "")
        page.select_option("form.kd-filter select[name=venue]", "arXiv preprint")
        assert sorted(r.get_attribute("id") for r in rows.all()) == [
            "hinton2015distilling",
            "sanh2019distilbert",
        ]
        assert page.evaluate("typeof window.__xss") == "undefined"
        assert tab.dialogs == []
        assert tab.other_hosts() == []
    finally:
        tab.close()


def test_notebook_page_typesets_its_math_from_this_host(browser, fixture_url: str):
    tab = Watched(browser, fixture_url)
    page = tab.page
    try:
        page.goto(f"{fixture_url}/notebooks/sources/logit/")
        page.locator(".jupyter-wrapper .jp-RenderedMarkdown .katex").first.wait_for(timeout=20_000)
        assert page.locator(".jupyter-wrapper .katex-display").count() == 1
        # progress bars are plain output in their final state; no empty or red stderr box
        outputs = page.locator(".jp-OutputArea-output")
        texts = [o.inner_text().strip() for o in outputs.all()]
        assert "temperature = 4.0" in texts and "100%|##########| 100/100" in texts, texts
        assert all(texts), f"an empty output box: {texts}"
        assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
        tab.shot("10-notebook")
        assert tab.other_hosts() == []  # mkdocs-jupyter's CDN MathJax and Mermaid tags are gone
        assert tab.errors == []
    finally:
        tab.close()
