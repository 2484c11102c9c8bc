"""The shared softened KL: hand values, reductions, precision policy, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common.losses import (
    at_least_float32,
    kl_divergence,
    softened_kl,
    softened_log_probs,
)


def _softmax(row: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_kl(student: list[float], teacher: list[float], temperature: float) -> float:
    p_s, p_t = _softmax(student, temperature), _softmax(teacher, temperature)
    return sum(t * math.log(t / s) for s, t in zip(p_s, p_t, strict=True))


def test_softened_kl_matches_a_hand_computed_value():
    student = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    teacher = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    tau = 2.0
    expected = tau**2 * sum(_hand_kl(s, t, tau) for s, t in zip(student, teacher, strict=True)) / 2
    got = softened_kl(torch.tensor(student), torch.tensor(teacher), tau)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_reductions_agree_with_each_other():
    torch.manual_seed(0)
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    per_row = softened_kl(s, t, 3.0, reduction="none")
    assert per_row.shape == (6,)
    assert softened_kl(s, t, 3.0, reduction="sum") == pytest.approx(per_row.sum().item())
    assert softened_kl(s, t, 3.0) == pytest.approx(per_row.mean().item())


def test_token_logits_average_over_every_position():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    flat = softened_kl(s.reshape(10, 7), t.reshape(10, 7), 1.5)
    assert softened_kl(s, t, 1.5).item() == pytest.approx(flat.item(), rel=1e-6)
    assert softened_kl(s, t, 1.5, reduction="none").shape == (2, 5)


def test_equal_distributions_give_zero_and_the_teacher_gets_no_gradient():
    teacher = torch.randn(4, 5, requires_grad=True)
    student = teacher.detach().clone().requires_grad_(True)
    value = softened_kl(student, teacher, 4.0)
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    (softened_kl(student + torch.randn(4, 5), teacher, 4.0)).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_gradient_is_softmax_difference_over_tau_times_batch():
    # d/dz_s of tau^2 KL(p_t || p_s) / B = tau (p_s - p_t) / B  (Hinton et al., section 2)
    torch.manual_seed(1)
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4)
    tau = 2.5
    softened_kl(s, t, tau).backward()
    expected = tau * (torch.softmax(s.detach() / tau, 1) - torch.softmax(t / tau, 1)) / 3
    torch.testing.assert_close(s.grad, expected)


def test_half_precision_is_computed_in_float32_and_double_keeps_its_precision():
    assert at_least_float32(torch.zeros(1, dtype=torch.bfloat16)).dtype == torch.float32
    assert at_least_float32(torch.zeros(1, dtype=torch.float16)).dtype == torch.float32
    assert at_least_float32(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64
    s = torch.randn(2, 3, dtype=torch.bfloat16)
    assert softened_log_probs(s, 2.0).dtype == torch.float32
    assert softened_kl(s, s.float(), 2.0).dtype == torch.float32
    assert softened_kl(s.double(), s.double(), 2.0).dtype == torch.float64


def test_per_sample_temperatures_broadcast():
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    temperatures = torch.tensor([[1.0], [2.0], [4.0]])
    rows = kl_divergence(
        softened_log_probs(s, temperatures), softened_log_probs(t, temperatures), "none"
    )
    for i, tau in enumerate([1.0, 2.0, 4.0]):
        one = softened_kl(s[i : i + 1], t[i : i + 1], tau) / tau**2
        assert rows[i].item() == pytest.approx(one.item(), rel=1e-5)


def test_an_unknown_reduction_is_refused():
    with pytest.raises(ValueError, match="reduction must be one of"):
        softened_kl(torch.zeros(1, 2), torch.zeros(1, 2), 1.0, reduction="mean")
