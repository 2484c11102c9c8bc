"""Safe building blocks of the generated pages: escaping, paper tables, the diagram, the chart.

Every string that comes from the data (titles, authors, venues, summaries, URLs) is
untrusted. It reaches a page in one of three forms, each inert:

- inside raw HTML blocks (which Markdown leaves alone) through :func:`html_text` and
  :func:`html_attr`;
- inside Markdown through :func:`md_text`, which writes every character that is not a
  letter, digit or space as a numeric character reference, so no Markdown, HTML,
  arithmatex (``$``) or link syntax survives;
- as a link only when :func:`safe_url` accepts it (absolute http/https).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from kdatlas.bibliography import BibEntry, arxiv_id, author_names, display, doi, entry_to_bibtex

_PLAIN = re.compile(r"[A-Za-z0-9 ]")
_WHITESPACE = re.compile(r"\s+")
VENUE_FIELDS = ("booktitle", "journal", "howpublished", "publisher", "school", "institution")


def one_line(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def html_text(text: str) -> str:
    """Text for an HTML element's content (one line, so a raw HTML block never breaks)."""
    return html.escape(one_line(text), quote=True)


def html_attr(text: str) -> str:
    """Text for a double-quoted HTML attribute value."""
    return html.escape(one_line(text), quote=True)


def md_text(text: str) -> str:
    """Text for a Markdown context: all punctuation as ``&#N;`` so nothing is syntax."""
    return "".join(c if _PLAIN.match(c) else f"&#{ord(c)};" for c in one_line(text))


def safe_markdown(line: str) -> str:
    """A line of contributed Markdown (a notebook's findings) keeping its emphasis, code and
    math, with no HTML and no links: ``&``, ``<``, ``>`` become entities, ``](`` is broken."""
    escaped = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("](", "]&#40;")


