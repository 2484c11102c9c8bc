"""mkdocs-gen-files script: write the data-driven pages (build output, never committed).

Environment:
- ``KDATLAS_ROOT``: the knowledge base to render (default: this repository); the site
  tests point it at ``tests/fixtures/site_kb``.
- ``KDATLAS_NOTEBOOKS``: ``execute`` (default) shows each notebook with its outputs,
  executing it through ``kdatlas.notebooks`` unless an up-to-date executed copy is
  cached; ``source`` shows the notebooks without running them (fast builds, tests).
- ``KDATLAS_SITE_ALLOW_PROBLEMS=1``: build even when the data has errors that
  ``kdatlas check`` refuses (the site tests use it to prove such data renders inert).
"""

from __future__ import annotations

import os
from pathlib import Path

import mkdocs_gen_files

from kdatlas.site.build import load_knowledge_base, notebook_renderer
from kdatlas.site.pages import generate
from kdatlas.site.vendor import ensure

REPO_ROOT = Path(__file__).resolve().parent.parent

kb = load_knowledge_base(Path(os.environ.get("KDATLAS_ROOT", REPO_ROOT)))
site = generate(kb, REPO_ROOT, notebook_renderer(os.environ.get("KDATLAS_NOTEBOOKS", "execute")))
for path, content in sorted(site.files.items()):
    data = content.read_bytes() if isinstance(content, Path) else content
    mode = "wb" if isinstance(data, bytes) else "w"
    with mkdocs_gen_files.open(path, mode) as handle:
        handle.write(data)
for path, source in sorted(site.sources.items()):
    # "Edit this page" opens the YAML, BibTeX or Python the page is made from; edit paths
    # are relative to mkdocs.yml's edit_uri, which points at docs/.
    mkdocs_gen_files.set_edit_path(path, f"../{source}")
for path, source in ensure(REPO_ROOT).items():
    with mkdocs_gen_files.open(path, "wb") as handle:
        handle.write(source.read_bytes())
with mkdocs_gen_files.open("SUMMARY.md", "w") as handle:
    handle.write("\n".join(site.nav) + "\n")
