"""CTKD (Li et al., 2023): a hand value, the gradient reversal, the cosine curriculum, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.algorithms.adaptive.ctkd import (
    CTKDLoss,
    cosine_lambda,
    reverse_gradient,
    softened_kl_with_temperature,
)
from reference_impls.common import kl_to_teacher, student_cnn, teacher_cnn, train
from reference_impls.common.testing import digits_student_pair
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.kd import KDLoss


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, 10, generator=generator), 3 * torch.randn(16, 10, generator=generator)


def test_hand_computed_value():
    # theta = 0: tau = 1 + 2 * sigmoid(0) = 2. Teacher logits [2, 0] -> softmax([1, 0]);
    # student logits [0, 0] -> [1/2, 1/2]. Loss = w tau^2 KL.
    loss = CTKDLoss(
        kd_weight=0.9, min_temperature=1.0, temperature_range=2.0, initial_parameter=0.0
    )
    assert loss.temperature == pytest.approx(2.0)
    q = math.exp(1) / (math.exp(1) + 1)
    kl = q * math.log(q / 0.5) + (1 - q) * math.log((1 - q) / 0.5)
    value = loss(torch.zeros(1, 2), torch.tensor([[2.0, 0.0]]))
    assert value.item() == pytest.approx(0.9 * 4 * kl, rel=1e-6)


def test_authors_initial_temperature():
    # theta starts at 1 (their torch.ones(1)): tau = 1 + 20 sigmoid(1)
    assert CTKDLoss().temperature == pytest.approx(1 + 20 / (1 + math.exp(-1)))


def test_student_sees_plain_kd_at_the_current_temperature(logits):
    student, teacher = logits
    ctkd = CTKDLoss(kd_weight=1.0)
    ours = student.clone().requires_grad_()
    ctkd(ours, teacher).backward()
    reference = student.clone().requires_grad_()
    KDLoss(temperature=ctkd.temperature)(reference, teacher).backward()
    torch.testing.assert_close(ours.grad, reference.grad)


def test_temperature_gradient_is_reversed_and_scaled_by_lambda(logits):
    # without reversal, d loss / d theta; the loss gives -lambda times it to theta
    student, teacher = logits
    loss = CTKDLoss(initial_parameter=0.3)
    theta = loss.temperature_parameter.detach().clone().requires_grad_()
    (0.9 * softened_kl_with_temperature(student, teacher, loss.temperature_of(theta))).backward()
    for lambda_ in (0.0, 0.25, 1.0):
        loss.zero_grad()
        loss.lambda_ = lambda_
        loss(student, teacher).backward()
        torch.testing.assert_close(loss.temperature_parameter.grad, -lambda_ * theta.grad)


def test_one_step_the_temperature_raises_the_loss_the_student_lowers_it(logits):
    # the adversarial game: a small SGD step on theta increases the KD loss
    student, teacher = logits
    loss = CTKDLoss()
    before = loss(student, teacher)
    before.backward()
    with torch.no_grad():
        loss.temperature_parameter -= 0.5 * loss.temperature_parameter.grad
    assert loss(student, teacher).item() > before.item()


def test_reverse_gradient_is_identity_forward():
    x = torch.randn(3, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    torch.testing.assert_close(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), -0.5))


def test_cosine_curriculum_of_lambda():
    loss = CTKDLoss()
    assert loss.lambda_ == 1.0  # never scheduled: the schedule's final value
    values = []
    for epoch in range(15):
        loss.on_epoch_start(epoch, 240)
        values.append(loss.lambda_)
    # the authors' epoch e + 1: (1 - cos(pi (e + 1) / 10)) / 2, flat at 1 from their epoch 10
    assert values[0] == pytest.approx((1 - math.cos(math.pi / 10)) / 2)
    assert values[4] == pytest.approx(0.5)
    assert values[9:] == [1.0] * 6
    assert values == sorted(values) and len(set(values[:10])) == 10
    assert cosine_lambda(5, 10, start=0.2, end=0.6) == pytest.approx(0.4)


def test_temperature_stays_in_its_range():
    loss = CTKDLoss()
    for theta, expected in ((-1e4, 1.0), (1e4, 21.0)):
        with torch.no_grad():
            loss.temperature_parameter.fill_(theta)
        assert loss.temperature == pytest.approx(expected)


def test_distiller_forwards_the_epoch_and_trains_the_temperature():
    loss = CTKDLoss()
    distiller = OfflineDistiller(student_cnn(), teacher_cnn(), loss, ce_weight=0.1)
    distiller.on_epoch_start(4, 240)
    assert loss.lambda_ == pytest.approx(0.5)
    assert any(p is loss.temperature_parameter for p in distiller.parameters())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kd_weight": 0.0}, "kd_weight"),
        ({"min_temperature": 0.0}, "min_temperature"),
        ({"temperature_range": -1.0}, "temperature_range"),
        ({"lambda_end": -0.5}, "lambda_end"),
        ({"lambda_epochs": 0}, "lambda_epochs"),
        ({"initial_parameter": math.inf}, "initial_parameter"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CTKDLoss(**kwargs)


def test_rejects_mismatched_logits():
    with pytest.raises(ValueError, match="classes"):
        CTKDLoss()(torch.zeros(2, 10), torch.zeros(2, 5))


def test_training_moves_student_toward_teacher_and_the_temperature():
    data, teacher, student, baseline = digits_student_pair(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), data, **kwargs)
    loss = CTKDLoss(lambda_epochs=2)
    initial = loss.temperature
    train(OfflineDistiller(student, teacher, loss, ce_weight=0.1), data, **kwargs)
    assert loss.temperature != pytest.approx(initial, abs=1e-3)
    distilled_gap = kl_to_teacher(student, teacher, data.x_test, temperature=4.0)
    baseline_gap = kl_to_teacher(baseline, teacher, data.x_test, temperature=4.0)
    assert distilled_gap < 0.8 * baseline_gap
