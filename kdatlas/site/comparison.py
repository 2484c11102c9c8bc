"""The Benchmarks page's comparison of methods (our runs) and the numbers reported by authors.

Two things are kept apart on purpose: what ``python -m benchmarks.compare`` measured here
(``benchmarks/results/compare-<device>.json``: every method on the same tasks, teacher,
student and budget) and what papers and READMEs report (``benchmarks/reported/*.yaml``,
their settings, each number with its source). Charts are inline SVG with a ``<title>`` on
every mark (no script); every text that comes from a file is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kdatlas.knowledge_base import KnowledgeBase
from kdatlas.site.render import html_attr, html_text, md_text

# link of an implementation id (to its leaf page) and of a bib key (to the papers page)
Link = Callable[[str], str | None]

BAR, LABEL_WIDTH, PLOT_WIDTH = 16, 170, 420


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def accuracy_chart(task: str, summary: Mapping[str, Mapping[str, Any]]) -> str:
    """Horizontal bars of test accuracy (mean over seeds, ± one std as a whisker), best first;
    dashed lines at the teacher and at the cross-entropy student."""
    rows = sorted(summary.items(), key=lambda kv: -kv[1]["accuracy_mean"])
    teacher = next(iter(summary.values()))["teacher_accuracy"]
    baseline = summary.get("cross-entropy", {}).get("accuracy_mean")
    low = min(min(r["accuracy_mean"] - r["accuracy_std"] for _, r in rows), baseline or 1.0)
    low = max(0.0, math.floor(low * 20) / 20 - 0.05)  # start the axis below the worst bar
    high = 1.0

    def x(value: float) -> float:
        return LABEL_WIDTH + (min(max(value, low), high) - low) / (high - low) * PLOT_WIDTH

    top, height = 24, 24 + len(rows) * (BAR + 4) + 30
    width = LABEL_WIDTH + PLOT_WIDTH + 20
    title = f"Test accuracy per method on {task} (mean ± std over seeds)"
    parts = [
        f'<svg class="kd-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img"><title>{html_text(title)}</title>'
    ]
    step = 20 if high - low <= 0.4 else 10  # ticks per unit: every 5 or every 10 points
    for tick in range(math.ceil(low * step), step + 1):
        value = tick / step
        parts.append(
            f'<line x1="{x(value):.1f}" y1="{top - 4}" x2="{x(value):.1f}" y2="{height - 24}" '
            f'stroke="currentColor" stroke-opacity="0.12"/><text x="{x(value):.1f}" '
            f'y="{height - 10}" font-size="10" text-anchor="middle" fill="currentColor">'
            f"{100 * value:.0f}</text>"
        )
    for index, (method, row) in enumerate(rows):
        y = top + index * (BAR + 4)
        mean, std = row["accuracy_mean"], row["accuracy_std"]
        colour = "#9e9e9e" if method == "cross-entropy" else "#3f51b5"
        tip = f"{method}: {_percent(mean)} ± {_percent(std)} % over {row['seeds']} seeds"
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + BAR - 4}" font-size="11" text-anchor="end" '
            f'fill="currentColor">{html_text(method)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{x(mean) - LABEL_WIDTH:.1f}" height="{BAR}" '
            f'fill="{colour}"><title>{html_text(tip)}</title></rect>'
            f'<line x1="{x(mean - std):.1f}" y1="{y + BAR / 2}" x2="{x(mean + std):.1f}" '
            f'y2="{y + BAR / 2}" stroke="currentColor" stroke-width="1.5"/>'
        )
    for value, label in ((teacher, "teacher"), (baseline, "cross-entropy")):
        if value is None:
            continue
        parts.append(
            f'<line x1="{x(value):.1f}" y1="{top - 8}" x2="{x(value):.1f}" y2="{height - 24}" '
            f'stroke="#e91e63" stroke-dasharray="4 3"><title>{label}: {_percent(value)} %'
            f'</title></line><text x="{x(value):.1f}" y="{top - 10}" font-size="10" '
            f'text-anchor="middle" fill="#e91e63">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def accuracy_time_chart(task: str, summary: Mapping[str, Mapping[str, Any]]) -> str:
    """A scatter of accuracy against the median training time per student step (log scale)."""
    points = [
        (method, row["ms_per_step_median"], row["accuracy_mean"])
        for method, row in summary.items()
        if row["ms_per_step_median"] > 0
    ]
    width, height, left, bottom, top = 620, 360, 50, 40, 14
    times = [t for _, t, _ in points]
    lo_t, hi_t = math.log10(min(times)) - 0.05, math.log10(max(times)) + 0.05
    accuracies = [a for _, _, a in points]
    lo_a, hi_a = min(accuracies) - 0.01, max(accuracies) + 0.01

    def xy(time_ms: float, accuracy: float) -> tuple[float, float]:
        x = left + (math.log10(time_ms) - lo_t) / (hi_t - lo_t) * (width - left - 20)
        y = top + (hi_a - accuracy) / (hi_a - lo_a) * (height - top - bottom)
        return x, y

    title = f"Accuracy against training time per student step on {task}"
    parts = [
        f'<svg class="kd-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img"><title>{html_text(title)}</title>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
        f'stroke="currentColor"/><line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" '
        f'stroke="currentColor"/>',
        f'<text x="{(width + left) / 2}" y="{height - 6}" font-size="11" text-anchor="middle" '
        f'fill="currentColor">ms per student step (log scale)</text>',
        f'<text x="12" y="{(height - bottom + top) / 2}" font-size="11" text-anchor="middle" '
        f'fill="currentColor" transform="rotate(-90 12 {(height - bottom + top) / 2})">'
        f"test accuracy (%)</text>",
    ]
    for exponent in range(math.floor(lo_t), math.ceil(hi_t) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if lo_t <= math.log10(value) <= hi_t:
                x, _ = xy(value, lo_a)
                parts.append(
                    f'<text x="{x:.1f}" y="{height - bottom + 14}" font-size="10" '
                    f'text-anchor="middle" fill="currentColor">{value:g}</text>'
                )
    for method, time_ms, accuracy in points:
        x, y = xy(time_ms, accuracy)
        colour = "#9e9e9e" if method == "cross-entropy" else "#009688"
        tip = f"{method}: {_percent(accuracy)} %, {time_ms:.1f} ms per step"
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"><title>{html_text(tip)}'
            f'</title></circle><text x="{x + 6:.1f}" y="{y + 3:.1f}" font-size="9" '
            f'fill="currentColor">{html_text(method)}</text>'
        )
    for tick in (lo_a + 0.01, (lo_a + hi_a) / 2, hi_a - 0.01):
        _, y = xy(10**lo_t, tick)
        parts.append(
            f'<text x="{left - 4}" y="{y + 3:.1f}" font-size="10" text-anchor="end" '
            f'fill="currentColor">{_percent(tick)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def comparison_lines(record: Mapping[str, Any], implementation_link: Link) -> list[str]:
    """The section of one ``compare-<device>.json``: settings, then per task the charts and
    the table, then the methods that do not fit the harness."""
    meta, settings = record.get("provenance", {}), record.get("settings", {})
    device = meta.get("gpu") or meta.get("device", "?")
    lines = [
        f"## Every method on the same task: our runs ({md_text(str(device))})",
        "",
        "Measured by `python -m benchmarks.compare` (never copied from papers: those numbers "
        "are in the next section). Every method trains the same student (`student_cnn`) "
        "against the same teacher (`teacher_cnn`, cross-entropy on the whole training split, "
        f"{settings.get('teacher_epochs', '?')} epochs, cached) on the first "
        f"{settings.get('labelled', '?')} training images, {settings.get('epochs', '?')} "
        f"epochs, batch {settings.get('batch_size', '?')}, SGD from learning rate "
        f"{settings.get('lr', '?')} on a cosine schedule, each method at its authors' "
        "defaults; once per seed "
        f"({', '.join(str(s) for s in meta.get('seeds', []))}). *Gap closed*: "
        "(accuracy − the same seed's cross-entropy student) / (teacher − that student). "
        "*Time*: all of a method's training divided by the student's steps (multi-stage "
        "methods pay for every stage); *memory*: the growth of the peak resident memory "
        "during training (CPU) or the peak allocated (CUDA).",
        "",
        f"Run: commit `{md_text(str(meta.get('commit', '?'))[:12])}`, "
        f"{md_text(str(meta.get('date', '?')))}, {md_text(str(meta.get('machine', '?')))}, "
        f"torch {md_text(str(meta.get('torch', '?')))}, {meta.get('parallel_jobs', 1)} jobs at "
        f"a time, {meta.get('wall_seconds', '?')} s"
        + (
            f" for the runs made in the last pass; {meta['runs_resumed']} runs were read from "
            "an earlier pass that was stopped (`--jobs` resumes from the runs it wrote)."
            if meta.get("runs_resumed")
            else " in all."
        ),
        "",
    ]
    for update in meta.get("updates", []):
        lines += [
            f"Re-run since, after a change to them: {', '.join(md_text(str(m)) for m in update.get('methods', []))} "
            f"({update.get('runs', '?')} runs) at commit `{md_text(str(update.get('commit', '?'))[:12])}`, "
            f"{md_text(str(update.get('date', '?')))}, {update.get('wall_seconds', '?')} s; "
            "their rows replace those of the pass above.",
            "",
        ]
    notes = {
        method: info.get("note")
        for method, info in record.get("methods", {}).items()
        if info.get("note")
    }
    for task, summary in record.get("summary", {}).items():
        description = record.get("tasks", {}).get(task, task)
        teacher = next(iter(summary.values()))["teacher_accuracy"]
        lines += [
            f"### {md_text(task)}",
            "",
            f"{md_text(str(description))}; teacher {_percent(teacher)} %.",
            "",
            accuracy_chart(task, summary),
            "",
            accuracy_time_chart(task, summary),
            "",
            "| method | accuracy (%) | gap closed | agreement with teacher | ms / step | "
            "peak memory (MiB) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for method, row in sorted(summary.items(), key=lambda kv: -kv[1]["accuracy_mean"]):
            link = implementation_link(method)
            name = f"[{md_text(method)}]({link})" if link else md_text(method)
            if method in notes:
                name += f' <span title="{html_attr(notes[method])}">†</span>'
            memory = row.get("peak_mib_median")
            gap = row.get("gap_closed_mean")
            lines.append(
                f"| {name} | {_percent(row['accuracy_mean'])} ± {_percent(row['accuracy_std'])} "
                f"| {'-' if gap is None or math.isnan(gap) else f'{gap:+.2f}'} "
                f"| {_percent(row['agreement_mean'])} | {row['ms_per_step_median']:.1f} "
                f"| {'-' if memory is None else f'{memory:.1f}'} |"
            )
        lines.append("")
    if notes:
        lines += ["† How a method's run differs from the common set-up:", ""]
        lines += [f"- **{md_text(m)}**: {md_text(str(n))}" for m, n in sorted(notes.items())]
        lines.append("")
    not_run = record.get("not_run", {})
    if not_run:
        lines += ["Not in this comparison (they do not train a digits classifier):", ""]
        lines += [f"- **{md_text(m)}**: {md_text(str(r))}" for m, r in sorted(not_run.items())]
        lines.append("")
    return lines


def reported_rows(kb: KnowledgeBase, implementation_ids: set[str] | None = None) -> list[dict]:
    """Every reported number (of the given implementations only, when given), with its source."""
    rows = []
    for file_id, reported in sorted(kb.reported.items()):
        for result in reported.results:
            if implementation_ids is not None and result.implementation not in implementation_ids:
                continue
            rows.append({"file": file_id, "source": reported.source, "result": result})
    return rows


def _source_link(source: Any) -> str:
    return (
        f'<a href="{html_attr(source.url)}" title="{html_attr(source.table)}">'
        f"{html_text(source.title)}</a>"
    )


def _method(result: Any, implementation_link: Link, paper_link: Link) -> str:
    """``kd (hinton2015distilling)``, linked; the paper alone where we have no implementation."""
    paper = paper_link(result.paper)
    cited = f"[{md_text(result.paper)}]({paper})" if paper else md_text(result.paper)
    link = implementation_link(result.implementation) if result.implementation else None
    if result.implementation:
        shown = (
            f"[{md_text(result.implementation)}]({link})"
            if link
            else md_text(result.implementation)
        )
        name = f"{shown} ({cited})"
    else:
        name = cited
    return name + (f" · {md_text(result.note)}" if result.note else "")


def leaf_reported_lines(
    kb: KnowledgeBase, rows: Sequence[dict], implementation_link: Link, paper_link: Link
) -> list[str]:
    """A leaf page's one table of the numbers reported for its implementations."""
    if not rows or kb.reported_settings is None:
        return []
    settings = {s.id: s for s in kb.reported_settings.settings}
    lines = [
        "## Reported by the authors",
        "",
        "As papers and READMEs report them (`benchmarks/reported/`), each with its source; "
        "all settings and the sources' own baselines are on the "
        "[Benchmarks page](BENCHMARKS#reported-by-the-authors).",
        "",
        "| method | setting | reported | source |",
        "| --- | --- | ---: | --- |",
    ]
    order = {setting_id: i for i, setting_id in enumerate(settings)}
    for row in sorted(rows, key=lambda r: (order.get(r["result"].setting, 99), -r["result"].value)):
        result, setting = row["result"], settings.get(row["result"].setting)
        where = (
            f"{md_text(setting.dataset)}, {md_text(setting.teacher)} → {md_text(setting.student)}"
            f" ({md_text(setting.metric)})"
            if setting
            else md_text(result.setting)
        )
        value = f"{result.value}" + (f" ± {result.std}" if result.std is not None else "")
        name = _method(result, implementation_link, paper_link)
        lines.append(f"| {name} | {where} | {value} | {_source_link(row['source'])} |")
    lines.append("")
    return lines


