"""Figures and summaries that the notebooks share: methods compared over seeds.

Every notebook collects its results the same way: for each method (in the order
it is introduced, the baseline first), one dict of metrics per seed, e.g.
``{"no distillation": [{"curve": [...], "accuracy": 0.89}, ...], "KD": [...]}``.
The functions here draw and print such results: learning curves with a band of
± one standard deviation, a row of bar charts with error bars, and one summary
line per method. They create figures with pyplot (so a notebook shows them with
``plt.show()``) and return them, so a notebook can add its own lines to an axis.

matplotlib is imported inside the functions: importing ``reference_impls.common``
for training alone does not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Results = Mapping[str, Sequence[Mapping[str, Any]]]
"""Method name → one dict of metrics per seed, the baseline method first."""

ACCURACY_RANGE = (0.5, 1.0)  # the y range of the learning curves: all students pass 0.5 early


def method_colors(names: Iterable[str]) -> dict[str, str]:
    """One colour per method: black for the first (the baseline), then matplotlib's cycle."""
    return {name: "black" if i == 0 else f"C{i - 1}" for i, name in enumerate(names)}


def over_seeds(runs: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """The values of one metric over the seeds of a method, stacked: ``[seeds, ...]``."""
    return np.array([run[key] for run in runs], dtype=float)


def mean_std(values: Iterable[float]) -> str:
    """``"0.912 ± 0.008"``: mean and (population) standard deviation over seeds."""
    array = np.asarray(list(values), dtype=float)
    return f"{array.mean():.3f} ± {array.std():.3f}"


def format_summary(
    results: Results,
    columns: Sequence[tuple[str, str]] = (("accuracy", "test accuracy"),),
    name_width: int | None = None,
) -> str:
    """One line per method: ``"KD: test accuracy 0.912 ± 0.008"`` for each ``(key, label)``.

    Method names are right-aligned to ``name_width`` (default: the longest name).
    """
    width = name_width if name_width is not None else max(map(len, results), default=0)
    lines = []
    for name, runs in results.items():
        cells = [f"{label} {mean_std(over_seeds(runs, key))}" for key, label in columns]
        lines.append(f"{name:>{width}}: {', '.join(cells)}")
    return "\n".join(lines)


def print_summary(
    results: Results,
    columns: Sequence[tuple[str, str]] = (("accuracy", "test accuracy"),),
    name_width: int | None = None,
) -> None:
    """Print :func:`format_summary`: the final numbers of every method, mean ± std over seeds."""
    print(format_summary(results, columns, name_width))


def plot_learning_curves(
    results: Results,
    *,
    key: str = "curve",
    title: str = "",
    ylabel: str = "test accuracy",
    teacher_accuracy: float | None = None,
    bands: bool = True,
    colors: Mapping[str, str] | None = None,
    legend_columns: int = 1,
) -> Figure:
    """Per-epoch values of ``key`` (a list per run), mean over seeds, one line per method.

    The first method (the baseline) is drawn thicker. ``bands`` shades ± one
    standard deviation over seeds; ``teacher_accuracy`` adds a dashed teacher line.
    """
    import matplotlib.pyplot as plt

    colors = colors or method_colors(results)
    fig, ax = plt.subplots(figsize=(7, 4))
    for index, (name, runs) in enumerate(results.items()):
        curves = over_seeds(runs, key)  # [seeds, epochs]
        epochs = np.arange(1, curves.shape[1] + 1)
        mean, std = curves.mean(0), curves.std(0)
        width = 2.5 if index == 0 else 1.5
        ax.plot(epochs, mean, label=name, color=colors[name], linewidth=width)
        if bands:
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.12, color=colors[name])
    if teacher_accuracy is not None:
        ax.axhline(teacher_accuracy, color="grey", linestyle="--", label="teacher")
    ax.set(xlabel="epoch", ylabel=ylabel, ylim=ACCURACY_RANGE)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8, ncol=legend_columns)
    return fig


def draw_bars(
    ax: Axes,
    labels: Sequence[str],
    values: np.ndarray,
    colors: str | Sequence[str],
    rotate_labels: bool = True,
) -> None:
    """Bars of the mean over seeds with ± one std as error bars; ``values`` is ``[bars, seeds]``."""
    positions = range(len(labels))
    ax.bar(positions, values.mean(1), yerr=values.std(1), color=colors, capsize=3)
    if rotate_labels:  # long method names: slanted, anchored at the bar
        ax.set_xticks(positions, labels, rotation=35, ha="right", fontsize=8)
    else:
        ax.set_xticks(positions, labels, fontsize=8)


def plot_metric_bars(
    results: Results,
    metrics: Sequence[tuple[str, str]],
    *,
    ylims: Mapping[str, tuple[float, float]] | None = None,
    colors: Mapping[str, str] | None = None,
    sharey: bool = False,
) -> Figure:
    """A row of bar charts, one per ``(key, title)`` of ``metrics``: final values per method.

    ``ylims`` maps a metric key to its y range (metrics not named keep matplotlib's).
    """
    import matplotlib.pyplot as plt

    colors = colors or method_colors(results)
    names = list(results)
    width = max(10.0, 3.0 * len(metrics) + 3.0)
    # layout="tight" is applied when drawn, so lines a notebook adds later are fitted too
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(width, 3.8), sharey=sharey, squeeze=False, layout="tight"
    )
    for ax, (key, title) in zip(axes[0], metrics, strict=True):
        values = np.stack([over_seeds(results[name], key) for name in names])  # [methods, seeds]
        draw_bars(ax, names, values, [colors[name] for name in names])
        ax.set_title(title, fontsize=10)
        if ylims and key in ylims:
            ax.set_ylim(*ylims[key])
    return fig
