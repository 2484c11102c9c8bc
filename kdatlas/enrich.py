"""Fill missing authors, DOIs and arXiv ids from OpenAlex, Crossref and arXiv (``kdatlas enrich``).

For each selected entry of ``bib/*.bib`` that lacks a requested field, the services are asked
in this order, and the first answer that gives a field fills it:

1. by identifier: the entry's DOI at OpenAlex (at Crossref when OpenAlex does not know it or
   cannot answer), its arXiv id at the arXiv API. A record whose title differs from the entry's is not used
   (the identifier may be wrong): it is reported instead;
2. by title, for what is still missing: OpenAlex's search (Crossref's when OpenAlex finds
   nothing or cannot answer), and the arXiv API's title search for a missing arXiv id. A record matches when its
   normalised title (:func:`kdatlas.bibliography.normalise_title`) equals the entry's and its
   year is within one of the entry's (preprint and proceedings years differ); among several,
   the one of the entry's own year. More than one left is ambiguous: nothing is proposed from
   titles for that entry, and the reason is printed.

Nothing is written by default: the proposed changes are printed as a unified diff of each bib
file (and of ``bib/provenance.yaml``). ``--apply`` writes them, all files together through
:func:`kdatlas.atomic.replace_files`, and records where each value came from in
``bib/provenance.yaml`` (``by: kdatlas enrich (<service>)``, the service's record as
``source``). A field already set (curated) is never replaced without ``--force``; a value
another entry already holds (its DOI or arXiv id: a duplicate) is never proposed.

Politeness: a contact address (``--contact`` or ``KDATLAS_CONTACT``) goes to OpenAlex as
``mailto`` and to every service in the User-Agent, as Crossref asks; requests to one service
are spaced (:data:`MIN_INTERVAL`: arXiv asks for 3 s); 429 and 5xx answers and timeouts are
retried with exponential back-off, honouring ``Retry-After``; answers (200 and 404) are cached
under ``.cache/kdatlas/enrich/`` for :data:`CACHE_DAYS` days. A host that cannot be reached at
all (no network, refused connection, unknown host) stops the run with one line and changes
nothing. The services' addresses can be changed with ``KDATLAS_OPENALEX_URL``,
``KDATLAS_CROSSREF_URL`` and ``KDATLAS_ARXIV_URL`` (the tests serve recorded answers on
127.0.0.1). Only the standard library speaks HTTP (:mod:`urllib`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import email.utils
import hashlib
import html
import http.client
import io
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from kdatlas.atomic import replace_files
from kdatlas.bibliography import (
    BibEntry,
    _name_parts,
    arxiv_id,
    doi,
    normalise_title,
    read_bib_file,
    render_bib,
)
from kdatlas.limits import forbidden_character
from kdatlas.loader import BIB_DIR, read_yaml, round_trip_yaml
from kdatlas.problems import Problem, Severity
from kdatlas.validation import entry_problems

# What ``--missing`` names, and the BibTeX field each fills.
FIELDS = {"authors": "author", "doi": "doi", "arxiv": "eprint"}
SERVICES = ("openalex", "crossref", "arxiv")
SERVICE_NAMES = {"openalex": "OpenAlex", "crossref": "Crossref", "arxiv": "arXiv"}
DEFAULT_URLS = {
    "openalex": "https://api.openalex.org",
    "crossref": "https://api.crossref.org",
    "arxiv": "https://export.arxiv.org/api",
}
URL_VARIABLES = {name: f"KDATLAS_{name.upper()}_URL" for name in SERVICES}
# Seconds between two requests to one service: arXiv's terms ask for one request every 3 s;
# OpenAlex and Crossref allow far more than this to a client that gives a contact address.
MIN_INTERVAL = {"openalex": 0.2, "crossref": 0.2, "arxiv": 3.0}
CACHE_DIR = Path(".cache") / "kdatlas" / "enrich"
CACHE_DAYS = 30
PROVENANCE_FILE = Path(BIB_DIR) / "provenance.yaml"
PROVENANCE_HEADER = (
    "# yaml-language-server: $schema=../kdatlas/schemas/provenance.schema.json\n"
    "# Where each value filled into bib/kd.bib after the survey import came from. kdatlas check\n"
    "# validates it: every key is a bib entry, every field is set in that entry, every source is\n"
    "# an http(s) URL, every date an ISO date.\n"
)
_sleep = time.sleep  # every wait goes through here (the tests record them instead)
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # far above any answer enrich asks for
RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
# arXiv's own DOIs (DataCite) name the preprint, which ``eprint`` already does.
ARXIV_DOI = re.compile(r"^10\.48550/arxiv\.(\d{4}\.\d{4,5})", re.IGNORECASE)
ARXIV_ABS = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", re.IGNORECASE)
DOI_FORM = re.compile(r"^10\.\d{4,9}/\S+$")
ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV_NS = "{http://arxiv.org/schemas/atom}"


# --------------------------------------------------------------------------- errors


class EnrichError(Exception):
    """The run cannot go on (bad bibliography, unknown key); carries the problems."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownKeys(EnrichError):
    """``--keys`` names entries the bibliography does not hold (bad usage)."""


