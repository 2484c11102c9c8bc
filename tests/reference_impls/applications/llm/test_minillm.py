"""MiniLLM's token-level reverse KL: hand value, mode seeking against the forward KL, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.applications.llm import MiniLLMReverseKLLoss, WordLevelKDLoss


def test_hand_value_is_the_mean_reverse_kl_over_kept_tokens():
    # q = [1/4, 3/4] against p = [1/2, 1/2]: KL(q || p); a second kept token with q = p
    student = torch.tensor([[[0.0, math.log(3.0)], [1.0, 1.0]]])
    teacher = torch.tensor([[[0.0, 0.0], [2.0, 2.0]]])
    mask = torch.tensor([[True, True]])
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    value = MiniLLMReverseKLLoss()(student, teacher, attention_mask=mask)
    assert value.item() == pytest.approx(kl / 2, rel=1e-6)


def test_it_is_the_cross_entropy_to_the_teacher_minus_the_students_entropy_as_in_lmops():
    # Loss._reg_loss: get_x_entropy(student, teacher) - get_entropy(student)
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(3, 7, 13, generator=generator, dtype=torch.float64)
    teacher = 3 * torch.randn(3, 7, 13, generator=generator, dtype=torch.float64)
    q, log_p = student.softmax(-1), teacher.log_softmax(-1)
    cross_entropy = -(q * log_p).sum(-1)
    entropy = -(q * q.log()).sum(-1)
    expected = (cross_entropy - entropy).mean()
    assert MiniLLMReverseKLLoss()(student, teacher).item() == pytest.approx(expected.item(), 1e-10)


def _fit_unimodal_student(loss: torch.nn.Module, start: float) -> tuple[float, float]:
    """A discretised Gaussian student (mean, log-width) fitted to a two-peaked teacher."""
    words = torch.arange(21, dtype=torch.float64)
    peaks = torch.logsumexp(torch.stack([-((words - 5) ** 2), -((words - 15) ** 2)]), dim=0)
    teacher = (2 * peaks).view(1, 1, -1)
    mean = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    log_width = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([mean, log_width], lr=0.05)
    for _ in range(600):
        student = (-((words - mean) ** 2) / (2 * log_width.exp() ** 2)).view(1, 1, -1)
        value = loss(student, teacher)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return mean.item(), log_width.exp().item()


def test_reverse_kl_seeks_one_mode_where_forward_kl_covers_both():
    # the paper's Figure 2 argument: KL(q||p) is mode seeking, KL(p||q) mass covering
    reverse_mean, reverse_width = _fit_unimodal_student(MiniLLMReverseKLLoss(), start=7.0)
    forward_mean, forward_width = _fit_unimodal_student(WordLevelKDLoss(), start=7.0)
    assert abs(reverse_mean - 5.0) < 0.5 and reverse_width < 1.5
    assert abs(forward_mean - 10.0) < 0.5 and forward_width > 4.0


def test_a_distilled_student_moves_toward_the_teacher_more_than_one_trained_on_the_data(
    distillation_run,
):
    kls = distillation_run(MiniLLMReverseKLLoss)
    assert kls["distilled"] < 0.7 * kls["data alone"], kls
