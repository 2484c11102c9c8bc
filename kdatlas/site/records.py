"""Test records (``tests/gpu_runs/*.json``): the latest CPU and GPU outcome per implementation.

A record is written by ``pytest --gpu-record`` (see ``tests/conftest.py``): device,
date, ``cuda`` (whether a CUDA device ran it), versions, commit and one outcome per
test, each tagged with the implementation module it tests. A run without CUDA is
a CPU record; the same file format serves both, so a CI CPU run that writes a
record shows up beside the GPU ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

RECORD_DIR = Path("tests") / "gpu_runs"


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
        for module, outcomes in by_module.items():
            latest[(module, kind)] = ModuleOutcome(
                outcome=_outcome(outcomes),
                passed=outcomes.count("passed"),
                total=len(outcomes),
                device=str(record.get("device", "unknown device")),
                date=str(record.get("date", ""))[:10],
                commit=str(record.get("commit", ""))[:10],
                torch=str(record.get("torch", "")),
                skipped=outcomes.count("skipped"),
            )
    return latest
