"""The notebooks' shared figures and summaries, on tiny fake results (Agg backend)."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")  # no display in tests; must precede pyplot's import
import matplotlib.pyplot as plt
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer

from reference_impls.common import (
    draw_bars,
    format_summary,
    mean_std,
    method_colors,
    plot_learning_curves,
    plot_metric_bars,
    print_summary,
)

SEEDS, EPOCHS = 3, 4


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


@pytest.fixture
def results() -> dict[str, list[dict]]:
    """Three methods over three seeds: a per-epoch curve and two final metrics."""
    rng = np.random.default_rng(0)
    return {
        name: [
            {
                "curve": list(rng.uniform(0.5, 1.0, EPOCHS)),
                "accuracy": base + 0.01 * seed,
                "kl": 0.1 * (seed + 1),
            }
            for seed in range(SEEDS)
        ]
        for name, base in [("alone", 0.80), ("KD", 0.85), ("DKD", 0.90)]
    }


def test_method_colors_put_the_baseline_in_black_then_follow_the_cycle():
    assert method_colors(["alone", "KD", "DKD"]) == {"alone": "black", "KD": "C0", "DKD": "C1"}


def test_learning_curves_draw_one_mean_line_per_method_a_band_each_and_the_teacher(results):
    fig = plot_learning_curves(results, teacher_accuracy=0.97, title="toy")
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["alone", "KD", "DKD", "teacher"]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(results)
    mean_of_kd = np.mean([run["curve"] for run in results["KD"]], axis=0)
    np.testing.assert_allclose(lines[1].get_ydata(), mean_of_kd)
    np.testing.assert_array_equal(lines[1].get_xdata(), np.arange(1, EPOCHS + 1))
    assert lines[0].get_linewidth() > lines[1].get_linewidth()  # the baseline stands out
    assert lines[3].get_ydata()[0] == pytest.approx(0.97)
    assert ax.get_title() == "toy"


def test_learning_curves_without_bands_or_teacher(results):
    fig = plot_learning_curves(results, bands=False)
    (ax,) = fig.axes
    assert len(ax.get_lines()) == len(results)
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_metric_bars_draw_one_axis_per_metric_and_one_bar_per_method(results):
    metrics = [("accuracy", "test accuracy"), ("kl", "KL")]
    fig = plot_metric_bars(results, metrics, ylims={"accuracy": (0.7, 1.0)})
    assert len(fig.axes) == 2
    accuracy_axis, kl_axis = fig.axes
    heights = [bar.get_height() for bar in accuracy_axis.patches]
    assert heights == pytest.approx([0.81, 0.86, 0.91])  # mean over the three seeds
    assert len(kl_axis.patches) == len(results)
    assert [label.get_text() for label in accuracy_axis.get_xticklabels()] == list(results)
    assert accuracy_axis.get_ylim() == pytest.approx((0.7, 1.0))
    assert kl_axis.get_ylim()[0] == pytest.approx(0.0)
    assert accuracy_axis.get_title() == "test accuracy"


def test_metric_bars_error_bars_are_the_standard_deviation_over_seeds(results):
    fig = plot_metric_bars(results, [("kl", "KL")])
    (ax,) = fig.axes
    (errorbar,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    (error_bars,) = errorbar.lines[2]  # the vertical segments
    lengths = [top - bottom for (_, bottom), (_, top) in error_bars.get_segments()]
    assert lengths == pytest.approx([2 * np.std([0.1, 0.2, 0.3])] * len(results))


def test_draw_bars_takes_one_colour_for_all_bars():
    fig, ax = plt.subplots()
    draw_bars(ax, ["a", "b"], np.array([[0.5, 0.7], [0.2, 0.2]]), "C3", rotate_labels=False)
    assert [bar.get_height() for bar in ax.patches] == pytest.approx([0.6, 0.2])
    assert ax.patches[0].get_facecolor() == ax.patches[1].get_facecolor()
    assert fig.axes == [ax]


def test_summary_prints_one_line_per_method_with_mean_and_std(results, capsys):
    print_summary(results, [("accuracy", "test accuracy"), ("kl", "KL")])
    lines = capsys.readouterr().out.splitlines()
    assert lines == format_summary(results, [("accuracy", "test accuracy"), ("kl", "KL")]).split(
        "\n"
    )
    assert len(lines) == len(results)
    assert lines[1] == "   KD: test accuracy 0.860 ± 0.008, KL 0.200 ± 0.082"
    assert format_summary(results, name_width=7).startswith("  alone: test accuracy 0.810")


def test_mean_std_uses_the_population_standard_deviation():
    assert mean_std([1.0, 3.0]) == "2.000 ± 1.000"