class NoNetwork(Exception):
    """A service's host cannot be reached at all: the run stops, nothing is written."""

    def __init__(self, service: str, url: str, reason: str) -> None:
        self.service, self.url, self.reason = service, url, reason
        host = urllib.parse.urlsplit(url).netloc
        super().__init__(
            f"no network: cannot reach {SERVICE_NAMES[service]} at {host} ({reason}); "
            "nothing was changed"
        )


class ServiceError(Exception):
    """One request failed for good (after its retries): its entry gets no value from it."""

    def __init__(self, service: str, message: str) -> None:
        self.service = service
        super().__init__(f"{SERVICE_NAMES[service]}: {message}")


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Settings:
    """How the services are asked: where, on whose behalf, how patiently."""

    urls: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_URLS))
    contact: str | None = None
    timeout: float = 20.0  # seconds per request
    tries: int = 4  # a request is sent at most this many times
    backoff: float = 1.0  # the first wait before a retry; doubled each time
    max_wait: float = 120.0  # a longer Retry-After gives up instead of waiting
    min_interval: Mapping[str, float] = field(default_factory=lambda: dict(MIN_INTERVAL))

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Default settings with the services' URLs from ``KDATLAS_<SERVICE>_URL`` where set."""
        environ = os.environ if environ is None else environ
        urls = {
            name: environ.get(URL_VARIABLES[name], "").strip() or default
            for name, default in DEFAULT_URLS.items()
        }
        return cls(urls=urls, **overrides)


def user_agent(contact: str | None) -> str:
    """``kdatlas/<version> (<project>; mailto:<contact>)``: Crossref's polite-pool form."""
    try:
        version = metadata.version("kdatlas")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        version = "0"
    details = "https://github.com/kdatlas; kdatlas enrich"
    if contact:
        details += f"; mailto:{contact}"
    return f"kdatlas/{version} ({details})"


@dataclass(frozen=True)
class Response:
    status: int  # 200 or 404 (anything else is an error)
    text: str
    url: str  # as requested, without the contact address


