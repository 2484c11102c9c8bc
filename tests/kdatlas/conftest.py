"""A small, valid knowledge base written into ``tmp_path`` from fixture strings.

Line numbers matter: the bad-input tests assert exact ``file:line`` positions,
so the texts below are laid out literally (see the line comments). The one
implementation sits where ``kdatlas check`` wants it: its module in
``reference_impls/sources/logit/``, its test file beside it under ``tests/``,
its class named by the leaf's notebook. ``kdatlas check`` imports the fixture's
own ``reference_impls`` (it sets the repository's copy aside while it does).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from kdatlas.cli import app

HEADER = "# yaml-language-server: $schema=../kdatlas/schemas/taxonomy.schema.json\n"

# taxonomy/sources.yaml, line by line (the numbers are what the tests assert).
SOURCES = (
    HEADER  # 1
    + "id: sources\n"  # 2
    + "title: Distillation Sources\n"  # 3
    + "summary: >-\n"  # 4
    + "  Where in the teacher the knowledge is taken from.\n"  # 5
    + "leaves:\n"  # 6
    + "  - id: logit\n"  # 7
    + "    title: Logit-based Distillation\n"  # 8
    + "    summary: >-\n"  # 9
    + "      Match the softened output distributions of teacher and student.\n"  # 10
    + "    notebook: docs/notebooks/sources/logit.py\n"  # 11
    + "    papers:\n"  # 12
    + "      - hinton2015distilling  # the original\n"  # 13
    + "      - zhao2022decoupled\n"  # 14
    + "    topics:\n"  # 15
    + "      - id: calibration\n"  # 16
    + "        title: Calibration\n"  # 17
    + "        summary: >-\n"  # 18
    + "          Logit methods that rescale or standardise the logits.\n"  # 19
    + "        papers:\n"  # 20
    + "          - sun2024logit\n"  # 21
    + "    implementations:\n"  # 22
    + "      - id: kd\n"  # 23
    + "        title: KD (Hinton et al., 2015)\n"  # 24
    + "        object: {package}.losses:KDLoss\n"  # 25
    + "        papers:\n"  # 26
    + "          - hinton2015distilling\n"  # 27
    + "  - id: feature\n"  # 28
    + "    title: Feature-based Distillation\n"  # 29
    + "    summary: >-\n"  # 30
    + "      Match intermediate feature maps through small connectors.\n"  # 31
    + "    papers:\n"  # 32
    + "      - romero2015fitnets\n"  # 33
)

OTHER_AREAS = {
    "schemes": ("Distillation Schemes", "offline", "Offline Distillation", "romero2015fitnets"),
    "algorithms": ("Distillation Algorithms", "attention", "Attention-based", "zhao2022decoupled"),
    "modalities": ("Modalities", "3d", "3D Input", "sun2024logit"),
    "applications": ("Applications", "llm", "Large Language Models", "hinton2015distilling"),
}


def other_area(area_id: str) -> str:
    title, leaf_id, leaf_title, paper = OTHER_AREAS[area_id]
    return (
        HEADER  # 1
        + f"id: {area_id}\n"  # 2
        + f"title: {title}\n"  # 3
        + "summary: >-\n"  # 4
        + "  A short summary of this area for the fixture.\n"  # 5
        + "leaves:\n"  # 6
        + f"  - id: {leaf_id}\n"  # 7
        + f"    title: {leaf_title}\n"  # 8
        + "    summary: >-\n"  # 9
        + "      A short summary of this leaf for the fixture.\n"  # 10
        + "    papers:\n"  # 11
        + f"      - {paper}\n"  # 12
    )


# bib/kd.bib in canonical form (sorted by key, fixed field order).
BIB = """\
@article{hinton2015distilling,
  title = {Distilling the Knowledge in a Neural Network},
  author = {Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},
  journal = {arXiv preprint},
  year = {2015},
  url = {https://arxiv.org/abs/1503.02531},
  eprint = {1503.02531},
  archiveprefix = {arXiv},
}

@inproceedings{romero2015fitnets,
  title = {FitNets: Hints for Thin Deep Nets},
  author = {Romero, Adriana and Ballas, Nicolas},
  booktitle = {ICLR},
  year = {2015},
  url = {https://arxiv.org/abs/1412.6550},
}

@inproceedings{sun2024logit,
  title = {Logit Standardization in Knowledge Distillation},
  booktitle = {CVPR},
  year = {2024},
  url = {https://openaccess.thecvf.com/sun2024},
  doi = {10.1109/CVPR52733.2024.01489},
}

@inproceedings{zhao2022decoupled,
  title = {Decoupled Knowledge Distillation},
  author = {Zhao, Borui and Cui, Quan and Song, Renjie and Qiu, Yiyu and Liang, Jiajun},
  booktitle = {CVPR},
  year = {2022},
  url = {https://arxiv.org/abs/2203.08679},
  code = {https://github.com/megvii-research/mdistiller},
  eprint = {2203.08679},
  archiveprefix = {arXiv},
}
"""
# Lines of the entries in BIB: hinton 1, romero 11, sun 19, zhao 27.

LOSSES = '''\
"""Fixture implementations."""


class KDLoss:
    """A class, as an implementation object must be."""


def kd_function():
    return 0
'''


@dataclass
class FixtureKB:
    """A valid knowledge base under ``root``; ``package`` is its one leaf package of implementations."""

    root: Path
    package: str
    # The fixture texts, for tests (conftest modules are not importable under importlib mode).
    HEADER: ClassVar[str] = HEADER
    BIB: ClassVar[str] = BIB

    def path(self, relative: str) -> Path:
        return self.root / relative

    def read(self, relative: str) -> str:
        return self.path(relative).read_text(encoding="utf-8")

    def write(self, relative: str, text: str) -> None:
        target = self.path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def replace(self, relative: str, old: str, new: str) -> None:
        text = self.read(relative)
        assert old in text, f"{old!r} not in {relative}"
        self.write(relative, text.replace(old, new, 1))

    def snapshot(self) -> dict[str, bytes]:
        """Every file under the root, to prove a command changed nothing."""
        return {
            str(p.relative_to(self.root)): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        }


NOTEBOOK = "# %%\nfrom reference_impls.sources.logit.losses import KDLoss\n\nprint(KDLoss())\n"
PACKAGE = "reference_impls.sources.logit"


def write_fixture(root: Path) -> FixtureKB:
    kb = FixtureKB(root, PACKAGE)
    kb.write("taxonomy/sources.yaml", SOURCES.replace("{package}", PACKAGE))
    for area_id in OTHER_AREAS:
        kb.write(f"taxonomy/{area_id}.yaml", other_area(area_id))
    kb.write("bib/kd.bib", BIB)
    kb.write("docs/notebooks/sources/logit.py", NOTEBOOK)
    folder = PACKAGE.replace(".", "/")
    for depth in range(1, 4):
        kb.write("/".join(folder.split("/")[:depth]) + "/__init__.py", "")
    kb.write(f"{folder}/losses.py", LOSSES)
    kb.write(f"tests/{folder}/test_losses.py", "def test_fixture():\n    pass\n")
    return kb


@pytest.fixture
def fixture_kb(tmp_path: Path) -> FixtureKB:
    return write_fixture(tmp_path / "kb")


@pytest.fixture
def check_refuses_fast(fixture_kb: FixtureKB) -> Callable[[str], None]:
    """Run ``kdatlas check --no-imports`` on the fixture in a subprocess, as CI and hooks do,
    and assert it refuses with ``expected`` (a ``file:line: error: ...`` line) within 20 s,
    without a traceback and without changing any file."""

    def run(expected: str) -> None:
        before = fixture_kb.snapshot()
        start = time.monotonic()
        command = [sys.executable, "-m", "kdatlas", "--root", str(fixture_kb.root)]
        result = subprocess.run(
            [*command, "check", "--no-imports"],
            capture_output=True,
            text=True,
            timeout=60,  # before bounded parsing, alias bombs ran until killed
            check=False,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
        elapsed = time.monotonic() - start
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert expected in result.stdout
        assert elapsed < 20, f"took {elapsed:.1f} s"
        assert fixture_kb.snapshot() == before

    return run


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, root: Path, *args: str, input: str | None = None):
    """Run ``kdatlas --root ROOT ARGS`` in-process; returns the click Result."""
    return runner.invoke(app, ["--root", str(root), *args], input=input, catch_exceptions=False)


@pytest.fixture
def run_cli(runner: CliRunner):
    def run(root: Path, *args: str, input: str | None = None):
        return invoke(runner, root, *args, input=input)

    return run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "repository: reads the repository's own taxonomy/ and bib/ (not a fixture)"
    )
