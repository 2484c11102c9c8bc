"""Session fixtures of the site tests: build a site once, serve it on 127.0.0.1.

``real_site`` is this repository's site; ``fixture_site`` is built from
``tests/fixtures/site_kb`` (untrusted-text payloads included). Notebooks are shown
from source (``KDATLAS_NOTEBOOKS=source``): executing them is the notebook tests' job.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE_KB = REPO / "tests" / "fixtures" / "site_kb"
MKDOCS = [sys.executable, "-m", "mkdocs"]
# The fixture's data holds payloads that `kdatlas check` refuses; its notebook is tiny, so it is
# executed and its page shows outputs as a reader sees them.
FIXTURE_ENV = {"KDATLAS_SITE_ALLOW_PROBLEMS": "1", "KDATLAS_NOTEBOOKS": "execute"}


def build_site(
    out: Path, kb_root: Path | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` into ``out``; returns the finished process (never raises)."""
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",
        "DISABLE_MKDOCS_2_WARNING": "true",
        "KDATLAS_NOTEBOOKS": "source",
        "SOURCE_DATE_EPOCH": "0",  # sitemap dates: builds of one commit are byte-identical
    }
    env.pop("KDATLAS_ROOT", None)
    env.pop("KDATLAS_SITE_ALLOW_PROBLEMS", None)
    if kb_root is not None:
        env["KDATLAS_ROOT"] = str(kb_root)
    env.update(extra_env or {})
    return subprocess.run(
        [*MKDOCS, "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _built(out: Path, **kwargs) -> Path:
    result = build_site(out, **kwargs)
    assert result.returncode == 0, (
        f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    )
    return out


@pytest.fixture(scope="session")
def real_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _built(tmp_path_factory.mktemp("real") / "site")


@pytest.fixture(scope="session")
def fixture_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _built(
        tmp_path_factory.mktemp("fixture") / "site",
        kb_root=FIXTURE_KB,
        extra_env=FIXTURE_ENV,
    )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) for the duration of the generator."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def fixture_url(fixture_site: Path) -> Iterator[str]:
    yield from serve(fixture_site)
