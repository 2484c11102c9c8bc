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


# --------------------------------------------------------------------------- detection


def test_the_boxes_are_decided_by_the_seed_and_hold_their_digit():
    from reference_impls.common.dense import boxes_of, load_digit_boxes

    first = load_digit_boxes(seed=3, n_train=30, n_test=5)
    again = load_digit_boxes(seed=3, n_train=30, n_test=5)
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_train, again.y_train)
    assert first.x_train.shape == (30, 1, 32, 32) and first.y_train.shape == (30, 3, 5)
    counts = (first.y_train[:, :, 0] >= 0).sum(1)
    assert int(counts.min()) >= 1 and int(counts.max()) <= 3
    for image, boxes in zip(first.x_train[:, 0], boxes_of(first.y_train), strict=True):
        assert bool(
            (boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= 32).all()
        )
        inside = torch.zeros(32, 32, dtype=torch.bool)
        for x1, y1, x2, y2 in boxes.long().tolist():
            assert not inside[y1:y2, x1:x2].any()  # boxes never overlap
            inside[y1:y2, x1:x2] = True
        assert image[inside].mean() > image[~inside].mean() + 0.2  # the ink is in the boxes


def test_targets_decoding_and_average_precision_by_hand():
    from reference_impls.common.dense import (
        CentreOutput,
        Detections,
        centre_targets,
        decode_detections,
        mean_average_precision,
    )

    objects = torch.tensor([[[3.0, 4.0, 6.0, 12.0, 14.0], [-1.0, -1, -1, -1, -1]]])
    heat, index, wh, offset, present = centre_targets(objects, 32)
    # centre (8, 10) pixels = cell (4, 5) exactly: the class-3 map peaks there at 1
    assert heat[0, 3, 5, 4].item() == 1.0 and heat[0].sum() == heat[0, 3].sum()
    assert index[0, 0].item() == 5 * 16 + 4 and wh[0, 0].tolist() == [8.0, 8.0]
    assert offset[0, 0].tolist() == [0.0, 0.0] and present.tolist() == [[True, False]]
    # a perfect output decodes to the box
    logits = torch.where(heat > 0.99, 10.0, -10.0)
    sizes, offsets = torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 16, 16)
    sizes[0, :, 5, 4] = 8.0
    detections = decode_detections(CentreOutput(logits, sizes, offsets, []), top_k=3)
    torch.testing.assert_close(detections.boxes[0][0], torch.tensor([4.0, 6.0, 12.0, 14.0]))
    assert detections.classes[0][0].item() == 3
    assert mean_average_precision(detections, objects) == pytest.approx(1.0)
    # two objects of one class, a wrong detection scored above a right one: precision
    # 0 then 1/2 at recall 1/2, so AP = 1/2 * 1/2
    objects = torch.tensor([[[1.0, 0, 0, 8, 8]], [[1.0, 10, 10, 18, 18]]])
    boxes = [torch.tensor([[20.0, 20, 28, 28], [0.0, 0, 8, 8]]), torch.zeros(0, 4)]
    guess = Detections(
        boxes,
        [torch.tensor([0.9, 0.8]), torch.zeros(0)],
        [torch.tensor([1, 1]), torch.zeros(0, dtype=torch.long)],
    )
    assert mean_average_precision(guess, objects) == pytest.approx(0.25)


def test_the_detector_maps_and_its_loss():
    from reference_impls.common.dense import centre_net_loss, load_digit_boxes, student_centre_net

    data = load_digit_boxes(n_train=4, n_test=1)
    output = student_centre_net()(data.x_train)
    assert output.heatmap.shape == (4, 10, 16, 16) and output.sizes.shape == (4, 2, 16, 16)
    assert output.features[-1].shape == (4, 16, 16, 16)
    terms = centre_net_loss(output, data.y_train)
    assert set(terms) == {"loss", "heatmap", "size", "offset"} and torch.isfinite(terms["loss"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_digits": 0}, "max_digits"),
        ({"scales": (2, 8)}, "scales"),
        ({"scales": (8, 40)}, "scales"),
    ],
)
def test_bad_box_settings_are_named(options, message):
    from reference_impls.common.dense import load_digit_boxes

    with pytest.raises(ValueError, match=message):
        load_digit_boxes(n_train=2, n_test=1, **options)
