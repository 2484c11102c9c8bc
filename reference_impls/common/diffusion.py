r"""A 2-D diffusion problem for the diffusion-distillation methods: data, denoiser, samplers, metrics.

**Data.** :func:`load_ring` draws a ring of ``modes`` Gaussians (8 by default): mode
$k$ is centred at $r(\cos 2\pi k/K, \sin 2\pi k/K)$ with isotropic standard deviation
$s$, each mode equally likely. With $r = 0.7$ and $s = 0.05$ every coordinate has
standard deviation $\sqrt{r^2/2 + s^2} \approx 0.50$, the $\sigma_\mathrm{data}$ of the
EDM and consistency-model codes, so their constants apply unchanged. Deterministic
from the seed; 4,096 training and 2,048 test points take about a millisecond.
(8x8 digits were left out: a teacher on 64 dimensions and four distilled students do
not fit the notebook's 30 s budget on two cores.)

**One parameterisation for all methods: EDM's** (Karras et al., 2022). A sample
noised to level $\sigma$ is $x_\sigma = x_0 + \sigma\varepsilon$ (the variance-exploding
path) and :class:`Denoiser` predicts $x_0$ as

$$
D_\theta(x;\sigma) = c_\mathrm{skip}(\sigma)\,x + c_\mathrm{out}(\sigma)\,
F_\theta\big(c_\mathrm{in}(\sigma)\,x,\ c_\mathrm{noise}(\sigma)\big),\qquad
c_\mathrm{in} = \tfrac{1}{\sqrt{\sigma^2+\sigma_d^2}},\ c_\mathrm{noise} = \tfrac{\ln\sigma}{4},
$$

with $c_\mathrm{skip} = \sigma_d^2/(\sigma^2+\sigma_d^2)$,
$c_\mathrm{out} = \sigma\sigma_d/\sqrt{\sigma^2+\sigma_d^2}$ (``preconditioning="edm"``),
or the consistency models' boundary-condition scalings
$c_\mathrm{skip} = \sigma_d^2/((\sigma-\sigma_\min)^2+\sigma_d^2)$,
$c_\mathrm{out} = (\sigma-\sigma_\min)\sigma_d/\sqrt{\sigma^2+\sigma_d^2}$
(``preconditioning="consistency"``, so that $D(x;\sigma_\min) = x$ exactly). Why this one:
consistency models (openai/consistency_models ``cm/karras_diffusion.py``) and DMD (its
authors' DMD2 code, ``main/edm``) are written in it, a consistency student is the
teacher's network with the other scalings, and progressive distillation's
variance-preserving process is the same probability-flow ODE: $z_t = \alpha_t x_\sigma$
with $\sigma = \sigma_t/\alpha_t$, $\mathrm{SNR} = 1/\sigma^2$; at $\sigma_d = 1$ the EDM
network output is exactly minus the $v$-prediction of Salimans and Ho. Noise levels
outside $[\sigma_\min, \sigma_\max] = [0.002, 80]$ are an error naming ``sigma``.

$F_\theta$ is an MLP (SiLU) reading $c_\mathrm{in}x$ and Fourier features of
$c_\mathrm{noise}$ (frequencies $2^0 \dots 2^7$); the teacher has three hidden layers
of 128. It is trained by :func:`edm_loss` (EDM: $\ln\sigma \sim \mathcal N(-1.2, 1.2^2)$,
weight $(\sigma^2+\sigma_d^2)/(\sigma\sigma_d)^2$) with Adam, once, and cached
(:func:`cached_teacher_denoiser`; 60 to 75 s on one core of a loaded shared machine).

**Sampling.** :func:`ddim_sample` is DDIM, i.e. Euler on the probability-flow ODE
$\mathrm{d}x/\mathrm{d}\sigma = (x - D(x;\sigma))/\sigma$, on progressive
distillation's cosine grid: $\sigma(u) = \tan(a u + b)$, $u = i/N$, the authors'
``_logsnr_schedule_cosine`` with $\mathrm{logSNR} = -2\ln\sigma$ clipped to
$[-2\ln\sigma_\max, -2\ln\sigma_\min]$; the last of its $N$ steps returns $D$ itself, so
it costs $N$ function evaluations (NFE). :func:`karras_sigmas` is the consistency
models' grid ($\rho = 7$); :func:`consistency_sample` their one- and multistep sampler.

**Quality.** :func:`energy_distance` (Székely) between two samples: zero iff the
distributions agree; measured against fresh points of the ring and against the
teacher's many-step samples.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import at_least, noise_levels, one_of, positive

SIGMA_MIN, SIGMA_MAX, SIGMA_DATA = 0.002, 80.0, 0.5
PRECONDITIONINGS = ("edm", "consistency")


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RingData:
    """Points of a ring of Gaussians: ``x_train`` ``[N, 2]``, ``x_test`` ``[M, 2]``, the ``centres``."""

    x_train: torch.Tensor
    x_test: torch.Tensor
    centres: torch.Tensor
    std: float


def ring_centres(modes: int = 8, radius: float = 0.7) -> torch.Tensor:
    angles = 2 * math.pi * torch.arange(at_least("modes", modes, 1)) / modes
    return positive("radius", radius) * torch.stack([angles.cos(), angles.sin()], 1)


def sample_ring(
    n: int,
    generator: torch.Generator | None = None,
    modes: int = 8,
    radius: float = 0.7,
    std: float = 0.05,
) -> torch.Tensor:
    """``n`` points ``[n, 2]`` of the ring: a uniformly chosen centre plus ``std`` noise."""
    centres = ring_centres(modes, radius)
    which = torch.randint(0, modes, (n,), generator=generator)
    return centres[which] + positive("std", std) * torch.randn(n, 2, generator=generator)


def load_ring(
    seed: int = 0,
    train: int = 4096,
    test: int = 2048,
    modes: int = 8,
    radius: float = 0.7,
    std: float = 0.05,
) -> RingData:
    """The training and test points of the ring, deterministic from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    points = sample_ring(train + test, generator, modes, radius, std)
    return RingData(points[:train], points[train:], ring_centres(modes, radius), std)