class Client:
    """GET with politeness: spacing per service, retries with back-off, a cache on disk."""

    def __init__(
        self,
        settings: Settings,
        cache_dir: Path | None,
        *,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.cache_dir = cache_dir
        # looked up when called, so a test can replace time.sleep for a whole command
        self.sleep = sleep or (lambda seconds: _sleep(seconds))
        self.clock = clock or (lambda: time.monotonic())
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self._last: dict[str, float] = {}
        self.requests = 0  # sent over the network (cache hits excluded)

    def url(self, service: str, path: str, params: Mapping[str, str] | None = None) -> str:
        base = self.settings.urls[service].rstrip("/")
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"{base}/{path.lstrip('/')}{query}"

    def get(self, service: str, path: str, params: Mapping[str, str] | None = None) -> Response:
        """The answer to ``GET <service URL>/<path>?<params>``: from the cache, else asked."""
        url = self.url(service, path, params)
        cached = self._cached(url)
        if cached is not None:
            return cached
        sent = url
        if service == "openalex" and self.settings.contact:
            # OpenAlex's polite pool: the address as a parameter (left out of the cache key)
            sent += ("&" if "?" in url else "?") + urllib.parse.urlencode(
                {"mailto": self.settings.contact}
            )
        response = self._ask(service, url, sent)
        self._store(response)
        return response

    # -- asking

    def _wait_turn(self, service: str) -> None:
        interval = self.settings.min_interval.get(service, 0.0)
        last = self._last.get(service)
        if last is not None and interval > 0:
            remaining = interval - (self.clock() - last)
            if remaining > 0:
                self.sleep(remaining)
        self._last[service] = self.clock()

    def _ask(self, service: str, url: str, sent: str) -> Response:
        headers = {"User-Agent": user_agent(self.settings.contact), "Accept-Encoding": "identity"}
        last_problem = ""
        for attempt in range(1, self.settings.tries + 1):
            self._wait_turn(service)
            retry_after: float | None = None
            request = urllib.request.Request(sent, headers=headers)
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.settings.timeout) as answer:
                    body = answer.read(MAX_ANSWER_BYTES + 1)
                    if len(body) > MAX_ANSWER_BYTES:
                        raise ServiceError(
                            service, f"answer larger than {MAX_ANSWER_BYTES} bytes for {url}"
                        )
                    return Response(answer.status, _decode(body, answer), url)
            except urllib.error.HTTPError as error:
                if error.code == 404:
                    return Response(404, "", url)
                if error.code not in RETRIED_STATUS:
                    raise ServiceError(service, f"HTTP {error.code} for {url}") from None
                last_problem = f"HTTP {error.code}"
                retry_after = _retry_after(error.headers.get("Retry-After"), self.now())
            except TimeoutError:
                last_problem = f"timed out after {self.settings.timeout:g} s"
            except urllib.error.URLError as error:
                last_problem = self._retryable(service, url, error.reason)
            except (ConnectionError, http.client.HTTPException) as error:
                last_problem = self._retryable(service, url, error)
            if attempt == self.settings.tries:
                break
            wait = self.settings.backoff * 2 ** (attempt - 1)
            if retry_after is not None:
                if retry_after > self.settings.max_wait:
                    raise ServiceError(
                        service,
                        f"{last_problem}: asked to wait {retry_after:g} s (Retry-After), "
                        f"more than {self.settings.max_wait:g} s; try again later",
                    )
                wait = max(wait, retry_after)
            self.sleep(min(wait, self.settings.max_wait))
        tries = self.settings.tries
        raise ServiceError(service, f"{last_problem} ({tries} tr{'y' if tries == 1 else 'ies'})")

    def _retryable(self, service: str, url: str, reason: object) -> str:
        """What went wrong, when worth retrying (a timeout, a broken connection); a host that
        cannot be reached at all (refused, unknown, no route) raises :class:`NoNetwork`."""
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return f"timed out after {self.settings.timeout:g} s"
        if isinstance(reason, ConnectionError | http.client.HTTPException) and not isinstance(
            reason, ConnectionRefusedError
        ):
            return f"connection broken ({_reason(reason)})"
        raise NoNetwork(service, url, _reason(reason))

    # -- the cache

    def _cache_file(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{hashlib.sha256(url.encode('utf-8')).hexdigest()}.json"

    def _cached(self, url: str) -> Response | None:
        path = self._cache_file(url)
        if path is None or not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            fetched = dt.datetime.fromisoformat(record["fetched"])
            if record["url"] != url or self.now() - fetched > dt.timedelta(days=CACHE_DAYS):
                return None
            return Response(int(record["status"]), str(record["text"]), url)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable: asked again, and replaced

    def _store(self, response: Response) -> None:
        path = self._cache_file(response.url)
        if path is None:
            return
        record = {
            "url": response.url,
            "fetched": self.now().isoformat(),
            "status": response.status,
            "text": response.text,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_files({path: json.dumps(record, ensure_ascii=False)})

    def forget(self, response: Response) -> None:
        """Drop a cached answer that turned out unusable (malformed), so it is asked again."""
        path = self._cache_file(response.url)
        if path is not None:
            path.unlink(missing_ok=True)


def _decode(body: bytes, answer: Any) -> str:
    charset = answer.headers.get_content_charset() or "utf-8"
    return body.decode(charset, errors="replace")


def _retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Record:
    """One work as a service describes it, reduced to what enrich can fill."""

    service: str
    source: str  # the record's address (provenance ``source``)
    ident: str  # the service's id of the work
    title: str
    year: int | None
    authors: tuple[str, ...]  # BibTeX names ("Last, First"); "others" when truncated
    doi: str | None
    arxiv: str | None

    @property
    def label(self) -> str:
        return SERVICE_NAMES[self.service]


def _plain(text: str) -> str:
    """A title as a service writes it (HTML tags, entities, line breaks) as plain text."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", text or ""))).strip()


_LATEX_SPECIAL = re.compile(r"([&%$#_])")


def bibtex_name(given: str | None, family: str | None, display: str | None = None) -> str | None:
    """A person's name in BibTeX's ``von Last, Jr, First`` form, or None when empty.

    From given and family names (Crossref) directly; from a display name ("Geoffrey E. Hinton":
    OpenAlex, arXiv) by BibTeX's own rules (the last word is the surname, lowercase words
    before it the "von" part), so the field means what the display name says.
    """

    def clean(text: str | None) -> str:
        text = re.sub(r"[{}\\]", "", text or "")
        text = "".join(" " if forbidden_character(ch) else ch for ch in text)
        return _LATEX_SPECIAL.sub(r"\\\1", re.sub(r"\s+", " ", text).strip(" ,"))

    given, family, display = clean(given), clean(family), clean(display)
    if not family and display:
        first, von, last, jr = _name_parts(display)
        if not last:
            return None
        family = " ".join([*von, *last]) + (", " + " ".join(jr) if jr else "")
        given = " ".join(first)
    if not family:
        return None
    name = f"{family}, {given}" if given else family
    if re.search(r"(^|\s)and(\s|$)", name, re.IGNORECASE):
        name = "{" + name + "}"  # one name, never split on its "and"
    return name


def _doi_of(value: str | None) -> str | None:
    if not value:
        return None
    value = re.sub(r"^https?://(dx\.)?doi\.org/", "", value.strip(), flags=re.IGNORECASE)
    return value if DOI_FORM.match(value) else None


def _arxiv_of(*values: str | None) -> str | None:
    for value in values:
        if not value:
            continue
        if match := ARXIV_ABS.search(value) or ARXIV_DOI.match(_doi_of(value) or ""):
            return match.group(1)
    return None


def _publication_doi(value: str | None) -> str | None:
    """A DOI worth a ``doi`` field: not arXiv's own (the preprint's ``eprint`` says it)."""
    number = _doi_of(value)
    return None if number is None or ARXIV_DOI.match(number) else number


def _json(response: Response, service: str, client: Client) -> Any:
    try:
        return json.loads(response.text)
    except ValueError:
        client.forget(response)
        snippet = response.text.strip()[:40]
        raise ServiceError(service, f"malformed answer (not JSON: {snippet!r})") from None


def openalex_record(work: Mapping[str, Any], base: str) -> Record:
    ident = str(work.get("id") or "").rstrip("/").rsplit("/", 1)[-1]
    authors = [
        bibtex_name(None, None, (authorship.get("author") or {}).get("display_name"))
        for authorship in work.get("authorships") or []
        if isinstance(authorship, Mapping)
    ]
    names = [name for name in authors if name]
    if names and work.get("is_authors_truncated"):
        names.append("others")
    locations = [work.get("primary_location") or {}, *(work.get("locations") or [])]
    links = [
        str(location.get(key) or "")
        for location in locations
        if isinstance(location, Mapping)
        for key in ("landing_page_url", "pdf_url")
    ]
    arxiv = _arxiv_of(work.get("doi"), *links)
    year = work.get("publication_year")
    return Record(
        service="openalex",
        source=f"{base.rstrip('/')}/works/{ident}",
        ident=ident,
        title=_plain(str(work.get("title") or work.get("display_name") or "")),
        year=year if isinstance(year, int) else None,
        authors=tuple(names),
        doi=_publication_doi(work.get("doi")),
        arxiv=arxiv,
    )


def crossref_record(item: Mapping[str, Any], base: str) -> Record:
    number = str(item.get("DOI") or "")
    names = []
    for person in item.get("author") or []:
        if not isinstance(person, Mapping):
            continue
        if person.get("family"):
            name = bibtex_name(person.get("given"), person.get("family"))
        elif person.get("given"):  # a single name
            name = bibtex_name(None, None, person.get("given"))
        else:  # an organisation: one name, kept whole in braces
            organisation = re.sub(r"[{}\\]", "", _plain(str(person.get("name") or "")))
            name = "{" + organisation + "}" if organisation else None
        if name:
            names.append(name)
    titles = item.get("title") or []
    year = None
    for date_key in ("issued", "published", "published-print", "published-online"):
        parts = (item.get(date_key) or {}).get("date-parts") or [[None]]
        if parts and parts[0] and isinstance(parts[0][0], int):
            year = parts[0][0]
            break
    return Record(
        service="crossref",
        source=f"{base.rstrip('/')}/works/{urllib.parse.quote(number, safe='/')}",
        ident=number.lower(),
        title=_plain(str(titles[0]) if titles else ""),
        year=year,
        authors=tuple(names),
        doi=_publication_doi(number),
        arxiv=None,
    )


def arxiv_records(response: Response, client: Client) -> list[Record]:
    try:
        feed = ET.fromstring(response.text)
    except ET.ParseError:
        client.forget(response)
        snippet = response.text.strip()[:40]
        raise ServiceError("arxiv", f"malformed answer (not Atom: {snippet!r})") from None
    records = []
    for entry in feed.findall(f"{ATOM}entry"):
        ident = _arxiv_of(entry.findtext(f"{ATOM}id") or "")
        if ident is None:  # arXiv reports an unknown id as an entry titled "Error"
            continue
        published = entry.findtext(f"{ATOM}published") or ""
        names = [
            bibtex_name(None, None, author.findtext(f"{ATOM}name"))
            for author in entry.findall(f"{ATOM}author")
        ]
        records.append(
            Record(
                service="arxiv",
                source=f"https://arxiv.org/abs/{ident}",
                ident=ident,
                title=_plain(entry.findtext(f"{ATOM}title") or ""),
                year=int(published[:4]) if published[:4].isdigit() else None,
                authors=tuple(name for name in names if name),
                doi=_publication_doi(entry.findtext(f"{ARXIV_NS}doi")),
                arxiv=ident,
            )
        )
    return records


# --------------------------------------------------------------------------- services


class Services:
    """The three services' questions, answered as :class:`Record` lists."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _base(self, service: str) -> str:
        return self.client.settings.urls[service]

    def openalex_by_doi(self, number: str) -> Record | None:
        response = self.client.get("openalex", f"works/doi:{urllib.parse.quote(number, safe='/')}")
        if response.status == 404:
            return None
        work = _json(response, "openalex", self.client)
        if not isinstance(work, Mapping) or not work.get("id"):
            raise ServiceError("openalex", "malformed answer (no work in it)")
        return openalex_record(work, self._base("openalex"))

    def openalex_search(self, title: str, year: int) -> list[Record]:
        params = {
            "search": _search_words(title),
            "filter": f"publication_year:{year - 1}-{year + 1}",
            "per-page": "10",
        }
        response = self.client.get("openalex", "works", params)
        if response.status == 404:
            return []
        answer = _json(response, "openalex", self.client)
        results = answer.get("results") if isinstance(answer, Mapping) else None
        if not isinstance(results, list):
            raise ServiceError("openalex", "malformed answer (no results list)")
        base = self._base("openalex")
        return [openalex_record(work, base) for work in results if isinstance(work, Mapping)]

    def crossref_by_doi(self, number: str) -> Record | None:
        response = self.client.get("crossref", f"works/{urllib.parse.quote(number, safe='/')}")
        if response.status == 404:
            return None
        answer = _json(response, "crossref", self.client)
        item = answer.get("message") if isinstance(answer, Mapping) else None
        if not isinstance(item, Mapping) or not item.get("DOI"):
            raise ServiceError("crossref", "malformed answer (no message)")
        return crossref_record(item, self._base("crossref"))

    def crossref_search(self, title: str, year: int) -> list[Record]:
        params = {
            "query.bibliographic": _search_words(title),
            "filter": f"from-pub-date:{year - 1},until-pub-date:{year + 1}",
            "rows": "10",
        }
        response = self.client.get("crossref", "works", params)
        if response.status == 404:
            return []
        answer = _json(response, "crossref", self.client)
        message = answer.get("message") if isinstance(answer, Mapping) else None
        items = message.get("items") if isinstance(message, Mapping) else None
        if not isinstance(items, list):
            raise ServiceError("crossref", "malformed answer (no items list)")
        base = self._base("crossref")
        return [crossref_record(item, base) for item in items if isinstance(item, Mapping)]

    def arxiv_by_id(self, ident: str) -> Record | None:
        response = self.client.get("arxiv", "query", {"id_list": ident, "max_results": "1"})
        if response.status == 404:
            return None
        records = [r for r in arxiv_records(response, self.client) if r.arxiv == ident]
        return records[0] if records else None

    def arxiv_search(self, title: str) -> list[Record]:
        query = f'ti:"{_search_words(title)}"'
        response = self.client.get("arxiv", "query", {"search_query": query, "max_results": "10"})
        if response.status == 404:
            return []
        return arxiv_records(response, self.client)


