"""SEED: the similarity distributions by hand, the queue, and a short distillation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reference_impls.applications.self_supervised.seed import SEED, SEEDLoss
from reference_impls.common.augmentations import embed
from reference_impls.common.models import student_mlp
from reference_impls.common.training import linear_cka, train


def test_value_by_hand_with_a_queue_of_two():
    loss = SEEDLoss(
        2, 2, queue_size=2, student_temperature=0.5, teacher_temperature=0.25, mlp=False
    )
    loss.queue.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # columns: e1, e2
    student = torch.tensor([[3.0, 4.0]])  # normalised: (0.6, 0.8)
    teacher = torch.tensor([[0.0, 2.0]])  # normalised: (0, 1)
    # entries: the teacher embedding itself, then the queue
    student_sims = torch.tensor([0.8, 0.6, 0.8]) / 0.5
    teacher_sims = torch.tensor([1.0, 0.0, 1.0]) / 0.25
    expected = -(torch.softmax(teacher_sims, 0) * torch.log_softmax(student_sims, 0)).sum()
    torch.testing.assert_close(loss(student, teacher), expected)


def test_the_queue_holds_the_latest_normalised_teacher_embeddings_and_wraps_around():
    torch.manual_seed(0)
    loss = SEEDLoss(4, 3, queue_size=5)
    first, second = torch.randn(3, 3), torch.randn(4, 3)
    loss(torch.randn(3, 4), first)
    loss(torch.randn(4, 4), second)
    keys = F.normalize(torch.cat([first, second]), dim=1)  # 7 keys into 5 slots
    torch.testing.assert_close(loss.queue.T, keys[[5, 6, 2, 3, 4]])
    assert int(loss.queue_ptr) == 2
    before = loss.queue.clone()
    loss.eval()(torch.randn(3, 4), torch.randn(3, 3))
    torch.testing.assert_close(loss.queue, before)  # no update in eval mode
    fresh = SEEDLoss(4, 3, queue_size=7).queue  # starts as unit columns of Gaussian noise
    torch.testing.assert_close(fresh.norm(dim=0), torch.ones(7))


def test_a_tiny_teacher_temperature_makes_it_contrastive_with_the_teacher_as_positive():
    # tau_T -> 0: the teacher's distribution is one-hot on itself (cosine 1 beats the queue),
    # and the loss is InfoNCE with z_T the positive and the queue the negatives
    torch.manual_seed(0)
    loss = SEEDLoss(8, 8, queue_size=16, mlp=False).eval()
    student, teacher = torch.randn(4, 8), torch.randn(4, 8)
    s, t = F.normalize(student, dim=1), F.normalize(teacher, dim=1)
    logits = torch.cat([(s * t).sum(1, keepdim=True), s @ loss.queue], dim=1) / 0.2
    info_nce = F.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(loss(student, teacher), info_nce)


def test_distilling_moves_the_student_towards_the_teacher(digits, mlp_teacher):
    subset = digits.with_train_subset(512)
    teacher_embedding = embed(mlp_teacher, digits.x_test)
    torch.manual_seed(1)
    untrained = student_mlp()
    before = linear_cka(embed(untrained, digits.x_test), teacher_embedding)
    procedure = SEED(untrained, mlp_teacher, 64, 512, queue_size=256)
    train(procedure, subset, epochs=4, lr=0.1, batch_size=128, seed=1, device="cpu")
    after = linear_cka(embed(untrained, digits.x_test), teacher_embedding)
    assert after > before + 0.05, (before, after)


def test_the_similarities_stay_float32_under_autocast():
    torch.manual_seed(0)
    loss = SEEDLoss(8, 8, queue_size=16).eval()
    student, teacher = torch.randn(4, 8), torch.randn(4, 8)
    reference = loss(student, teacher)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(student, teacher)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, reference, rtol=0.05, atol=0.05)
    assert SEEDLoss(8, 8).double()(student.double(), teacher.double()).dtype == torch.float64


def test_bad_inputs_are_named():
    loss = SEEDLoss(4, 6)
    with pytest.raises(ValueError, match=r"student_embedding must have shape \[B, 4\]"):
        loss(torch.randn(3, 5), torch.randn(3, 6))
    with pytest.raises(ValueError, match=r"teacher_embedding must have shape \[B, 6\]"):
        loss(torch.randn(3, 4), torch.randn(3))
    with pytest.raises(ValueError, match="must embed the same images"):
        loss(torch.randn(3, 4), torch.randn(2, 6))
    with pytest.raises(ValueError, match="teacher_temperature must be positive"):
        SEEDLoss(4, 6, teacher_temperature=0)
    with pytest.raises(ValueError, match="queue_size must be at least 1"):
        SEEDLoss(4, 6, queue_size=0)
