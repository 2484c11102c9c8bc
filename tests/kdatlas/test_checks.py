"""The taxonomy is the one list of implementations: ``kdatlas check`` holds the files to it.

Each case breaks one thing in the fixture knowledge base (``conftest.py``; the
implementation ``kd`` has its ``object`` on line 25 of ``taxonomy/sources.yaml``)
and expects the one ``file:line`` message, with and without ``--no-imports``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kdatlas.checks import imports_from, leaf_folder
from kdatlas.loader import load

KDATLAS = Path(__file__).resolve().parents[2] / "kdatlas"
LEAF = "reference_impls/sources/logit"


def _move_module_to_feature(kb) -> None:
    kb.write("reference_impls/sources/feature/__init__.py", "")
    kb.write("reference_impls/sources/feature/losses.py", kb.read(f"{LEAF}/losses.py"))
    kb.replace("taxonomy/sources.yaml", "sources.logit.losses", "sources.feature.losses")


LAYOUT_CASES: list[tuple[str, Callable, str]] = [
    (
        "object-outside-reference-impls",
        lambda kb: kb.replace(
            "taxonomy/sources.yaml",
            "reference_impls.sources.logit.losses:KDLoss",
            "torch.nn:MSELoss",
        ),
        "taxonomy/sources.yaml:25: error: object 'torch.nn:MSELoss' is outside reference_impls; "
        "implementations live in reference_impls/<area>/<leaf>/",
    ),
    (
        "module-in-another-leaf",
        _move_module_to_feature,
        "taxonomy/sources.yaml:25: error: object 'reference_impls.sources.feature.losses:KDLoss': "
        "the module must be in the leaf's folder reference_impls/sources/logit/ "
        "(expected 'reference_impls.sources.logit.losses')",
    ),
    (
        "module-file-missing",
        lambda kb: kb.path(f"{LEAF}/losses.py").rename(kb.path(f"{LEAF}/other.py")),
        "taxonomy/sources.yaml:25: error: object 'reference_impls.sources.logit.losses:KDLoss': "
        "reference_impls/sources/logit/losses.py does not exist",
    ),
    (
        "test-file-missing",
        lambda kb: kb.path(f"tests/{LEAF}/test_losses.py").unlink(),
        "taxonomy/sources.yaml:25: error: implementation 'kd' has no test file "
        "tests/reference_impls/sources/logit/test_losses.py",
    ),
    (
        "notebook-does-not-use-it",
        lambda kb: kb.write(
            "docs/notebooks/sources/logit.py",
            # Near misses: a longer class name, a longer module name, the class as an attribute.
            "# %%\nimport reference_impls.sources.logit.losses_v2\nKDLossy = other.KDLoss\n",
        ),
        "taxonomy/sources.yaml:25: error: the leaf's notebook does not use implementation 'kd' "
        "(neither KDLoss nor reference_impls.sources.logit.losses appears in it)",
    ),
]


@pytest.mark.parametrize("imports", [False, True], ids=["no-imports", "imports"])
@pytest.mark.parametrize(
    ("mutate", "expected"), [c[1:] for c in LAYOUT_CASES], ids=[c[0] for c in LAYOUT_CASES]
)
def test_implementation_layout_is_checked_with_file_and_line(
    fixture_kb, run_cli, mutate, expected, imports
):
    mutate(fixture_kb)
    result = run_cli(fixture_kb.root, "check", "--imports" if imports else "--no-imports")
    assert expected in result.output.splitlines(), result.output
    assert result.exit_code == 1


@pytest.mark.parametrize(
    "notebook",
    [
        "# %%\nfrom reference_impls.sources.logit.losses import KDLoss\n",
        "# %%\nimport reference_impls.sources.logit.losses as kd\n",
        "# %%\nloss = make(KDLoss)\n",
    ],
    ids=["import-of-the-class", "import-of-the-module", "class-only"],
)
def test_the_notebook_may_name_the_class_or_the_module(fixture_kb, run_cli, notebook):
    fixture_kb.write("docs/notebooks/sources/logit.py", notebook)
    result = run_cli(fixture_kb.root, "check", "--no-imports")
    assert result.exit_code == 0, result.output


FURTHER = "docs/notebooks/sources/logit-calibration.py"


def _run_kd_in_a_further_notebook(kb, path: str = FURTHER, text: str | None = None) -> None:
    """The leaf's notebook stops naming KDLoss; ``kd`` names a further notebook instead."""
    if text is not None:
        kb.write(path, text)
    kb.replace(
        "taxonomy/sources.yaml",
        "        object: reference_impls.sources.logit.losses:KDLoss\n",
        f"        object: reference_impls.sources.logit.losses:KDLoss\n        notebook: {path}\n",
    )
    kb.write("docs/notebooks/sources/logit.py", "# %%\nprint('the leaf notebook')\n")