# ----------------------------------------------------------------------------- denoiser


class Denoiser(nn.Module):
    """$D_\\theta(x;\\sigma)$: an MLP $F_\\theta$ inside EDM's (or the consistency models') preconditioning.

    ``forward(x, sigma)`` takes points ``[B, dim]`` and noise levels ``[B]`` in
    ``[sigma_min, sigma_max]`` and returns the denoised estimate ``[B, dim]``
    (computed in at least float32: half precision under autocast is promoted).

    Args:
        dim: data dimension.
        hidden: widths of the hidden layers of $F_\\theta$.
        preconditioning: ``"edm"`` (a diffusion model) or ``"consistency"`` (the
            boundary condition $D(x;\\sigma_\\min) = x$ of a consistency model).
        sigma_min, sigma_max, sigma_data: the noise range and the data's standard deviation.
        frequencies: number of Fourier frequencies ($2^0, 2^1, \\dots$) of the noise embedding.
    """

    def __init__(
        self,
        dim: int = 2,
        hidden: Sequence[int] = (128, 128, 128),
        preconditioning: str = "edm",
        sigma_min: float = SIGMA_MIN,
        sigma_max: float = SIGMA_MAX,
        sigma_data: float = SIGMA_DATA,
        frequencies: int = 8,
    ) -> None:
        super().__init__()
        self.dim = at_least("dim", dim, 1)
        self.preconditioning = one_of("preconditioning", preconditioning, PRECONDITIONINGS)
        self.sigma_min = positive("sigma_min", sigma_min)
        self.sigma_max = positive("sigma_max", sigma_max)
        if sigma_max <= sigma_min:
            raise ValueError(f"sigma_max must exceed sigma_min, got {sigma_max} <= {sigma_min}")
        self.sigma_data = positive("sigma_data", sigma_data)
        self.register_buffer(
            "frequencies", math.pi * 2.0 ** torch.arange(at_least("frequencies", frequencies, 1))
        )
        layers: list[nn.Module] = []
        previous = dim + 2 * frequencies
        for width in hidden:
            layers += [nn.Linear(previous, at_least("hidden width", width, 1)), nn.SiLU()]
            previous = width
        layers.append(nn.Linear(previous, dim))
        self.network = nn.Sequential(*layers)

    def extra_repr(self) -> str:
        return (
            f"preconditioning={self.preconditioning!r}, sigma_min={self.sigma_min}, "
            f"sigma_max={self.sigma_max}, sigma_data={self.sigma_data}"
        )

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c_skip, c_out, c_in)`` of ``sigma``, each shaped like it."""
        data = self.sigma_data
        norm = (sigma**2 + data**2).sqrt()
        if self.preconditioning == "edm":
            c_skip, c_out = data**2 / norm**2, sigma * data / norm
        else:
            shifted = sigma - self.sigma_min
            c_skip, c_out = data**2 / (shifted**2 + data**2), shifted * data / norm
        return c_skip, c_out, 1 / norm

    def raw(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """$F_\\theta(c_\\mathrm{in}x, c_\\mathrm{noise})$: the network without preconditioning."""
        angles = c_noise[:, None] * self.frequencies.to(c_noise.dtype)
        return self.network(torch.cat([x_in, angles.cos(), angles.sin()], 1))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be points of shape [B, {self.dim}], got {tuple(x.shape)}")
        noise_levels("sigma", sigma, x.shape[0], self.sigma_min, self.sigma_max)
        x = at_least_float32(x)
        sigma = at_least_float32(sigma).to(x.dtype)
        weights = self.network[0].weight.dtype  # the network runs in its own precision
        with torch.autocast(x.device.type, enabled=False):
            c_skip, c_out, c_in = (c[:, None] for c in self.scalings(sigma))
            output = self.raw((c_in * x).to(weights), (sigma.log() / 4).to(weights))
            return c_skip * x + c_out * output.to(x.dtype)


def teacher_denoiser() -> Denoiser:
    """The teacher's architecture: three hidden layers of 128 (35,714 parameters)."""
    return Denoiser(hidden=(128, 128, 128))


