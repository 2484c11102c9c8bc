"""The Benchmarks page's comparison of methods (our runs) and the reported numbers (papers')."""

from __future__ import annotations

import html
import re
from pathlib import Path

from kdatlas.loader import load
from kdatlas.site.comparison import (
    accuracy_chart,
    comparison_lines,
    leaf_reported_lines,
    reported_lines,
    reported_rows,
)

ROOT = Path(__file__).resolve().parents[2]


def _summary(**accuracies: float) -> dict:
    return {
        method: {
            "seeds": 3,
            "accuracy_mean": value,
            "accuracy_std": 0.01,
            "gap_closed_mean": 0.5,
            "agreement_mean": 0.9,
            "ms_per_step_median": 2.0 + index,
            "peak_mib_median": 1.5,
            "teacher_accuracy": 0.95,
        }
        for index, (method, value) in enumerate(accuracies.items())
    }


def test_the_comparison_shows_settings_charts_table_notes_and_what_did_not_run():
    record = {
        "provenance": {"device": "cpu", "seeds": [0, 1, 2], "commit": "abc", "torch": "2"},
        "settings": {"epochs": 20, "labelled": 200, "batch_size": 25, "lr": 0.05},
        "tasks": {"digits": "the <digits>"},
        "methods": {"crd": {"note": "a bank of <200> rows"}},
        "summary": {"digits": _summary(**{"cross-entropy": 0.8, "kd": 0.9, "crd": 0.85})},
        "not_run": {"glnn": "inputs of its own: graphs"},
    }
    raw = "\n".join(
        comparison_lines(record, lambda i: f"../{i}/" if i != "cross-entropy" else None)
    )
    assert "<digits>" not in raw and "<200>" not in raw  # file contents are escaped
    text = html.unescape(raw)
    assert "first 200 training images, 20 epochs, batch 25" in text
    assert raw.count("<svg") == 2 and "the <digits>" in text
    rows = [
        line
        for line in text.splitlines()
        if line.startswith("| [kd]") or line.startswith("| [crd]")
    ]
    assert rows[0].startswith("| [kd](../kd/) | 90.0 ± 1.0 | +0.50 | 90.0 |")  # best first
    assert "†" in rows[1] and "a bank of <200> rows" in text
    assert "- **glnn**: inputs of its own: graphs" in text


def test_the_accuracy_chart_has_a_bar_a_whisker_and_a_tooltip_per_method():
    svg = accuracy_chart("digits", _summary(kd=0.9, dkd=0.7))
    assert len(re.findall(r"<rect ", svg)) == 2
    assert "kd: 90.0 ± 1.0 % over 3 seeds" in svg
    assert "teacher: 95.0 %" in svg


def test_reported_numbers_are_grouped_by_setting_with_their_source():
    kb = load(ROOT)
    text = html.unescape(
        "\n".join(reported_lines(kb, lambda i: f"/{i}/", lambda k: f"/papers#{k}"))
    )
    assert "#### CIFAR-100 (test split): ResNet32x4 → ResNet8x4" in text
    assert "| [crd](/crd/) ([tian2019contrastive](/papers#tian2019contrastive)) | 75.51 |" in text
    assert "HobbitLong/RepDistiller/blob/" in text
    assert "| *teacher* (ResNet32x4) | 79.42 |" in text


def test_a_leaf_page_lists_only_the_numbers_of_its_own_implementations():
    kb = load(ROOT)
    rows = reported_rows(kb, {"dkd"})
    assert rows and all(row["result"].implementation == "dkd" for row in rows)
    text = html.unescape("\n".join(leaf_reported_lines(kb, rows, lambda i: None, lambda k: None)))
    assert "| dkd (zhao2022decoupled) | CIFAR-100 (test split), ResNet32x4 → ResNet8x4" in text
    assert leaf_reported_lines(kb, [], lambda i: None, lambda k: None) == []
