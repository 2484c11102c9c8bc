"""OFD (Heo et al., 2019): margins, partial L2 by hand, training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reference_impls.common import linear_cka, student_mlp, teacher_cnn, train
from reference_impls.common.testing import (
    digits_setup,
    pretrained_digits_teacher,
    random_feature_pair,
)
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.feature.ofd import (
    OFDLoss,
    bn_before_relu,
    gaussian_negative_expectation,
    margins_from_batchnorm,
    margins_from_data,
    margins_from_features,
    partial_l2,
)

STUDENT_CHANNELS = (8, 16, 32)
TEACHER_CHANNELS = (32, 64, 128)


def fresh_margins() -> list[torch.Tensor]:
    return margins_from_batchnorm(bn_before_relu(teacher_cnn()))


@pytest.fixture
def preacts() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return random_feature_pair(batch=4, seed=0)


def test_contract_on_a_subset_of_stages(preacts):
    loss = OFDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, fresh_margins(), stages=(1, 2))
    assert len(loss.connectors) == 2
    student, teacher = preacts
    # stage 0 is not distilled, so it must not need a gradient: pass only what is used
    value = loss(student, teacher)
    value.backward()
    assert all(p.grad is not None for p in loss.parameters())


def test_standard_normal_margin_is_minus_sqrt_two_over_pi():
    # BN with gamma=1, beta=0: E[x | x < 0] for N(0, 1) is -phi(0)/Phi(0) = -sqrt(2/pi)
    margins = fresh_margins()
    assert [m.shape[0] for m in margins] == list(TEACHER_CHANNELS)
    torch.testing.assert_close(margins[0], torch.full((32,), -math.sqrt(2 / math.pi)))


def test_margin_is_the_mean_of_the_negative_responses_of_a_gaussian():
    generator = torch.Generator().manual_seed(0)
    mean, std = 0.5, 2.0
    samples = mean + std * torch.randn(400_000, generator=generator, dtype=torch.float64)
    monte_carlo = samples[samples < 0].mean().item()
    formula = gaussian_negative_expectation(torch.tensor([mean]), torch.tensor([std])).item()
    assert formula == pytest.approx(monte_carlo, rel=0.01)
    # the same from data, and a BN with negative scale (only |gamma| matters)
    features = samples.float().reshape(-1, 1, 1, 1)
    assert margins_from_features([features])[0].item() == pytest.approx(formula, rel=0.01)
    bn = nn.BatchNorm2d(1)
    with torch.no_grad():
        bn.weight.fill_(-std)
        bn.bias.fill_(mean)
    assert margins_from_batchnorm([bn])[0].item() == pytest.approx(formula, rel=1e-5)


def test_margin_falls_back_to_minus_three_std_when_negatives_are_rare():
    # P(x < 0) = Phi(-4) < 0.001 for N(4, 1)
    margin = gaussian_negative_expectation(torch.tensor([4.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert margin[0].item() == pytest.approx(-3.0)
    assert margin[1].item() == pytest.approx(-math.sqrt(2 / math.pi), rel=1e-5)
    positive = torch.rand(1000, 1, 1, 1, generator=torch.Generator().manual_seed(0)) + 1.0
    assert margins_from_features([positive])[0].item() == pytest.approx(-3 * positive.std().item())


def test_partial_l2_by_hand():
    # target after the margin ReLU (m = -0.5): max([-1, -1, 2, 0.5], -0.5) = [-0.5, -0.5, 2, 0.5]
    source = torch.tensor([-2.0, 0.5, -0.5, 1.0])
    target = torch.tensor([-0.5, -0.5, 2.0, 0.5])
    # -2 <= -0.5 <= 0: skipped; (0.5+0.5)^2 = 1; (-0.5-2)^2 = 6.25; (1-0.5)^2 = 0.25
    assert partial_l2(source, target).item() == pytest.approx(0.0 + 1.0 + 6.25 + 0.25)


def identity_connector_loss(margin: float) -> OFDLoss:
    """One-channel, two-stage OFD whose connectors are exactly the identity (1x1 conv of 1, no BN)."""
    loss = OFDLoss((1, 1), (1, 1), [torch.tensor([margin])] * 2, stages=(0, 1))
    for sequential in loss.connectors:
        with torch.no_grad():
            sequential[0].weight.fill_(1.0)
        sequential[1] = nn.Identity()
    return loss


def test_hand_computed_value_with_stage_weights_and_batch_mean():
    loss = identity_connector_loss(margin=-0.5)
    # stage 0 (weight 1/2), batch of 2: sample A is the partial-L2 example above (7.5),
    # sample B is all zeros (target max(0, -0.5) = 0, source 0 <= 0: skipped)
    s0 = torch.tensor([[-2.0, 0.5], [-0.5, 1.0]]).reshape(1, 1, 2, 2)
    t0 = torch.tensor([[-1.0, -1.0], [2.0, 0.5]]).reshape(1, 1, 2, 2)
    s0 = torch.cat([s0, torch.zeros_like(s0)])
    t0 = torch.cat([t0, torch.zeros_like(t0)])
    # stage 1 (weight 1): A: (3 - 1)^2 = 4; B: target max(-2, -0.5) = -0.5, source -1 below: skipped
    s1 = torch.tensor([3.0, -1.0]).reshape(2, 1, 1, 1)
    t1 = torch.tensor([1.0, -2.0]).reshape(2, 1, 1, 1)
    expected = 1e-3 * (7.5 / 2 + 4.0) / 2
    assert loss([s0, s1], [t0, t1]).item() == pytest.approx(expected, rel=1e-6)


def test_connector_batch_norm_standardises_the_student_map_by_hand():
    # the authors' connector is a 1x1 conv then a BN (gamma 1, beta 0); in training mode the BN
    # maps the conv output 3 * [1, 3] = [3, 9] (two one-pixel maps: mean 6, variance 9) to
    # [-3, 3] / sqrt(9 + eps): about [-1, 1] whatever the conv's weight
    loss = OFDLoss((1,), (1,), [torch.tensor([-0.5])], stages=(0,))
    with torch.no_grad():
        loss.connectors[0][0].weight.fill_(3.0)
    student = [torch.tensor([1.0, 3.0]).reshape(2, 1, 1, 1)]
    teacher = [torch.tensor([0.5, -1.0]).reshape(2, 1, 1, 1)]  # margin ReLU: [0.5, -0.5]
    source = 3 / math.sqrt(9 + 1e-5)
    # both positions count: target 0.5 > 0, and source +1 is above target -0.5
    expected = 1e-3 * ((-source - 0.5) ** 2 + (source + 0.5) ** 2) / 2
    assert loss.train()(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_zero_when_student_matches_the_margin_relu_of_the_teacher():
    loss = identity_connector_loss(margin=-0.5)
    teacher = [torch.randn(3, 1, 2, 2), torch.randn(3, 1, 1, 1)]
    # below a negative target the student may be anything lower; above zero it must match
    student = [torch.where(t > 0, t, torch.full_like(t, -5.0)) for t in teacher]
    assert loss(student, teacher).item() == 0.0
    assert loss([s + 0.1 for s in student], teacher).item() > 0.0


def test_margins_from_data_are_negative_per_channel_means():
    teacher = teacher_cnn().train()
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    margins = margins_from_data(teacher, x, batch_size=16)
    assert teacher.training  # the mode is restored after the eval-mode pass
    assert [m.shape[0] for m in margins] == list(TEACHER_CHANNELS)
    assert all(bool((m < 0).all()) for m in margins)


def test_rejects_bad_arguments():
    margins = fresh_margins()
    with pytest.raises(ValueError, match="one margin per teacher stage"):
        OFDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, margins[:2])
    with pytest.raises(ValueError, match="margin 1 has"):
        OFDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, [margins[0], margins[0], margins[2]])
    with pytest.raises(ValueError, match="stages"):
        OFDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, margins, stages=(3,))
    with pytest.raises(ValueError, match="stages"):
        OFDLoss(STUDENT_CHANNELS[:2], TEACHER_CHANNELS, margins)
    with pytest.raises(ValueError, match="alpha"):
        OFDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, margins, alpha=0.0)
    with pytest.raises(TypeError, match="stages"):
        bn_before_relu(student_mlp())


def test_rejects_spatial_mismatch(preacts):
    student, teacher = preacts
    loss = OFDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, fresh_margins())
    with pytest.raises(ValueError, match="does not match"):
        loss([torch.randn(4, 8, 4, 4), student[1], student[2]], teacher)


def test_training_moves_student_features_toward_the_teacher():
    pretrained_digits_teacher(0)  # cache first, so both students below start from the same init
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), baseline_data, **kwargs)
    loss = OFDLoss(
        STUDENT_CHANNELS, TEACHER_CHANNELS, margins_from_batchnorm(bn_before_relu(teacher))
    )
    train(OfflineDistiller(student, teacher, loss), data, **kwargs)
    with torch.no_grad():
        teacher_last = teacher(data.x_test).preact_features[-1]
        distilled = linear_cka(student.eval()(data.x_test).preact_features[-1], teacher_last)
        undistilled = linear_cka(baseline.eval()(data.x_test).preact_features[-1], teacher_last)
    assert distilled > undistilled + 0.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_partial_l2_equals_the_squared_power_form_at_ties_and_extremes(dtype):
    """``partial_l2`` is one mse_loss kernel each way; the guard is the equation's
    ``(S - T)^2`` masked, bit for bit, values and gradients."""
    torch.manual_seed(0)
    source = 3 * torch.randn(4, 6, 5, 5, dtype=dtype)
    target = torch.maximum(torch.randn(4, 6, 5, 5, dtype=dtype), torch.tensor(-0.5, dtype=dtype))
    # ties S = T (both signs), S just above a negative T, T exactly 0, huge values
    source.view(-1)[:6] = torch.tensor([-0.5, 0.7, -0.4999, 0.0, 1e18, -1e18], dtype=dtype)
    target.view(-1)[:6] = torch.tensor([-0.5, 0.7, -0.5, 0.0, -0.5, 0.3], dtype=dtype)
    ours, reference = source.clone().requires_grad_(), source.clone().requires_grad_()
    value = partial_l2(ours, target)
    counted = (reference > target) | (target > 0)
    expected = ((reference - target) ** 2 * counted).sum()
    value.backward(), expected.backward()
    assert torch.equal(value, expected)
    assert torch.equal(ours.grad, reference.grad)


def test_bf16_autocast_computes_the_distance_in_float32(preacts):
    student, teacher = preacts
    loss = OFDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, fresh_margins())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(student, teacher)
        pairs = zip(loss.stages, loss.connectors, strict=True)
        connected = [regress(student[s]) for s, regress in pairs]
    assert value.dtype == torch.float32
    expected = sum(
        partial_l2(c.float(), torch.maximum(teacher[s], loss.margin(p))) / 2 ** (2 - p)
        for p, (s, c) in enumerate(zip(loss.stages, connected, strict=True))
    )
    torch.testing.assert_close(value, loss.alpha * expected / student[0].shape[0])
