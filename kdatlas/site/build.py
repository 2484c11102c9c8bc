"""What the mkdocs build needs around :mod:`kdatlas.site.pages`: loading and notebooks."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from kdatlas.checks import check_knowledge_base
from kdatlas.loader import KnowledgeBase
from kdatlas.problems import KnowledgeBaseError
from kdatlas.site.pages import Notebook

log = logging.getLogger("mkdocs.plugins.kdatlas")
NOTEBOOK_MODES = ("execute", "source")


def load_knowledge_base(root: Path) -> KnowledgeBase:
    """The knowledge base at ``root``; refuses what ``kdatlas check --no-imports`` refuses
    unless told to build anyway (``KDATLAS_SITE_ALLOW_PROBLEMS=1``)."""
    kb, problems = check_knowledge_base(root, imports=False)
    errors = [p for p in problems if p.is_error]
    for problem in problems:
        log.info("kdatlas: %s", problem)
    if kb is None or (errors and os.environ.get("KDATLAS_SITE_ALLOW_PROBLEMS") != "1"):
        raise KnowledgeBaseError(errors or problems)
    return kb


def notebook_renderer(mode: str) -> Callable[[Notebook], bytes]:
    """How a notebook page is made: executed (cached by kdatlas.notebooks) or source only."""
    if mode not in NOTEBOOK_MODES:
        raise ValueError(f"KDATLAS_NOTEBOOKS must be one of {NOTEBOOK_MODES}, not {mode!r}")

    def render(notebook: Notebook) -> bytes:
        import jupytext
        import nbformat

        if mode == "execute":
            from kdatlas.notebooks import execute_cached

            # The knowledge base's root (the repository, or a test fixture) holds docs/notebooks/.
            executed = execute_cached(notebook.source.parents[3], notebook.source)
            log.info(
                "kdatlas: notebook %s (%s)",
                notebook.source.name,
                "cached" if executed.cached else f"{executed.seconds:.1f} s",
            )
            document = nbformat.read(executed.output, as_version=4)
        else:
            document = jupytext.read(notebook.source)
        # Cell ids are random when a notebook is made; numbered ids keep builds identical.
        for index, cell in enumerate(document.cells):
            cell["id"] = f"cell-{index}"
        return nbformat.writes(document).encode("utf-8")

    return render