def _search_words(title: str) -> str:
    """The words of a title for a search box (no quotes, commas or LaTeX to trip its syntax)."""
    plain = _plain(title)
    return " ".join(re.findall(r"\w+", plain))


def _titles_agree(ours: str, theirs: str) -> bool:
    """Whether a record found by identifier is the entry's paper: the normalised titles are
    equal, one holds the other (a subtitle added or dropped), or they differ in a few letters."""
    a, b = normalise_title(ours), normalise_title(theirs)
    if not a or not b:
        return False
    if a == b or (min(len(a), len(b)) >= 20 and (a in b or b in a)):
        return True
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.9


def match_title(
    title: str, year: int, records: Iterable[Record]
) -> tuple[Record | None, str | None]:
    """The one record with the entry's normalised title and a year within one of ``year``
    (the entry's own year preferred); or None and why not (None when nothing matched)."""
    wanted = normalise_title(title)
    same = {r.ident: r for r in records if normalise_title(r.title) == wanted and r.year}
    close = [r for r in same.values() if r.year is not None and abs(r.year - year) <= 1]
    exact = [r for r in close if r.year == year]
    pool = exact if exact else close
    if len(pool) == 1:
        return pool[0], None
    if not pool:
        return None, None
    service = pool[0].label
    listed = ", ".join(f"{r.ident} ({r.year})" for r in pool[:5])
    return None, (
        f"ambiguous title: {len(pool)} works in {service} have this title and year "
        f"{year if exact else f'{year - 1}-{year + 1}'}: {listed}; nothing proposed"
    )


