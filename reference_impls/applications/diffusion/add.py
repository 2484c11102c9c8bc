r"""Adversarial diffusion distillation (ADD): a few-step student trained by a discriminator and by the teacher's score.

Citation: ``sauer2024adversarial`` (Sauer, Lorenz, Blattmann and Rombach, ECCV 2024).
Authors' code: none released for training (Stability AI released the SDXL-Turbo weights
only); written from the paper's equations (Sec. 3, Eq. 1-5).

The student $\hat x_\theta(x_s, s)$, initialised from the teacher, denoises a real sample
noised to one of its few levels, $x_s = x_0 + \sigma_s\varepsilon$,
$s \in \{\sigma(1), \sigma(3/4), \sigma(1/2), \sigma(1/4)\}$ (four student steps, the
first from pure noise). Two losses train it:

$$
\mathcal L = \mathcal L^G_\mathrm{adv}(\hat x_\theta) + \lambda\,\mathcal L_\mathrm{distill},\qquad
\mathcal L_\mathrm{distill} = \mathbb E_{t,\varepsilon'}\Big[c(t)\,
  \big\lVert \hat x_\theta - \hat x_\psi\big(\mathrm{sg}(\hat x_\theta + \sigma_t\varepsilon'),\ \sigma_t\big)\big\rVert^2\Big],
$$

the second a score-distillation term: the student's sample is diffused again to a
teacher level $\sigma_t$ and pulled towards the teacher's denoised estimate, with the
paper's exponential weighting $c(t) = \alpha_t = 1/\sqrt{1+\sigma_t^2}$ and
$\lambda = 2.5$. The adversarial term is the hinge loss of a discriminator $D_\phi$,

$$
\mathcal L^G_\mathrm{adv} = -\mathbb E\, D_\phi(\hat x_\theta),\qquad
\mathcal L^D_\mathrm{adv} = \mathbb E\,\max(0, 1 - D_\phi(x_0)) + \mathbb E\,\max(0, 1 + D_\phi(\hat x_\theta))
  + \gamma\,\mathbb E\,\lVert\nabla_{x_0} D_\phi(x_0)\rVert^2 ,
$$

with the R1 penalty $\gamma = 10^{-5}$. The procedure returns $\mathcal L +
\mathcal L^D_\mathrm{adv}$: the generator's adversarial term reads the discriminator
through detached parameters and the discriminator's reads detached samples, so one
optimiser takes exactly the two updates of the alternating scheme.

Deviations (declared): (1) the paper's discriminator is a frozen DINOv2 ViT with
trainable heads on its features (and text/image conditioning); on 2-D points ours is a
small MLP (``PointDiscriminator``) reading the point itself. (2) $d$ is the squared
error, the paper's choice for images too (it found it on par with LPIPS-like
distances). (3) Teacher levels $t$ are drawn uniformly from the teacher's 1000-level
Karras grid ($\rho = 7$) instead of the 1000 DDPM timesteps of SDXL. (4) The student
levels are the 4-step cosine grid of ``reference_impls.common.diffusion``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from reference_impls.common.diffusion import Denoiser, cosine_sigma, karras_sigmas, trainable_copy
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import freeze
from reference_impls.common.validation import at_least, non_negative


class PointDiscriminator(nn.Module):
    """A small MLP discriminator on points ``[B, dim]`` (LeakyReLU 0.2), one logit per point."""

    def __init__(self, dim: int = 2, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = at_least("dim", dim, 1)
        for width in hidden:
            layers += [nn.Linear(previous, at_least("hidden width", width, 1)), nn.LeakyReLU(0.2)]
            previous = width
        layers.append(nn.Linear(previous, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class AdversarialDiffusionDistillation(DistillationProcedure):
    """ADD: ``forward(x0)`` is the student's and the discriminator's loss on a batch of data.

    Args:
        teacher: the diffusion model (``Denoiser``); frozen here.
        student: the few-step denoiser; default a trainable copy of the teacher.
        discriminator: default ``PointDiscriminator(teacher.dim)``.
        student_steps: the number of student levels (4: the paper's).
        distillation_weight: $\\lambda$.
        r1_weight: $\\gamma$ of the R1 penalty on real samples.
        teacher_levels: size of the teacher's Karras grid the distillation levels come from.
    """

    def __init__(
        self,
        teacher: Denoiser,
        student: Denoiser | None = None,
        discriminator: nn.Module | None = None,
        student_steps: int = 4,
        distillation_weight: float = 2.5,
        r1_weight: float = 1e-5,
        teacher_levels: int = 1000,
    ) -> None:
        super().__init__()
        self.teacher = freeze(teacher)
        self.student = student if student is not None else trainable_copy(teacher)
        self.discriminator = (
            discriminator if discriminator is not None else PointDiscriminator(teacher.dim)
        )
        self.distillation_weight = non_negative("distillation_weight", distillation_weight)
        self.r1_weight = non_negative("r1_weight", r1_weight)
        steps = at_least("student_steps", student_steps, 1)
        u = torch.arange(steps, 0, -1, dtype=torch.float64) / steps
        self.register_buffer(
            "student_sigmas", cosine_sigma(u, teacher.sigma_min, teacher.sigma_max).float()
        )
        levels = karras_sigmas(at_least("teacher_levels", teacher_levels, 2))
        self.register_buffer("teacher_sigmas", levels.float())

    def train(self, mode: bool = True) -> AdversarialDiffusionDistillation:
        super().train(mode)
        self.teacher.eval()
        return self

    def distillation_loss(self, samples: torch.Tensor) -> torch.Tensor:
        """$\\mathcal L_\\mathrm{distill}$ of the student's samples (score distillation, weight $\\alpha_t$)."""
        index = torch.randint(
            0, len(self.teacher_sigmas), (samples.shape[0],), device=samples.device
        )
        sigma = self.teacher_sigmas.to(samples.dtype)[index]
        with torch.no_grad():
            noisy = samples.detach() + sigma[:, None] * torch.randn_like(samples)
            target = self.teacher(noisy, sigma)
        weight = 1 / (1 + sigma**2).sqrt()
        return (weight * (samples - target).pow(2).mean(1)).mean()

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """$\\mathcal L^D_\\mathrm{adv}$: hinge on real and (detached) generated samples, plus R1 on real."""
        real = real.detach().requires_grad_(True)
        real_logits = self.discriminator(real)
        fake_logits = self.discriminator(fake.detach())
        hinge = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        if self.r1_weight == 0:
            return hinge
        (gradient,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        return hinge + self.r1_weight * gradient.pow(2).sum(1).mean()

    def forward(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        if x0.dim() != 2 or x0.shape[1] != self.student.dim:
            raise ValueError(
                f"x0 must be data points of shape [B, {self.student.dim}], got {tuple(x0.shape)}"
            )
        x0 = at_least_float32(x0)
        which = torch.randint(0, len(self.student_sigmas), (x0.shape[0],), device=x0.device)
        sigma = self.student_sigmas.to(x0.dtype)[which]
        samples = self.student(x0 + sigma[:, None] * torch.randn_like(x0), sigma)
        # the generator's adversarial term: the discriminator's parameters take no gradient
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        adversarial = -functional_call(self.discriminator, frozen, (samples,)).mean()
        distill = self.distillation_loss(samples)
        critic = self.discriminator_loss(x0, samples)
        loss = adversarial + self.distillation_weight * distill + critic
        return {
            "loss": loss,
            "adversarial": adversarial.detach(),
            "distillation": distill.detach(),
            "discriminator": critic.detach(),
        }
