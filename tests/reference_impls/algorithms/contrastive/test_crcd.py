"""CRCD (Zhu et al., 2021): a hand value, relations to anchors, the schedule, training, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.algorithms.contrastive.crcd import RELATION_DELTA, CRCDLoss
from reference_impls.common import linear_cka, train
from reference_impls.common.testing import digits_student_pair
from reference_impls.schemes.offline.distiller import OfflineDistiller


def identity_loss(temperature: float = 0.5) -> CRCDLoss:
    """2-d embeddings and space, identity heads, unit memory rows chosen by hand."""
    loss = CRCDLoss(2, 2, 4, feature_dim=2, num_negatives=1, temperature=temperature)
    with torch.no_grad():
        for head in (loss.student_head, loss.teacher_head):
            head.linear.weight.copy_(torch.eye(2))
            head.linear.bias.zero_()
        loss.teacher_memory.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
        loss.student_memory.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    return loss


def unit(vector: tuple[float, float]) -> tuple[float, float]:
    """The relation's normalisation, with the authors' delta added to each coordinate."""
    shifted = (vector[0] + RELATION_DELTA, vector[1] + RELATION_DELTA)
    norm = math.hypot(*shifted)
    return shifted[0] / norm, shifted[1] / norm


def dot(a: tuple[float, float], b: tuple[float, float]) -> float:
    return a[0] * b[0] + a[1] * b[1]


def test_hand_computed_value_one_sample_its_own_anchor():
    # B = 1: the anchor is the sample's own memory entry. Student side: s = (0, 1), anchor
    # t0 = (1, 0): relation s - t0 = (-1, 1); the positive relation t0 - t0 = 0 (+ delta),
    # the negative t1 - t0 = (-1, 1). Teacher side: t = (1, 0), anchor s0 = (0, 1): relation
    # (1, -1); positive s0 - s0 = 0, negative s1 - s0 = (1, -1).
    loss = identity_loss()
    value = loss(
        torch.tensor([[0.0, 1.0]]),
        torch.tensor([[1.0, 0.0]]),
        torch.tensor([0]),
        torch.tensor([[0, 1]]),
    )
    tau, n, eps = 0.5, 4, 1e-7
    noise = 1 / n

    def side(query, positive, negative):
        scores = [
            math.exp(dot(unit(query), unit(positive)) / tau),
            math.exp(dot(unit(query), unit(negative)) / tau),
        ]
        z = n * sum(scores) / 2  # Z from the first batch
        p, q = scores[0] / z, scores[1] / z
        return -(math.log(p / (p + noise + eps)) + math.log(noise / (q + noise + eps)))

    expected = side((-1.0, 1.0), (0.0, 0.0), (-1.0, 1.0)) + side(
        (1.0, -1.0), (0.0, 0.0), (1.0, -1.0)
    )
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_relations_are_contrasted_over_every_sample_and_anchor_pair():
    loss = CRCDLoss(3, 5, 30, num_negatives=7, feature_dim=4)
    student, teacher = loss.student_head(torch.randn(6, 3)), loss.teacher_head(torch.randn(6, 5))
    index = torch.arange(6)
    contrast = torch.randint(0, 30, (6, 8))
    contrast[:, 0] = index
    student_side, teacher_side = loss.contrast_scores(student, teacher, index, contrast)
    assert student_side.shape == teacher_side.shape == (36, 8)  # B^2 (sample, anchor) rows
    # row (sample 2, anchor 4): relation of the student to the teacher's entry of sample 4
    anchor = loss.teacher_memory[4]
    query = torch.nn.functional.normalize(student[2] - anchor + RELATION_DELTA, dim=0)
    keys = torch.nn.functional.normalize(
        loss.teacher_memory[contrast[2]] - anchor + RELATION_DELTA, dim=1
    )
    torch.testing.assert_close(student_side[2 * 6 + 4], (keys @ query / loss.temperature).exp())


def test_a_student_whose_relations_match_the_teachers_scores_lower():
    # the paper's point: what is matched is the relation to an anchor; a student lying where
    # the teacher's entry of its own sample lies reproduces the teacher's relations exactly
    loss = CRCDLoss(2, 2, 4, feature_dim=2, num_negatives=2, temperature=0.5).eval()
    with torch.no_grad():
        for head in (loss.student_head, loss.teacher_head):
            head.linear.weight.copy_(torch.eye(2))
            head.linear.bias.zero_()
    loss.normalizers.fill_(8.0)
    teacher_memory = loss.teacher_memory
    index, contrast = torch.tensor([0, 1]), torch.tensor([[0, 2, 3], [1, 2, 3]])
    teacher = torch.randn(2, 2)
    own = loss(teacher_memory[[0, 1]].clone(), teacher, index, contrast)
    swapped = loss(teacher_memory[[2, 3]].clone(), teacher, index, contrast)
    assert own < swapped


def test_memory_starts_normalised_unlike_crds():
    loss = CRCDLoss(4, 4, 50, num_negatives=10)
    torch.testing.assert_close(loss.student_memory.norm(dim=1), torch.ones(50))
    torch.testing.assert_close(loss.teacher_memory.norm(dim=1), torch.ones(50))


def test_the_schedule_switches_the_term_off_for_the_last_epochs_but_keeps_the_memory_moving():
    loss = identity_loss()
    arguments = (torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    loss.on_epoch_start(239, 250)
    assert loss(*arguments, torch.tensor([[0, 1]])).item() > 0
    loss.on_epoch_start(240, 250)  # the authors' "240" schedule: 10 of 250 epochs without
    memory = loss.student_memory.clone()
    assert loss(*arguments, torch.tensor([[0, 1]])).item() == 0.0
    assert not torch.equal(loss.student_memory, memory)
    always = CRCDLoss(2, 2, 4, feature_dim=2, num_negatives=1, distill_fraction=1.0)
    always.on_epoch_start(249, 250)
    assert always.distilling


def test_crcd_alone_without_labels_moves_the_students_embeddings_toward_the_teachers():
    # no cross-entropy, uniform negatives; the same-seed untrained student is the baseline
    data, teacher, student, baseline = digits_student_pair(seed=0)
    data = data.with_train_subset(200)
    loss = CRCDLoss(student.embedding_dim, teacher.embedding_dim, 200, num_negatives=32)
    distiller = OfflineDistiller(student, teacher, loss, ce_weight=0.0)
    train(distiller, data, epochs=3, batch_size=25, seed=0, device="cpu")
    student.eval(), baseline.eval()
    with torch.no_grad():
        target = teacher(data.x_test).embedding
        distilled = linear_cka(student(data.x_test).embedding, target)
        untrained = linear_cka(baseline(data.x_test).embedding, target)
    assert distilled > untrained + 0.1


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="distill_fraction"):
        CRCDLoss(4, 4, 50, num_negatives=10, distill_fraction=1.5)
    with pytest.raises(ValueError, match=r"memory bank \(num_samples=100\).*num_negatives=500"):
        CRCDLoss(4, 4, 100)
    loss = CRCDLoss(4, 4, 50, num_negatives=10)
    with pytest.raises(ValueError, match=r"index must lie in \[0, 50\)"):
        loss(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([0, 50]))