# --------------------------------------------------------------------------- proposals


@dataclass(frozen=True)
class Change:
    """One field of one entry set to a value taken from a record."""

    key: str
    field: str
    old: str | None
    new: str
    record: Record


@dataclass
class Outcome:
    """What one entry's lookups gave: the changes and what to tell the user."""

    entry: BibEntry
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed: bool = False  # a service could not answer (timeouts, malformed answers)


@dataclass
class Plan:
    """Every proposed change, and the new texts of the files they touch."""

    outcomes: list[Outcome]
    texts: dict[Path, tuple[str, str]]  # display path -> (old text, new text)
    root: Path
    requests: int = 0

    @property
    def changes(self) -> list[Change]:
        return [change for outcome in self.outcomes for change in outcome.changes]

    @property
    def failed(self) -> bool:
        return any(outcome.failed for outcome in self.outcomes)

    def diff(self) -> str:
        """A unified diff of every file that would change (``a/`` old, ``b/`` new)."""
        parts = []
        for path, (old, new) in self.texts.items():
            parts.extend(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    f"a/{path.as_posix()}",
                    f"b/{path.as_posix()}",
                )
            )
        return "".join(parts)

    def apply(self) -> list[Path]:
        """Write every changed file together (all or none); the paths written."""
        replace_files({self.root / path: new for path, (_, new) in self.texts.items()})
        return list(self.texts)