def test_an_implementation_may_run_in_a_further_notebook_of_its_leaf(fixture_kb, run_cli):
    _run_kd_in_a_further_notebook(
        fixture_kb, text=fixture_kb.read("docs/notebooks/sources/logit.py")
    )
    result = run_cli(fixture_kb.root, "check", "--no-imports")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        (
            FURTHER,
            None,
            f"taxonomy/sources.yaml:26: error: notebook '{FURTHER}' does not exist",
        ),
        (
            "docs/notebooks/sources/feature-extra.py",
            "# %%\nKDLoss\n",
            "taxonomy/sources.yaml:26: error: notebook 'docs/notebooks/sources/feature-extra.py': "
            "a leaf's further notebook is docs/notebooks/sources/logit-<topic>.py",
        ),
        (
            FURTHER,
            "# %%\nprint('nothing')\n",
            f"taxonomy/sources.yaml:25: error: notebook {FURTHER} does not use implementation "
            "'kd' (neither KDLoss nor reference_impls.sources.logit.losses appears in it)",
        ),
    ],
    ids=["missing", "named-for-another-leaf", "does-not-use-it"],
)
def test_a_further_notebook_is_checked_like_the_leafs(fixture_kb, run_cli, path, text, expected):
    _run_kd_in_a_further_notebook(fixture_kb, path, text)
    result = run_cli(fixture_kb.root, "check", "--no-imports")
    assert expected in result.output.splitlines(), result.output
    assert result.exit_code == 1


def test_leaf_folder_is_the_leaf_id_as_a_package_name():
    assert leaf_folder("sources", "logit") == Path("reference_impls/sources/logit")
    assert leaf_folder("algorithms", "multi-teacher") == Path(
        "reference_impls/algorithms/multi_teacher"
    )
    assert leaf_folder("modalities", "3d") == Path("reference_impls/modalities/_3d")


# --------------------------------------------------------------------------- see also


def _see_also(kb, area: str, *ids: str) -> None:
    """Append a see_also list to the area's last leaf: in the fixture's other areas the file
    ends with that leaf's papers (line 12), so the list is on line 13, its items from 14."""
    kb.write(
        f"taxonomy/{area}.yaml",
        kb.read(f"taxonomy/{area}.yaml")
        + "    see_also:\n"
        + "".join(f"      - {i}\n" for i in ids),
    )


def test_see_also_lists_an_implementation_of_another_leaf(fixture_kb, run_cli):
    _see_also(fixture_kb, "algorithms", "kd")
    result = run_cli(fixture_kb.root, "check")
    assert result.exit_code == 0, result.output
    kb = load(fixture_kb.root)
    attention = kb.leaf("algorithms", "attention")
    assert attention.see_also == ["kd"]
    [(area, home, implementation)] = kb.see_also(attention)
    assert (area.id, home.id, implementation.id) == ("sources", "logit", "kd")
    # Listed elsewhere, it is still one implementation, under its home leaf.
    assert [i.id for _a, _l, i in kb.implementations()] == ["kd"]


@pytest.mark.parametrize(
    ("area", "ids", "expected"),
    [
        (
            "algorithms",
            ("nope",),
            "taxonomy/algorithms.yaml:14: error: see_also: no implementation has the id 'nope'",
        ),
        (
            "algorithms",
            ("kd", "kd"),
            "taxonomy/algorithms.yaml:15: error: see_also: 'kd' is listed twice",
        ),
        (
            "algorithms",
            ("Not-A-Slug",),
            "taxonomy/algorithms.yaml:14: error: leaves.0.see_also.0: 'Not-A-Slug' is not a slug",
        ),
    ],
    ids=["unknown-id", "listed-twice", "not-a-slug"],
)
def test_bad_see_also_is_an_error_at_its_line(fixture_kb, run_cli, area, ids, expected):
    _see_also(fixture_kb, area, *ids)
    result = run_cli(fixture_kb.root, "check", "--no-imports")
    assert any(line.startswith(expected) for line in result.output.splitlines()), result.output
    assert result.exit_code == 1


def test_see_also_of_the_leafs_own_implementation_is_an_error(fixture_kb, run_cli):
    # The logit leaf ends with its implementation entry (line 27); its see_also follows it.
    fixture_kb.replace(
        "taxonomy/sources.yaml",
        "          - hinton2015distilling\n  - id: feature",
        "          - hinton2015distilling\n    see_also:\n      - kd\n  - id: feature",
    )
    result = run_cli(fixture_kb.root, "check", "--no-imports")
    assert (
        "taxonomy/sources.yaml:29: error: see_also: 'kd' is an implementation of this leaf; "
        "list only implementations filed under other leaves"
    ) in result.output.splitlines(), result.output
    assert result.exit_code == 1


# --------------------------------------------------------------------------- imports


def test_imports_come_from_the_checked_root_and_leave_the_callers_modules(fixture_kb, run_cli):
    import reference_impls  # the repository's own package, which has no sources.logit.losses

    before = sys.modules["reference_impls"]
    assert run_cli(fixture_kb.root, "check").exit_code == 0
    assert sys.modules["reference_impls"] is before
    assert "reference_impls.sources.logit.losses" not in sys.modules
    with imports_from(fixture_kb.root):
        import reference_impls.sources.logit.losses as fixture_module

        assert Path(fixture_module.__file__).is_relative_to(fixture_kb.root)
    assert sys.modules["reference_impls"] is reference_impls


def _imported_kdatlas_modules(path: Path) -> set[str]:
    """Every ``kdatlas.*`` module a file imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kdatlas"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kdatlas"))
    return found


def test_the_tool_modules_import_each_other_without_a_cycle():
    graph = {
        ".".join(("kdatlas", *path.relative_to(KDATLAS).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): _imported_kdatlas_modules(path)
        for path in sorted(KDATLAS.rglob("*.py"))
    }
    done: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, " -> ".join((*stack, module))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, (*stack, module))
        done.add(module)

    assert {"kdatlas.loader", "kdatlas.checks", "kdatlas.site.pages"} <= set(graph)
    for module in graph:
        visit(module, ())
