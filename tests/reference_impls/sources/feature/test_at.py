"""AT (Zagoruyko and Komodakis, 2017): paper properties, a hand value, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common import train
from reference_impls.common.testing import digits_setup, random_feature_pair
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.feature.at import ATLoss, at_stage_loss


@pytest.fixture
def feats() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return random_feature_pair(batch=4)


def test_zero_when_student_equals_teacher(feats):
    _, teacher = feats
    value = ATLoss()([t.clone() for t in teacher], teacher)
    assert value.item() == pytest.approx(0.0, abs=1e-6)


def test_invariant_to_channel_order_and_width(feats):
    # the map averages over channels, so neither their order nor their number matters
    student, teacher = feats
    permuted = [s[:, torch.randperm(s.shape[1])] for s in student]
    doubled = [torch.cat([s, s], dim=1) for s in student]
    expected = ATLoss()(student, teacher)
    torch.testing.assert_close(ATLoss()(permuted, teacher), expected)
    torch.testing.assert_close(ATLoss()(doubled, teacher), expected)


def test_invariant_to_positive_rescaling_of_the_student(feats):
    student, teacher = feats
    rescaled = [3.0 * s for s in student]
    torch.testing.assert_close(ATLoss()(rescaled, teacher), ATLoss()(student, teacher))


def test_hand_computed_value():
    # student: one channel, a 1x2 map [3, 4] -> Q = [9, 16] / sqrt(9^2 + 16^2)
    # teacher: two channels [1, 0] and [1, 0] -> Q = mean of squares = [1, 0], already unit
    student = torch.tensor([[[[3.0, 4.0]]]])
    teacher = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])
    norm = math.sqrt(81 + 256)
    squared_distance = (9 / norm - 1) ** 2 + (16 / norm) ** 2
    expected = 1000 * squared_distance / 2  # beta * mean over the 2 map positions, batch 1
    value = ATLoss(stages=(0,))([student], [teacher])
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_stages_select_which_maps_are_compared(feats):
    student, teacher = feats
    only_last = ATLoss(beta=1.0, stages=(2,))(student, teacher)
    torch.testing.assert_close(only_last, at_stage_loss(student[2], teacher[2]))


def test_spatial_mismatch_is_refused_unless_pooling_is_asked_for():
    student = torch.randn(2, 8, 8, 8)
    teacher = torch.randn(2, 16, 4, 4)
    with pytest.raises(ValueError, match="spatial"):
        ATLoss(stages=(0,))([student], [teacher])
    pooled = ATLoss(stages=(0,), pool_to_smaller=True)([student], [teacher])
    manual = ATLoss(stages=(0,))([F.adaptive_avg_pool2d(student, (4, 4))], [teacher])
    torch.testing.assert_close(pooled, manual)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"beta": -1.0}, "beta"), ({"p": 0.0}, "p must"), ({"stages": ()}, "stages")],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ATLoss(**kwargs)


def test_rejects_too_few_feature_maps(feats):
    student, teacher = feats
    with pytest.raises(ValueError, match="need 3 feature maps"):
        ATLoss()(student[:2], teacher[:2])


@torch.no_grad()
def _attention_gap(student, teacher, x) -> float:
    student.eval()
    pairs = zip(student(x).features, teacher(x).features, strict=True)
    return sum(at_stage_loss(s, t).item() for s, t in pairs)


def test_training_moves_student_attention_toward_teacher():
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), baseline_data, **kwargs)
    train(OfflineDistiller(student, teacher, ATLoss()), data, **kwargs)
    distilled_gap = _attention_gap(student, teacher, data.x_test)
    baseline_gap = _attention_gap(baseline, teacher, data.x_test)
    assert distilled_gap < 0.5 * baseline_gap


@pytest.mark.parametrize("p", [2.0, 3.0, 1.5])
def test_attention_map_is_the_normalised_mean_of_abs_to_the_p(p):
    # p = 2 takes the square; any p equals mean_c |A|^p, L2-normalised, in value and gradient
    from reference_impls.sources.feature.at import attention_map

    x = torch.randn(3, 5, 4, 4, dtype=torch.float64, requires_grad=True)
    ours = attention_map(x, p)
    (grad,) = torch.autograd.grad(ours.pow(3).sum(), x)
    y = x.detach().requires_grad_()
    expected = F.normalize(y.abs().pow(p).mean(1).flatten(1), dim=1)
    (expected_grad,) = torch.autograd.grad(expected.pow(3).sum(), y)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_bf16_autocast_computes_the_maps_in_float32(feats):
    student, teacher = feats
    low = [s.to(torch.bfloat16).requires_grad_() for s in student]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = ATLoss()(low, [t.to(torch.bfloat16) for t in teacher])
    assert value.dtype == torch.float32
    expected = ATLoss()(
        [s.detach().float() for s in low], [t.to(torch.bfloat16).float() for t in teacher]
    )
    torch.testing.assert_close(value, expected)
