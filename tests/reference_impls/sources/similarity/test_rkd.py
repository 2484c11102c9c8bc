"""RKD (Park et al., 2019): contract, paper properties, a hand value, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common import train
from reference_impls.common.testing import check_loss_contract, digits_student_pair
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.similarity.rkd import RKDLoss


@pytest.fixture
def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    # student and teacher widths differ: RKD compares relations, not coordinates
    generator = torch.Generator().manual_seed(0)
    return torch.randn(12, 32, generator=generator), torch.randn(12, 128, generator=generator)


def test_contract_without_normalisation(embeddings):
    check_loss_contract(RKDLoss(normalize_embeddings=False), *embeddings)


def test_zero_when_student_equals_teacher(embeddings):
    _, teacher = embeddings
    assert RKDLoss()(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("normalize", [True, False])
def test_invariant_to_scale_and_rotation_of_the_embedding_space(embeddings, normalize):
    student, teacher = embeddings
    rotation, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(1)))
    loss = RKDLoss(normalize_embeddings=normalize)
    moved = loss(7.5 * student @ rotation, teacher)
    torch.testing.assert_close(moved, loss(student, teacher), rtol=1e-4, atol=1e-5)


def test_zero_for_a_scaled_rotated_copy_of_the_teacher():
    # without per-example normalisation, a similarity transform keeps every distance ratio and angle
    teacher = torch.randn(10, 6, generator=torch.Generator().manual_seed(2))
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(3)))
    student = 0.3 * teacher @ rotation + 4.0
    value = RKDLoss(normalize_embeddings=False)(student, teacher)
    assert value.item() == pytest.approx(0.0, abs=1e-5)


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def test_hand_computed_value():
    # student triangle (0,0), (1,0), (0,1); teacher triangle (0,0), (1,0), (0,2)
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    # distances (pairs 01, 02, 12) over their mean across the 6 ordered distinct pairs
    d_s = [1.0, 1.0, math.sqrt(2.0)]
    d_t = [1.0, 2.0, math.sqrt(5.0)]
    psi_s = [d / (sum(d_s) / 3) for d in d_s]
    psi_t = [d / (sum(d_t) / 3) for d in d_t]
    # each off-diagonal entry appears twice among the 9 entries; the diagonal is 0 for both
    distance_term = 2 * sum(huber(a - b) for a, b in zip(psi_s, psi_t, strict=True)) / 9
    # angle cosines at each vertex: student 0, sqrt(2)/2, sqrt(2)/2; teacher 0, 1/sqrt5, 2/sqrt5.
    # Of the 27 entries, the 6 with two distinct other points differ (each angle twice);
    # entries i == k != j are 1 for both, entries touching the vertex are 0 for both.
    cos_s = [0.0, math.sqrt(2.0) / 2, math.sqrt(2.0) / 2]
    cos_t = [0.0, 1 / math.sqrt(5.0), 2 / math.sqrt(5.0)]
    angle_term = 2 * sum(huber(a - b) for a, b in zip(cos_s, cos_t, strict=True)) / 27
    value = RKDLoss(normalize_embeddings=False)(student, teacher)
    assert value.item() == pytest.approx(25 * distance_term + 50 * angle_term, rel=1e-5)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="non-negative"):
        RKDLoss(lambda_distance=-1.0)
    with pytest.raises(ValueError, match="at least 2"):
        RKDLoss()(torch.randn(1, 4), torch.randn(1, 8))
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        RKDLoss()(torch.randn(4, 2, 2), torch.randn(4, 8))


@torch.no_grad()
def held_out_rkd(student, teacher, x) -> float:
    student.eval()
    return RKDLoss()(student(x).embedding, teacher(x).embedding).item()


def test_training_moves_student_toward_teacher():
    data, teacher, student, baseline = digits_student_pair()
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), data, **kwargs)
    train(OfflineDistiller(student, teacher, RKDLoss()), data, **kwargs)
    # the relational distance itself, measured on the held-out split
    distilled = held_out_rkd(student, teacher, data.x_test)
    assert distilled < 0.6 * held_out_rkd(baseline, teacher, data.x_test)
