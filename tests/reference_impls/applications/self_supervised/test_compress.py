"""CompRess: the KL of the similarity distributions by hand, the banks, and a short distillation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.applications.self_supervised.compress import CompRess
from reference_impls.common.augmentations import embed
from reference_impls.common.models import student_mlp
from reference_impls.common.training import linear_cka, train


def _procedure(student_dim: int = 2, teacher_dim: int = 2, **options) -> CompRess:
    return CompRess(nn.Identity(), nn.Identity(), student_dim, teacher_dim, **options)


def test_value_by_hand_with_banks_of_two():
    procedure = _procedure(queue_size=2, temperature=0.5)
    procedure.teacher_bank.memory.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    procedure.student_bank.memory.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    student, teacher = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 2.0]])
    p_teacher = torch.softmax(torch.tensor([0.0, 1.0]) / 0.5, 0)
    log_p_student = torch.log_softmax(torch.tensor([0.8, 0.6]) / 0.5, 0)
    expected = (p_teacher * (p_teacher.log() - log_p_student)).sum()
    torch.testing.assert_close(procedure.loss(student, teacher, student), expected)


def test_the_loss_is_zero_when_the_student_sees_the_anchors_as_the_teacher_does():
    # equal banks and equal embeddings (up to scale): identical distributions
    torch.manual_seed(0)
    procedure = _procedure(8, 8, queue_size=16).eval()
    procedure.student_bank.memory.copy_(procedure.teacher_bank.memory)
    teacher = torch.randn(4, 8)
    loss = procedure.loss(3 * teacher, teacher, teacher)
    torch.testing.assert_close(loss, torch.tensor(0.0), atol=1e-6, rtol=0)


def test_the_banks_take_the_teacher_and_the_momentum_student_embeddings_in_training_only():
    torch.manual_seed(0)
    procedure = _procedure(3, 5, queue_size=4)
    student, teacher, key = torch.randn(3, 3), torch.randn(3, 5), torch.randn(3, 3)
    procedure.loss(student, teacher, key)
    torch.testing.assert_close(procedure.teacher_bank.memory[:3], F.normalize(teacher, dim=1))
    torch.testing.assert_close(procedure.student_bank.memory[:3], F.normalize(key, dim=1))
    assert int(procedure.teacher_bank.ptr) == 3
    procedure.loss(student, teacher, key)  # wraps around: slots 3, 0, 1
    assert int(procedure.student_bank.ptr) == 2
    before = procedure.teacher_bank.memory.clone()
    procedure.eval().loss(student, teacher, key)
    torch.testing.assert_close(procedure.teacher_bank.memory, before)


def test_the_momentum_student_follows_the_student_by_their_moment_update():
    torch.manual_seed(0)
    procedure = CompRess(student_mlp(), student_mlp(), 64, 64, momentum=0.9)
    x = torch.randn(8, 1, 8, 8)
    procedure.train()(x)
    with torch.no_grad():
        for p in procedure.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in procedure.student_key.parameters()]
    procedure(x)
    for b, k, s in zip(
        before, procedure.student_key.parameters(), procedure.student.parameters(), strict=True
    ):
        torch.testing.assert_close(k, 0.9 * b + 0.1 * s)


def test_distilling_moves_the_student_towards_the_teacher(digits, mlp_teacher):
    subset = digits.with_train_subset(512)
    teacher_embedding = embed(mlp_teacher, digits.x_test)
    torch.manual_seed(1)
    student = student_mlp()
    before = linear_cka(embed(student, digits.x_test), teacher_embedding)
    procedure = CompRess(student, mlp_teacher, 64, 512, queue_size=256, momentum=0.99)
    train(procedure, subset, epochs=4, lr=0.02, batch_size=128, seed=1, device="cpu")
    after = linear_cka(embed(student, digits.x_test), teacher_embedding)
    assert after > before + 0.05, (before, after)


def test_bad_inputs_are_named():
    procedure = _procedure(4, 6)
    with pytest.raises(ValueError, match=r"teacher_embedding must have shape \[B, 6\]"):
        procedure.loss(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"student_key_embedding must have shape \[B, 4\]"):
        procedure.loss(torch.randn(3, 4), torch.randn(3, 6), torch.randn(3, 5))
    with pytest.raises(ValueError, match="temperature must be positive"):
        _procedure(temperature=0.0)
    with pytest.raises(ValueError, match="momentum must lie in"):
        _procedure(momentum=1.5)
