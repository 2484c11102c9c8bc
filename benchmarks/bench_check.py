"""How long ``kdatlas check --no-imports`` takes, on the real data and on generated knowledge bases.

Calls the check function in-process (what the command runs, minus interpreter
start-up), several times per knowledge base, and reports the median. The
generated knowledge bases (1,000 / 5,000 / 10,000 papers, written to a
temporary directory) have the real layout: five area files, leaves with
topics, implementations with notebooks, and one bib file whose entries carry
the usual fields; each paper is filed once, and one in ten a second time.

    .venv/bin/python benchmarks/bench_check.py [--repeats 5] [--sizes 1000 5000 10000]

Prints a table and writes ``benchmarks/results/check.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from kdatlas.checks import check
from kdatlas.models import AREA_IDS

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "benchmarks" / "results" / "check.json"
LEAVES_PER_AREA = 5
TOPICS_PER_LEAF = 3
WORDS = [
    "knowledge",
    "distillation",
    "teacher",
    "student",
    "logit",
    "feature",
    "relation",
    "contrastive",
    "attention",
    "adversarial",
    "graph",
    "online",
    "self",
    "multi",
    "view",
    "speech",
    "video",
    "detection",
    "segmentation",
    "language",
    "diffusion",
    "compact",
    "efficient",
    "robust",
    "adaptive",
]


def _title(index: int) -> str:
    words = [WORDS[(index * 7 + k * 3) % len(WORDS)] for k in range(5)]
    return f"{' '.join(words).title()} {index}"


def _entry(index: int) -> str:
    key = f"author{index}2020{WORDS[index % len(WORDS)]}"
    return (
        f"@inproceedings{{{key},\n"
        f"  title = {{{_title(index)}}},\n"
        f"  author = {{Author{index}, Ann and Writer, Bob and Third, Carol}},\n"
        "  booktitle = {CVPR},\n"
        f"  year = {{{2015 + index % 10}}},\n"
        f"  url = {{https://arxiv.org/abs/{2000 + index // 10000:04d}.{index % 10000:05d}}},\n"
        f"  code = {{https://github.com/example/repo{index}}},\n"
        f"  eprint = {{{2000 + index // 10000:04d}.{index % 10000:05d}}},\n"
        "  archiveprefix = {arXiv},\n"
        "}\n"
    )


def _key(index: int) -> str:
    return f"author{index}2020{WORDS[index % len(WORDS)]}"


def write_knowledge_base(root: Path, papers: int) -> None:
    """A valid knowledge base with ``papers`` bib entries, spread over 25 leaves."""
    (root / "taxonomy").mkdir(parents=True)
    (root / "bib").mkdir()
    (root / "bib" / "kd.bib").write_text("\n".join(_entry(i) for i in range(papers)))
    leaves = len(AREA_IDS) * LEAVES_PER_AREA
    for a, area_id in enumerate(AREA_IDS):
        lines = [
            "# yaml-language-server: $schema=../kdatlas/schemas/taxonomy.schema.json",
            f"id: {area_id}",
            f"title: Area {area_id}",
            "summary: >-",
            "  A generated area for the benchmark of kdatlas check.",
            "leaves:",
        ]
        for j in range(LEAVES_PER_AREA):
            leaf_number = a * LEAVES_PER_AREA + j
            notebook = f"docs/notebooks/{area_id}/leaf{j}.py"
            (root / notebook).parent.mkdir(parents=True, exist_ok=True)
            (root / notebook).write_text("# %%\nfrom method import Method\n")
            # The implementation's module and test file, where kdatlas check wants them.
            folder = f"reference_impls/{area_id}/{area_id}_leaf{j}"
            for path in (f"{folder}/method.py", f"tests/{folder}/test_method.py"):
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text("")
            mine = [i for i in range(papers) if i % leaves == leaf_number]
            again = [i for i in range(papers) if i % 10 == 0 and (i // 10) % leaves == leaf_number]
            lines += [
                f"  - id: {area_id}-leaf{j}",
                f"    title: Leaf {j}",
                "    summary: >-",
                "      A generated leaf for the benchmark of kdatlas check.",
                f"    notebook: {notebook}",
                "    papers:",
                *(f"      - {_key(i)}" for i in mine[: len(mine) // 2]),
                *(f"      - {_key(i)}" for i in again if i not in mine),
                "    topics:",
            ]
            rest = mine[len(mine) // 2 :]
            for t in range(TOPICS_PER_LEAF):
                lines += [
                    f"      - id: topic{t}",
                    f"        title: Topic {t}",
                    "        summary: >-",
                    "          A generated topic for the benchmark.",
                    "        papers:",
                    *(f"          - {_key(i)}" for i in rest[t::TOPICS_PER_LEAF]),
                ]
            lines += [
                "    implementations:",
                f"      - id: {area_id}-impl{j}",
                f"        title: Implementation {j}",
                f"        object: reference_impls.{area_id}.{area_id}_leaf{j}.method:Method",
                "        papers:",
                f"          - {_key(mine[0])}",
            ]
        (root / "taxonomy" / f"{area_id}.yaml").write_text("\n".join(lines) + "\n")


def measure(root: Path, repeats: int) -> dict:
    """Median wall and CPU seconds of the check over ``repeats`` runs, after one warm-up run."""
    problems = check(root, imports=False)  # warm-up; also proves the data is what we think
    errors = [p for p in problems if p.is_error]
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        check(root, imports=False)
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return {
        "median_s": round(statistics.median(walls), 4),
        "median_cpu_s": round(statistics.median(cpus), 4),
        "runs_s": [round(t, 4) for t in walls],
        "errors": len(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 5000, 10000])
    args = parser.parse_args()

    rows = []
    from kdatlas.loader import load_with_problems

    kb, _ = load_with_problems(REPOSITORY)
    real_papers = len(kb.entries) if kb else 0
    rows.append({"data": "repository", "papers": real_papers, **measure(REPOSITORY, args.repeats)})
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            root = Path(scratch) / f"kb{size}"
            write_knowledge_base(root, size)
            rows.append({"data": "generated", "papers": size, **measure(root, args.repeats)})

    header = (
        f"{'data':<11} {'papers':>7} {'wall s':>8} {'cpu s':>7} {'cpu ms/1000':>12} {'errors':>7}"
    )
    print(header)
    for row in rows:
        per_thousand = 1e6 * row["median_cpu_s"] / row["papers"] if row["papers"] else 0.0
        row["cpu_ms_per_1000_papers"] = round(per_thousand, 1)
        print(
            f"{row['data']:<11} {row['papers']:>7} {row['median_s']:>8.3f} "
            f"{row['median_cpu_s']:>7.3f} {per_thousand:>12.1f} {row['errors']:>7}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "what": "kdatlas.checks.check(root, imports=False), in-process, median of repeats "
        "(wall: time.perf_counter; cpu: time.process_time of this process)",
        "load_average_1min": round(os.getloadavg()[0], 2),
        "repeats": args.repeats,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} ({platform.processor() or 'unknown cpu'})",
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(REPOSITORY)}")


if __name__ == "__main__":
    main()
