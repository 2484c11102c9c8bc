"""GKD's loss (Agarwal et al., 2024): the generalized JSD, its ends and TRL's conventions."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.applications.llm import GKDLoss, MiniLLMReverseKLLoss, WordLevelKDLoss


def _logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = 2 * torch.randn(3, 6, 17, generator=generator, dtype=torch.float64)
    teacher = 3 * torch.randn(3, 6, 17, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 17, (3, 6), generator=generator)
    labels[:, :2] = -100
    return student, teacher, labels


def test_beta_0_and_1_are_exactly_the_forward_and_reverse_kl():
    student, teacher, labels = _logits()
    assert GKDLoss(beta=0.0)(student, teacher, labels) == WordLevelKDLoss()(
        student, teacher, labels
    )
    assert GKDLoss(beta=1.0)(student, teacher, labels) == MiniLLMReverseKLLoss()(
        student, teacher, labels
    )


def test_hand_value_of_the_generalized_jsd():
    # p = [1/2, 1/2], q = [1/4, 3/4], beta = 0.3: M = 0.3 p + 0.7 q
    student = torch.tensor([[[0.0, math.log(3.0)]]])
    teacher = torch.zeros(1, 1, 2)
    p, q = [0.5, 0.5], [0.25, 0.75]
    m = [0.3 * a + 0.7 * b for a, b in zip(p, q, strict=True)]
    kl_pm = sum(a * math.log(a / c) for a, c in zip(p, m, strict=True))
    kl_qm = sum(b * math.log(b / c) for b, c in zip(q, m, strict=True))
    assert GKDLoss(beta=0.3)(student, teacher).item() == pytest.approx(
        0.3 * kl_pm + 0.7 * kl_qm, rel=1e-6
    )


def test_trl_conventions_mixture_weighted_by_beta_on_the_teacher_and_the_ends_special():
    # TRL generalized_jsd_loss: M = beta * teacher + (1 - beta) * student; a small beta is a
    # scaled forward KL (the formula goes to 0, the special case beta = 0 does not)
    student, teacher, labels = _logits(1)
    forward = WordLevelKDLoss()(student, teacher, labels)
    small = GKDLoss(beta=1e-6)(student, teacher, labels)
    assert small.item() == pytest.approx(1e-6 * forward.item(), rel=0.01)
    reverse = MiniLLMReverseKLLoss()(student, teacher, labels)
    near_one = GKDLoss(beta=1 - 1e-6)(student, teacher, labels)
    assert near_one.item() == pytest.approx(1e-6 * reverse.item(), rel=0.01)
    # at beta = 0.5 it is the Jensen-Shannon divergence, symmetric in student and teacher
    swapped = GKDLoss(beta=0.5)(teacher, student, labels)
    assert GKDLoss(beta=0.5)(student, teacher, labels).item() == pytest.approx(swapped.item())
    assert GKDLoss(beta=0.5)(student, teacher, labels).item() <= math.log(2)


@pytest.mark.parametrize("beta", [-0.1, 1.5, float("nan")])
def test_beta_outside_the_unit_interval_is_a_clear_error(beta):
    with pytest.raises(ValueError, match="beta"):
        GKDLoss(beta=beta)
