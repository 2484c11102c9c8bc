"""The bibliography: read, write and normalise the BibTeX files in ``bib/``.

``bib/*.bib`` is the one place where a paper's metadata is written. This module
parses it with bibtexparser 2 (no LaTeX middlewares, so nothing is rewritten
behind the user's back), renders it back in one canonical layout, builds keys
in the scheme of ``docs/design.md`` and normalises venue names. LaTeX is
decoded only for display (:func:`display`), never written back.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import bibtexparser
from bibtexparser.model import DuplicateBlockKeyBlock, Entry, ParsingFailedBlock
from pylatexenc.latex2text import LatexNodes2Text

from kdatlas.problems import Problem

__all__ = [
    "BibEntry",
    "arxiv_id",
    "author_names",
    "display",
    "doi",
    "entry_to_bibtex",
    "make_key",
    "normalise_title",
    "normalise_venue",
    "parse_bib",
    "read_bib_dir",
    "render_bib",
]


@dataclass(frozen=True)
class BibEntry:
    """One BibTeX entry with its raw field values (LaTeX kept, outer delimiters removed)."""

    key: str
    entry_type: str
    fields: dict[str, str]
    path: Path | None = None
    line: int | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.fields.get(name, default)


# ---------------------------------------------------------------- parsing


def parse_bib(text: str, path: Path) -> tuple[list[BibEntry], list[Problem]]:
    """Parse BibTeX text; syntax errors and duplicate keys become problems with 1-based lines."""
    # bibtexparser logs every failed block; we report them ourselves, once, with the file name.
    logging.getLogger("bibtexparser").setLevel(logging.CRITICAL)
    library = bibtexparser.parse_string(text)
    entries: list[BibEntry] = []
    problems: list[Problem] = []
    for block in library.blocks:
        line = block.start_line + 1 if block.start_line is not None else None
        if isinstance(block, Entry):
            fields = {field.key.lower(): str(field.value) for field in block.fields}
            entries.append(BibEntry(block.key, block.entry_type.lower(), fields, path, line))
        elif isinstance(block, DuplicateBlockKeyBlock):
            problems.append(Problem(path, line, f"duplicate bib key {block.key!r}"))
        elif isinstance(block, ParsingFailedBlock):
            first = block.raw.strip().splitlines()[0][:60] if block.raw.strip() else ""
            problems.append(Problem(path, line, f"BibTeX syntax error in block {first!r}"))
    return entries, problems


def read_bib_dir(bib_dir: Path) -> tuple[list[BibEntry], list[Problem]]:
    """Read every ``*.bib`` in ``bib_dir`` (sorted by file name); keys must be unique across files."""
    entries: list[BibEntry] = []
    problems: list[Problem] = []
    first_seen: dict[str, BibEntry] = {}
    for path in sorted(bib_dir.glob("*.bib")):
        file_entries, file_problems = parse_bib(path.read_text(encoding="utf-8"), path)
        problems.extend(file_problems)
        for entry in file_entries:
            if entry.key in first_seen:
                other = first_seen[entry.key]
                problems.append(
                    Problem(
                        path,
                        entry.line,
                        f"duplicate bib key {entry.key!r} (first in {other.path}:{other.line})",
                    )
                )
                continue
            first_seen[entry.key] = entry
            entries.append(entry)
    return entries, problems


# ---------------------------------------------------------------- rendering

FIELD_ORDER = (
    "title",
    "author",
    "editor",
    "booktitle",
    "journal",
    "howpublished",
    "institution",
    "school",
    "year",
    "month",
    "volume",
    "number",
    "pages",
    "publisher",
    "organization",
    "address",
    "note",
    "url",
    "code",
    "eprint",
    "archiveprefix",
    "primaryclass",
    "doi",
)
_RANK = {name: rank for rank, name in enumerate(FIELD_ORDER)}


def _field_sort_key(name: str) -> tuple[int, str]:
    return (_RANK.get(name, len(FIELD_ORDER)), name)


def entry_to_bibtex(entry: BibEntry) -> str:
    """One entry in canonical form: fixed field order, two-space indent, braced values."""
    lines = [f"@{entry.entry_type.lower()}{{{entry.key},"]
    for name in sorted(entry.fields, key=_field_sort_key):
        lines.append(f"  {name} = {{{entry.fields[name]}}},")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_bib(entries: Iterable[BibEntry]) -> str:
    """Canonical text of a bibliography: entries sorted by key, one blank line between them."""
    ordered = sorted(entries, key=lambda entry: entry.key)
    return "\n".join(entry_to_bibtex(entry) for entry in ordered)


# ---------------------------------------------------------------- keys and titles

# Words skipped when choosing a key's title word (as Google Scholar does: "Be Your Own
# Teacher" -> zhang2019your).
KEY_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "on",
        "in",
        "to",
        "for",
        "with",
        "from",
        "by",
        "at",
        "as",
        "is",
        "are",
        "be",
        "do",
        "does",
    ]
)
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+\s*|\\.")


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return decomposed.encode("ascii", "ignore").decode("ascii")


def _plain_words(text: str) -> list[str]:
    """Lowercase ASCII words of a (possibly LaTeX) string; hyphens split words."""
    plain = _ascii(display(text)).lower()
    return re.findall(r"[a-z0-9]+", plain)


def _split_authors(authors: str) -> list[str]:
    """Split a BibTeX author list on ' and ' outside braces."""
    names: list[str] = []
    depth = 0
    current: list[str] = []
    tokens = re.split(r"(\s+and\s+|[{}])", authors)
    for token in tokens:
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
        if depth == 0 and re.fullmatch(r"\s+and\s+", token or ""):
            names.append("".join(current).strip())
            current = []
        else:
            current.append(token)
    names.append("".join(current).strip())
    return [name for name in names if name]


def _surname(name: str) -> str:
    if "," in name:
        return name.split(",", 1)[0].strip()
    parts = name.split()
    return parts[-1] if parts else ""


def make_key(authors: str | None, year: int | str, title: str, taken: set[str]) -> str:
    """A new key ``<surname><year><first significant title word>``, unique against ``taken``.

    Without authors the key is ``<first word><year><second word>`` (significant words).
    Collisions get the suffix b, c, ... The caller adds the result to ``taken``.
    """
    words = [word for word in _plain_words(title) if word not in KEY_STOPWORDS]
    words = words or _plain_words(title) or ["untitled"]
    surname = ""
    if authors:
        names = [name for name in _split_authors(authors) if name.lower() != "others"]
        if names:
            surname = "".join(_plain_words(_surname(names[0])))
    year_text = str(year).strip()
    if surname:
        base = f"{surname}{year_text}{words[0]}"
    else:
        second = words[1] if len(words) > 1 else ""
        base = f"{words[0]}{year_text}{second}"
    key = base
    suffix = ord("b")
    while key in taken:
        key = f"{base}{chr(suffix)}"
        suffix += 1
    return key


def normalise_title(title: str) -> str:
    """A comparison form of a title: casefolded, no LaTeX, punctuation or whitespace."""
    text = _LATEX_COMMAND.sub("", title).replace("{", "").replace("}", "")
    text = _ascii(unicodedata.normalize("NFKC", text)).casefold()
    return re.sub(r"[^a-z0-9]", "", text)


# ---------------------------------------------------------------- identifiers

_ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5})(v\d+)?")
_ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", re.IGNORECASE)
_DOI = re.compile(r"(10\.\d{4,9}/[^\s\"<>{}]+)")


def arxiv_id(entry: BibEntry) -> str | None:
    """The arXiv identifier (without version) from ``eprint`` or an arxiv.org ``url``."""
    eprint = entry.fields.get("eprint", "")
    prefix = entry.fields.get("archiveprefix", "arXiv").lower()
    if eprint and prefix == "arxiv":
        match = _ARXIV_ID.search(eprint)
        if match:
            return match.group(1)
    match = _ARXIV_URL.search(entry.fields.get("url", ""))
    return match.group(1) if match else None


def doi(entry: BibEntry) -> str | None:
    """The DOI (lowercased) from the ``doi`` field or a doi.org ``url``."""
    value = entry.fields.get("doi", "")
    if not value:
        url = entry.fields.get("url", "")
        value = url if "doi.org/" in url else ""
    match = _DOI.search(value)
    return match.group(1).rstrip(".").lower() if match else None


# ---------------------------------------------------------------- venues

# (pattern over the venue name without the year, entry_type, canonical name). First match wins;
# the patterns are matched case-insensitively against the whole cleaned name.
_CONF = "inproceedings"
_JOUR = "article"
VENUE_TABLE: tuple[tuple[str, str, str], ...] = (
    # preprints and reports
    (r"arxiv[e]?( preprint)?( arxiv:\S+)?|corr", _JOUR, "arXiv preprint"),
    (r"openai", "misc", "OpenAI"),
    (r"dcase\s*(\d{4})?\s*challenge", "misc", "DCASE Challenge technical report"),
    # workshops before their main conferences
    (
        r"(ieee/?cvf )?(cvpr|computer vision and pattern recognition).*workshops?|cvprw|cvpr ?w",
        _CONF,
        "CVPR Workshops",
    ),
    (
        r"(ieee/?cvf )?(iccv|international conference on computer vision).*workshops?|iccvw",
        _CONF,
        "ICCV Workshops",
    ),
    (r"(eccv|european conference on computer vision).*workshops?|eccvw", _CONF, "ECCV Workshops"),
    (r"wacv ?w(orkshops?)?|wacv workshops?", _CONF, "WACV Workshops"),
    (
        r"deep learning and representation learning workshop.*",
        _CONF,
        "NIPS Deep Learning and Representation Learning Workshop",
    ),
    # conferences
    (
        r"(proceedings of the )?(the )?(ieee/?cvf |ieee )?(conference on )?computer vision and pattern recognition( \(cvpr\))?|cvpr",
        _CONF,
        "CVPR",
    ),
    (
        r"(proceedings of the )?(the )?(ieee/?cvf |ieee )?international conference on computer vision( \(iccv\))?|iccv",
        _CONF,
        "ICCV",
    ),
    (
        r"(proceedings of the )?(the )?(ieee/?cvf )?european conference on computer vision( \(eccv\))?|eccv",
        _CONF,
        "ECCV",
    ),
    (
        r"(proceedings of the )?(ieee/?cvf )?winter conference on applications of computer vision( \(wacv\))?|wacv",
        _CONF,
        "WACV",
    ),
    (
        r"advances in neural information processing systems( \(neurips\))?|(thirty[- ]\w+ )?conference on neural information processing systems|neurips|nips",
        _CONF,
        "NeurIPS",
    ),
    (r"(the )?(\w+ )?international conference on learning representations.*|iclr", _CONF, "ICLR"),
    (
        r"(proceedings of the )?(\d+\w* )?international conference on machine learning.*|icml",
        _CONF,
        "ICML",
    ),
    (
        r"(proceedings of the )?(\d+\w* )?aaai conference on artificial intelligence.*|aaai conf\.? artif\.? intell\.?|aaai",
        _CONF,
        "AAAI",
    ),
    (
        r"(the )?(\d+\w* )?international joint conference on artificial intelligence.*|ijcai",
        _CONF,
        "IJCAI",
    ),
    (
        r"(findings of )?(the )?(annual meeting of the )?association for computational linguistics|acl( findings)?",
        _CONF,
        "ACL",
    ),
    (r"(conference on )?empirical methods in natural language processing|emnlp", _CONF, "EMNLP"),
    (
        r"naacl(-hlt)?|north american chapter of the association for computational linguistics.*",
        _CONF,
        "NAACL",
    ),
    (
        r"(proceedings of the )?(\d+\w* )?acm international conference on multimedia|acm ?mm|acmm|acm multimedia",
        _CONF,
        "ACM MM",
    ),
    (r"(acm )?sig(g)?kdd|siggkd|kdd|knowledge discovery (and|&) data mining", _CONF, "KDD"),
    (r"(acm )?www|the web conference|(proceedings of the )?acm web conference", _CONF, "WWW"),
    (r"(acm )?sigmod", _CONF, "SIGMOD"),
    (r"(acm )?cikm", _CONF, "CIKM"),
    (r"(acm )?wsdm", _CONF, "WSDM"),
    (r"(acm )?siggraph( asia)?", _CONF, "SIGGRAPH"),
    (r"(acm )?icmr", _CONF, "ICMR"),
    (r"(siam )?sdm|siam international conference on data mining", _CONF, "SDM"),
    (r"bmvc|british machine vision conference", _CONF, "BMVC"),
    (r"accv|asian conference on computer vision", _CONF, "ACCV"),
    (
        r"(ieee )?icassp|international conference on acoustics,? speech,? and signal processing",
        _CONF,
        "ICASSP",
    ),
    (r"interspeech", _CONF, "Interspeech"),
    (r"(ieee )?icip|international conference on image processing", _CONF, "ICIP"),
    (
        r"(\d{4} )?(ieee )?(international conference on multimedia and expo|icme)( \(icme\))?",
        _CONF,
        "ICME",
    ),
    (
        r"miccai|(international conference on )?medical image computing and computer[- ]assisted intervention",
        _CONF,
        "MICCAI",
    ),
    (
        r"(ieee )?(international conference on robotics and automation|icra)( \(icra\))?",
        _CONF,
        "ICRA",
    ),
    (r"(i?e?ee/rsj )?iros|intelligent robots and systems", _CONF, "IROS"),
    (r"ijcnn|international joint conference on neural networks", _CONF, "IJCNN"),
    (r"ecai|european conference on artificial intelligence", _CONF, "ECAI"),
    (r"isnn|international symposium on neural networks", _CONF, "ISNN"),
    (r"(ieee )?icdm|international conference on data mining", _CONF, "ICDM"),
    (r"ecir|european conference on information retrieval", _CONF, "ECIR"),
    (r"(ieee )?slt|spoken language technology( workshop)?", _CONF, "IEEE SLT"),
    (r"(ieee )?waspaa", _CONF, "IEEE WASPAA"),
    (r"iscslp", _CONF, "ISCSLP"),
    (r"pricai", _CONF, "PRICAI"),
    (r"prcv", _CONF, "PRCV"),
    (r"icpr|international conference on pattern recognition", _CONF, "ICPR"),
    (r"(ieee )?iscas", _CONF, "ISCAS"),
    (r"(ieee )?aicas", _CONF, "AICAS"),
    (r"(ieee )?hpec", _CONF, "HPEC"),
    (r"(ieee )?mmsp", _CONF, "MMSP"),
    (r"icic", _CONF, "ICIC"),
    (r"ijcb", _CONF, "IJCB"),
    (
        r"(proceedings of the )?(international workshop on biometrics and forensics|iwbf)( \(iwbf\))?",
        _CONF,
        "IWBF",
    ),
    (r"ksem", _CONF, "KSEM"),
    (r"icetci", _CONF, "ICETCI"),
    (r"iccpr", _CONF, "ICCPR"),
    (r"mvip", _CONF, "MVIP"),
    (r"fskd", _CONF, "FSKD"),
    (r"ic3dv|3dv|international conference on 3d vision", _CONF, "3DV"),
    (r"visigrapp", _CONF, "VISIGRAPP"),
    (r"picture coding symposium( \(pcs\))?|pcs", _CONF, "PCS"),
    (
        r"(ieee )?international conference on bioinformatics and biomedicine( \(bibm\))?|bibm",
        _CONF,
        "BIBM",
    ),
    (r"international conference on statistical language and speech processing|slsp", _CONF, "SLSP"),
    (r"international conference on computer and communications?", _CONF, "ICCC"),
    # journals
    (r"tmlr|transactions on machine learning research", _JOUR, "TMLR"),
    (
        r"(ieee )?t-?pami|ieee trans(\.|actions)? ?(on )?pattern anal(\.|ysis)? (and )?mach(\.|ine)? intell(\.|igence)?",
        _JOUR,
        "IEEE TPAMI",
    ),
    (r"(ieee )?t-?mapi", _JOUR, "IEEE TPAMI"),
    (
        r"(ieee )?t-?ip|ieee transactions on image processing( \(tip\))?|ieee trans(\.|actions)? image process(ing)?",
        _JOUR,
        "IEEE TIP",
    ),
    (
        r"(ieee )?t-?nnls|ieee transactions on neural networks and learning systems",
        _JOUR,
        "IEEE TNNLS",
    ),
    (r"(ieee )?t-?mm|ieee transactions on multimedia", _JOUR, "IEEE TMM"),
    (
        r"(ieee )?t-?csvt|ieee transactions on circuits and systems for video technology",
        _JOUR,
        "IEEE TCSVT",
    ),
    (
        r"(ieee )?t-?its|ieee transactions on intelligent transportation systems",
        _JOUR,
        "IEEE T-ITS",
    ),
    (r"(ieee )?t-?grs|ieee transactions on geoscience and remote sensing", _JOUR, "IEEE TGRS"),
    (
        r"(ieee )?t-?mi|ieee (transactions on medical imaging|trans\. med\. imaging)( \(tmi\))?",
        _JOUR,
        "IEEE TMI",
    ),
    (
        r"(ieee )?t-?cds|ieee transactions on cognitive and developmental systems",
        _JOUR,
        "IEEE TCDS",
    ),
    (
        r"(ieee )?t-?etci|ieee transactions on emerging topics in computational intelligence",
        _JOUR,
        "IEEE TETCI",
    ),
    (
        r"(ieee )?t-?kde|(ieee )?t-?cde|ieee transactions on knowledge and data engineering",
        _JOUR,
        "IEEE TKDE",
    ),
    (
        r"(ieee )?(acm )?(t-?aslp|transactions on audio,? speech,? and language processing)",
        _JOUR,
        "IEEE/ACM TASLP",
    ),
    (r"ieee trans(\.|actions)? (on )?image processing", _JOUR, "IEEE TIP"),
    (r"ieee robotics and automation letters|ra-?l", _JOUR, "IEEE RA-L"),
    (r"ieee signal processing letters", _JOUR, "IEEE Signal Processing Letters"),
    (r"ieee journal of biomedical and health informatics", _JOUR, "IEEE JBHI"),
    (r"ieee access", _JOUR, "IEEE Access"),
    (r"(acm )?tois|acm transactions on information systems", _JOUR, "ACM TOIS"),
    (r"acm trans(\.|actions)? (on )?graph(\.|ics)?", _JOUR, "ACM TOG"),
    (r"ijcv|international journal of computer vision", _JOUR, "IJCV"),
    (r"(elsevier )?cviu|computer vision and image understanding", _JOUR, "CVIU"),
    (
        r"(elsevier )?eswa|expert systems with applications",
        _JOUR,
        "Expert Systems with Applications",
    ),
    (r"pattern recognition letters", _JOUR, "Pattern Recognition Letters"),
    (r"pattern recognition", _JOUR, "Pattern Recognition"),
    (r"neural networks", _JOUR, "Neural Networks"),
    (r"neurocomputing", _JOUR, "Neurocomputing"),
    (r"neural computing( and applications)?", _JOUR, "Neural Computing and Applications"),
    (r"neural processing letters|npl", _JOUR, "Neural Processing Letters"),
    (r"knowledge-based systems|kbs", _JOUR, "Knowledge-Based Systems"),
    (r"information sciences?", _JOUR, "Information Sciences"),
    (r"image and vi(sion|deo) computing|ivc", _JOUR, "Image and Vision Computing"),
    (
        r"ijmlc|international journal of machine learning and cybernetics",
        _JOUR,
        "International Journal of Machine Learning and Cybernetics",
    ),
    (
        r"ijprai|international journal of pattern recognition and artificial intelligence",
        _JOUR,
        "International Journal of Pattern Recognition and Artificial Intelligence",
    ),
    (r"mtap|multimedia tools and applications", _JOUR, "Multimedia Tools and Applications"),
    (r"multimedia systems", _JOUR, "Multimedia Systems"),
    (r"scientific reports", _JOUR, "Scientific Reports"),
    (r"plos ?one", _JOUR, "PLOS ONE"),
    (r"sensors", _JOUR, "Sensors"),
    (r"electronics", _JOUR, "Electronics"),
    (r"mathematics", _JOUR, "Mathematics"),
    (r"energies", _JOUR, "Energies"),
    (r"applied sciences", _JOUR, "Applied Sciences"),
    (r"applied intelligence", _JOUR, "Applied Intelligence"),
    (r"journal of imaging", _JOUR, "Journal of Imaging"),
    (r"visual intelligence", _JOUR, "Visual Intelligence"),
    (r"jpcs|journal of physics: conference series", _JOUR, "Journal of Physics: Conference Series"),
    (r"peer ?j computer science", _JOUR, "PeerJ Computer Science"),
    (r"machine learning with applications", _JOUR, "Machine Learning with Applications"),
)
_COMPILED_VENUES = tuple(
    (re.compile(rf"(?:{pattern})", re.IGNORECASE), entry_type, name)
    for pattern, entry_type, name in VENUE_TABLE
)
_FIELD_FOR_TYPE = {"inproceedings": "booktitle", "article": "journal", "misc": "howpublished"}
_JOURNAL_WORDS = re.compile(r"\b(journal|transactions|trans\.|letters|review|magazine)\b", re.I)


def clean_venue_name(raw: str) -> str:
    """The venue name of a raw 'Venue Year' string: year, stray punctuation and spaces removed."""
    text = re.sub(r"(?<![\d.])(19|20)\d{2}(?![\d])", " ", raw)
    text = re.sub(r"\s+", " ", text).strip(" ,.;:-")
    return text


def normalise_venue(raw: str) -> tuple[str, str, str]:
    """Map a raw venue ('CVPR 2022', 'Arxiv', 'AAAI Conf. Artif. Intell.') to
    ``(entry_type, field, canonical name)``; field is 'booktitle', 'journal' or 'howpublished'.

    Unknown names are kept as written (cleaned); they count as journals unless they say
    conference, symposium, workshop or proceedings.
    """
    name = clean_venue_name(raw)
    for pattern, entry_type, canonical in _COMPILED_VENUES:
        if pattern.fullmatch(name):
            return entry_type, _FIELD_FOR_TYPE[entry_type], canonical
    if re.search(r"conference|symposium|workshop|proceedings|congress", name, re.I):
        return _CONF, "booktitle", name
    if not name:
        return "misc", "howpublished", ""
    return _JOUR, "journal", name


def is_known_venue(raw: str) -> bool:
    """Whether the venue is one of the table's (not kept as written)."""
    name = clean_venue_name(raw)
    return any(pattern.fullmatch(name) for pattern, _, _ in _COMPILED_VENUES)


