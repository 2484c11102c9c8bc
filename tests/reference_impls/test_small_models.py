"""Each method whose defaults misbehave on the digits models says so, and names the notebook's setting.

A method's module docstring (its API page) has an "On small models" paragraph: what
its authors' defaults did on the tiny digits pair and which setting the notebook uses
instead. Here we check what can be checked without training: the paragraph is there,
it names the setting, and the notebook really uses that setting.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FEATURE = "docs/notebooks/sources/feature.py"
LOGIT = "docs/notebooks/sources/logit.py"
SIMILARITY = "docs/notebooks/sources/similarity.py"
ONLINE = "docs/notebooks/schemes/online.py"
SELF = "docs/notebooks/schemes/self.py"
OFFLINE = "docs/notebooks/schemes/offline.py"

# module -> (notebook, what the docstring names, what the notebook's code contains)
SETTINGS: dict[str, tuple[str, str, str]] = {
    "reference_impls.sources.feature.at": (FEATURE, "stages=(0,)", "ATLoss(stages=(0,))"),
    "reference_impls.sources.feature.nst": (
        FEATURE,
        "NSTLoss(stages=(0,))",
        "NSTLoss(stages=(0,))",
    ),
    "reference_impls.sources.feature.ft": (FEATURE, "beta=62.5", "beta=62.5"),
    "reference_impls.sources.feature.mgd": (FEATURE, "alpha_mgd=1e-2", "alpha_mgd=1e-2"),
    "reference_impls.sources.feature.reviewkd": (
        FEATURE,
        "WARMUP = max(1, round(9 * 20 / 240))",
        "WARMUP = max(1, round(exp.epochs * 20 / 240))",
    ),
    "reference_impls.sources.feature.fitnets": (
        FEATURE,
        "FitNetsLoss(student_channels, teacher_channels)",
        "FitNetsLoss(student_channels, teacher_channels)",
    ),
    "reference_impls.sources.feature.ofd": (
        FEATURE,
        "margins_from_data(teacher, x_train)",
        "margins_from_data(teacher, exp.labelled.x_train)",
    ),
    "reference_impls.sources.feature.simkd": (
        FEATURE,
        "SimKD(student_cnn(), teacher)",
        "SimKD(student_cnn(), teacher)",
    ),
    "reference_impls.sources.logit.dkd": (
        LOGIT,
        "WARMUP = max(1, round(15 * 20 / 240))",
        "WARMUP = max(1, round(exp.epochs * 20 / 240))",
    ),
    "reference_impls.sources.logit.ttm": (LOGIT, "kd_weight=10.0", "TTMLoss(gamma=0.1), 1.0, 10.0"),
    "reference_impls.sources.similarity.fsp": (SIMILARITY, "50.0 /", "50.0 / (teacher_channels"),
    "reference_impls.sources.similarity.sp": (
        SIMILARITY,
        "SPLoss(gamma=3000.0)",
        "SPLoss(gamma=3000.0)",
    ),
    "reference_impls.sources.similarity.pkt": (
        SIMILARITY,
        "kd_weight=30000.0",
        "PKTLoss(), kd_weight=30000.0",
    ),
    "reference_impls.sources.similarity.dist": (SIMILARITY, "DISTLoss()", "DISTLoss()"),
    "reference_impls.sources.similarity.cc": (SIMILARITY, "kd_weight=0.02", "kd_weight=0.02"),
    "reference_impls.sources.similarity.ickd": (
        SIMILARITY,
        "kd_weight=2.5",
        "ICKDLoss(student_channels, teacher_channels), kd_weight=2.5",
    ),
    "reference_impls.schemes.online.kdcl": (ONLINE, "augment=None", "KDCL(peers, augment=None)"),
    "reference_impls.schemes.online.one": (
        ONLINE,
        "rampup_epochs=ONE_RAMPUP",
        "rampup_epochs=ONE_RAMPUP",
    ),
    "reference_impls.schemes.self.byot": (SELF, "BYOT(student_cnn())", "BYOT(student_cnn())"),
    "reference_impls.schemes.self.pskd": (SELF, "PSKD(student_cnn())", "self_taught(PSKD)"),
    "reference_impls.schemes.self.instance_label_smoothing": (
        SELF,
        "InstanceSpecificLabelSmoothing(student_cnn())",
        "self_taught(InstanceSpecificLabelSmoothing)",
    ),
    "reference_impls.schemes.self.ddgsd": (SELF, "DDGSD(student_cnn())", "self_taught(DDGSD)"),
    "reference_impls.schemes.offline.takd": (
        OFFLINE,
        "TinyCNN((16, 32, 64))",
        "TinyCNN((16, 32, 64))",
    ),
}


def module_docstring(module: str) -> str:
    return " ".join((importlib.import_module(module).__doc__ or "").split())


def notebook_code(notebook: str) -> str:
    """The notebook's code cells (jupytext percent format: markdown lines are comments)."""
    lines = (ROOT / notebook).read_text(encoding="utf-8").splitlines()
    return " ".join(" ".join(line for line in lines if not line.startswith("#")).split())


@pytest.mark.parametrize("module", SETTINGS, ids=list(SETTINGS))
def test_the_page_says_what_happens_on_small_models_and_names_the_notebooks_setting(module):
    notebook, named, _ = SETTINGS[module]
    docstring = module_docstring(module)
    assert "On small models" in docstring, f"{module}: no 'On small models' paragraph"
    note = docstring[docstring.index("On small models") :]
    assert named in note, f"{module}: the note does not name the setting {named!r}"
    assert f"{Path(notebook).stem}" in note and "notebook" in note, f"name {notebook}"
    assert "measured" in note, "say what the notebook (or your own run) measured"


@pytest.mark.parametrize("module", SETTINGS, ids=list(SETTINGS))
def test_the_notebook_uses_the_setting_its_method_page_names(module):
    notebook, _, used = SETTINGS[module]
    assert used in notebook_code(notebook), f"{notebook} no longer uses {used!r}: update {module}"


def test_the_notes_quote_no_placeholder():
    for module in SETTINGS:
        assert "__" not in module_docstring(module).replace("__init__", ""), module