def reported_lines(
    kb: KnowledgeBase,
    implementation_link: Link,
    paper_link: Link,
    rows: Sequence[dict] | None = None,
    heading: str = "## Reported by the authors",
) -> list[str]:
    """Tables of reported numbers, one per setting, each number with its source."""
    rows = reported_rows(kb) if rows is None else rows
    if not rows or kb.reported_settings is None:
        return []
    settings = {s.id: s for s in kb.reported_settings.settings}
    lines = [
        heading,
        "",
        "Numbers as papers and the authors' READMEs report them (`benchmarks/reported/`), "
        "each with its source; never mixed with our runs, and not comparable across sources "
        "that trained differently. Teacher and student rows are the source's own baselines.",
        "",
    ]
    for setting_id, setting in settings.items():
        here = [row for row in rows if row["result"].setting == setting_id]
        if not here:
            continue
        lines += [
            f"#### {md_text(setting.dataset)}: {md_text(setting.teacher)} → "
            f"{md_text(setting.student)}",
            "",
            f"| method | {md_text(setting.metric)} | source |",
            "| --- | ---: | --- |",
        ]
        for file_id, reported in sorted(kb.reported.items()):
            baseline = reported.baselines.get(setting_id)
            if baseline is not None and any(row["file"] == file_id for row in here):
                source = _source_link(reported.source)
                lines.append(
                    f"| *teacher* ({md_text(setting.teacher)}) | {baseline.teacher} | {source} |"
                )
                lines.append(
                    f"| *student* ({md_text(setting.student)}) | {baseline.student} | {source} |"
                )
        for row in sorted(here, key=lambda r: -r["result"].value):
            result = row["result"]
            name = _method(result, implementation_link, paper_link)
            value = f"{result.value}" + (f" ± {result.std}" if result.std is not None else "")
            lines.append(f"| {name} | {value} | {_source_link(row['source'])} |")
        lines.append("")
    return lines