def as_consistency_model(denoiser: Denoiser) -> Denoiser:
    """A copy of ``denoiser`` (same weights, trainable) with the consistency boundary scalings.

    What the consistency models' ``cm_train.py`` does: the student's parameters are
    copied from the teacher, and ``distillation=True`` switches its scalings.
    """
    student = copy.deepcopy(denoiser)
    student.preconditioning = "consistency"
    return student.train().requires_grad_(True)


def trainable_copy(model: nn.Module) -> nn.Module:
    """A trainable copy of a (frozen) model: the students of the four methods start from the teacher."""
    return copy.deepcopy(model).train().requires_grad_(True)


def edm_loss(
    denoiser: Denoiser, x0: torch.Tensor, p_mean: float = -1.2, p_std: float = 1.2
) -> torch.Tensor:
    """EDM's denoising loss: $\\mathbb E\\,\\lambda(\\sigma)\\lVert D(x_0+\\sigma\\varepsilon;\\sigma)-x_0\\rVert^2/d$.

    $\\ln\\sigma \\sim \\mathcal N(p_\\mathrm{mean}, p_\\mathrm{std}^2)$, clamped to the
    denoiser's range (EDM does not clamp; with these values it changes ~0.1% of draws).
    """
    log_sigma = p_mean + p_std * torch.randn(x0.shape[0], device=x0.device, dtype=x0.dtype)
    sigma = log_sigma.exp().clamp(denoiser.sigma_min, denoiser.sigma_max)
    noisy = x0 + sigma[:, None] * torch.randn_like(x0)
    data = denoiser.sigma_data
    weight = (sigma**2 + data**2) / (sigma * data) ** 2
    return (weight * (denoiser(noisy, sigma) - x0).pow(2).mean(1)).mean()


