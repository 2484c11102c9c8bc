"""MkDocs hooks (``hooks:`` in mkdocs.yml): titles from pages, and no other host.

- Generated pages carry their HTML-escaped title in their front matter; the navigation
  names them with a placeholder, replaced here by the page's own title.
- mkdocs-jupyter's template adds MathJax and Mermaid from a CDN to every notebook page;
  the site serves KaTeX and Mermaid itself, so those tags are removed. Any other tag
  that would load a script, style or font from another host fails the build.
- The footer shows the version (``version`` in pyproject.toml, its single source); the
  repository and site addresses may be given by the environment (``KDATLAS_REPO_URL``,
  ``KDATLAS_SITE_URL``: the Pages workflow does), else ``site_url`` is derived from
  mkdocs.yml's ``repo_url`` as GitHub Pages serves it.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from mkdocs.structure.nav import Navigation, Section
from mkdocs.structure.pages import Page

from kdatlas.site.pages import TITLE_FROM_PAGE

log = logging.getLogger("mkdocs.plugins.kdatlas")

_CDN_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc=[\"']https?://[^\"']*(?:mathjax|mermaid|require)[^\"']*[\"'][^>]*>\s*</script>"
    r"|<script\b[^>]*\bsrc=[\"'][\"'][^>]*>\s*</script>"  # MathJax's tag when its URL is empty
    r"|<script type=\"text/x-mathjax-config\">.*?</script>"
    r"|<script type=\"module\">(?:(?!</script>).)*?https?://(?:(?!</script>).)*?</script>"
    r"|<!-- (?:Load mathjax|MathJax configuration|End of mathjax configuration) -->",
    re.IGNORECASE | re.DOTALL,
)
_EXTERNAL = re.compile(
    r"<(?:script|img|iframe|link)\b[^>]*\b(?:src|href)=[\"'](?:https?:)?//[^\"']*[\"'][^>]*>"
    r"|@import\s+url\(\s*[\"']?(?:https?:)?//|url\(\s*[\"']?(?:https?:)?//",
    re.IGNORECASE,
)


def project_version(root: Path) -> str:
    """``[project] version`` of ``root/pyproject.toml``."""
    with (root / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def github_pages_url(repo_url: str) -> str | None:
    """Where GitHub Pages serves a repository's site: ``https://github.com/a/b`` ->
    ``https://a.github.io/b/``; ``None`` for a repository elsewhere."""
    parts = urlsplit(repo_url)
    path = parts.path.strip("/").removesuffix(".git").split("/")
    if parts.hostname != "github.com" or len(path) != 2 or not all(path):
        return None
    return f"https://{path[0].lower()}.github.io/{path[1]}/"


def on_config(config):
    config.extra["kdatlas_version"] = project_version(Path(config.config_file_path).parent)
    if repo_url := os.environ.get("KDATLAS_REPO_URL"):
        config.repo_url = repo_url
    site_url = os.environ.get("KDATLAS_SITE_URL") or config.site_url
    site_url = site_url or github_pages_url(config.repo_url or "")
    if site_url:
        config.site_url = site_url if site_url.endswith("/") else site_url + "/"
    return config


def _restore_titles(items: list) -> None:
    for item in items:
        if isinstance(item, Page) and item.__dict__.get("title") == TITLE_FROM_PAGE:
            del item.title  # falls back to the page's front matter or first heading
        if isinstance(item, Section):
            if item.title == TITLE_FROM_PAGE:
                item.title = ""
            _restore_titles(item.children)


def on_nav(nav: Navigation, config, files) -> Navigation:
    _restore_titles(nav.items)
    # literate-nav has read the generated nav file; it is not a page of its own
    # (exclude_docs cannot see it: mkdocs-gen-files adds it after the exclusion).
    summary = files.get_file_from_path("SUMMARY.md")
    if summary is not None:
        files.remove(summary)
    return nav


def on_post_page(output: str, page: Page, config) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        output = _CDN_SCRIPT.sub("", output)
    for match in _EXTERNAL.finditer(output):
        snippet = match.group(0)
        if re.match(r"<link\b[^>]*\brel=[\"']?canonical", snippet):
            continue
        log.warning(
            "kdatlas: %s would load from another host: %s", page.file.src_uri, snippet[:160]
        )
    return output
