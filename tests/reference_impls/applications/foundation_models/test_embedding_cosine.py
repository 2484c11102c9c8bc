"""Embedding cosine: a hand value, scale invariance, bad input (training: test_embedding_mse.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.applications.foundation_models.embedding_cosine import EmbeddingCosineLoss


def test_cosine_hand_value():
    student = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = ((1 - 1 / math.sqrt(2)) + (1 - 1.0)) / 2
    assert EmbeddingCosineLoss(2, 2)(student, teacher).item() == pytest.approx(expected)


def test_only_directions_count():
    student = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    teacher = F.normalize(torch.randn(5, 3, generator=torch.Generator().manual_seed(2)), dim=1)
    loss = EmbeddingCosineLoss(3, 3)
    torch.testing.assert_close(loss(7 * student, teacher), loss(student, teacher))
    assert loss(2 * teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="teacher must have shape \\[4, 3\\]"):
        EmbeddingCosineLoss(3, 3)(torch.zeros(4, 3), torch.zeros(2, 3))
