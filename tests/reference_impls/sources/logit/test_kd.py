"""KD (Hinton et al., 2015): paper properties, a hand value, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common import kl_to_teacher, train
from reference_impls.common.testing import digits_setup
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.kd import KDLoss


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, 10, generator=generator), torch.randn(16, 10, generator=generator) * 3


def test_zero_when_student_equals_teacher(logits):
    _, teacher = logits
    assert KDLoss()(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_invariant_to_a_constant_shift_of_the_logits(logits):
    # softmax ignores a per-sample constant; so must the loss
    student, teacher = logits
    shifted = KDLoss()(student + 5.0, teacher - 2.0)
    torch.testing.assert_close(shifted, KDLoss()(student, teacher))


def test_hand_computed_value():
    # two classes, tau = 2: p_t = softmax([2, 0]/2), p_s = softmax([0, 0]/2) = [0.5, 0.5]
    p_t1 = math.exp(1) / (math.exp(1) + 1)
    kl = p_t1 * math.log(p_t1 / 0.5) + (1 - p_t1) * math.log((1 - p_t1) / 0.5)
    value = KDLoss(temperature=2.0)(torch.zeros(1, 2), torch.tensor([[2.0, 0.0]]))
    assert value.item() == pytest.approx(4 * kl, rel=1e-6)


def test_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        KDLoss(temperature=0)


def test_training_moves_student_toward_teacher():
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), baseline_data, **kwargs)
    train(
        OfflineDistiller(student, teacher, KDLoss(), ce_weight=0.1, kd_weight=0.9), data, **kwargs
    )
    distilled_gap = kl_to_teacher(student, teacher, data.x_test, temperature=4.0)
    baseline_gap = kl_to_teacher(baseline, teacher, data.x_test, temperature=4.0)
    assert distilled_gap < 0.8 * baseline_gap
