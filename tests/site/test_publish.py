"""What publishing adds to the site: "Edit this page" opens the data a page is made from, the
footer shows the version, the repository link calls no API, and the addresses can be set."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from mkdocs.config import load_config

from kdatlas.site import mkdocs_hooks
from kdatlas.site.build import load_knowledge_base
from kdatlas.site.pages import generate

from .conftest import REPO

EDIT = re.compile(r'<a href="([^"]+)" title="Edit this page"')


def _repo_url() -> str:
    return load_config(str(REPO / "mkdocs.yml")).repo_url


def _edit_link(site: Path, page: str) -> str:
    found = EDIT.findall((site / page).read_text(encoding="utf-8"))
    assert len(found) == 1, f"{page}: {found}"
    return found[0]


@pytest.mark.slow
def test_edit_links_open_the_yaml_bibtex_or_python_of_the_page(real_site: Path):
    edit = _repo_url().rstrip("/") + "/edit/main/"
    assert _edit_link(real_site, "sources/logit/index.html") == edit + "taxonomy/sources.yaml"
    assert _edit_link(real_site, "schemes/index.html") == edit + "taxonomy/schemes.yaml"
    assert _edit_link(real_site, "papers/index.html") == edit + "bib/kd.bib"
    assert _edit_link(real_site, "surveys/index.html") == edit + "taxonomy/surveys.yaml"
    assert _edit_link(real_site, "design/index.html") == edit + "docs/design.md"
    assert (
        _edit_link(real_site, "api/reference_impls/sources/logit/dkd/index.html")
        == edit + "reference_impls/sources/logit/dkd.py"
    )


@pytest.mark.slow
def test_footer_shows_the_version_and_the_repository_link_calls_no_api(real_site: Path):
    with (REPO / "pyproject.toml").open("rb") as handle:
        version = tomllib.load(handle)["project"]["version"]
    page = (real_site / "index.html").read_text(encoding="utf-8")
    assert re.search(rf'kd-version">\s*KD Atlas {re.escape(version)}\s*<', page)
    assert f'href="{_repo_url()}"' in page and 'class="md-source"' in page
    assert 'data-md-component="source"' not in page  # Material would ask api.github.com


@pytest.mark.slow
def test_every_generated_source_of_an_edit_link_exists():
    kb = load_knowledge_base(REPO)
    site = generate(kb, REPO, lambda notebook: b"{}")
    assert {"index.md", "papers/index.md", "surveys.md", "contributing.md"} <= set(site.sources)
    for page, source in site.sources.items():
        assert (REPO / source).is_file(), f"{page}: {source}"


def test_addresses_come_from_the_environment_or_the_repository(monkeypatch):
    config = load_config(str(REPO / "mkdocs.yml"))
    monkeypatch.delenv("KDATLAS_REPO_URL", raising=False)
    monkeypatch.delenv("KDATLAS_SITE_URL", raising=False)
    derived = mkdocs_hooks.on_config(config)
    assert derived.site_url == mkdocs_hooks.github_pages_url(config.repo_url)
    config = load_config(str(REPO / "mkdocs.yml"))
    monkeypatch.setenv("KDATLAS_REPO_URL", "https://github.com/owner/name")
    monkeypatch.setenv("KDATLAS_SITE_URL", "https://example.org/atlas")
    given = mkdocs_hooks.on_config(config)
    assert given.repo_url == "https://github.com/owner/name"
    assert given.site_url == "https://example.org/atlas/"
