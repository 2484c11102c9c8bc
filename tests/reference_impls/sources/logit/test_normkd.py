"""NormKD (Chi et al., 2023): scale properties, a hand value, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common import predict_logits, train
from reference_impls.common.testing import digits_setup
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.normkd import NormKDLoss


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, 10, generator=generator), torch.randn(16, 10, generator=generator) * 3


def test_zero_when_student_is_a_rescaled_teacher(logits):
    # each model is divided by its own spread: a positive rescale plus shift of the teacher matches
    _, teacher = logits
    scale = torch.linspace(0.1, 4.0, 16)[:, None]
    assert NormKDLoss()(teacher * scale + 1.5, teacher).item() == pytest.approx(0.0, abs=1e-5)


def test_invariant_to_a_per_sample_rescale_of_the_student(logits):
    student, teacher = logits
    scale = torch.linspace(0.2, 5.0, 16)[:, None]
    torch.testing.assert_close(
        NormKDLoss()(student * scale, teacher), NormKDLoss()(student, teacher), rtol=1e-4, atol=1e-6
    )


def test_teacher_temperature_squared_scales_the_loss(logits):
    # rescaling the teacher by c leaves its softened distribution unchanged and T^t grows by c
    student, teacher = logits
    torch.testing.assert_close(
        NormKDLoss()(student, 3.0 * teacher),
        9.0 * NormKDLoss()(student, teacher),
        rtol=1e-4,
        atol=1e-6,
    )


def test_hand_computed_value():
    # two classes, T_norm = 1. Teacher [2, 0]: unbiased std sqrt(2), so logits / T^t = [sqrt2, 0].
    # Student [0, 1]: std 1/sqrt2, logits / T^s = [0, sqrt2].
    r = math.sqrt(2.0)
    p_t = 1 / (1 + math.exp(-r))  # teacher's class-0 probability
    p_s = 1 - p_t  # student's class-0 probability (mirror image)
    kl = p_t * math.log(p_t / p_s) + (1 - p_t) * math.log((1 - p_t) / (1 - p_s))
    teacher_temperature = math.sqrt(2.0)
    value = NormKDLoss(temperature_norm=1.0)(torch.tensor([[0.0, 1.0]]), torch.tensor([[2.0, 0.0]]))
    assert value.item() == pytest.approx(teacher_temperature**2 * kl, rel=1e-6)


def test_constant_logits_stay_finite():
    value = NormKDLoss()(torch.zeros(2, 5), torch.ones(2, 5))
    assert torch.isfinite(value)


def test_rejects_non_positive_temperature_norm():
    with pytest.raises(ValueError, match="temperature_norm"):
        NormKDLoss(temperature_norm=0.0)


def test_training_moves_student_toward_teacher():
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), baseline_data, **kwargs)
    loss = NormKDLoss()
    train(OfflineDistiller(student, teacher, loss, ce_weight=0.1, kd_weight=0.9), data, **kwargs)
    # measured in the method's own terms on held-out digits (each model at its own
    # per-sample temperature): 0.47 vs 1.33 when written; the ratio ranged 0.24-0.62
    # over training seeds and machines, hence the margin. A fixed-temperature KL is not
    # the target here, since the student keeps its own logit scale.
    distilled_gap = loss(predict_logits(student, data.x_test), predict_logits(teacher, data.x_test))
    baseline_gap = loss(predict_logits(baseline, data.x_test), predict_logits(teacher, data.x_test))
    assert distilled_gap.item() < 0.8 * baseline_gap.item()