# ---------------------------------------------------------------- display

_TO_TEXT = LatexNodes2Text(math_mode="verbatim", strict_latex_spaces=True)


def display(value: str) -> str:
    """``value`` with LaTeX decoded, for display only (never written back to a .bib file)."""
    if "\\" not in value and "{" not in value and "~" not in value and "--" not in value:
        return value
    try:
        text = _TO_TEXT.latex_to_text(value)
    except Exception:  # pylatexenc is lenient, but never let display fail on odd input
        text = value.replace("{", "").replace("}", "")
    return re.sub(r"\s+", " ", text).strip()


def author_names(entry: BibEntry) -> list[str]:
    """Display names ("First Last") of the authors; a trailing ``others`` becomes "et al."."""
    raw = entry.fields.get("author", "")
    names: list[str] = []
    for name in _split_authors(raw):
        if name.strip().lower() == "others":
            names.append("et al.")
            continue
        parts = [part.strip() for part in name.split(",")]
        if len(parts) == 1:
            ordered = parts[0]
        elif len(parts) == 2:
            ordered = f"{parts[1]} {parts[0]}"
        else:  # "von Last, Jr, First"
            ordered = f"{parts[2]} {parts[0]} {parts[1]}"
        names.append(display(ordered.strip()))
    return names


__all__ += ["FIELD_ORDER", "clean_venue_name", "is_known_venue"]
