"""Consistency distillation: the loss by hand, the boundary condition, the grid, the EMA target,
a seeded training effect against the same-NFE teacher, bad inputs."""

from __future__ import annotations

import pytest
import torch

from reference_impls.applications.diffusion import ConsistencyDistillation
from reference_impls.common.diffusion import (
    SIGMA_MAX,
    SIGMA_MIN,
    Denoiser,
    as_consistency_model,
    consistency_sample,
    ddim_sample,
    energy_distance,
    fit,
    karras_sigmas,
    load_ring,
)

from .conftest import ConstantDenoiser, Identity


@pytest.mark.parametrize("solver", ["heun", "euler"])
def test_loss_by_hand_with_a_constant_teacher_and_an_identity_student(solver):
    # teacher D = c: the ODE's slope (x - c)/sigma is constant along the exact trajectory, so
    # Heun = Euler: x' = x + (x - c)(sigma' - sigma)/sigma; student and target f(x) = x
    c = 0.3
    procedure = ConsistencyDistillation(
        ConstantDenoiser(c), student=Identity(), num_scales=5, solver=solver
    )
    x0 = torch.tensor([[0.5, -0.5], [0.1, 0.2], [-0.7, 0.0]])
    torch.manual_seed(0)
    loss = procedure(x0)["loss"]
    torch.manual_seed(0)
    noise = torch.randn(3, 2)
    index = torch.randint(0, 4, (3,))
    sigmas = karras_sigmas(5).float()
    sigma, next_sigma = sigmas[index][:, None], sigmas[index + 1][:, None]
    x_t = x0 + sigma * noise
    x_next = x_t + (x_t - c) * (next_sigma - sigma) / sigma
    assert loss.item() == pytest.approx((x_t - x_next).pow(2).mean().item(), rel=1e-5)


def test_l1_norm_and_snr_weights_by_hand():
    procedure = ConsistencyDistillation(
        ConstantDenoiser(0.0),
        student=Identity(),
        num_scales=3,
        loss_norm="l1",
        weight_schedule="truncated-snr",
        solver="euler",
    )
    x0 = torch.tensor([[0.5, -0.5]])
    torch.manual_seed(1)
    loss = procedure(x0)["loss"]
    torch.manual_seed(1)
    noise = torch.randn(1, 2)
    index = torch.randint(0, 2, (1,))
    sigmas = karras_sigmas(3).float()
    sigma, next_sigma = sigmas[index], sigmas[index + 1]
    x_t = x0 + sigma * noise
    difference = (x_t * (next_sigma - sigma) / sigma).abs().mean()
    assert loss.item() == pytest.approx((difference * (sigma**-2).clamp(min=1)).item(), rel=1e-5)


def test_boundary_condition_and_grid():
    torch.manual_seed(0)
    model = as_consistency_model(Denoiser(hidden=(16,)))
    x = torch.randn(10, 2)
    torch.testing.assert_close(model(x, torch.full((10,), SIGMA_MIN)), x, rtol=0, atol=0)
    assert not torch.allclose(model(x, torch.full((10,), 1.0)), x)
    sigmas = karras_sigmas(40)
    assert len(sigmas) == 40
    assert sigmas[0].item() == pytest.approx(SIGMA_MAX) and sigmas[-1].item() == pytest.approx(
        SIGMA_MIN
    )
    assert bool((sigmas[1:] < sigmas[:-1]).all())


def test_the_target_is_an_ema_of_the_student():
    torch.manual_seed(0)
    procedure = ConsistencyDistillation(Denoiser(hidden=(8,)), target_ema=0.9)
    before = procedure.target.network[0].weight.clone()
    with torch.no_grad():
        procedure.student.network[0].weight.add_(1.0)
    procedure.after_optimizer_step()
    torch.testing.assert_close(procedure.target.network[0].weight, before + 0.1)
    assert not any(p.requires_grad for p in procedure.target.parameters())
    assert "target.network.0.weight" in procedure.state_dict()


def test_distilled_consistency_model_beats_the_teacher_at_the_same_nfe(
    small_teacher, noise, ring_truth
):
    procedure = ConsistencyDistillation(small_teacher, num_scales=18)
    fit(procedure, load_ring(seed=0).x_train, steps=400, lr=1e-4)
    two_steps = consistency_sample(
        procedure.student, noise, (SIGMA_MAX, 0.8), torch.Generator().manual_seed(0)
    )
    student = energy_distance(two_steps, ring_truth)
    teacher = energy_distance(ddim_sample(small_teacher, noise, 2), ring_truth)
    assert student < 0.5 * teacher, (student, teacher)


def test_bad_inputs():
    teacher = Denoiser(hidden=(8,))
    with pytest.raises(ValueError, match='preconditioning="consistency"'):
        ConsistencyDistillation(teacher, student=Denoiser(hidden=(8,)))
    with pytest.raises(ValueError, match=r"target_ema must lie in \[0, 1\]"):
        ConsistencyDistillation(teacher, target_ema=1.5)
    with pytest.raises(ValueError, match="solver must be one of"):
        ConsistencyDistillation(teacher, solver="rk4")
    with pytest.raises(ValueError, match="loss_norm must be one of"):
        ConsistencyDistillation(teacher, loss_norm="lpips")
    with pytest.raises(ValueError, match="num_scales must be at least 2"):
        ConsistencyDistillation(teacher, num_scales=1)
    with pytest.raises(ValueError, match=r"x0 must be data points of shape \[B, 2\]"):
        ConsistencyDistillation(teacher)(torch.zeros(3))
