"""Time the full site build on the real data (``mkdocs build --strict``), notebooks not executed.

Usage: ``.venv/bin/python benchmarks/bench_site.py [--runs N] [--profile]``

Reports wall time per run and, with ``--profile``, the functions that dominate one
build (cProfile, cumulative time), so the cost can be attributed: the page
generator, Markdown rendering, mkdocstrings, mkdocs-jupyter, search indexing.
"""

from __future__ import annotations

import argparse
import cProfile
import filecmp
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {
    **os.environ,
    "NO_MKDOCS_2_WARNING": "1",
    "DISABLE_MKDOCS_2_WARNING": "true",
    "KDATLAS_NOTEBOOKS": "source",
    "SOURCE_DATE_EPOCH": "0",  # the sitemap's date: otherwise the build day
}


def build_once(out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=REPO,
        env=ENV,
        check=True,
    )
    return time.perf_counter() - start


def differing_files(first: Path, second: Path) -> list[str]:
    """Files that differ between two builds (a determinism check on the real data, for free)."""
    names = sorted(
        {p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file()}
        | {p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file()}
    )
    _, mismatch, errors = filecmp.cmpfiles(first, second, names, shallow=False)
    return mismatch + errors


def profile_once(out: Path, top: int) -> None:
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    os.environ.update(ENV)
    os.chdir(REPO)
    config = load_config(str(REPO / "mkdocs.yml"), site_dir=str(out), strict=True)
    profiler = cProfile.Profile()
    profiler.enable()
    build(config)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also profile one build in-process")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        times = [build_once(Path(tmp) / f"site{i}") for i in range(args.runs)]
        pages = sum(1 for _ in (Path(tmp) / "site0").rglob("*.html"))
        print(
            f"full strict build, {pages} HTML pages, notebooks not executed, {os.cpu_count()} CPUs"
        )
        print("runs (s): " + ", ".join(f"{t:.2f}" for t in times))
        print(f"median {statistics.median(times):.2f} s, min {min(times):.2f} s")
        for i in range(1, args.runs):
            differ = differing_files(Path(tmp) / "site0", Path(tmp) / f"site{i}")
            print(
                f"build {i} vs build 0: "
                + (f"{len(differ)} files differ: {differ[:5]}" if differ else "identical")
            )
        if args.profile:
            profile_once(Path(tmp) / "profiled", args.top)


if __name__ == "__main__":
    main()
