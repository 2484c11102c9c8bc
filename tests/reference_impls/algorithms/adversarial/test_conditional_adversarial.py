"""KD with a conditional adversarial network (Xu et al., 2017): the two players, by hand, a run."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.algorithms.adversarial import ConditionalAdversarialKD
from reference_impls.algorithms.adversarial.conditional_adversarial import LogitDiscriminator
from reference_impls.common import Supervised, kl_to_teacher, student_cnn, teacher_cnn, train
from reference_impls.common.testing import FixedLogits, digits_student_pair


def test_losses_by_hand_with_a_constant_discriminator():
    # a discriminator whose output is 0 (D = 1/2 for everything): each BCE is ln 2
    procedure = ConditionalAdversarialKD(
        FixedLogits([1.0, 0.0]), FixedLogits([0.0, 2.0]), num_classes=2
    )
    for parameter in procedure.discriminator.parameters():
        torch.nn.init.zeros_(parameter)
    y = torch.tensor([0, 1])
    terms = procedure(torch.zeros(2, 1), y)
    assert terms["discriminator"].item() == pytest.approx(2 * math.log(2))
    assert terms["adversarial"].item() == pytest.approx(math.log(2))
    assert terms["l1"].item() == pytest.approx((1 + 2) / 2)
    ce = torch.nn.functional.cross_entropy(torch.tensor([[1.0, 0.0]] * 2), y).item()
    assert terms["ce"].item() == pytest.approx(ce)
    expected = 3 * math.log(2) + 1.5 + ce
    assert terms["loss"].item() == pytest.approx(expected)


def test_discriminator_is_trained_on_detached_student_and_the_student_does_not_train_it():
    torch.manual_seed(0)
    procedure = ConditionalAdversarialKD(student_cnn(), teacher_cnn(), num_classes=10)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    terms = procedure.train()(x, y)
    # D's gradient comes from its own loss only: recompute it alone
    d_grad = torch.autograd.grad(
        terms["loss"], list(procedure.discriminator.parameters()), retain_graph=True
    )
    torch.manual_seed(0)
    fresh = ConditionalAdversarialKD(student_cnn(), teacher_cnn(), num_classes=10).train()
    with torch.no_grad():
        s, t = fresh.student(x).logits, fresh.teacher(x).logits
    real, fake = fresh.discriminator(t, y), fresh.discriminator(s, y)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    alone = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
    expected = torch.autograd.grad(alone, list(fresh.discriminator.parameters()))
    for got, want in zip(d_grad, expected, strict=True):
        torch.testing.assert_close(got, want)
    terms["loss"].backward()
    assert all(p.grad is None for p in procedure.teacher.parameters())


def test_the_discriminator_is_conditional_on_the_label():
    torch.manual_seed(0)
    discriminator = LogitDiscriminator(num_classes=3)
    logits = torch.randn(1, 3)
    assert discriminator(logits, torch.tensor([0])) != discriminator(logits, torch.tensor([1]))


def test_training_moves_the_student_toward_the_teacher():
    data, teacher, student, baseline = digits_student_pair(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(Supervised(baseline), data, **kwargs)
    train(ConditionalAdversarialKD(student, teacher, num_classes=10), data, **kwargs)
    distilled_gap = kl_to_teacher(student, teacher, data.x_test, temperature=4.0)
    baseline_gap = kl_to_teacher(baseline, teacher, data.x_test, temperature=4.0)
    assert distilled_gap < 0.8 * baseline_gap


def test_without_l1_and_labels_the_adversarial_term_alone_trains_the_student():
    torch.manual_seed(0)
    procedure = ConditionalAdversarialKD(
        student_cnn(), teacher_cnn(), num_classes=10, l1_weight=0.0, ce_weight=0.0
    )
    terms = procedure.train()(torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))
    terms["loss"].backward()
    assert all(p.grad is not None for p in procedure.student.parameters())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"adversarial_weight": -1.0}, "adversarial_weight"),
        ({"adversarial_weight": 0.0, "l1_weight": 0.0, "ce_weight": 0.0}, "must not all be zero"),
        ({"lr_discriminator": 0.0}, "lr_discriminator"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    arguments = {"num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        ConditionalAdversarialKD(student_cnn(), teacher_cnn(), **arguments)


def test_rejects_bad_inputs():
    procedure = ConditionalAdversarialKD(student_cnn(), teacher_cnn(), num_classes=5)
    x = torch.randn(4, 1, 8, 8)
    with pytest.raises(ValueError, match="num_classes=5"):
        procedure(x, torch.zeros(4, dtype=torch.long))
    procedure = ConditionalAdversarialKD(student_cnn(), teacher_cnn(), num_classes=10)
    with pytest.raises(ValueError, match=r"target must be class indices of shape \(4,\)"):
        procedure(x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="10 classes but teacher_logits has 5"):
        ConditionalAdversarialKD(student_cnn(), teacher_cnn(num_classes=5), 10)(
            x, torch.zeros(4, dtype=torch.long)
        )
