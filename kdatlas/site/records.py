"""Test records (``tests/gpu_runs/*.json``): the latest CPU and GPU outcome per implementation.

A record is written by ``pytest --gpu-record`` (see ``tests/conftest.py``): device,
date, ``cuda`` (whether a CUDA device ran it), versions, commit and one outcome per
test, each tagged with the implementation module it tests. A run without CUDA is
a CPU record; the same file format serves both, so a CI CPU run that writes a
record shows up beside the GPU ones.

A record also holds, per implementation module, the SHA-256 of the files its
outcome depends on (``files``: the method file and every test file with a test of
it, as they were when the tests ran). The site calls an outcome current only
while every one of those files still has that hash; otherwise the implementation
has changed since the run. Hashes are compared with the files under the knowledge
base's root, so the site build needs no git.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

RECORD_DIR = Path("tests") / "gpu_runs"


# A test parametrized by a taxonomy ``object`` (the generated contract tests) names its
# implementation in its id: ``test_loss_contract[reference_impls.sources.logit.kd:KDLoss]``.
_OBJECT_IN_ID = re.compile(r"[\[-](reference_impls(?:\.\w+)+):\w+(?=[\]-])")
_TEST_FILE = re.compile(r"tests/(reference_impls/.+)/test_(\w+)\.py(?:::|$)")


def implementation_module(nodeid: str) -> str | None:
    """The implementation module a test is about, or None.

    ``tests/reference_impls/sources/logit/test_kd.py::...`` -> ``reference_impls.sources.logit.kd``;
    ``...::test_loss_contract[reference_impls.sources.logit.kd:KDLoss]`` -> the same module,
    whatever file the test is in.
    """
    if match := _OBJECT_IN_ID.search(nodeid.partition("::")[2]):
        return match.group(1)
    if match := _TEST_FILE.match(nodeid):
        return f"{match.group(1).replace('/', '.')}.{match.group(2)}"
    return None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def method_file(module: str) -> str:
    """``reference_impls.sources.logit.kd`` -> ``reference_impls/sources/logit/kd.py``."""
    return module.replace(".", "/") + ".py"


def files_of(module: str, test_nodeids: Iterable[str]) -> list[str]:
    """The files an implementation's recorded outcome depends on: its method file and the
    test files its tests are in, repository-relative, sorted."""
    test_files = {nodeid.split("::", 1)[0] for nodeid in test_nodeids}
    return sorted({method_file(module), *test_files})


def read_from(root: Path) -> Callable[[str], bytes | None]:
    """Reads a repository-relative file under ``root``; None where there is none."""

    def read(path: str) -> bytes | None:
        try:
            return (root / path).read_bytes()
        except OSError:
            return None

    return read


def hash_files(paths: Iterable[str], read: Callable[[str], bytes | None]) -> dict[str, str]:
    """``{path: sha256}`` of the files ``read`` finds."""
    return {path: sha256_bytes(data) for path in paths if (data := read(path)) is not None}


def implementation_tests(tests: Iterable[object]) -> dict[str, list[str]]:
    """``{implementation module: [test node ids]}`` of a record's ``tests``."""
    by_module: dict[str, list[str]] = {}
    for test in tests:
        module = test.get("implementation") if isinstance(test, dict) else None
        if module:
            by_module.setdefault(str(module), []).append(str(test.get("nodeid", "")))
    return by_module


def record_files(
    tests: Iterable[object], read: Callable[[str], bytes | None]
) -> dict[str, dict[str, str]]:
    """A record's ``files``: per implementation module, the hashes of :func:`files_of` as
    ``read`` gives them (the working tree when a run is recorded; git for old records)."""
    return {
        module: hash_files(files_of(module, nodeids), read)
        for module, nodeids in sorted(implementation_tests(tests).items())
    }


@dataclass(frozen=True)
class ModuleOutcome:
    """How one implementation module's tests went in one recorded run."""

    outcome: str  # "passed", "failed" or "skipped"
    passed: int
    total: int
    device: str
    date: str
    commit: str
    torch: str

    skipped: int = 0
    # path -> SHA-256 of the files the outcome depends on, as they were at the run.
    files: dict[str, str] = field(default_factory=dict)

    def is_current(self, root: Path, module: str) -> bool:
        """Whether every file the run saw, the method file among them, is unchanged under ``root``
        (a record without hashes is never current: nothing says what it ran)."""
        if method_file(module) not in self.files:
            return False
        return hash_files(self.files, read_from(root)) == self.files

    @property
    def summary(self) -> str:
        """E.g. ``passed (6/6, 2 skipped)``: skipped tests (CUDA-only ones on a CPU) are not counted."""
        ran = self.total - self.skipped
        tail = f", {self.skipped} skipped" if self.skipped and ran else ""
        return f"{self.outcome} ({self.passed}/{ran}{tail})" if ran else self.outcome


def _outcome(outcomes: list[str]) -> str:
    if any(o not in ("passed", "skipped") for o in outcomes):
        return "failed"
    if all(o == "skipped" for o in outcomes):
        return "skipped"
    return "passed"


def read_records(root: Path) -> list[dict]:
    """Every readable record, oldest first (by date, then file name, so the order is stable)."""
    records = []
    for path in sorted((root / RECORD_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and isinstance(record.get("tests"), list):
            records.append((str(record.get("date", "")), path.name, record))
    return [record for _date, _name, record in sorted(records, key=lambda r: (r[0], r[1]))]


def latest_outcomes(records: list[dict]) -> dict[tuple[str, str], ModuleOutcome]:
    """``{(module, "cpu" | "gpu"): outcome}`` from the latest record that ran the module's tests."""
    latest: dict[tuple[str, str], ModuleOutcome] = {}
    for record in records:  # oldest first: later records overwrite
        kind = "gpu" if record.get("cuda") else "cpu"
        by_module: dict[str, list[str]] = {}
        for test in record["tests"]:
            module = test.get("implementation") if isinstance(test, dict) else None
            if module:
                by_module.setdefault(str(module), []).append(str(test.get("outcome", "")))
        recorded_files = record.get("files") if isinstance(record.get("files"), dict) else {}
        for module, outcomes in by_module.items():
            files = recorded_files.get(module)
            latest[(module, kind)] = ModuleOutcome(
                outcome=_outcome(outcomes),
                passed=outcomes.count("passed"),
                total=len(outcomes),
                device=str(record.get("device", "unknown device")),
                date=str(record.get("date", ""))[:10],
                commit=str(record.get("commit", ""))[:10],
                torch=str(record.get("torch", "")),
                skipped=outcomes.count("skipped"),
                files={str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {},
            )
    return latest
