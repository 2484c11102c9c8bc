"""The Surveys page, generated from taxonomy/surveys.yaml of the site fixture (no mkdocs build)."""

from __future__ import annotations

from kdatlas.loader import load_with_problems
from kdatlas.site.pages import generate

from .conftest import FIXTURE_KB


def _site():
    kb, _problems = load_with_problems(FIXTURE_KB)  # the fixture holds payloads check refuses
    return generate(kb, FIXTURE_KB)


def test_surveys_page_lists_the_survey_its_citation_and_the_earlier_surveys():
    site = _site()
    page = site.files["surveys.md"]
    assert "    * [Surveys](surveys.md)" in site.nav  # under the Papers tab
    survey, citation, earlier = (
        page.index("{#the-survey}"),
        page.index("{#citation}"),
        page.index("{#earlier-surveys}"),
    )
    assert survey < page.index('id="sanh2019distilbert"') < citation
    # The citation block: the survey's BibTeX first, then the papers to cite, in the file's order.
    start = page.index('<pre class="kd-citation-bibtex">')
    block = page[start : page.index("</pre>", start)]
    assert (
        block.index("@article{sanh2019distilbert,")
        < block.index("@inproceedings{payload2024evil,")
        < block.index("@article{hinton2015distilling,")
    )
    assert "\n\n" not in block  # a blank line would end the raw HTML block
    assert citation < page.index('id="hinton2015distilling"') < earlier
    assert earlier < page.index('id="zhao2022decoupled"')
    assert "@inproceedings{zhao2022decoupled," in page[earlier:]  # each row has its BibTeX


def test_surveys_page_escapes_untrusted_bibtex():
    page = _site().files["surveys.md"]
    assert "<script>" not in page and "<b onmouseover" not in page
    assert "&lt;script&gt;window.__xss = &quot;bib title&quot;&lt;/script&gt;" in page
    assert 'href="javascript:' not in page


def test_home_and_papers_index_link_to_the_surveys_page():
    files = _site().files
    assert "(surveys.md)" in files["index.md"]
    assert 'href="../surveys/#earlier-surveys"' in files["papers/index.md"]
    assert "Surveys › cited with the survey" in files["papers/index.md"]
