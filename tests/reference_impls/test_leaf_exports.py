"""Every implementation of the taxonomy is importable from its leaf package
(``from reference_impls.sources.logit import KDLoss``), listed in its ``__all__``,
and the leaf's ``__init__.py`` is in the form ``kdatlas new implementation`` extends."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from kdatlas import loader
from kdatlas.scaffold import export_from_package

ROOT = Path(__file__).resolve().parents[2]


def taxonomy_objects() -> list[str]:
    kb, problems = loader.load_with_problems(ROOT)
    broken = [str(p) for p in problems if p.is_error and "taxonomy" in Path(p.path).parts]
    if kb is None or broken:
        raise RuntimeError("the taxonomy does not load:\n" + "\n".join(broken))
    return sorted({implementation.object for _, _, implementation in kb.implementations()})


OBJECTS = taxonomy_objects()


def test_the_taxonomy_has_implementations():
    assert len(OBJECTS) >= 30


@pytest.mark.parametrize("object_path", OBJECTS)
def test_importable_from_its_leaf_package(object_path: str):
    module_name, class_name = object_path.split(":")
    package_name = module_name.rsplit(".", 1)[0]
    package = importlib.import_module(package_name)
    defined = getattr(importlib.import_module(module_name), class_name)
    assert getattr(package, class_name, None) is defined, (
        f"add `from {module_name} import {class_name}` to {package_name}'s __init__.py"
    )
    assert class_name in package.__all__, f'add "{class_name}" to {package_name}.__all__'


@pytest.mark.parametrize(
    "package_name", sorted({o.split(":")[0].rsplit(".", 1)[0] for o in OBJECTS})
)
def test_leaf_package_is_in_the_form_the_scaffold_extends(package_name: str):
    init = ROOT / Path(*package_name.split(".")) / "__init__.py"
    text = init.read_text(encoding="utf-8")
    assert export_from_package(text, f"{package_name}.new", "NewLoss") is not None, (
        f"{init.relative_to(ROOT)}: keep it to a docstring, sorted `from ... import` lines and a "
        "sorted __all__, so `kdatlas new implementation` can add to it"
    )
