"""This repository's site builds strictly, with working links, from this host only, and its
generated pages are the same on every build and follow the data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kdatlas.loader import load_with_problems
from kdatlas.site.build import load_knowledge_base
from kdatlas.site.pages import generate
from kdatlas.site.sitecheck import check_site

from .conftest import FIXTURE_KB, REPO

pytestmark = pytest.mark.slow


def test_real_site_builds_strictly_with_no_broken_link_and_no_other_host(real_site: Path):
    broken, external = check_site(real_site)
    assert broken == []
    assert external == []
    assert (real_site / "index.html").is_file()
    assert (real_site / "downloads" / "all.bib").is_file()
    assert (real_site / "downloads" / "kdatlas.json").is_file()
    kb, _ = load_with_problems(REPO)
    for area, leaf in kb.leaves():
        assert (real_site / area.id / leaf.id / "index.html").is_file()
        assert (real_site / "downloads" / "leaves" / f"{leaf.id}.bib").is_file()
    home = (real_site / "index.html").read_text(encoding="utf-8")
    assert home.count('<a class="kd-card') == sum(1 for _ in kb.leaves()) and "kd-chart" in home
    for page in ("which-method", "taxonomy", "notebooks", "api"):  # reachable from the home page
        assert f'href="{page}/"' in home, page
        assert (real_site / page / "index.html").is_file()


def test_api_pages_carry_the_equations_for_katex(real_site: Path):
    page = (
        real_site / "api" / "reference_impls" / "sources" / "logit" / "kd" / "index.html"
    ).read_text(encoding="utf-8")
    assert '<div class="arithmatex">\\[' in page  # display math from the module docstring
    assert 'id="source"' in page
    assert 'id="reference_impls.sources.logit.kd.KDLoss"' in page


def test_generated_pages_of_the_real_data_are_deterministic():
    kb = load_knowledge_base(REPO)
    assert generate(kb, REPO).files == generate(kb, REPO).files


def test_a_yaml_edit_shows_up_in_the_generated_page(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("KDATLAS_SITE_ALLOW_PROBLEMS", "1")
    root = tmp_path / "kb"
    shutil.copytree(FIXTURE_KB, root)
    area_file = root / "taxonomy" / "schemes.yaml"
    area_file.write_text(
        area_file.read_text(encoding="utf-8").replace(
            "title: Offline Distillation", "title: Offline KD, edited"
        ),
        encoding="utf-8",
    )
    files = generate(load_knowledge_base(root), REPO).files
    assert "# Offline KD&#44; edited" in files["schemes/offline.md"]