class DenoisingTraining(nn.Module):
    """The teacher's training objective as a procedure: ``forward(x0) -> {"loss": edm_loss}``."""

    def __init__(self, denoiser: Denoiser) -> None:
        super().__init__()
        self.student = denoiser

    def forward(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = edm_loss(self.student, x0)
        return {"loss": loss, "edm": loss.detach()}


# ----------------------------------------------------------------------------- training


def fit(
    procedure: nn.Module,
    x_train: torch.Tensor | Callable[[int, torch.Generator], torch.Tensor],
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    log_every: int = 50,
) -> list[float]:
    """Train ``procedure`` (``forward(batch) -> {"loss": ...}``) with Adam for ``steps`` steps.

    Each batch is drawn with replacement from ``x_train`` (or made by ``x_train(size,
    generator)``: latent codes for a generator). After every optimiser step the
    procedure's ``after_optimizer_step()`` is called where it has one (a consistency
    model's EMA target). The learning rate is constant (the consistency and DMD codes;
    progressive distillation anneals it linearly, which only matters for long runs).
    Returns the mean loss of every ``log_every`` steps.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    parameters = [p for p in procedure.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=positive("lr", lr))
    hook = getattr(procedure, "after_optimizer_step", None)
    curve, running = [], 0.0
    procedure.train()
    for step in range(at_least("steps", steps, 0)):
        if callable(x_train):
            batch = x_train(batch_size, generator)
        else:
            batch = x_train[torch.randint(0, len(x_train), (batch_size,), generator=generator)]
        loss = procedure(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if hook is not None:
            hook()
        running += float(loss.detach())
        if (step + 1) % log_every == 0:
            curve.append(running / log_every)
            running = 0.0
    procedure.eval()
    return curve


TEACHER_SETTINGS: dict[str, Any] = {
    "data": "load_ring(seed=0)",
    "steps": 4000,
    "batch_size": 256,
    "lr": 1e-3,
}


def cached_teacher_denoiser(
    device: torch.device | str | None = None, cache_dir: Path | str | None = None
) -> tuple[Denoiser, Mapping[str, Any], bool]:
    """The teacher denoiser trained on the ring, from the cache: ``(teacher, record, from_cache)``."""
    from reference_impls.common.experiment import cached_model

    def train_teacher(model: nn.Module) -> dict[str, Any]:
        data = load_ring(seed=0)
        curve = fit(
            DenoisingTraining(model),
            data.x_train.to(next(model.parameters()).device),
            TEACHER_SETTINGS["steps"],
            TEACHER_SETTINGS["batch_size"],
            TEACHER_SETTINGS["lr"],
        )
        return {"loss_curve": curve}

    model, record, hit = cached_model(
        teacher_denoiser,
        train_teacher,
        settings=TEACHER_SETTINGS,
        device=device,
        cache_dir=cache_dir,
    )
    return model, record, hit


# ----------------------------------------------------------------------------- sampling


def cosine_sigma(u: torch.Tensor, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX):
    """Progressive distillation's cosine schedule as a noise level: $\\sigma(u) = \\tan(a u + b)$.

    $u = 0$ gives ``sigma_min`` and $u = 1$ gives ``sigma_max`` (the authors'
    ``_logsnr_schedule_cosine`` with $\\sigma = e^{-\\mathrm{logSNR}/2}$), clamped to the
    range against rounding.
    """
    low, high = math.atan(sigma_min), math.atan(sigma_max)
    return torch.tan(low + (high - low) * u).clamp(sigma_min, sigma_max)


def cosine_sigmas(num_steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX):
    """The DDIM grid of ``num_steps`` steps: ``num_steps + 1`` levels from ``sigma_max`` to ``sigma_min``."""
    u = torch.arange(at_least("num_steps", num_steps, 1), -1, -1, dtype=torch.float64) / num_steps
    return cosine_sigma(u, sigma_min, sigma_max)


def karras_sigmas(
    num_scales: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 7.0
) -> torch.Tensor:
    """The consistency models' grid $\\sigma_i = (\\sigma_\\max^{1/\\rho} + \\tfrac{i}{N-1}(\\sigma_\\min^{1/\\rho} - \\sigma_\\max^{1/\\rho}))^\\rho$."""
    ramp = torch.arange(at_least("num_scales", num_scales, 2), dtype=torch.float64) / (
        num_scales - 1
    )
    low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (high + ramp * (low - high)) ** rho


def _levels(sigma: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.full((like.shape[0],), float(sigma), device=like.device, dtype=like.dtype)


def ddim_step(
    denoiser: nn.Module, x: torch.Tensor, sigma: float, next_sigma: float | None
) -> torch.Tensor:
    """One DDIM (Euler) step from ``sigma`` to ``next_sigma``; ``None``: the last step, returning $D$."""
    denoised = denoiser(x, _levels(sigma, x))
    if next_sigma is None:
        return denoised
    return denoised + (next_sigma / sigma) * (x - denoised)


@torch.no_grad()
def ddim_sample(
    denoiser: nn.Module,
    noise: torch.Tensor,
    num_steps: int,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
) -> torch.Tensor:
    """Samples from standard-normal ``noise`` ``[B, dim]`` by ``num_steps`` DDIM steps (NFE = ``num_steps``)."""
    sigmas = cosine_sigmas(num_steps, sigma_min, sigma_max).tolist()
    x = noise * sigma_max
    for i in range(num_steps):
        x = ddim_step(denoiser, x, sigmas[i], sigmas[i + 1] if i + 1 < num_steps else None)
    return x


@torch.no_grad()
def consistency_sample(
    model: nn.Module,
    noise: torch.Tensor,
    sigmas: Sequence[float] = (SIGMA_MAX,),
    generator: torch.Generator | None = None,
    sigma_min: float = SIGMA_MIN,
) -> torch.Tensor:
    """Consistency sampling (Song et al., Algorithm 1): one step from ``sigmas[0]``, then
    re-noise to each further level and map back; NFE = ``len(sigmas)``."""
    x = model(noise * sigmas[0], _levels(sigmas[0], noise))
    for sigma in sigmas[1:]:
        fresh = torch.randn(noise.shape, generator=generator).to(noise)
        noisy = x + math.sqrt(sigma**2 - sigma_min**2) * fresh
        x = model(noisy, _levels(sigma, noise))
    return x


# ----------------------------------------------------------------------------- quality


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Székely's energy distance $2\\,\\mathbb E\\lVert X-Y\\rVert - \\mathbb E\\lVert X-X'\\rVert - \\mathbb E\\lVert Y-Y'\\rVert$.

    The V-statistic (every pair, the zero diagonal included), so it is never negative;
    two independent samples of 2,000 points of one distribution score about 1e-3. In float64.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise ValueError(
            f"x and y must be samples [N, d] and [M, d] with N, M >= 2, got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    x, y = x.detach().double().cpu(), y.detach().double().cpu()

    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor, radius: float = 0.15) -> int:
    """How many ring modes have at least 1% of the samples within ``radius`` of their centre."""
    distances = torch.cdist(samples.detach().double().cpu(), centres.double())
    nearest, which = distances.min(1)
    counts = torch.bincount(which[nearest < radius], minlength=len(centres))
    return int((counts >= 0.01 * len(samples)).sum())


__all__ = [
    "PRECONDITIONINGS",
    "SIGMA_DATA",
    "SIGMA_MAX",
    "SIGMA_MIN",
    "TEACHER_SETTINGS",
    "Denoiser",
    "DenoisingTraining",
    "RingData",
    "as_consistency_model",
    "cached_teacher_denoiser",
    "consistency_sample",
    "cosine_sigma",
    "cosine_sigmas",
    "ddim_sample",
    "ddim_step",
    "edm_loss",
    "energy_distance",
    "fit",
    "karras_sigmas",
    "load_ring",
    "mode_coverage",
    "ring_centres",
    "sample_ring",
    "teacher_denoiser",
    "trainable_copy",
]
