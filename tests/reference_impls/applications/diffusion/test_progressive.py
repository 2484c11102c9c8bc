"""Progressive distillation: the target by hand, the N-step student equal to the 2N-step
teacher at the optimum, the truncated-SNR weighting, rounds, a seeded training effect, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reference_impls.applications.diffusion import ProgressiveDistillation
from reference_impls.common.diffusion import (
    SIGMA_MAX,
    SIGMA_MIN,
    Denoiser,
    cosine_sigma,
    ddim_sample,
    energy_distance,
    fit,
    load_ring,
    trainable_copy,
)

from .conftest import ConstantDenoiser


def draws(batch: int, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The step indices and noise ``forward`` draws under ``seed`` (in its order)."""
    torch.manual_seed(seed)
    step = torch.randint(0, steps, (batch,))
    return step, torch.randn(batch, 2)


def test_loss_by_hand_with_constant_denoisers():
    # a constant teacher c: two DDIM steps land at c + (sigma''/sigma)(x_t - c), so the
    # implied target is c itself; a constant student d: x_mse = (d - c)^2, eps_mse = x_mse/sigma^2
    procedure = ProgressiveDistillation(ConstantDenoiser(0.5), teacher_steps=8)
    procedure.student = ConstantDenoiser(-0.25)
    x0 = torch.tensor([[0.1, 0.2], [0.3, -0.4], [0.0, 0.7]])
    torch.manual_seed(3)
    terms = procedure(x0)
    step, _ = draws(3, 4, seed=3)
    sigma = torch.tan(
        math.atan(SIGMA_MIN) + (math.atan(SIGMA_MAX) - math.atan(SIGMA_MIN)) * (step + 1) / 4
    )
    x_mse = torch.full((3,), 0.75**2)
    expected = torch.maximum(x_mse, x_mse / sigma**2).mean()
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["x_mse"].item() == pytest.approx(0.5625, rel=1e-6)


def test_target_by_hand_for_a_linear_teacher():
    # D(x) = a x: a DDIM step from s to s' multiplies x by a + (s'/s)(1 - a)
    a = 0.3

    class Linear(ConstantDenoiser):
        def forward(self, x, sigma):
            return a * x

    procedure = ProgressiveDistillation(Linear(0.0), teacher_steps=4).double()
    x_t = torch.tensor([[1.0, -2.0], [0.5, 0.25]], dtype=torch.float64)
    step = torch.tensor([1, 0])
    u = (step.double() + 1) / 2
    s, s_mid, s_next = (cosine_sigma(u - k / 4) for k in range(3))
    k1 = a + s_mid / s * (1 - a)
    k2 = a + s_next / s_mid * (1 - a)
    ratio = s_next / s
    implied = (k2 * k1 - ratio) / (1 - ratio)
    expected_scale = torch.where(step == 0, a * k1, implied)  # at i = 0: D at the middle point
    torch.testing.assert_close(procedure.target(x_t, step), expected_scale[:, None] * x_t)


class Oracle(nn.Module):
    """A student that predicts exactly the progressive-distillation target (the optimum)."""

    def __init__(self, procedure: ProgressiveDistillation) -> None:
        super().__init__()
        self.__dict__["procedure"] = procedure  # not a submodule: no cycle when it is the student
        self.dim = 2

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        low, high = math.atan(SIGMA_MIN), math.atan(SIGMA_MAX)
        u = (torch.atan(sigma.double()) - low) / (high - low)
        step = (u * self.procedure.student_steps).round().long() - 1
        return self.procedure.target(x, step)


def test_the_optimal_student_takes_in_n_steps_what_the_teacher_takes_in_2n():
    torch.manual_seed(0)
    teacher = Denoiser(hidden=(16, 16)).double()
    procedure = ProgressiveDistillation(teacher, teacher_steps=8)
    noise = torch.randn(64, 2, dtype=torch.float64)
    student_samples = ddim_sample(Oracle(procedure), noise, 4)
    torch.testing.assert_close(student_samples, ddim_sample(teacher, noise, 8))
    assert not torch.allclose(ddim_sample(teacher, noise, 4), ddim_sample(teacher, noise, 8))
    procedure.student = Oracle(procedure)
    assert procedure(torch.randn(32, 2, dtype=torch.float64))["loss"].item() < 1e-18


def test_weightings():
    procedure = ProgressiveDistillation(ConstantDenoiser(0.5), teacher_steps=8, weighting="snr")
    procedure.student = ConstantDenoiser(-0.25)
    x0 = torch.zeros(16, 2)
    torch.manual_seed(1)
    terms = procedure(x0)
    assert terms["loss"].item() == pytest.approx(terms["eps_mse"].item(), rel=1e-6)
    procedure.weighting = "constant"
    torch.manual_seed(1)
    assert procedure(x0)["loss"].item() == pytest.approx(0.5625, rel=1e-6)


def test_rounds_halve_the_steps_and_the_student_becomes_the_teacher():
    torch.manual_seed(0)
    procedure = ProgressiveDistillation(Denoiser(hidden=(8,)), teacher_steps=4)
    assert procedure.student_steps == 2
    with torch.no_grad():
        procedure.student.network[0].bias.add_(1.0)
    procedure.next_round()
    assert procedure.student_steps == 1
    assert not any(p.requires_grad for p in procedure.teacher.parameters())
    torch.testing.assert_close(procedure.teacher.state_dict(), procedure.student.state_dict())
    assert procedure.teacher is not procedure.student
    with pytest.raises(ValueError, match="one step"):
        procedure.next_round()
    restored = ProgressiveDistillation(Denoiser(hidden=(8,)), teacher_steps=4)
    restored.load_state_dict(procedure.state_dict())
    assert restored.student_steps == 1


def test_the_distilled_student_beats_the_teacher_at_the_same_number_of_steps(
    small_teacher, noise, ring_truth
):
    procedure = ProgressiveDistillation(small_teacher, teacher_steps=8)
    fit(procedure, load_ring(seed=0).x_train, steps=400, lr=1e-3)
    student = energy_distance(ddim_sample(procedure.student, noise, 4), ring_truth)
    teacher_same_nfe = energy_distance(ddim_sample(small_teacher, noise, 4), ring_truth)
    teacher_8 = energy_distance(ddim_sample(small_teacher, noise, 8), ring_truth)
    assert student < 0.5 * teacher_same_nfe, (student, teacher_same_nfe, teacher_8)


def test_bad_inputs():
    teacher = ConstantDenoiser(0.0)
    with pytest.raises(ValueError, match="teacher_steps must be even"):
        ProgressiveDistillation(teacher, teacher_steps=5)
    with pytest.raises(ValueError, match="teacher_steps must be at least 2"):
        ProgressiveDistillation(teacher, teacher_steps=0)
    with pytest.raises(ValueError, match="weighting must be one of"):
        ProgressiveDistillation(teacher, weighting="v")
    procedure = ProgressiveDistillation(Denoiser(hidden=(8,)), teacher_steps=4)
    with pytest.raises(ValueError, match=r"x0 must be data points of shape \[B, 2\]"):
        procedure(torch.zeros(4, 3))
    assert trainable_copy(procedure.teacher).network[0].weight.requires_grad
