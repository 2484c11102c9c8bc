"""Every check ``kdatlas check`` runs, each a function from the knowledge base to problems.

The data checks (:mod:`kdatlas.validation`) run on every load. The checks here
look outside the data, at the files the taxonomy points to:

* notebooks exist (:func:`notebook_problems`);
* each implementation's layout (:func:`implementation_file_problems`): its
  ``object`` is in ``reference_impls``, its module is a file in its leaf's
  folder ``reference_impls/<area>/<leaf>/``, its test file
  ``tests/reference_impls/<area>/<leaf>/test_<module>.py`` exists, and the
  leaf's notebook names it (its class or its module);
* implementation objects import and name classes (:func:`import_problems`, the
  slow one, skipped by ``--no-imports``).

All but the last read only files and text, so the pre-commit hook runs them.
Each walks the data once with dictionaries, never comparing pairs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import inspect
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

from kdatlas.knowledge_base import KnowledgeBase
from kdatlas.loader import load_with_problems, sort_problems
from kdatlas.models import Area, Implementation, Leaf
from kdatlas.problems import Problem, Severity

# Re-exported: the data checks lived here before they moved to kdatlas.validation.
from kdatlas.validation import DuplicateIndex as DuplicateIndex
from kdatlas.validation import entry_problems as entry_problems
from kdatlas.validation import located, notebook_path_problem
from kdatlas.validation import where_entry as where_entry

IMPLEMENTATION_PACKAGE = "reference_impls"
TESTS_DIR = Path("tests")


# --------------------------------------------------------------------------- files


def notebook_problems(kb: KnowledgeBase) -> list[Problem]:
    """Referenced notebooks exist; a leaf with implementations has a notebook."""
    problems: list[Problem] = []
    for area in kb.areas:
        for i, leaf in enumerate(area.leaves):
            if leaf.notebook is None:
                if leaf.implementations:
                    problems.append(
                        located(
                            kb,
                            area.id,
                            ("leaves", i, "id"),
                            f"leaf '{leaf.id}' has implementations but no notebook",
                        )
                    )
                continue
            if (
                notebook_path_problem(leaf.notebook) is None
                and not (kb.root / leaf.notebook).is_file()
            ):
                problems.append(
                    located(
                        kb,
                        area.id,
                        ("leaves", i, "notebook"),
                        f"notebook '{leaf.notebook}' does not exist",
                    )
                )
            for j, implementation in enumerate(leaf.implementations):
                if implementation.notebook is None:
                    continue
                loc = ("leaves", i, "implementations", j, "notebook")
                if reason := _further_notebook_problem(
                    kb.root, area, leaf, implementation.notebook
                ):
                    problems.append(located(kb, area.id, loc, reason))
    return problems


def _further_notebook_problem(root: Path, area: Area, leaf: Leaf, notebook: str) -> str | None:
    """A further notebook of a leaf is ``docs/notebooks/<area>/<leaf>-<topic>.py`` and exists."""
    if notebook_path_problem(notebook) is not None:
        return None  # taxonomy_text_problems reports it
    path = PurePosixPath(notebook)
    expected = f"docs/notebooks/{area.id}/{leaf.id}-<topic>.py"
    if path.parent != PurePosixPath("docs/notebooks", area.id) or not (
        path.suffix == ".py" and path.stem.startswith(f"{leaf.id}-") and path.stem != f"{leaf.id}-"
    ):
        return f"notebook '{notebook}': a leaf's further notebook is {expected}"
    if not (root / notebook).is_file():
        return f"notebook '{notebook}' does not exist"
    return None


def leaf_folder(area_id: str, leaf_id: str) -> Path:
    """``reference_impls/<area>/<leaf>``: the leaf id as a package name (hyphens become
    underscores; an id that starts with a digit, like ``3d``, gets a leading underscore)."""
    package = leaf_id.replace("-", "_")
    if package[:1].isdigit():
        package = f"_{package}"
    return Path(IMPLEMENTATION_PACKAGE) / area_id / package


def implementation_paths(
    area: Area, leaf: Leaf, implementation: Implementation
) -> tuple[Path, Path]:
    """Where the implementation's module and its test file should be, from the repository root."""
    module = implementation.object.partition(":")[0].rsplit(".", 1)[-1]
    folder = leaf_folder(area.id, leaf.id)
    return folder / f"{module}.py", TESTS_DIR / folder / f"test_{module}.py"


def _layout_problems(
    root: Path, area: Area, leaf: Leaf, implementation: Implementation
) -> list[str]:
    module_name = implementation.object.partition(":")[0]
    if module_name.split(".")[0] != IMPLEMENTATION_PACKAGE:
        return [
            f"object '{implementation.object}' is outside {IMPLEMENTATION_PACKAGE}; "
            f"implementations live in {IMPLEMENTATION_PACKAGE}/<area>/<leaf>/"
        ]
    problems = []
    module_file, test_file = implementation_paths(area, leaf, implementation)
    expected = ".".join(module_file.with_suffix("").parts)
    if module_name != expected:
        problems.append(
            f"object '{implementation.object}': the module must be in the leaf's folder "
            f"{module_file.parent.as_posix()}/ (expected '{expected}')"
        )
    elif not (root / module_file).is_file():
        problems.append(
            f"object '{implementation.object}': {module_file.as_posix()} does not exist"
        )
    if not (root / test_file).is_file():
        problems.append(
            f"implementation '{implementation.id}' has no test file {test_file.as_posix()}"
        )
    return problems


