"""Shared by the diffusion-distillation tests: stub denoisers with known outputs, and a small
teacher trained in a few seconds on the ring (session-wide), with the sample-quality yardstick."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reference_impls.common.diffusion import (
    SIGMA_DATA,
    SIGMA_MAX,
    SIGMA_MIN,
    Denoiser,
    DenoisingTraining,
    energy_distance,
    fit,
    load_ring,
    sample_ring,
)
from reference_impls.common.training import freeze


class ConstantDenoiser(nn.Module):
    """$D(x;\\sigma) = c$ for every input: DDIM steps from it are known in closed form."""

    def __init__(self, value: float, preconditioning: str = "edm") -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))
        self.dim, self.preconditioning = 2, preconditioning
        self.sigma_min, self.sigma_max, self.sigma_data = SIGMA_MIN, SIGMA_MAX, SIGMA_DATA

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert sigma.shape == (x.shape[0],)
        return self.value.to(x.dtype).expand_as(x)


class Identity(ConstantDenoiser):
    """$f(x, \\sigma) = x$ plus a learnable shift (zero): a consistency model at its boundary everywhere."""

    def __init__(self) -> None:
        super().__init__(0.0, preconditioning="consistency")

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x + self.value.to(x.dtype)


@pytest.fixture(scope="session")
def small_teacher() -> Denoiser:
    """A 2x64 denoiser trained for 1,500 Adam steps on the ring (a few seconds), frozen."""
    torch.manual_seed(0)
    teacher = Denoiser(hidden=(64, 64))
    fit(DenoisingTraining(teacher), load_ring(seed=0).x_train, steps=1500, lr=2e-3)
    return freeze(teacher)


@pytest.fixture(scope="session")
def ring_truth() -> torch.Tensor:
    return sample_ring(1000, torch.Generator().manual_seed(123))


@pytest.fixture(scope="session")
def noise() -> torch.Tensor:
    return torch.randn(1000, 2, generator=torch.Generator().manual_seed(7))


def distance(samples: torch.Tensor, truth: torch.Tensor) -> float:
    return energy_distance(samples, truth)
