"""No build prints the MkDocs 1.x toolchain's banners to users.

Material for MkDocs (end-of-life notice, pointing to Zensical) and the plugins that import
ProperDocs' ``replacement_warning`` (gen-files, literate-nav, section-index) print a long
banner on every ``mkdocs`` run. Both are silenced by the environment variables they document,
set once in ``scripts/bootstrap.sh`` (which build.sh, serve.sh and test.sh source); README.md
says why. These tests build a tiny site with the same theme and plugins: with the variables
no banner, without them the banners (else upstream dropped them and the variables can go).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

BANNERS = (
    "Material for MkDocs reaches end of life",  # material/templates/__init__.py
    "MkDocs may break support for all existing plugins",  # properdocs/replacement_warning.py
)
MINIMAL_CONFIG = """\
site_name: Banner check
theme:
  name: material
plugins:
  - search
  - gen-files:
      scripts: []
  - literate-nav
  - section-index
"""


def quieting_variables() -> dict[str, str]:
    """The variables ``scripts/bootstrap.sh`` exports to silence the banners."""
    text = (REPO / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    line = re.search(r"^export (NO_MKDOCS_2_WARNING=.*)$", text, re.MULTILINE)
    assert line, "scripts/bootstrap.sh no longer exports NO_MKDOCS_2_WARNING"
    return dict(item.split("=", 1) for item in line.group(1).split())


def test_every_script_and_test_that_builds_sets_the_variables() -> None:
    variables = quieting_variables()
    assert variables == {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    for script in ("build.sh", "serve.sh", "test.sh"):
        text = (REPO / "scripts" / script).read_text(encoding="utf-8")
        assert 'source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"' in text, script
    for builder in ("tests/site/conftest.py", "benchmarks/bench_site.py"):
        text = (REPO / builder).read_text(encoding="utf-8")
        for name, value in variables.items():
            assert f'"{name}": "{value}"' in text, builder
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert all(name in readme for name in variables)  # and says why


def _build(tmp_path: Path, env: dict[str, str]) -> str:
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "index.md").write_text("# Banner check\n", encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(MINIMAL_CONFIG, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.mark.slow
def test_a_build_with_the_variables_prints_no_banner(tmp_path: Path) -> None:
    bare = {k: v for k, v in os.environ.items() if k not in quieting_variables()}
    loud = _build(tmp_path, bare)
    if not any(banner in loud for banner in BANNERS):
        pytest.skip("this toolchain prints no banner: the variables are no longer needed")
    quiet = _build(tmp_path, {**bare, **quieting_variables()})
    assert [banner for banner in BANNERS if banner in quiet] == []
    assert "NO_MKDOCS_2_WARNING" not in quiet and "DISABLE_MKDOCS_2_WARNING" not in quiet
