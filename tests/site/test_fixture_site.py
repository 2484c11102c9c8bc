"""The fixture knowledge base's site: its pages and links, identical builds, and untrusted text
(HTML, Markdown smuggling HTML, javascript: URLs) that reaches the pages only as inert text."""

from __future__ import annotations

import filecmp
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kdatlas.problems import KnowledgeBaseError
from kdatlas.site.build import load_knowledge_base
from kdatlas.site.sitecheck import check_site

from .conftest import FIXTURE_ENV, FIXTURE_KB, build_site

pytestmark = pytest.mark.slow


def test_fixture_site_has_working_links_and_its_pages(fixture_site: Path):
    broken, external = check_site(fixture_site)
    assert broken == [] and external == []
    logit = (fixture_site / "sources" / "logit" / "index.html").read_text(encoding="utf-8")
    assert 'id="zhao2022decoupled"' in logit and 'id="hinton2015distilling"' in logit
    assert "@inproceedings{zhao2022decoupled," in logit
    assert (
        'href="../../api/reference_impls/sources/logit/dkd/#reference_impls.sources.logit.dkd.DKDLoss"'
        in logit
    )
    # kd's GPU record hashed kd.py and test_kd.py as they are in the fixture: current.
    assert re.search(
        r'kd-status-passed" title="NVIDIA H100 80GB HBM3, torch 2.13.0, commit 0123456789">'
        r"GPU: passed \(2/2\), 2026-11-",
        logit,
    )
    # kd's CPU record saw another kd.py; dkd's record has no hashes: both changed since.
    assert "changed since the last CPU run (2026-11-02)" in logit
    assert "passed (1/1, 1 skipped)" in logit  # what that CPU run saw (a CUDA test skipped)
    assert "changed since the last GPU run (2026-11-01)" in logit
    assert "that run: failed (0/1)" in logit  # GPU record of dkd
    # dkd is listed under Attention as "see also", linking to its home leaf, and back.
    attention = (fixture_site / "algorithms" / "attention" / "index.html").read_text(
        encoding="utf-8"
    )
    assert re.search(r'see also</span>: filed under <a href="../../sources/logit/">', attention)
    assert re.search(r'also listed under <a href="../../algorithms/attention/">', logit)
    papers = (fixture_site / "papers" / "index.html").read_text(encoding="utf-8")
    assert 'href="../sources/logit/#zhao2022decoupled"' in papers
    assert 'href="../schemes/offline/#hinton2015distilling"' in papers  # every leaf listing it
    surveys = (fixture_site / "surveys" / "index.html").read_text(encoding="utf-8")
    assert 'id="sanh2019distilbert"' in surveys and 'class="kd-citation-bibtex"' in surveys
    bib = (fixture_site / "downloads" / "leaves" / "logit.bib").read_text(encoding="utf-8")
    assert re.findall(r"^@\w+\{([^,]+),", bib, re.M) == [
        "hinton2015distilling",
        "payload2024evil",
        "zhao2022decoupled",
    ]
    assert not (fixture_site / "SUMMARY").exists()
    notebook = (fixture_site / "notebooks" / "sources" / "logit" / "index.html").read_text(
        encoding="utf-8"
    )
    assert "temperature = 4.0" in notebook
    assert not re.search(r"<script[^>]*src=\"(https?:|\")", notebook)  # mkdocs-jupyter's CDN tags
    assert 'href="../../downloads/notebooks/sources/logit.py"' in logit
    assert (fixture_site / "downloads" / "notebooks" / "sources" / "logit.py").is_file()


class ActiveContent(HTMLParser):
    """Script bodies, event-handler attributes and javascript: URLs of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.in_script = False
        self.scripts: list[str] = []
        self.handlers: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.in_script = tag == "script"
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append(f"{tag} {name}={value}")
            squeezed = re.sub(r"[\x00-\x20]", "", value or "").lower()
            if name in ("href", "src", "action", "formaction") and squeezed.startswith(
                "javascript:"
            ):
                self.urls.append(f"{tag} {name}={value}")

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            self.scripts.append(data)


def test_untrusted_text_is_inert_in_every_page(fixture_site: Path):
    pages = sorted(fixture_site.rglob("*.html"))
    seen_as_text = 0
    for path in pages:
        text = path.read_text(encoding="utf-8")
        active = ActiveContent()
        active.feed(text)
        where = path.relative_to(fixture_site)
        assert not [s for s in active.scripts if "__xss" in s], where
        assert active.handlers == [], where
        assert active.urls == [], where
        seen_as_text += text.count("__xss")
    assert seen_as_text > 20  # the payloads are on the pages, as text


def test_data_that_kdatlas_check_refuses_is_refused_by_the_build(monkeypatch):
    monkeypatch.delenv("KDATLAS_SITE_ALLOW_PROBLEMS", raising=False)
    with pytest.raises(KnowledgeBaseError, match="holds HTML markup"):
        load_knowledge_base(FIXTURE_KB)


def test_two_builds_give_identical_sites(fixture_site: Path, tmp_path: Path):
    again = tmp_path / "again"
    result = build_site(again, kb_root=FIXTURE_KB, extra_env=FIXTURE_ENV)
    assert result.returncode == 0, result.stderr
    first = sorted(p.relative_to(fixture_site) for p in fixture_site.rglob("*") if p.is_file())
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second
    _, mismatch, errors = filecmp.cmpfiles(
        fixture_site, again, [p.as_posix() for p in first], shallow=False
    )
    assert mismatch == [] and errors == []