def parse_missing(text: str) -> list[str]:
    """``authors,doi,arxiv`` (any subset, in any order) as BibTeX fields; ValueError if unknown."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FIELDS]
    if unknown or not names:
        raise ValueError(
            f"--missing takes a comma-separated list of {', '.join(FIELDS)}; got {text!r}"
        )
    return [FIELDS[name] for name in dict.fromkeys(names)]


def wanted_fields(entry: BibEntry, fields: Sequence[str], force: bool) -> list[str]:
    """The requested fields to look up for ``entry``: those it lacks, or all with ``force``."""
    return [name for name in fields if force or not entry.fields.get(name, "").strip()]


class Enricher:
    """Looks entries up and turns what the services say into changes."""

    def __init__(self, services: Services, entries: Sequence[BibEntry]) -> None:
        self.services = services
        # Who holds each DOI and arXiv id: a value another entry has is never proposed.
        self.doi_holders: dict[str, str] = {}
        self.arxiv_holders: dict[str, str] = {}
        for entry in entries:
            if number := doi(entry):
                self.doi_holders.setdefault(number.lower(), entry.key)
            if ident := arxiv_id(entry):
                self.arxiv_holders.setdefault(ident.lower(), entry.key)

    def lookup(self, entry: BibEntry, fields: Sequence[str], force: bool) -> Outcome:
        outcome = Outcome(entry)
        want = set(wanted_fields(entry, fields, force))
        if not want:
            return outcome
        records: list[tuple[Record, str]] = []  # (record, how it was matched)

        def still_missing() -> set[str]:
            found = {name for record, _ in records for name in _gives(record)}
            return want - found

        def ask(question: Callable[[], Any]) -> Any:
            try:
                return question()
            except ServiceError as error:
                outcome.warnings.append(str(error))
                outcome.failed = True
                return None

        title = entry.fields.get("title", "")
        number, ident = doi(entry), arxiv_id(entry)
        if number:
            record = ask(lambda: self.services.openalex_by_doi(number))
            if record is None:  # unknown to OpenAlex, or it could not answer
                record = ask(lambda: self.services.crossref_by_doi(number))
            self._take_identified(record, f"DOI {number}", title, records, outcome)
        if ident and still_missing():
            record = ask(lambda: self.services.arxiv_by_id(ident))
            self._take_identified(record, f"arXiv id {ident}", title, records, outcome)
        if still_missing():
            self._search_titles(entry, still_missing(), records, outcome, ask)
        outcome.changes = self._changes(entry, want, records, force, outcome)
        for change in outcome.changes:  # two entries never get the same identifier
            if change.field == "doi":
                self.doi_holders.setdefault(change.new.lower(), entry.key)
            elif change.field == "eprint":
                self.arxiv_holders.setdefault(change.new.lower(), entry.key)
        if not outcome.changes and not outcome.warnings and not outcome.notes:
            outcome.notes.append(f"no {', '.join(sorted(want))} found")
        return outcome

    def _take_identified(
        self,
        record: Record | None,
        what: str,
        title: str,
        records: list[tuple[Record, str]],
        outcome: Outcome,
    ) -> None:
        if record is None:
            return
        if not _titles_agree(title, record.title):
            outcome.warnings.append(
                f"{record.label}'s record of {what} is titled {record.title!r}, not this "
                "entry's title: nothing taken from it (check the identifier)"
            )
            return
        records.append((record, what))

    def _search_titles(
        self,
        entry: BibEntry,
        missing: set[str],
        records: list[tuple[Record, str]],
        outcome: Outcome,
        ask: Callable[[Callable[[], Any]], Any],
    ) -> None:
        title = entry.fields.get("title", "")
        year_text = entry.fields.get("year", "").strip()
        if not year_text.isdigit() or not normalise_title(title):
            outcome.notes.append("no title and year to search by")
            return
        year = int(year_text)
        found = ask(lambda: self.services.openalex_search(title, year))
        candidates: list[Record] = []
        if found is not None:
            match, why = match_title(title, year, found)
            if why:
                outcome.warnings.append(why)
                return
            if match is not None:
                candidates.append(match)
        if not candidates:  # OpenAlex found nothing, or could not answer
            found = ask(lambda: self.services.crossref_search(title, year))
            if found is not None:
                match, why = match_title(title, year, found)
                if why:
                    outcome.warnings.append(why)
                    return
                if match is not None:
                    candidates.append(match)
        records.extend((record, "title and year") for record in candidates)
        have_arxiv = any(record.arxiv for record, _ in records)
        if "eprint" in missing and not have_arxiv and not arxiv_id(entry):
            found = ask(lambda: self.services.arxiv_search(title))
            if found is not None:
                match, why = match_title(title, year, found)
                if why:
                    outcome.warnings.append(why)
                    return
                if match is not None:
                    records.append((match, "title and year"))

    def _changes(
        self,
        entry: BibEntry,
        want: set[str],
        records: list[tuple[Record, str]],
        force: bool,
        outcome: Outcome,
    ) -> list[Change]:
        changes: list[Change] = []
        for name in ("author", "doi", "eprint"):
            if name not in want:
                continue
            source = next(((r, how) for r, how in records if _value(r, name)), None)
            if source is None:
                continue
            record, how = source
            value = _value(record, name)
            assert value is not None
            old = entry.fields.get(name, "").strip() or None
            if old is not None and _same(name, old, value):
                continue
            if name in ("doi", "eprint") and (other := self._holder(entry, name, value)):
                outcome.warnings.append(
                    f"{record.label} gives {name} {value!r} (by {how}), but entry "
                    f"'{other}' already has it: not proposed (a duplicate?)"
                )
                continue
            changes.append(Change(entry.key, name, old, value, record))
        return changes

    def _holder(self, entry: BibEntry, name: str, value: str) -> str | None:
        """The key of another entry that already has this DOI or arXiv id."""
        holders = self.doi_holders if name == "doi" else self.arxiv_holders
        other = holders.get(value.lower())
        return other if other is not None and other != entry.key else None


def _gives(record: Record) -> set[str]:
    return {name for name in ("author", "doi", "eprint") if _value(record, name)}


def _value(record: Record, name: str) -> str | None:
    if name == "author":
        return " and ".join(record.authors) if record.authors else None
    if name == "doi":
        return record.doi
    return record.arxiv


def _same(name: str, old: str, new: str) -> bool:
    if name == "doi":
        return old.lower() == new.lower()
    if name == "author":
        return re.sub(r"\s+", " ", old) == re.sub(r"\s+", " ", new)
    return old == new


# --------------------------------------------------------------------------- the run


def select_entries(entries: Sequence[BibEntry], keys: Sequence[str] | None) -> list[BibEntry]:
    """The entries named by ``keys`` (all when None), in key order; unknown keys refused."""
    if not keys:
        return sorted(entries, key=lambda entry: entry.key)
    by_key = {entry.key: entry for entry in entries}
    unknown = [key for key in keys if key not in by_key]
    if unknown:
        raise UnknownKeys(
            [Problem(BIB_DIR, None, f"no bib entry '{key}' (--keys)") for key in unknown]
        )
    return [by_key[key] for key in sorted(dict.fromkeys(keys))]


def read_entries(root: Path) -> tuple[list[BibEntry], dict[Path, str]]:
    """Every entry of ``bib/*.bib`` and each file's text; refuses a file with errors or one not
    in canonical form (the diff would show formatting, not the proposed changes)."""
    entries: list[BibEntry] = []
    texts: dict[Path, str] = {}
    problems: list[Problem] = []
    for path in sorted((root / BIB_DIR).glob("*.bib")):
        display = path.relative_to(root)
        file_entries, file_problems = read_bib_file(path, display)
        errors = [p for p in file_problems if p.severity is Severity.ERROR]
        if errors:
            problems.extend(errors)
            continue
        text = path.read_text(encoding="utf-8")
        if text != render_bib(file_entries):
            problems.append(
                Problem(display, None, "not in canonical form; run 'kdatlas fmt' first")
            )
            continue
        entries.extend(file_entries)
        texts[display] = text
    if problems:
        raise EnrichError(problems)
    return entries, texts


def plan(
    root: Path,
    client: Client,
    *,
    keys: Sequence[str] | None = None,
    fields: Sequence[str] = tuple(FIELDS.values()),
    force: bool = False,
    today: dt.date | None = None,
) -> Plan:
    """Look up the selected entries and work out every change (writes nothing but the cache)."""
    root = Path(root)
    entries, texts = read_entries(root)
    selected = [
        entry for entry in select_entries(entries, keys) if wanted_fields(entry, fields, force)
    ]
    enricher = Enricher(Services(client), entries)
    outcomes = [enricher.lookup(entry, fields, force) for entry in selected]
    # Changes that would break an entry (a check it must pass) are dropped and reported.
    updated: dict[str, BibEntry] = {}
    for outcome in outcomes:
        if not outcome.changes:
            continue
        new_entry = _updated(outcome.entry, outcome.changes)
        broken = [p for p in entry_problems(new_entry) if p.is_error]
        if broken:
            outcome.warnings.extend(f"not proposed: {p.message}" for p in broken)
            outcome.changes = []
            continue
        updated[new_entry.key] = new_entry
    new_texts: dict[Path, tuple[str, str]] = {}
    for display, old in texts.items():
        file_entries = [updated.get(e.key, e) for e in entries if e.path == display]
        if any(e.key in updated for e in entries if e.path == display):
            new_texts[display] = (old, render_bib(file_entries))
    changes = [change for outcome in outcomes for change in outcome.changes]
    if changes:
        provenance_old, provenance_new = provenance_texts(root, changes, today or dt.date.today())
        new_texts[PROVENANCE_FILE] = (provenance_old, provenance_new)
    return Plan(outcomes, new_texts, root, client.requests)


def _updated(entry: BibEntry, changes: Sequence[Change]) -> BibEntry:
    fields = dict(entry.fields)
    for change in changes:
        fields[change.field] = change.new
        if change.field == "eprint":
            fields["archiveprefix"] = "arXiv"
    return dataclasses.replace(entry, fields=fields)


# --------------------------------------------------------------------------- provenance


def provenance_texts(root: Path, changes: Sequence[Change], today: dt.date) -> tuple[str, str]:
    """The old and new text of ``bib/provenance.yaml`` with an entry per change (replacing an
    earlier entry for the same key and field); comments and other entries kept, keys sorted."""
    path = root / PROVENANCE_FILE
    old = ""
    if path.is_file():
        document, problems = read_yaml(path, PROVENANCE_FILE)
        if problems:
            raise EnrichError(problems)
        old = path.read_text(encoding="utf-8")
    else:
        document = None
    if document is None:
        document = round_trip_yaml().load(PROVENANCE_HEADER + "filled: {}\n")
    if not isinstance(document, CommentedMap):
        raise EnrichError([Problem(PROVENANCE_FILE, 1, "expected a mapping with 'filled:'")])
    filled = document.get("filled")
    if filled is None:
        filled = CommentedMap()
        document["filled"] = filled
    if not isinstance(filled, CommentedMap):
        raise EnrichError([Problem(PROVENANCE_FILE, None, "'filled' is not a mapping")])
    filled.fa.set_block_style()
    for change in changes:
        fields = filled.get(change.key)
        if not isinstance(fields, CommentedMap):
            fields = CommentedMap()
            filled[change.key] = fields
        fields.fa.set_block_style()
        item = CommentedMap()
        item["source"] = change.record.source
        item["checked"] = today
        item["by"] = f"kdatlas enrich ({change.record.service})"
        fields[change.field] = item
    for key in sorted(filled):
        filled.move_to_end(key)
    stream = io.StringIO()
    round_trip_yaml().dump(document, stream)
    return old, stream.getvalue()


# --------------------------------------------------------------------------- reporting


def report_lines(plan_: Plan) -> list[str]:
    """One line per note or warning: ``path:line: warning: key: message`` (notes as ``note:``)."""
    lines = []
    for outcome in plan_.outcomes:
        entry = outcome.entry
        for message in outcome.warnings:
            lines.append(
                str(
                    Problem(
                        entry.path or BIB_DIR,
                        entry.line,
                        f"{entry.key}: {message}",
                        Severity.WARNING,
                    )
                )
            )
        for message in outcome.notes:
            lines.append(f"note: {entry.key}: {message}")
    return lines
