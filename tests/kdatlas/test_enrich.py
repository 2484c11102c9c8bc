"""``kdatlas enrich`` against answers served by a local HTTP server (127.0.0.1 only).

Every test points the three services at ``http.server`` on 127.0.0.1, which serves the
answers in ``tests/fixtures/enrich/`` (or errors, delays, refusals); nothing reaches the
network. Waiting (rate limit, back-off, Retry-After) is recorded instead of slept.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from ruamel.yaml import YAML

from kdatlas import enrich as enriching
from kdatlas.bibliography import parse_bib, render_bib

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "enrich"
CONTACT = "maintainer@example.org"

# Two entries added to the shared fixture's bibliography: one found by title and year only,
# one whose title two works share.
EXTRA_ENTRIES = """\
@inproceedings{park2019relational,
  title = {Relational Knowledge Distillation},
  booktitle = {CVPR},
  year = {2019},
  url = {https://openaccess.thecvf.com/park2019},
}

@article{knowledge2021distillation,
  title = {Knowledge Distillation: A Survey},
  journal = {IJCV},
  year = {2021},
  url = {https://example.org/survey},
}
"""
SUN_DOI_PATH = "/openalex/works/doi:10.1109/cvpr52733.2024.01489"
EMPTY_FEED = '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"></feed>'


# --------------------------------------------------------------------------- the server


@dataclass
class Answer:
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a slow service)
    content_type: str = "application/json"
    drop: bool = False  # close the connection without answering


@dataclass
class Route:
    path: str
    query: dict[str, str]
    answers: list[Answer]  # served in turn; the last one again and again
    served: int = 0


class Server:
    """Recorded answers by path (and query parameters); unknown paths get 404."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                server.requests.append((parts.path, query, dict(self.headers)))
                answer = server.answer(parts.path, query)
                if answer.delay:
                    server._stop.wait(answer.delay)
                if answer.drop:
                    self.close_connection = True
                    return
                body = answer.body.encode("utf-8")
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", f"{answer.content_type}; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def add(self, path: str, *answers: Answer, **query: str) -> Route:
        route = Route(path, query, list(answers))
        self.routes.insert(0, route)  # later routes win
        return route

    def answer(self, path: str, query: dict[str, str]) -> Answer:
        for route in self.routes:
            if route.path == path and all(query.get(k) == v for k, v in route.query.items()):
                answer = route.answers[min(route.served, len(route.answers) - 1)]
                route.served += 1
                return answer
        return Answer(404, '{"error": "not found"}')

    def asked(self, path: str) -> list[dict[str, str]]:
        return [query for asked, query, _ in self.requests if asked == path]

    def urls(self) -> dict[str, str]:
        return {name: f"{self.base}/{name}" for name in enriching.SERVICES}


def recorded(name: str, **kwargs) -> Answer:
    content_type = "application/atom+xml" if name.endswith(".atom") else "application/json"
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return Answer(body=text, content_type=content_type, **kwargs)


def serve_recordings(server: Server) -> None:
    """The answers of a normal run over the fixture's bibliography."""
    server.add("/openalex/works", recorded("openalex_search_empty.json"))
    server.add("/crossref/works", recorded("crossref_search_empty.json"))
    server.add("/arxiv/query", Answer(body=EMPTY_FEED, content_type="application/atom+xml"))
    server.add(SUN_DOI_PATH, recorded("openalex_doi_sun2024logit.json"))
    server.add(
        "/openalex/works",
        recorded("openalex_search_park2019relational.json"),
        search="Relational Knowledge Distillation",
    )
    server.add(
        "/openalex/works",
        recorded("openalex_search_ambiguous.json"),
        search="Knowledge Distillation A Survey",
    )
    server.add("/arxiv/query", recorded("arxiv_id_1412.6550.atom"), id_list="1412.6550")


@pytest.fixture
def server() -> Iterator[Server]:
    served = Server()
    served.thread.start()
    yield served
    served._stop.set()
    served.httpd.shutdown()
    served.httpd.server_close()


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait enrich asks for (rate limit, back-off, Retry-After), recorded, not slept."""
    waits: list[float] = []
    monkeypatch.setattr(enriching, "_sleep", waits.append)
    return waits


@pytest.fixture
def kb(fixture_kb, server: Server, slept: list[float], monkeypatch: pytest.MonkeyPatch):
    """The shared fixture's knowledge base with two more entries; services on 127.0.0.1."""
    entries, problems = parse_bib(fixture_kb.read("bib/kd.bib") + "\n" + EXTRA_ENTRIES, Path("x"))
    assert not problems
    fixture_kb.write("bib/kd.bib", render_bib(entries))
    for name, url in server.urls().items():
        monkeypatch.setenv(enriching.URL_VARIABLES[name], url)
    monkeypatch.delenv("KDATLAS_CONTACT", raising=False)
    serve_recordings(server)
    return fixture_kb


def knowledge_files(kb) -> dict[str, bytes]:
    """Every file of the knowledge base but enrich's cache."""
    return {path: data for path, data in kb.snapshot().items() if not path.startswith(".cache")}


def entries_of(kb) -> dict[str, dict[str, str]]:
    entries, problems = parse_bib(kb.read("bib/kd.bib"), Path("bib/kd.bib"))
    assert not problems
    return {entry.key: entry.fields for entry in entries}


def line_of(kb, key: str) -> int:
    """The 1-based line of an entry of bib/kd.bib (where its warnings point)."""
    lines = kb.read("bib/kd.bib").splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.endswith(f"{{{key},"))


def enrich(run_cli, kb, *args: str):
    return run_cli(kb.root, "enrich", "--contact", CONTACT, *args)


# --------------------------------------------------------------------------- matching


def test_the_dry_run_prints_the_changes_as_a_diff_and_writes_nothing(run_cli, kb) -> None:
    before = knowledge_files(kb)
    result = enrich(run_cli, kb)
    assert result.exit_code == 0, result.output
    diff = result.stdout
    assert diff.startswith("--- a/bib/kd.bib\n+++ b/bib/kd.bib\n")
    # by DOI (OpenAlex): the authors, and the arXiv id of the record's arXiv location
    assert (
        "+  author = {Sun, Shangquan and Ren, Wenqi and Li, Jingzhi and Wang, Rui and Cao, Xiaochun},"
        in diff
    )
    assert "+  eprint = {2403.01427}," in diff
    # by title and year (OpenAlex's search): authors, DOI, arXiv id
    assert "+  author = {Park, Wonpyo and Kim, Dongju and Lu, Yan and Cho, Minsu}," in diff
    assert "+  doi = {10.1109/cvpr.2019.00409}," in diff
    assert "+  eprint = {1904.05068}," in diff
    # by arXiv id (the url's): the eprint; the curated authors stay
    assert "+  eprint = {1412.6550}," in diff
    assert "Kahou" not in diff
    assert "--- a/bib/provenance.yaml\n+++ b/bib/provenance.yaml\n" in diff
    assert "; proposed 6 change(s) to 3 entries; --apply writes them" in result.stderr
    assert "note: hinton2015distilling: no doi found" in result.stderr
    assert knowledge_files(kb) == before


def test_apply_writes_the_bibliography_and_the_provenance(run_cli, kb, server: Server) -> None:
    result = enrich(run_cli, kb, "--apply")
    assert result.exit_code == 0, result.output
    assert "wrote bib/kd.bib" in result.stderr and "wrote bib/provenance.yaml" in result.stderr
    entries = entries_of(kb)
    assert entries["sun2024logit"]["author"].startswith("Sun, Shangquan and Ren, Wenqi")
    assert entries["sun2024logit"]["eprint"] == "2403.01427"
    assert entries["sun2024logit"]["archiveprefix"] == "arXiv"
    assert entries["romero2015fitnets"]["author"] == "Romero, Adriana and Ballas, Nicolas"
    assert entries["park2019relational"]["doi"] == "10.1109/cvpr.2019.00409"
    assert "author" not in entries["knowledge2021distillation"]  # ambiguous: nothing
    assert run_cli(kb.root, "fmt", "--check").exit_code == 0  # written in canonical form

    provenance = YAML(typ="safe").load(kb.read("bib/provenance.yaml"))
    assert kb.read("bib/provenance.yaml").startswith(
        "# yaml-language-server: $schema=../kdatlas/schemas/provenance.schema.json\n"
    )
    assert list(provenance["filled"]) == ["park2019relational", "romero2015fitnets", "sun2024logit"]
    assert provenance["filled"]["sun2024logit"]["author"] == {
        "source": f"{server.base}/openalex/works/W9000000001",
        "checked": dt.date.today(),
        "by": "kdatlas enrich (openalex)",
    }
    assert provenance["filled"]["romero2015fitnets"] == {
        "eprint": {
            "source": "https://arxiv.org/abs/1412.6550",
            "checked": dt.date.today(),
            "by": "kdatlas enrich (arxiv)",
        }
    }
    # a second run finds nothing left to do
    again = enrich(run_cli, kb, "--apply")
    assert "; no changes proposed" in again.stderr
    assert again.stdout == ""


def test_apply_changes_every_file_or_none(kb, monkeypatch: pytest.MonkeyPatch) -> None:
    from kdatlas import atomic

    client = enriching.Client(enriching.Settings.from_environment(), None)
    proposed = enriching.plan(kb.root, client)
    before = knowledge_files(kb)
    real = atomic._write_temporary

    def fail_on_provenance(path: Path, text: str) -> Path:
        if path.name == "provenance.yaml":
            raise OSError("disk full")
        return real(path, text)

    monkeypatch.setattr(atomic, "_write_temporary", fail_on_provenance)
    with pytest.raises(OSError, match="disk full"):
        proposed.apply()
    assert knowledge_files(kb) == before  # the bib file was not replaced either
    assert not list((kb.root / "bib").glob(".*.tmp"))


def test_force_replaces_a_curated_field_and_only_then(run_cli, kb) -> None:
    kept = enrich(run_cli, kb, "--keys", "romero2015fitnets", "--missing", "authors", "--force")
    assert kept.exit_code == 0, kept.output
    assert "-  author = {Romero, Adriana and Ballas, Nicolas}," in kept.stdout
    assert (
        "+  author = {Romero, Adriana and Ballas, Nicolas and Kahou, Samira Ebrahimi and "
        "Chassang, Antoine and Gatta, Carlo and Bengio, Yoshua}," in kept.stdout
    )
    without = enrich(run_cli, kb, "--keys", "romero2015fitnets", "--missing", "authors")
    assert without.stdout == ""  # it has authors: not even looked up
    assert "no changes proposed" in without.stderr


def test_crossref_answers_a_doi_openalex_does_not_know(run_cli, kb, server: Server) -> None:
    server.add(SUN_DOI_PATH, Answer(404, '{"error": "not found"}'))
    server.add(
        "/crossref/works/10.1109/cvpr52733.2024.01489", recorded("crossref_doi_sun2024logit.json")
    )
    result = enrich(run_cli, kb, "--keys", "sun2024logit", "--missing", "authors", "--apply")
    assert result.exit_code == 0, result.output
    assert entries_of(kb)["sun2024logit"]["author"] == (
        "Sun, Shangquan and Ren, Wenqi and Li, Jingzhi and Wang, Rui and Cao, Xiaochun"
    )
    provenance = YAML(typ="safe").load(kb.read("bib/provenance.yaml"))
    assert provenance["filled"]["sun2024logit"]["author"]["source"] == (
        f"{server.base}/crossref/works/10.1109/cvpr52733.2024.01489"
    )
    assert provenance["filled"]["sun2024logit"]["author"]["by"] == "kdatlas enrich (crossref)"


def test_a_record_of_the_identifier_with_another_title_is_not_used(run_cli, kb, server) -> None:
    other = json.loads((FIXTURES / "openalex_doi_sun2024logit.json").read_text())
    other["title"] = "A Completely Different Paper About Segmentation"
    server.add(SUN_DOI_PATH, Answer(body=json.dumps(other)))
    result = enrich(run_cli, kb, "--keys", "sun2024logit", "--missing", "authors")
    assert result.exit_code == 0, result.output
    assert (
        f"bib/kd.bib:{line_of(kb, 'sun2024logit')}: warning: sun2024logit: OpenAlex's record of DOI "
        "10.1109/cvpr52733.2024.01489 is titled 'A Completely Different Paper About "
        "Segmentation', not this entry's title: nothing taken from it (check the identifier)"
    ) in result.stderr
    assert result.stdout == ""


def test_an_ambiguous_title_proposes_nothing_and_says_why(run_cli, kb, server: Server) -> None:
    result = enrich(run_cli, kb, "--keys", "knowledge2021distillation")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert (
        "warning: knowledge2021distillation: ambiguous title: 2 works in OpenAlex have this "
        "title and year 2021: W9000000004 (2021), W9000000005 (2021); nothing proposed"
    ) in result.stderr
    assert "; no changes proposed" in result.stderr
    assert server.asked("/crossref/works") == []  # no other service is asked to guess
    assert server.asked("/arxiv/query") == []


def test_a_value_another_entry_holds_is_never_proposed(run_cli, kb) -> None:
    kb.replace(
        "bib/kd.bib",
        "  year = {2022},\n  url = {https://arxiv.org/abs/2203.08679},\n  code",
        "  year = {2022},\n  url = {https://arxiv.org/abs/2403.01427},\n  code",
    )
    kb.replace("bib/kd.bib", "eprint = {2203.08679}", "eprint = {2403.01427}")
    result = enrich(run_cli, kb, "--keys", "sun2024logit", "--missing", "arxiv")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert (
        "sun2024logit: OpenAlex gives eprint '2403.01427' (by DOI 10.1109/cvpr52733.2024.01489), "
        "but entry 'zhao2022decoupled' already has it: not proposed (a duplicate?)"
    ) in result.stderr


# --------------------------------------------------------------------------- politeness


def test_a_429_is_retried_after_the_time_it_asks(run_cli, kb, server, slept) -> None:
    route = server.add(
        SUN_DOI_PATH,
        Answer(429, '{"error": "slow down"}', headers={"Retry-After": "7"}),
        recorded("openalex_doi_sun2024logit.json"),
    )
    result = enrich(run_cli, kb, "--keys", "sun2024logit", "--missing", "authors")
    assert result.exit_code == 0, result.output
    assert route.served == 2
    assert 7.0 in slept  # Retry-After (longer than the first back-off, 1 s)
    assert "+  author = {Sun, Shangquan" in result.stdout


def test_a_dropped_connection_is_retried(run_cli, kb, server, slept) -> None:
    route = server.add(SUN_DOI_PATH, Answer(drop=True), recorded("openalex_doi_sun2024logit.json"))
    result = enrich(run_cli, kb, "--keys", "sun2024logit", "--missing", "authors")
    assert result.exit_code == 0, result.output
    assert route.served == 2
    assert 1.0 in slept  # the first back-off
    assert "+  author = {Sun, Shangquan" in result.stdout


def test_5xx_answers_back_off_exponentially_then_give_up(kb, server, slept) -> None:
    route = server.add(SUN_DOI_PATH, Answer(503, "unavailable"))
    settings = enriching.Settings.from_environment(min_interval={})
    client = enriching.Client(settings, None)
    with pytest.raises(enriching.ServiceError, match=r"OpenAlex: HTTP 503 \(4 tries\)"):
        client.get("openalex", "works/doi:10.1109/cvpr52733.2024.01489")
    assert route.served == 4
    assert slept == [1.0, 2.0, 4.0]


def test_a_retry_after_beyond_the_limit_gives_up_at_once(kb, server, slept) -> None:
    server.add(SUN_DOI_PATH, Answer(429, "", headers={"Retry-After": "3600"}))
    client = enriching.Client(enriching.Settings.from_environment(min_interval={}), None)
    with pytest.raises(enriching.ServiceError, match="asked to wait 3600 s"):
        client.get("openalex", "works/doi:10.1109/cvpr52733.2024.01489")
    assert slept == []


def test_retry_after_as_an_http_date() -> None:
    now = dt.datetime(2026, 11, 30, 12, 0, 0, tzinfo=dt.UTC)
    assert enriching._retry_after("Mon, 30 Nov 2026 12:00:30 GMT", now) == 30.0
    assert enriching._retry_after("12", now) == 12.0
    assert enriching._retry_after("soon", now) is None


def test_a_timeout_is_retried_then_reported_and_the_rest_goes_on(
    run_cli, kb, server, slept
) -> None:
    route = server.add("/arxiv/query", Answer(body=EMPTY_FEED, delay=2.0), id_list="1412.6550")
    start = time.monotonic()
    result = enrich(run_cli, kb, "--timeout", "0.2")
    assert time.monotonic() - start < 10
    assert result.exit_code == 1, result.output
    assert route.served == 4
    assert (
        f"bib/kd.bib:{line_of(kb, 'romero2015fitnets')}: warning: romero2015fitnets: "
        "arXiv: timed out after 0.2 s (4 tries)" in result.stderr
    )
    assert "some lookups failed" in result.stderr
    assert "+  author = {Sun, Shangquan" in result.stdout  # the other entries still proposed
    assert "+  eprint = {1412.6550}," not in result.stdout


def test_a_malformed_answer_is_reported_and_not_cached(run_cli, kb, server: Server) -> None:
    route = server.add(SUN_DOI_PATH, Answer(body="<html>Service Unavailable</html>"))
    first = enrich(run_cli, kb, "--keys", "sun2024logit")
    assert first.exit_code == 1, first.output
    assert (
        "warning: sun2024logit: OpenAlex: malformed answer (not JSON: "
        "'<html>Service Unavailable</html>')" in first.stderr
    )
    assert first.stdout == ""
    enrich(run_cli, kb, "--keys", "sun2024logit")
    assert route.served == 2  # asked again: a malformed answer is never cached


def test_answers_are_cached_on_disk(run_cli, kb, server: Server) -> None:
    first = enrich(run_cli, kb)
    asked = len(server.requests)
    assert asked > 0
    assert list((kb.root / ".cache" / "kdatlas" / "enrich").glob("*.json"))
    second = run_cli(kb.root, "enrich", "--contact", "someone.else@example.org")
    assert len(server.requests) == asked  # the contact address is not part of the cache key
    assert second.stdout == first.stdout


def test_the_contact_address_is_sent_as_the_services_ask(run_cli, kb, server: Server) -> None:
    enrich(run_cli, kb, "--keys", "sun2024logit,romero2015fitnets")
    for path, query, headers in server.requests:
        assert f"mailto:{CONTACT}" in headers["User-Agent"]  # Crossref's polite pool
        assert headers["User-Agent"].startswith("kdatlas/")
        if path.startswith("/openalex/"):
            assert query["mailto"] == CONTACT  # OpenAlex's polite pool
        else:
            assert "mailto" not in query
    assert {path.split("/")[1] for path, _, _ in server.requests} == {
        "openalex",
        "crossref",
        "arxiv",
    }


def test_without_a_contact_it_says_the_services_ask_for_one(run_cli, kb) -> None:
    result = run_cli(kb.root, "enrich", "--keys", "sun2024logit")
    assert "note: no --contact (or KDATLAS_CONTACT) given" in result.stderr


def test_requests_to_one_service_are_spaced(kb, server: Server, slept) -> None:
    clock = iter([0.0, 0.5, 3.0, 12.0, 12.0])
    settings = enriching.Settings.from_environment()
    client = enriching.Client(settings, None, clock=lambda: next(clock))
    client.get("arxiv", "query", {"id_list": "1"})
    client.get("arxiv", "query", {"id_list": "2"})  # 0.5 s later: waits the 2.5 s left
    client.get("arxiv", "query", {"id_list": "3"})  # 9 s later: no wait
    assert slept == [2.5]


# --------------------------------------------------------------------------- no network


def test_without_network_it_says_so_in_one_line_and_changes_nothing(
    run_cli, kb, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # a port nothing listens on: connection refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    for name in enriching.SERVICES:
        monkeypatch.setenv(enriching.URL_VARIABLES[name], f"http://127.0.0.1:{port}/{name}")
    before = knowledge_files(kb)
    result = enrich(run_cli, kb, "--apply")
    assert result.exit_code == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [
        f"kdatlas enrich: error: no network: cannot reach arXiv at 127.0.0.1:{port} "
        "(Connection refused); nothing was changed"
    ]
    assert "Traceback" not in result.stderr
    assert knowledge_files(kb) == before


# --------------------------------------------------------------------------- usage


def test_bad_usage_exits_2(run_cli, kb) -> None:
    bad_field = enrich(run_cli, kb, "--missing", "authors,title")
    assert bad_field.exit_code == 2
    assert "--missing takes a comma-separated list of authors, doi, arxiv" in bad_field.stderr
    unknown = enrich(run_cli, kb, "--keys", "nosuch2020key")
    assert unknown.exit_code == 2
    assert "bib: error: no bib entry 'nosuch2020key' (--keys)" in unknown.stderr
    address = run_cli(kb.root, "enrich", "--contact", "not an address")
    assert address.exit_code == 2
    assert "--contact takes an e-mail address" in address.stderr


def test_a_bibliography_not_in_canonical_form_is_refused(run_cli, kb) -> None:
    kb.replace("bib/kd.bib", "  year = {2015},", "  year  =  {2015},")
    before = knowledge_files(kb)
    result = enrich(run_cli, kb)
    assert result.exit_code == 1
    assert "bib/kd.bib: error: not in canonical form; run 'kdatlas fmt' first" in result.stderr
    assert knowledge_files(kb) == before


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("given", "family", "display", "expected"),
    [
        (None, None, "Geoffrey E. Hinton", "Hinton, Geoffrey E."),
        (None, None, "Laurens van der Maaten", "van der Maaten, Laurens"),
        (None, None, "Madonna", "Madonna"),
        ("Jean-Luc", "Picard", None, "Picard, Jean-Luc"),
        ("Anand", "Rao & Sons", None, r"Rao \& Sons, Anand"),
        (None, None, "Smith and Wesson", "{and Wesson, Smith}"),
        (None, None, "  ", None),
        (None, None, "Zoë {Braced} Ünal", "Ünal, Zoë Braced"),
    ],
)
def test_names_are_written_in_bibtex_form(given, family, display, expected) -> None:
    assert enriching.bibtex_name(given, family, display) == expected


def test_match_title_prefers_the_entrys_year() -> None:
    def record(ident: str, year: int, title: str = "Deep Mutual Learning") -> enriching.Record:
        return enriching.Record(
            "openalex", "https://x/" + ident, ident, title, year, (), None, None
        )

    preprint, paper = record("W1", 2017), record("W2", 2018)
    assert enriching.match_title("Deep {Mutual} Learning", 2018, [preprint, paper]) == (paper, None)
    assert enriching.match_title("Deep Mutual Learning", 2016, [preprint, paper]) == (
        preprint,
        None,
    )
    assert enriching.match_title("Deep Mutual Learning", 2020, [preprint, paper]) == (None, None)
    found, why = enriching.match_title("Deep Mutual Learning", 2019, [paper, record("W3", 2020)])
    assert found is None and why is not None and "ambiguous title: 2 works" in why
    assert enriching.match_title("Deep Learning", 2018, [paper]) == (None, None)


def test_provenance_keeps_what_is_there_and_sorts_keys(run_cli, kb) -> None:
    kb.write(
        "bib/provenance.yaml",
        "# yaml-language-server: $schema=../kdatlas/schemas/provenance.schema.json\n"
        "# Hand-written notes stay.\n"
        "filled:\n"
        "  zhao2022decoupled:\n"
        "    code:\n"
        "      source: https://github.com/megvii-research/mdistiller\n"
        "      checked: 2026-11-01\n"
        "      by: manual\n"
        "unidentified:\n"
        "  somekey2023title: searched DBLP and arXiv by title; no such paper\n",
    )
    result = enrich(run_cli, kb, "--keys", "sun2024logit", "--missing", "authors", "--apply")
    assert result.exit_code == 0, result.output
    text = kb.read("bib/provenance.yaml")
    assert "# Hand-written notes stay.\n" in text
    provenance = YAML(typ="safe").load(text)
    assert list(provenance["filled"]) == ["sun2024logit", "zhao2022decoupled"]
    assert provenance["filled"]["zhao2022decoupled"]["code"]["by"] == "manual"
    assert provenance["unidentified"] == {
        "somekey2023title": "searched DBLP and arXiv by title; no such paper"
    }
