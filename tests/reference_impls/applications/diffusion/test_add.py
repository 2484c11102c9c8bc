"""ADD: the distillation and discriminator terms by hand, the generator's adversarial term
reaches no discriminator parameter, a seeded training effect, bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reference_impls.applications.diffusion import AdversarialDiffusionDistillation
from reference_impls.applications.diffusion.add import PointDiscriminator
from reference_impls.common.diffusion import (
    SIGMA_MAX,
    Denoiser,
    consistency_sample,
    ddim_sample,
    energy_distance,
    fit,
    karras_sigmas,
    load_ring,
)

from .conftest import ConstantDenoiser


class Linear(nn.Module):
    """D(x) = w . x + b, a discriminator whose logits and input gradient are known."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0, -1.0]))
        self.b = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.b


def test_distillation_loss_by_hand():
    procedure = AdversarialDiffusionDistillation(ConstantDenoiser(0.25))
    samples = torch.tensor([[1.0, 0.0], [0.5, -0.5]])
    torch.manual_seed(0)
    loss = procedure.distillation_loss(samples)
    torch.manual_seed(0)
    sigma = karras_sigmas(1000).float()[torch.randint(0, 1000, (2,))]
    expected = ((1 + sigma**2).rsqrt() * (samples - 0.25).pow(2).mean(1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_discriminator_loss_by_hand():
    procedure = AdversarialDiffusionDistillation(
        ConstantDenoiser(0.0), discriminator=Linear(), r1_weight=0.1
    )
    real = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # logits 2.5, -0.5: hinge 0 and 1.5
    fake = torch.tensor([[0.0, 0.0], [-1.0, 0.0]])  # logits 0.5, -1.5: hinge 1.5 and 0
    # R1: |grad_x D|^2 = |w|^2 = 5 for every point
    expected = 1.5 / 2 + 1.5 / 2 + 0.1 * 5
    assert procedure.discriminator_loss(real, fake).item() == pytest.approx(expected)


def test_the_generator_term_does_not_train_the_discriminator():
    torch.manual_seed(0)
    procedure = AdversarialDiffusionDistillation(
        Denoiser(hidden=(8,)), discriminator=Linear(), r1_weight=0.0, distillation_weight=0.0
    )
    x0 = torch.randn(16, 2)
    torch.manual_seed(1)
    terms = procedure(x0)
    terms["loss"].backward()
    # the discriminator's gradient is that of its own hinge loss alone
    gradient = procedure.discriminator.w.grad.clone()
    procedure.zero_grad()
    torch.manual_seed(1)
    which = torch.randint(0, 4, (16,))
    sigma = procedure.student_sigmas[which]
    fake = procedure.student(x0 + sigma[:, None] * torch.randn_like(x0), sigma)
    procedure.discriminator_loss(x0, fake).backward()
    torch.testing.assert_close(gradient, procedure.discriminator.w.grad)
    assert procedure.student.network[0].weight.grad is None  # the hinge reads detached samples


def test_the_student_beats_the_teacher_at_the_same_nfe(small_teacher, noise, ring_truth):
    procedure = AdversarialDiffusionDistillation(small_teacher)
    fit(procedure, load_ring(seed=0).x_train, steps=300, lr=1e-4)
    one_step = procedure.student(noise * SIGMA_MAX, torch.full((len(noise),), SIGMA_MAX))
    student = energy_distance(one_step.detach(), ring_truth)
    teacher = energy_distance(ddim_sample(small_teacher, noise, 1), ring_truth)
    assert student < 0.5 * teacher, (student, teacher)
    four = consistency_sample(procedure.student, noise, procedure.student_sigmas.tolist())
    assert torch.isfinite(four).all()


def test_bad_inputs():
    teacher = ConstantDenoiser(0.0)
    with pytest.raises(ValueError, match="student_steps must be at least 1"):
        AdversarialDiffusionDistillation(teacher, student_steps=0)
    with pytest.raises(ValueError, match="distillation_weight must be non-negative"):
        AdversarialDiffusionDistillation(teacher, distillation_weight=-1.0)
    with pytest.raises(ValueError, match=r"x0 must be data points of shape \[B, 2\]"):
        AdversarialDiffusionDistillation(Denoiser(hidden=(4,)))(torch.zeros(3, 1))
    assert PointDiscriminator()(torch.zeros(5, 2)).shape == (5,)
