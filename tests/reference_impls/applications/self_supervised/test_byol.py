"""BYOL: the regression loss by hand, the symmetric loss, the target's EMA, a short distillation."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.applications.self_supervised.byol import (
    BYOL,
    BYOLLoss,
    l2_normalize,
    regression_loss,
    target_ema,
)
from reference_impls.common.augmentations import byol_network, embed
from reference_impls.common.models import student_mlp
from reference_impls.common.training import linear_cka, train


def test_regression_loss_by_hand_is_two_minus_twice_the_cosine():
    prediction, target = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(regression_loss(prediction, target), torch.tensor([2 - 2 * 0.6]))
    torch.testing.assert_close(l2_normalize(torch.zeros(1, 3)), torch.zeros(1, 3))  # no NaN


def test_the_loss_is_symmetric_in_the_views_and_reaches_the_predictor():
    torch.manual_seed(0)
    procedure = BYOL(byol_network(student_mlp()))
    terms = procedure.train()(torch.randn(16, 1, 8, 8))
    assert 0 <= float(terms["loss"].detach()) <= 8  # two terms, each at most 4
    terms["loss"].backward()
    assert all(p.grad is not None for p in procedure.loss.predictor.parameters())
    assert all(p.grad is None for p in procedure.teacher.parameters())


def test_the_target_follows_their_cosine_ema():
    assert target_ema(0, 0.996, 100) == pytest.approx(0.996)
    assert target_ema(100, 0.996, 100) == pytest.approx(1.0)
    assert target_ema(50, 0.996, 100) == pytest.approx(
        1 - 0.004 * 0.5 * (1 + math.cos(math.pi / 2))
    )
    procedure = BYOL(byol_network(student_mlp()), total_steps=10)
    x = torch.randn(8, 1, 8, 8)
    procedure.train()(x)
    with torch.no_grad():
        for p in procedure.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in procedure.teacher.parameters()]
    procedure(x)
    tau = target_ema(0, 0.996, 10)
    for b, t, s in zip(
        before, procedure.teacher.parameters(), procedure.student.parameters(), strict=True
    ):
        torch.testing.assert_close(t, tau * b + (1 - tau) * s)


def test_distilling_a_trained_teacher_moves_the_student_towards_it_more_than_byol_alone(
    digits, mlp_teacher
):
    subset = digits.with_train_subset(512)
    teacher_embedding = embed(mlp_teacher, digits.x_test)
    similarity = {}
    for name, teacher in (("alone", None), ("distilled", mlp_teacher)):
        torch.manual_seed(1)
        student = byol_network(student_mlp())
        procedure = BYOL(student, teacher, teacher_dim=None if teacher is None else 512)
        train(procedure, subset, epochs=4, lr=0.1, batch_size=128, seed=1, device="cpu")
        similarity[name] = linear_cka(embed(student, digits.x_test), teacher_embedding)
    assert similarity["distilled"] > similarity["alone"] + 0.02, similarity


def test_bad_inputs_are_named():
    loss = BYOLLoss(4, 6)
    with pytest.raises(ValueError, match=r"student_projection must have shape \[B, 4\]"):
        loss(torch.randn(3, 5), torch.randn(3, 6))
    with pytest.raises(ValueError, match="one row per image"):
        loss(torch.randn(3, 4), torch.randn(2, 6))
    with pytest.raises(ValueError, match="teacher_dim is needed"):
        BYOL(byol_network(student_mlp()), student_mlp())
    with pytest.raises(ValueError, match="teacher_output must be one of"):
        BYOL(byol_network(student_mlp()), student_mlp(), teacher_dim=64, teacher_output="x")
    with pytest.raises(ValueError, match="base_momentum must lie in"):
        BYOL(byol_network(student_mlp()), base_momentum=2.0)
