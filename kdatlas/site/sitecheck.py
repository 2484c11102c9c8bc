"""Walk a built site: broken internal links and anchors, and anything loaded from another host.

Used by the site tests; also handy by hand: ``python -m kdatlas.site.sitecheck site/``.
"""

from __future__ import annotations

import posixpath
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

LOADING = {
    ("script", "src"),
    ("link", "href"),
    ("img", "src"),
    ("iframe", "src"),
    ("source", "src"),
}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "link" and (dict(attrs).get("rel") or "").lower() == "canonical":
            return  # the page's own address (from site_url): names it, loads nothing
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            if name in ("href", "src"):
                self.links.append((tag, name, value))


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def check_site(site: Path) -> tuple[list[str], list[str]]:
    """``(broken internal links, external loads)`` over every HTML page but 404.html."""
    pages = {p: parse(p) for p in sorted(site.rglob("*.html")) if p.name != "404.html"}
    broken: list[str] = []
    external: list[str] = []
    for path, page in pages.items():
        where = path.relative_to(site).as_posix()
        for tag, attribute, value in page.links:
            parts = urlsplit(value)
            if parts.scheme or parts.netloc:
                if (tag, attribute) in LOADING:
                    external.append(f"{where}: <{tag} {attribute}={value}>")
                continue
            if tag == "a" and not value.strip():
                continue
            target = path if not parts.path else _resolve(site, path, unquote(parts.path))
            if target is None:
                broken.append(f"{where}: {value}")
                continue
            if parts.fragment and target.suffix == ".html" and tag == "a":
                target_page = pages.get(target) or parse(target)
                if unquote(parts.fragment) not in target_page.ids:
                    broken.append(f"{where}: {value} (no such anchor)")
    return broken, external


def _resolve(site: Path, page: Path, link: str) -> Path | None:
    base = page.parent.relative_to(site).as_posix()
    joined = posixpath.normpath(posixpath.join(base, link))
    if joined.startswith(".."):
        return None
    target = site / joined
    if target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None


def main(argv: list[str] | None = None) -> int:
    import sys

    site = Path((argv or sys.argv[1:] or ["site"])[0])
    broken, external = check_site(site)
    for line in broken:
        print(f"broken: {line}")
    for line in external:
        print(f"external: {line}")
    return 1 if broken or external else 0


if __name__ == "__main__":
    raise SystemExit(main())
