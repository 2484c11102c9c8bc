"""One-time migration: add the file hashes to test records written before records held them.

A record in ``tests/gpu_runs/`` names the commit it ran. For each implementation
it tested, this script hashes the method file and the test files as they were at
that commit (``git show <commit>:<path>``) and stores them under ``files``, the
field ``pytest --gpu-record`` now writes itself (see ``kdatlas/site/records.py``).
Records that already have ``files`` are left alone; nothing else in a record
changes. A record whose commit git does not know is reported and left alone.

    python scripts/backfill_gpu_record_hashes.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from kdatlas.site.records import RECORD_DIR, record_files

ROOT = Path(__file__).resolve().parent.parent


def git_reader(commit: str) -> Callable[[str], bytes | None]:
    """Reads a repository-relative file as it was at ``commit``; None where it did not exist."""

    def read(path: str) -> bytes | None:
        shown = subprocess.run(
            ["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, check=False
        )
        return shown.stdout if shown.returncode == 0 else None

    return read


def commit_exists(commit: str) -> bool:
    probe = ["git", "cat-file", "-e", f"{commit}^{{commit}}"]
    return subprocess.run(probe, cwd=ROOT, capture_output=True, check=False).returncode == 0


def backfill(path: Path) -> str:
    record = json.loads(path.read_text(encoding="utf-8"))
    if "files" in record:
        return "has hashes already"
    commit = str(record.get("commit", ""))
    if not commit_exists(commit):
        return f"left alone: git does not know commit '{commit}'"
    record["files"] = record_files(record.get("tests", []), git_reader(commit))
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    hashed = sum(len(files) for files in record["files"].values())
    return f"{hashed} files of {len(record['files'])} implementations hashed at {commit[:10]}"


def main() -> int:
    for path in sorted((ROOT / RECORD_DIR).glob("*.json")):
        print(f"{path.relative_to(ROOT)}: {backfill(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