def _notebook_reference_problem(notebook_text: str, implementation: Implementation) -> str | None:
    module_name, _, class_name = implementation.object.partition(":")
    for name in (class_name, module_name):
        if re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", notebook_text):
            return None
    which = (
        f"notebook {implementation.notebook}" if implementation.notebook else "the leaf's notebook"
    )
    return (
        f"{which} does not use implementation '{implementation.id}' "
        f"(neither {class_name} nor {module_name} appears in it)"
    )


def _notebook_text(root: Path, notebook: str | None) -> str | None:
    if notebook is None or notebook_path_problem(notebook) is not None:
        return None
    try:
        return (root / notebook).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # notebook_problems reports a missing notebook


def implementation_file_problems(kb: KnowledgeBase) -> list[Problem]:
    """Module in ``reference_impls/<area>/<leaf>/``, test file present, used by the notebook.

    Each problem points at the implementation's ``object`` line. Pure file-system and
    text checks: nothing is imported.
    """
    problems: list[Problem] = []
    for area in kb.areas:
        for i, leaf in enumerate(area.leaves):
            leaf_notebook_text = _notebook_text(kb.root, leaf.notebook)
            for j, implementation in enumerate(leaf.implementations):
                loc = ("leaves", i, "implementations", j, "object")
                reasons = _layout_problems(kb.root, area, leaf, implementation)
                notebook_text = (
                    _notebook_text(kb.root, implementation.notebook)
                    if implementation.notebook
                    else leaf_notebook_text
                )
                if notebook_text is not None:
                    reasons.append(_notebook_reference_problem(notebook_text, implementation))
                problems += [located(kb, area.id, loc, r) for r in reasons if r]
    return problems


# --------------------------------------------------------------------------- imports


class _PackageFromRoot(importlib.abc.MetaPathFinder):
    """Finds ``reference_impls`` and its submodules under one root, ahead of every other finder
    (an editable install maps the package to the checkout it was installed from)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == IMPLEMENTATION_PACKAGE:
            return importlib.machinery.PathFinder.find_spec(fullname, [str(self.root)])
        if fullname.startswith(f"{IMPLEMENTATION_PACKAGE}."):
            return importlib.machinery.PathFinder.find_spec(fullname, path)
        return None


def _in_package(module_name: str) -> bool:
    return module_name == IMPLEMENTATION_PACKAGE or module_name.startswith(
        f"{IMPLEMENTATION_PACKAGE}."
    )


@contextmanager
def imports_from(root: Path) -> Iterator[None]:
    """Within the block, ``reference_impls`` is imported from ``root``'s copy.

    The package's modules already imported (from another checkout, or by the tests,
    which check fixture trees in-process) are set aside and put back afterwards, so
    the check sees the files under ``root`` and the caller's modules are unchanged.
    """
    saved = {name: module for name, module in sys.modules.items() if _in_package(name)}
    for name in saved:
        del sys.modules[name]
    finder = _PackageFromRoot(root)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [name for name in sys.modules if _in_package(name)]:
            del sys.modules[name]
        sys.modules.update(saved)


def resolve_object(object_path: str) -> Any:
    """Import ``package.module:Name`` and return the named attribute."""
    module_name, _, attribute = object_path.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute)


def import_problems(kb: KnowledgeBase) -> list[Problem]:
    """Each implementation's ``object`` imports (from the repository root) and is a class."""
    problems: list[Problem] = []
    with imports_from(kb.root):
        for area in kb.areas:
            for i, leaf in enumerate(area.leaves):
                for j, implementation in enumerate(leaf.implementations):
                    loc = ("leaves", i, "implementations", j, "object")
                    reason = _object_problem(implementation.object)
                    if reason:
                        problems.append(located(kb, area.id, loc, reason))
    return problems


def _object_problem(object_path: str) -> str | None:
    try:
        found = resolve_object(object_path)
    except (Exception, SystemExit) as error:  # any failure of user code is a finding, not a crash
        detail = " ".join(str(error).split())
        return f"object '{object_path}' does not import: {type(error).__name__}: {detail}"
    if not inspect.isclass(found):
        return f"object '{object_path}' is a {type(found).__name__}, not a class"
    return None


# --------------------------------------------------------------------------- all


def check_knowledge_base(
    root: Path, *, imports: bool = True
) -> tuple[KnowledgeBase | None, list[Problem]]:
    """The knowledge base and everything ``kdatlas check`` reports, sorted by file and line.

    The site build loads through here (without imports), so it refuses exactly what
    ``kdatlas check --no-imports`` refuses.
    """
    kb, problems = load_with_problems(root)
    if kb is None:
        return None, problems
    problems = [*problems, *notebook_problems(kb), *implementation_file_problems(kb)]
    if imports:
        problems += import_problems(kb)
    return kb, sort_problems(problems)


def check(root: Path, *, imports: bool = True) -> list[Problem]:
    """Everything ``kdatlas check`` reports, sorted by file and line."""
    return check_knowledge_base(root, imports=imports)[1]


def has_errors(problems: Iterable[Problem]) -> bool:
    return any(problem.severity is Severity.ERROR for problem in problems)
