"""DistiLLM's skew KL (Ko et al., 2024): hand value, skew 0, bounded ratio and gradient, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.applications.llm import (
    MiniLLMReverseKLLoss,
    SkewKLLoss,
    SkewReverseKLLoss,
    WordLevelKDLoss,
)


def _kl(a: list[float], b: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True))


def test_hand_values_at_the_authors_skew():
    student = torch.tensor([[[0.0, math.log(3.0)]]])  # q = [1/4, 3/4]
    teacher = torch.zeros(1, 1, 2)  # p = [1/2, 1/2]
    p, q = [0.5, 0.5], [0.25, 0.75]
    skew_mixture = [0.1 * a + 0.9 * b for a, b in zip(p, q, strict=True)]
    reverse_mixture = [0.9 * a + 0.1 * b for a, b in zip(p, q, strict=True)]
    assert SkewKLLoss()(student, teacher).item() == pytest.approx(_kl(p, skew_mixture), rel=1e-6)
    assert SkewReverseKLLoss()(student, teacher).item() == pytest.approx(
        _kl(q, reverse_mixture), rel=1e-6
    )


def test_skew_0_gives_the_forward_and_reverse_kl():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 4, 9, generator=generator, dtype=torch.float64)
    teacher = 3 * torch.randn(2, 4, 9, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(
        SkewKLLoss(skew=0.0)(student, teacher), WordLevelKDLoss()(student, teacher)
    )
    torch.testing.assert_close(
        SkewReverseKLLoss(skew=0.0)(student, teacher), MiniLLMReverseKLLoss()(student, teacher)
    )


def test_the_skew_bounds_the_divergence_and_its_gradient_where_the_plain_kls_explode():
    # the paper's motivation (Theorem 1): p / (a p + (1-a) q) <= 1 / a, so SKL <= log(1/a)
    student = torch.tensor([[[30.0, 0.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    teacher = torch.tensor([[[0.0, 30.0, 0.0]]], dtype=torch.float64)
    skew = SkewKLLoss()(student, teacher)
    assert WordLevelKDLoss()(student, teacher) > 25
    assert skew <= math.log(10) + 1e-12
    (gradient,) = torch.autograd.grad(skew, student)
    (plain,) = torch.autograd.grad(WordLevelKDLoss()(student, teacher), student)
    assert gradient.abs().max() < plain.abs().max()
    assert SkewReverseKLLoss()(teacher.clone(), student.detach()) <= math.log(10) + 1e-12


@pytest.mark.parametrize("skew", [-0.1, 1.1])
def test_skew_outside_the_unit_interval_is_a_clear_error(skew):
    with pytest.raises(ValueError, match="skew"):
        SkewKLLoss(skew=skew)
    with pytest.raises(ValueError, match="skew"):
        SkewReverseKLLoss(skew=skew)


def test_a_distilled_student_moves_toward_the_teacher_more_than_one_trained_on_the_data(
    distillation_run,
):
    kls = distillation_run(SkewKLLoss)
    assert kls["distilled"] < 0.7 * kls["data alone"], kls
