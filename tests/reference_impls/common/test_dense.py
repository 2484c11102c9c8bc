"""The generated digit canvases and the dense-prediction helpers."""

from __future__ import annotations

import pytest
import torch

from reference_impls.common.dense import (
    DenseNet,
    heatmaps,
    keypoint_error,
    load_digit_canvases,
    mean_iou,
)


def test_the_canvases_are_decided_by_the_seed_and_labels_follow_the_ink():
    first = load_digit_canvases("segmentation", n_train=20, n_test=5, seed=3)
    again = load_digit_canvases("segmentation", n_train=20, n_test=5, seed=3)
    other = load_digit_canvases("segmentation", n_train=20, n_test=5, seed=4)
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_train, again.y_train)
    assert not torch.equal(first.x_train, other.x_train)
    assert first.x_train.shape == (20, 1, 24, 24) and first.y_train.shape == (20, 24, 24)
    assert int(first.y_train.max()) <= 10 and int(first.y_train.min()) == 0
    labelled = first.y_train > 0
    assert first.x_train[:, 0][labelled].mean() > first.x_train[:, 0][~labelled].mean() + 0.4
    for canvas, centres in zip(first.y_train, first.centres_train, strict=True):
        present = {int(c) + 1 for c in centres[:, 0] if c >= 0}
        assert set(canvas.unique().tolist()) - {0} <= present  # only its digits' classes


def test_heatmaps_peak_at_the_digit_centres_in_their_class_channel():
    centres = torch.tensor([[[3.0, 5.0, 7.0], [-1.0, -1.0, -1.0]]])
    maps = heatmaps(centres, size=12, sigma=1.0)
    assert maps.shape == (1, 10, 12, 12)
    assert maps[0, 3, 5, 7].item() == pytest.approx(1.0)
    assert maps[0, 3].argmax().item() == 5 * 12 + 7
    assert maps[0, [c for c in range(10) if c != 3]].max().item() == 0.0


def test_mean_iou_and_keypoint_error_by_hand():
    class Fixed(torch.nn.Module):
        def __init__(self, out: torch.Tensor) -> None:
            super().__init__()
            self.out = out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out[: len(x)]

    truth = torch.tensor([[[0, 1], [1, 1]]])
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1, 1, :] = 1.0  # predicts class 1 on the bottom row only
    # class 0: intersection 1 (top-left), union 2 -> 0.5; class 1: 2 of 3 -> 2/3
    assert mean_iou(Fixed(logits), torch.zeros(1, 1, 2, 2), truth, 2) == pytest.approx(7 / 12)
    maps = torch.zeros(1, 10, 8, 8)
    maps[0, 2, 4, 4] = 1.0
    centres = torch.tensor([[[2.0, 1.0, 4.0]]])  # 3 px above the peak
    assert keypoint_error(Fixed(maps), torch.zeros(1, 1, 8, 8), centres) == pytest.approx(3.0)


def test_the_network_keeps_the_resolution_and_taps_three_stages():
    output = DenseNet(4, 11)(torch.zeros(2, 1, 24, 24))
    assert output.logits.shape == (2, 11, 24, 24)
    assert [tuple(f.shape[1:]) for f in output.features] == [(4, 24, 24), (8, 12, 12), (8, 12, 12)]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"task": "depth"}, "task"), ({"size": 16}, "size"), ({"max_digits": 0}, "max_digits")],
)
def test_bad_settings_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        load_digit_canvases(**options)
