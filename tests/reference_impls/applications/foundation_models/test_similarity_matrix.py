"""Relational similarity-matrix loss: a hand value, invariances, bad input (training: test_embedding_mse.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reference_impls.applications.foundation_models.similarity_matrix import SimilarityMatrixLoss


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(8, 6, generator=generator)
    teacher = F.normalize(torch.randn(8, 6, generator=generator), dim=1)
    return student, teacher


def test_similarity_matrix_hand_value():
    # student: two orthogonal rows (cosine 0); teacher: two equal rows (cosine 1)
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    teacher = torch.tensor([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0]])
    # off-diagonal differences (0 - 1)^2 twice, diagonals agree; / B^2 = 4
    assert SimilarityMatrixLoss(gamma=3.0)(student, teacher).item() == pytest.approx(3.0 * 2 / 4)


def test_similarity_matrix_is_invariant_to_rotations_and_scales_of_either_space(pair):
    # relations only: rotating or rescaling the teacher's space changes nothing
    student, teacher = pair
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(3)))
    loss = SimilarityMatrixLoss()
    torch.testing.assert_close(loss(student, 5 * teacher @ rotation), loss(student, teacher))
    assert loss(teacher @ rotation, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_bad_inputs_name_the_argument(pair):
    student, teacher = pair
    with pytest.raises(ValueError, match="student must have shape"):
        SimilarityMatrixLoss()(student[None], teacher)
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        SimilarityMatrixLoss()(student[:1], teacher[:1])
    with pytest.raises(ValueError, match="gamma must be non-negative"):
        SimilarityMatrixLoss(gamma=-1.0)
