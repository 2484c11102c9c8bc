"""The 2-D diffusion problem: the ring, the denoiser's preconditionings and its range checks,
the samplers' grids and steps, the energy distance, the teacher's training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common.diffusion import (
    SIGMA_MAX,
    SIGMA_MIN,
    Denoiser,
    DenoisingTraining,
    consistency_sample,
    cosine_sigmas,
    ddim_sample,
    edm_loss,
    energy_distance,
    fit,
    load_ring,
    mode_coverage,
)


def test_the_ring_is_deterministic_and_has_the_edm_data_scale():
    first, second = load_ring(seed=3), load_ring(seed=3)
    torch.testing.assert_close(first.x_train, second.x_train)
    assert not torch.equal(first.x_train, load_ring(seed=4).x_train)
    assert first.x_train.shape == (4096, 2) and first.x_test.shape == (2048, 2)
    assert first.x_train.std(0).tolist() == pytest.approx([0.5, 0.5], abs=0.02)
    assert mode_coverage(first.x_test, first.centres) == 8


def test_edm_scalings_at_unit_sigma_data_are_v_prediction():
    # c_skip = alpha^2, c_out = sigma_vp, c_in = alpha for sigma_data = 1 (Karras et al., B.6)
    model = Denoiser(sigma_data=1.0)
    sigma = torch.tensor([0.5, 2.0])
    c_skip, c_out, c_in = model.scalings(sigma)
    alpha = 1 / (1 + sigma**2).sqrt()
    torch.testing.assert_close(c_skip, alpha**2)
    torch.testing.assert_close(c_out, sigma * alpha)
    torch.testing.assert_close(c_in, alpha)


def test_the_denoiser_names_sigma_when_it_is_out_of_range_or_misshapen():
    model = Denoiser(hidden=(8,))
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"sigma must lie in \[0.002, 80.0\].*got values from 0.0"):
        model(x, torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"sigma must lie in .*to 100.0"):
        model(x, torch.tensor([1.0, 1.0, 100.0]))
    with pytest.raises(ValueError, match="sigma must lie in"):
        model(x, torch.tensor([1.0, float("nan"), 1.0]))
    with pytest.raises(
        ValueError, match=r"sigma must be one noise level per sample, of shape \(3,\)"
    ):
        model(x, torch.tensor(1.0))
    with pytest.raises(ValueError, match="sigma must be floating-point"):
        model(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"x must be points of shape \[B, 2\]"):
        model(torch.zeros(3, 3), torch.ones(3))
    with pytest.raises(ValueError, match="preconditioning must be one of"):
        Denoiser(preconditioning="vp")


def test_half_precision_is_computed_in_float32_and_float64_kept():
    model = Denoiser(hidden=(8,))
    x, sigma = torch.randn(4, 2), torch.ones(4)
    assert model(x.bfloat16(), sigma.bfloat16()).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x, sigma).dtype == torch.float32
    assert model.double()(x.double(), sigma.double()).dtype == torch.float64


def test_grids_and_sampler_steps():
    sigmas = cosine_sigmas(4)
    assert len(sigmas) == 5
    assert sigmas[0].item() == pytest.approx(SIGMA_MAX) and sigmas[-1].item() == pytest.approx(
        SIGMA_MIN
    )
    # the cosine grid's midpoint: tan of the mean angle
    middle = math.tan((math.atan(SIGMA_MIN) + math.atan(SIGMA_MAX)) / 2)
    assert sigmas[2].item() == pytest.approx(middle)

    class Constant(torch.nn.Module):
        def forward(self, x, sigma):
            return torch.full_like(x, 0.25)

    noise = torch.randn(6, 2)
    torch.testing.assert_close(ddim_sample(Constant(), noise, 5), torch.full((6, 2), 0.25))
    assert torch.equal(consistency_sample(Constant(), noise), torch.full((6, 2), 0.25))


def test_energy_distance():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 2, generator=generator), torch.randn(500, 2, generator=generator)
    assert energy_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    assert energy_distance(a, b) < 0.02 < energy_distance(a, b + 1.0)
    # by hand: points 0 and 1 against point 3 (1-D): 2 * 2.5 - 0.5 - 0 = 4.5
    assert energy_distance(torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0], [3.0]])) == (
        pytest.approx(4.5)
    )
    with pytest.raises(ValueError, match="x and y must be samples"):
        energy_distance(torch.zeros(5, 2), torch.zeros(5, 3))


def test_a_trained_teacher_samples_the_ring():
    torch.manual_seed(0)
    model = Denoiser(hidden=(64, 64))
    data = load_ring(seed=0)
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(7))
    before = energy_distance(ddim_sample(model, noise, 8), data.x_test)
    curve = fit(DenoisingTraining(model), data.x_train, steps=1500, lr=2e-3, log_every=500)
    samples = ddim_sample(model, noise, 8)
    assert energy_distance(samples, data.x_test) < 0.3 * before and len(curve) == 3
    assert mode_coverage(samples, data.centres) == 8
    assert edm_loss(model, data.x_test).isfinite()
