"""Suite-wide options: CUDA skipping and the GPU run record (``--gpu-record``).

``pytest --gpu-record`` writes ``tests/gpu_runs/<date>-<device>.json`` holding the
device name, torch and CUDA versions, the commit, the outcome of every test, and,
per implementation, the SHA-256 of its method file and of the test files that
test it, so the site can show which implementation passed on which device and
whether it has changed since (``kdatlas/site/records.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from kdatlas.site.records import implementation_module, read_from, record_files

# Hypothesis profiles (``--hypothesis-profile=long`` for a deeper fuzz run). The default is
# derandomized (a fixed seed: CI sees the same examples on every run) and bounded.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,  # the fuzz tests time each example themselves, more loosely than this
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
RECORD_DIR = ROOT / "tests" / "gpu_runs"
# Knowledge bases used as test data hold files that look like tests; they are data.
collect_ignore_glob = ["fixtures/*"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--gpu-record",
        action="store_true",
        help="write a run record (device, versions, commit, outcome per test) to tests/gpu_runs/",
    )


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class GpuRecorder:
    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome != "passed":
            previous = self.outcomes.get(report.nodeid)
            if previous in (None, "passed"):
                self.outcomes[report.nodeid] = report.outcome

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        import torch

        cuda = torch.cuda.is_available()
        device = (
            torch.cuda.get_device_name(0)
            if cuda
            else f"CPU ({platform.processor() or platform.machine()})"
        )
        commit = os.environ.get("KDATLAS_COMMIT")
        if not commit:
            try:
                commit = subprocess.run(
                    ["git", "rev-parse", "HEAD"],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
            except (OSError, subprocess.CalledProcessError):
                commit = "unknown"
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        tests = [
            {"nodeid": nodeid, "outcome": outcome, "implementation": implementation_module(nodeid)}
            for nodeid, outcome in sorted(self.outcomes.items())
        ]
        counts: dict[str, int] = {}
        for test in tests:
            counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
        record = {
            "date": now.isoformat(),
            "device": device,
            "cuda": cuda,
            "torch": torch.__version__,
            "cuda_version": torch.version.cuda,
            "python": platform.python_version(),
            "commit": commit,
            "exit_status": int(exitstatus),
            "counts": counts,
            "tests": tests,
            "files": record_files(tests, read_from(ROOT)),
        }
        RECORD_DIR.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
        path = RECORD_DIR / f"{now:%Y%m%dT%H%M%SZ}-{slug}.json"
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"\n[gpu-record] wrote {path.relative_to(ROOT)}")


def pytest_configure(config: pytest.Config) -> None:
    # under pytest-xdist only the controller (no ``workerinput``) writes the record
    if config.getoption("--gpu-record") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(GpuRecorder(), "kdatlas-gpu-recorder")