def safe_url(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL without spaces or quotes, else None."""
    if not url:
        return None
    url = url.strip()
    if any(c in url for c in " \t\r\n\"'<>`\\{}") or any(ord(c) < 32 for c in url):
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def link(url: str | None, label: str, *, title: str | None = None) -> str:
    """An external ``<a>`` for a safe URL; the plain label otherwise."""
    target = safe_url(url)
    if target is None:
        return html_text(label)
    hint = f' title="{html_attr(title)}"' if title else ""
    return f'<a href="{html_attr(target)}"{hint} rel="noopener">{html_text(label)}</a>'


# ---------------------------------------------------------------- papers


@dataclass(frozen=True)
class Paper:
    """What a page shows of one bib entry, decoded for display."""

    key: str
    title: str
    authors: tuple[str, ...]
    venue: str
    year: str
    paper_url: str | None
    code_url: str | None
    arxiv: str | None
    doi: str | None
    bibtex: str

    @property
    def authors_text(self) -> str:
        return ", ".join(self.authors)


def paper_from_entry(entry: BibEntry) -> Paper:
    fields = entry.fields
    venue = next((fields[name] for name in VENUE_FIELDS if fields.get(name)), "")
    year_match = re.search(r"\d{4}", fields.get("year", ""))
    arxiv = arxiv_id(entry)
    return Paper(
        key=entry.key,
        title=display(fields.get("title", entry.key)) or entry.key,
        authors=tuple(author_names(entry)),
        venue=display(venue),
        year=year_match.group(0) if year_match else "",
        paper_url=safe_url(display(fields.get("url", ""))),
        code_url=safe_url(display(fields.get("code", ""))),
        arxiv=arxiv,
        doi=doi(entry),
        bibtex=entry_to_bibtex(entry),
    )


def paper_links(paper: Paper) -> list[str]:
    links: list[str] = []
    if paper.paper_url:
        links.append(link(paper.paper_url, "paper"))
    if paper.arxiv and re.fullmatch(r"[\w.\-/]+", paper.arxiv):
        arxiv_url = f"https://arxiv.org/abs/{paper.arxiv}"
        if arxiv_url != paper.paper_url:
            links.append(link(arxiv_url, "arXiv"))
    if paper.doi:
        links.append(link(f"https://doi.org/{quote(paper.doi, safe='/:;()._-')}", "DOI"))
    if paper.code_url:
        links.append(link(paper.code_url, "code"))
    return links


def bibtex_block(paper: Paper) -> str:
    """A small "BibTeX" control that unfolds the entry; Material adds a copy button to every
    ``pre > code``. Styled as a link (``kd-bibtex``), not a full-width box."""
    # Newlines kept (a <pre>), but never a blank line, which would end the raw HTML block.
    body = "\n".join(html.escape(line, quote=True) for line in paper.bibtex.splitlines() if line)
    return (
        '<details class="kd-bibtex"><summary>BibTeX</summary>'
        f'<pre><code class="language-bibtex">{body}</code></pre></details>'
    )


def author_link(name: str, papers_page: str) -> str:
    """An author's name linking to the all-papers page filtered to their papers."""
    return (
        f'<a class="kd-author" href="{html_attr(papers_page)}?author={quote(name, safe="")}">'
        f"{html_text(name)}</a>"
    )


def bibtex_listing(papers: Sequence[Paper]) -> str:
    """The BibTeX of several papers in one copyable block, as a README's "Citation" section
    shows it (raw HTML, escaped; no blank line, which would end the raw HTML block)."""
    body = "\n".join(
        html.escape(line, quote=True)
        for paper in papers
        for line in paper.bibtex.splitlines()
        if line
    )
    return f'<pre class="kd-citation-bibtex"><code class="language-bibtex">{body}</code></pre>'


def _anchor(key: str) -> str:
    return html_attr(key)


def papers_table(
    papers: Sequence[Paper],
    *,
    anchored: set[str],
    missing: Iterable[str] = (),
    extra_column: tuple[str, Mapping[str, str]] | None = None,
    table_id: str | None = None,
    papers_page: str | None = None,
    implemented: Mapping[str, str] | None = None,
    leaves: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """A raw HTML table of papers, one compact row each, with a permanent anchor per paper.

    ``anchored`` holds the keys that already have an anchor on this page (a key gets
    one once); ``extra_column`` is ``(header, {key: raw HTML})`` for pages that add a
    column (the all-papers index lists the leaves of each paper). ``papers_page`` (the
    URL of the all-papers page from this page) makes each author a link to their papers;
    ``implemented`` marks the papers that have an implementation here (``{key: raw HTML
    link}``); ``leaves`` gives each paper's leaf ids, for the all-papers filters.
    """
    header = ["Paper", "Authors", "Venue", "Year", "Links"]
    if extra_column:
        header.append(extra_column[0])
    implemented = implemented or {}
    rows = []
    for paper in papers:
        anchor = "" if paper.key in anchored else f' id="{_anchor(paper.key)}"'
        anchored.add(paper.key)
        badge = (
            f' <span class="kd-implemented">{implemented[paper.key]}</span>'
            if paper.key in implemented
            else ""
        )
        authors = (
            ", ".join(author_link(name, papers_page) for name in paper.authors)
            if papers_page is not None
            else html_text(paper.authors_text)
        )
        cells = [
            f'<td><span class="kd-paper-title">{html_text(paper.title)}</span> '
            f'<a class="kd-permalink" href="#{_anchor(paper.key)}" title="Permanent link">¶</a>'
            f'{badge}<br><code class="kd-key">{html_text(paper.key)}</code></td>',
            f'<td class="kd-authors">{authors}</td>',
            f"<td>{html_text(paper.venue)}</td>",
            f"<td>{html_text(paper.year)}</td>",
            f'<td class="kd-links">{" · ".join(paper_links(paper))}{bibtex_block(paper)}</td>',
        ]
        if extra_column:
            cells.append(f'<td class="kd-filed">{extra_column[1].get(paper.key, "")}</td>')
        data = (
            f' data-year="{html_attr(paper.year)}" data-venue="{html_attr(paper.venue)}"'
            f' data-text="{html_attr(" ".join((paper.title, paper.authors_text, paper.key)).lower())}"'
            f' data-authors="{html_attr("|".join(paper.authors).lower())}"'
            f' data-code="{1 if paper.code_url else 0}"'
            f' data-implemented="{1 if paper.key in implemented else 0}"'
        )
        if leaves is not None:
            data += f' data-leaves="{html_attr(" ".join(leaves.get(paper.key, ())))}"'
        rows.append(f"<tr{anchor}{data}>{''.join(cells)}</tr>")
    for key in missing:
        rows.append(
            f'<tr><td colspan="{len(header)}"><code>{html_text(key)}</code> '
            "(no entry in the bibliography)</td></tr>"
        )
    head = "".join(f"<th>{html_text(name)}</th>" for name in header)
    ident = f' id="{html_attr(table_id)}"' if table_id else ""
    return (
        '<div class="md-typeset__scrollwrap"><div class="md-typeset__table">'
        f'<table class="kd-papers"{ident}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></div>"
    )


# ---------------------------------------------------------------- chart

# Colours of Material's palette, one per area, in area order.
AREA_COLOURS = ("#3f51b5", "#009688", "#ff9800", "#e91e63", "#8bc34a", "#795548", "#607d8b")


def papers_per_year_svg(
    counts: Mapping[str, Mapping[str, int]], area_titles: Mapping[str, str]
) -> str:
    """A stacked bar chart (inline SVG, no script) of papers per year by area.

    ``counts`` is ``{area id: {year: papers}}``; ``area_titles`` gives the order and labels.
    """
    years = sorted({year for per_year in counts.values() for year in per_year})
    if not years:
        return "<p>No dated papers yet.</p>"
    totals = {year: sum(counts.get(a, {}).get(year, 0) for a in area_titles) for year in years}
    peak = max(totals.values()) or 1
    bar, gap, left, top, plot_h = 22, 6, 40, 10, 220
    width = left + len(years) * (bar + gap) + 10
    legend_y = top + plot_h + 40
    height = legend_y + 20 * len(area_titles) + 10
    parts = [
        f'<svg class="kd-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-labelledby="kd-chart-title">',
        '<title id="kd-chart-title">Papers per year, by area</title>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 5}" y2="{top + plot_h}" stroke="currentColor"/>',
    ]
    for tick in _ticks(peak):
        y = top + plot_h - round(tick / peak * plot_h)
        parts.append(
            f'<text x="{left - 4}" y="{y + 4}" text-anchor="end" font-size="10" fill="currentColor">{tick}</text>'
            f'<line x1="{left}" y1="{y}" x2="{width - 5}" y2="{y}" stroke="currentColor" stroke-opacity="0.15"/>'
        )
    for index, year in enumerate(years):
        x = left + gap + index * (bar + gap)
        base = top + plot_h
        for colour_index, (area_id, title) in enumerate(area_titles.items()):
            value = counts.get(area_id, {}).get(year, 0)
            if not value:
                continue
            h = round(value / peak * plot_h)
            base -= h
            colour = AREA_COLOURS[colour_index % len(AREA_COLOURS)]
            parts.append(
                f'<rect x="{x}" y="{base}" width="{bar}" height="{h}" fill="{colour}">'
                f"<title>{html_text(title)}, {html_text(year)}: {value}</title></rect>"
            )
        parts.append(
            f'<text x="{x + bar / 2}" y="{top + plot_h + 14}" font-size="10" text-anchor="end"'
            f' transform="rotate(-45 {x + bar / 2} {top + plot_h + 14})" fill="currentColor">{html_text(year)}</text>'
        )
    for colour_index, (area_id, title) in enumerate(area_titles.items()):
        y = legend_y + 20 * colour_index
        colour = AREA_COLOURS[colour_index % len(AREA_COLOURS)]
        total = sum(counts.get(area_id, {}).values())
        parts.append(
            f'<rect x="{left}" y="{y}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{left + 18}" y="{y + 10}" font-size="12" fill="currentColor">'
            f"{html_text(title)} ({total})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _ticks(peak: int) -> list[int]:
    step = 1
    for candidate in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        step = candidate
        if peak / candidate <= 5:
            break
    return list(range(0, peak + 1, step))
