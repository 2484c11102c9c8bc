"""DMD: the distribution-matching gradient and the fake-score loss by hand, no gradient when
the fake score equals the real one, the regression pairs, a seeded training effect, bad inputs."""

from __future__ import annotations

import pytest
import torch

from reference_impls.applications.diffusion import DistributionMatchingDistillation
from reference_impls.applications.diffusion.dmd import OneStepGenerator
from reference_impls.common.diffusion import (
    Denoiser,
    ddim_sample,
    energy_distance,
    fit,
    karras_sigmas,
)

from .conftest import ConstantDenoiser


def pairs(count: int = 4) -> dict[str, torch.Tensor]:
    return {"reference_noise": torch.zeros(count, 2), "reference_samples": torch.zeros(count, 2)}


def test_distribution_matching_gradient_by_hand():
    # real score c_r, fake score c_f: grad = (c_f - c_r) / mean|x - c_r|, loss = mean(grad^2)/2,
    # and d loss / d x = grad / numel
    real, fake = 0.5, -0.5
    procedure = DistributionMatchingDistillation(
        ConstantDenoiser(real), fake_score=ConstantDenoiser(fake), **pairs()
    )
    x = torch.tensor([[1.0, 0.0], [0.5, 2.5]], requires_grad=True)
    loss = procedure.distribution_matching_loss(x)
    weight = (x.detach() - real).abs().mean(1, keepdim=True)  # [[0.75], [1.0]]
    grad = (fake - real) / weight
    assert loss.item() == pytest.approx(0.5 * grad.pow(2).mean().item(), rel=1e-6)
    loss.backward()
    torch.testing.assert_close(x.grad, grad.expand(2, 2) / 4)


def test_fake_score_loss_by_hand():
    procedure = DistributionMatchingDistillation(
        ConstantDenoiser(0.0), fake_score=ConstantDenoiser(0.25), **pairs()
    )
    x = torch.tensor([[1.0, 0.0], [0.5, -0.5]])
    torch.manual_seed(0)
    loss = procedure.fake_score_loss(x)
    torch.manual_seed(0)
    torch.randn(2, 2)  # the noise, drawn first
    index = torch.randint(0, 1000, (2,))
    sigma = karras_sigmas(1000).flip(0).float()[index]
    weights = sigma**-2 + 1 / 0.5**2
    expected = (weights[:, None] * (0.25 - x).pow(2)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert DistributionMatchingDistillation(ConstantDenoiser(0.0), **pairs()).sigmas[0] == (
        pytest.approx(0.002)
    )


def test_no_distribution_matching_gradient_while_the_fake_score_is_the_teacher():
    torch.manual_seed(0)
    teacher = Denoiser(hidden=(16,))
    procedure = DistributionMatchingDistillation(teacher, reference_count=8, reference_steps=2)
    terms = procedure(torch.randn(16, 2))
    assert terms["distribution_matching"].item() == 0.0
    assert terms["regression"].item() > 0 and terms["fake_score"].item() > 0


def test_the_generator_starts_as_the_teachers_one_step_sampler_and_regression_pairs():
    torch.manual_seed(0)
    teacher = Denoiser(hidden=(16,))
    procedure = DistributionMatchingDistillation(teacher, reference_count=8, reference_steps=3)
    z = torch.randn(5, 2)
    torch.testing.assert_close(procedure.student(z), ddim_sample(teacher, z, 1))
    torch.testing.assert_close(
        procedure.reference_samples, ddim_sample(teacher, procedure.reference_noise, 3)
    )
    assert isinstance(procedure.student, OneStepGenerator)


def test_the_one_step_generator_beats_the_teachers_one_step_sample(
    small_teacher, noise, ring_truth
):
    procedure = DistributionMatchingDistillation(
        small_teacher, reference_count=512, reference_steps=16
    )
    before = energy_distance(procedure.student(noise).detach(), ring_truth)
    fit(procedure, lambda size, generator: torch.randn(size, 2, generator=generator), 300, lr=1e-4)
    after = energy_distance(procedure.student(noise).detach(), ring_truth)
    assert before == pytest.approx(
        energy_distance(ddim_sample(small_teacher, noise, 1), ring_truth), rel=1e-4
    )
    assert after < 0.5 * before, (after, before)


def test_bad_inputs():
    teacher = ConstantDenoiser(0.0)
    with pytest.raises(ValueError, match="must be given together"):
        DistributionMatchingDistillation(teacher, reference_noise=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"pairs of shape \[M, dim\]"):
        DistributionMatchingDistillation(
            teacher, reference_noise=torch.zeros(3, 2), reference_samples=torch.zeros(4, 2)
        )
    with pytest.raises(ValueError, match="min_step_percent must not exceed"):
        DistributionMatchingDistillation(
            teacher, min_step_percent=0.9, max_step_percent=0.1, **pairs()
        )
    with pytest.raises(ValueError, match="regression_weight must be non-negative"):
        DistributionMatchingDistillation(teacher, regression_weight=-1.0, **pairs())
    with pytest.raises(ValueError, match=r"z must be noise of shape \[B, 2\]"):
        DistributionMatchingDistillation(Denoiser(hidden=(4,)), **pairs())(torch.zeros(3, 5))
