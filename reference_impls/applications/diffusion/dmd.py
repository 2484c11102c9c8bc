r"""Distribution matching distillation (DMD): a one-step generator pushed along the difference of two scores.

Citation: ``yin2024one`` (Yin, Gharbi, Zhang, Shechtman, Durand, Freeman and Park, CVPR 2024).
Authors' code: none released for DMD itself; the same authors' DMD2 code
(https://github.com/tianweiy/DMD2, ``main/edm/edm_guidance.py``, ``EDMGuidance.
compute_distribution_matching_loss`` and ``compute_loss_fake``) implements the same
distribution-matching gradient and fake-score loss for EDM teachers, and we follow it.

A generator $G_\theta(z) = D_\theta(\sigma_\max z;\ \sigma_\max)$ (initialised from the
teacher, like DMD2's ``feedforward_model``) maps noise to a sample in one evaluation.
Its samples are diffused, $x_t = G_\theta(z) + \sigma_t\varepsilon$, and two denoisers
judge them: the frozen teacher $\mu_\mathrm{real}$ and a *fake* score $\mu_\mathrm{fake}$
trained online to denoise the generator's own samples. Their difference is the gradient
of $\mathrm{KL}(p_\mathrm{fake}\,\|\,p_\mathrm{real})$ with respect to the sample, and DMD
descends it, normalised per sample:

$$
\nabla_x \mathcal L_\mathrm{DM} = \frac{\mu_\mathrm{fake}(x_t,\sigma_t) - \mu_\mathrm{real}(x_t,\sigma_t)}
  {\operatorname{mean}\lvert x - \mu_\mathrm{real}(x_t,\sigma_t)\rvert},
\qquad \mathcal L_\mathrm{DM} = \tfrac12\,\operatorname{mean}\lVert x - \mathrm{sg}(x - \nabla_x)\rVert^2 ,
$$

with $\sigma_t$ the Karras grid of 1000 levels ($\rho = 7$) restricted to indices
$[20, 980]$ (``min_step_percent`` 0.02, ``max_step_percent`` 0.98). The fake score is
trained with the denoising loss on detached generator samples at any of the 1000
levels with EDM's ("karras") weights $1/\sigma^2 + 1/\sigma_d^2$,

$$
\mathcal L_\mathrm{fake} = \mathbb E\,\big(\sigma_t^{-2} + \sigma_d^{-2}\big)\,
  \lVert \mu_\mathrm{fake}(\mathrm{sg}(x) + \sigma_t\varepsilon, \sigma_t) - \mathrm{sg}(x)\rVert^2 ,
$$

and DMD's regression loss keeps the generator near the teacher's own noise-to-sample
map on a fixed set of pairs $(z_\mathrm{ref}, y_\mathrm{ref})$ made once with the
teacher's deterministic sampler: $\mathcal L_\mathrm{reg} = \mathbb E\,
d(G_\theta(z_\mathrm{ref}), y_\mathrm{ref})$, weighted by $\lambda_\mathrm{reg} = 0.25$
(the paper's). The procedure returns
$\mathcal L_\mathrm{DM} + \lambda_\mathrm{reg}\mathcal L_\mathrm{reg} + \mathcal L_\mathrm{fake}$:
the first two reach only the generator and the last only the fake score, so one Adam
optimiser over both takes exactly the two updates of DMD's alternating scheme.

Deviations (declared): (1) $d$ is the squared error (mean over dimensions) instead of
LPIPS, which needs images. (2) Unconditional: no classifier-free guidance on the real
score (DMD uses it for text-to-image, not for its CIFAR/ImageNet EDM runs). (3) One
fake-score update per generator update (DMD's; DMD2 uses five, and drops the
regression loss in favour of a GAN term). (4) The regression pairs are made by our
DDIM sampler (``reference_steps`` steps) rather than EDM's Heun sampler.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.diffusion import (
    Denoiser,
    ddim_sample,
    karras_sigmas,
    trainable_copy,
)
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import freeze
from reference_impls.common.validation import at_least, in_unit_interval, non_negative


class OneStepGenerator(nn.Module):
    """$G(z) = D(\\sigma z;\\ \\sigma)$ with $\\sigma = \\sigma_\\max$: a denoiser used as a one-step generator."""

    def __init__(self, denoiser: Denoiser, sigma: float | None = None) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.sigma = float(sigma if sigma is not None else denoiser.sigma_max)
        self.dim = denoiser.dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z must be noise of shape [B, {self.dim}], got {tuple(z.shape)}")
        levels = torch.full((z.shape[0],), self.sigma, device=z.device, dtype=torch.float32)
        return self.denoiser(z * self.sigma, levels)


class DistributionMatchingDistillation(DistillationProcedure):
    """DMD: ``forward(z)`` takes a batch of standard-normal codes ``[B, dim]``.

    Args:
        teacher: the diffusion model (``Denoiser``), the real score; frozen here.
        generator: the one-step generator; default ``OneStepGenerator`` around a copy of the teacher.
        fake_score: the online score of the generator's samples; default a copy of the teacher.
        regression_weight: $\\lambda_\\mathrm{reg}$.
        reference_noise, reference_samples: the regression pairs ``[M, dim]``; default
            ``reference_count`` pairs drawn here with the teacher's ``reference_steps``-step sampler.
        num_train_timesteps, min_step_percent, max_step_percent, rho: the noise levels of
            the distribution-matching gradient (DMD2's EDM settings).
    """

    def __init__(
        self,
        teacher: Denoiser,
        generator: nn.Module | None = None,
        fake_score: Denoiser | None = None,
        regression_weight: float = 0.25,
        reference_noise: torch.Tensor | None = None,
        reference_samples: torch.Tensor | None = None,
        reference_count: int = 1024,
        reference_steps: int = 64,
        num_train_timesteps: int = 1000,
        min_step_percent: float = 0.02,
        max_step_percent: float = 0.98,
        rho: float = 7.0,
    ) -> None:
        super().__init__()
        self.teacher = freeze(teacher)
        self.student = (
            generator if generator is not None else OneStepGenerator(trainable_copy(teacher))
        )
        self.fake_score = fake_score if fake_score is not None else trainable_copy(teacher)
        self.regression_weight = non_negative("regression_weight", regression_weight)
        if (reference_noise is None) != (reference_samples is None):
            raise ValueError("reference_noise and reference_samples must be given together")
        if reference_noise is None:
            reference_noise = torch.randn(
                at_least("reference_count", reference_count, 1), teacher.dim
            )
            reference_samples = ddim_sample(teacher, reference_noise, reference_steps)
        if reference_noise.shape != reference_samples.shape or reference_noise.dim() != 2:
            raise ValueError(
                "reference_noise and reference_samples must be pairs of shape [M, dim], got "
                f"{tuple(reference_noise.shape)} and {tuple(reference_samples.shape)}"
            )
        self.register_buffer("reference_noise", reference_noise.detach().float().clone())
        self.register_buffer("reference_samples", reference_samples.detach().float().clone())
        at_least("num_train_timesteps", num_train_timesteps, 2)
        in_unit_interval("min_step_percent", min_step_percent)
        in_unit_interval("max_step_percent", max_step_percent)
        self.min_step = int(min_step_percent * num_train_timesteps)
        self.max_step = int(max_step_percent * num_train_timesteps)
        if self.min_step > self.max_step:
            raise ValueError(
                f"min_step_percent must not exceed max_step_percent, got {min_step_percent} > "
                f"{max_step_percent}"
            )
        # small sigma first, as DMD2's flipped get_sigmas_karras
        sigmas = karras_sigmas(num_train_timesteps, teacher.sigma_min, teacher.sigma_max, rho)
        self.register_buffer("sigmas", sigmas.flip(0).float())

    def train(self, mode: bool = True) -> DistributionMatchingDistillation:
        super().train(mode)
        self.teacher.eval()
        return self

    def distribution_matching_loss(self, x: torch.Tensor) -> torch.Tensor:
        """$\\mathcal L_\\mathrm{DM}$ of generated samples ``x`` (its gradient is the DM gradient)."""
        with torch.no_grad():
            index = torch.randint(
                self.min_step,
                min(self.max_step + 1, len(self.sigmas)),
                (x.shape[0],),
                device=x.device,
            )
            sigma = self.sigmas.to(x.dtype)[index]
            noisy = x + sigma[:, None] * torch.randn_like(x)
            p_real = x - self.teacher(noisy, sigma)
            p_fake = x - self.fake_score(noisy, sigma)
            weight = p_real.abs().mean(1, keepdim=True)
            grad = torch.nan_to_num((p_real - p_fake) / weight)
        return 0.5 * F.mse_loss(x, (x - grad).detach())

    def fake_score_loss(self, x: torch.Tensor) -> torch.Tensor:
        """$\\mathcal L_\\mathrm{fake}$: EDM-weighted denoising of detached generator samples."""
        x = x.detach()
        noise = torch.randn_like(x)  # drawn before the levels, as DMD2 does
        index = torch.randint(0, len(self.sigmas), (x.shape[0],), device=x.device)
        sigma = self.sigmas.to(x.dtype)[index]
        noisy = x + sigma[:, None] * noise
        weights = sigma**-2 + 1.0 / self.fake_score.sigma_data**2
        return (weights[:, None] * (self.fake_score(noisy, sigma) - x).pow(2)).mean()

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        if z.dim() != 2 or z.shape[1] != self.reference_noise.shape[1]:
            raise ValueError(
                f"z must be noise of shape [B, {self.reference_noise.shape[1]}], got "
                f"{tuple(z.shape)}"
            )
        x = at_least_float32(self.student(z))
        dm = self.distribution_matching_loss(x)
        pick = torch.randint(0, len(self.reference_noise), (z.shape[0],), device=z.device)
        regression = F.mse_loss(
            at_least_float32(self.student(self.reference_noise[pick])),
            self.reference_samples[pick],
        )
        fake = self.fake_score_loss(x)
        loss = dm + self.regression_weight * regression + fake
        return {
            "loss": loss,
            "distribution_matching": dm.detach(),
            "regression": regression.detach(),
            "fake_score": fake.detach(),
        }
