"""MkDocs hooks (``hooks:`` in mkdocs.yml): titles from pages, and no other host.

- Generated pages carry their HTML-escaped title in their front matter; the navigation
  names them with a placeholder, replaced here by the page's own title.
- mkdocs-jupyter's template adds MathJax and Mermaid from a CDN to every notebook page;
  the site serves KaTeX and Mermaid itself, so those tags are removed. Any other tag
  that would load a script, style or font from another host fails the build.
"""

from __future__ import annotations

import logging
import re

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
