"""DistiLLM's skew reverse KL (Ko et al., 2024): hand value, skew 0, bounded, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.applications.llm import MiniLLMReverseKLLoss, SkewReverseKLLoss
from reference_impls.common.language_models import (
    LMDistiller,
    fit_language_model,
    load_docstrings,
    student_lm,
    teacher_lm,
    token_kl,
)


def _kl(a: list[float], b: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True))


def test_hand_value_at_the_authors_skew():
    student = torch.tensor([[[0.0, math.log(3.0)]]])  # q = [1/4, 3/4]
    teacher = torch.zeros(1, 1, 2)  # p = [1/2, 1/2]
    p, q = [0.5, 0.5], [0.25, 0.75]
    mixture = [0.9 * a + 0.1 * b for a, b in zip(p, q, strict=True)]
    assert SkewReverseKLLoss()(student, teacher).item() == pytest.approx(_kl(q, mixture), rel=1e-6)


def test_skew_0_gives_the_reverse_kl_and_the_skew_bounds_it():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 4, 9, generator=generator, dtype=torch.float64)
    teacher = 3 * torch.randn(2, 4, 9, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(
        SkewReverseKLLoss(skew=0.0)(student, teacher), MiniLLMReverseKLLoss()(student, teacher)
    )
    # q / ((1 - a) p + a q) <= 1 / a: bounded where the teacher has no mass
    student = torch.tensor([[[30.0, 0.0, 0.0]]], dtype=torch.float64)
    teacher = torch.tensor([[[0.0, 30.0, 0.0]]], dtype=torch.float64)
    assert MiniLLMReverseKLLoss()(student, teacher) > 25
    assert SkewReverseKLLoss()(student, teacher) <= math.log(10) + 1e-12


@pytest.mark.parametrize("skew", [-0.1, 1.1])
def test_skew_outside_the_unit_interval_is_a_clear_error(skew):
    with pytest.raises(ValueError, match="skew"):
        SkewReverseKLLoss(skew=skew)


def test_a_distilled_student_moves_toward_the_teacher_more_than_one_trained_on_the_data():
    torch.manual_seed(0)
    teacher = teacher_lm()
    with torch.no_grad():
        teacher.head.weight.mul_(8)
    corpus = load_docstrings().train_subset(64)
    test = corpus.test_tokens[:32], corpus.test_mask[:32]
    kls = {}
    for name in ("data alone", "skew reverse KL"):
        torch.manual_seed(1)
        student = student_lm()
        distiller = LMDistiller(student, teacher, SkewReverseKLLoss())
        custom = None if name == "data alone" else (lambda t, m, r, d=distiller: d(t, m)["loss"])
        fit_language_model(student, corpus, custom, steps=40, batch_size=16, lr=1e-2)
        kls[name] = float(token_kl(student, teacher, *test).sum() / test[1][:, 1:].sum())
    assert kls["skew reverse KL"] < 0.7 * kls["data alone"], kls
