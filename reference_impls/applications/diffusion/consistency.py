r"""Consistency distillation: a one-step generator that agrees with itself along the teacher's ODE.

Citation: ``song2023consistency`` (Song, Dhariwal, Chen and Sutskever, ICML 2023).
Authors' code: https://github.com/openai/consistency_models (``cm/karras_diffusion.py``,
``KarrasDenoiser.consistency_losses`` and ``KarrasDenoiser.denoise``; the EMA target in
``cm/train_util.py``, ``CMTrainLoop._update_target_ema``; settings in ``scripts/launch.sh``).

A consistency function maps every point of a probability-flow ODE trajectory to its
origin: $f_\theta(x_\sigma, \sigma) = x_0$, with the boundary condition
$f_\theta(x, \sigma_\min) = x$ built in by the scalings

$$
f_\theta(x, \sigma) = c_\mathrm{skip}(\sigma)\,x + c_\mathrm{out}(\sigma)\,F_\theta(c_\mathrm{in}x, \sigma),\quad
c_\mathrm{skip} = \frac{\sigma_d^2}{(\sigma-\sigma_\min)^2+\sigma_d^2},\
c_\mathrm{out} = \frac{(\sigma-\sigma_\min)\,\sigma_d}{\sqrt{\sigma^2+\sigma_d^2}}
$$

(``Denoiser(preconditioning="consistency")``). On the grid
$\sigma_1 > \dots > \sigma_N$ (``karras_sigmas``, $\rho = 7$, from $\sigma_\max = 80$ to
$\sigma_\min = 0.002$), for $n \sim \mathcal U\{1, \dots, N-1\}$ and
$x_{\sigma_n} = x + \sigma_n\varepsilon$, one Heun step of the teacher's ODE
$\mathrm{d}x/\mathrm{d}\sigma = (x - D_\phi(x;\sigma))/\sigma$ gives $\hat x_{\sigma_{n+1}}$, and

$$
\mathcal L = \mathbb E\, \lambda(\sigma_n)\,
  d\big(f_\theta(x_{\sigma_n}, \sigma_n),\ f_{\theta^-}(\hat x_{\sigma_{n+1}}, \sigma_{n+1})\big),
\qquad \theta^- \leftarrow \mu\,\theta^- + (1-\mu)\,\theta ,
$$

$d$ the mean squared error over dimensions (``loss_norm="l2"``), $\lambda = 1$
(``weight_schedule="uniform"``), the target network $\theta^-$ an EMA of the student
updated after every optimiser step (:meth:`ConsistencyDistillation.update_target`,
called by ``reference_impls.common.diffusion.fit``).

Defaults: their ImageNet-64 L2 distillation run (``launch.sh``: ``--training_mode
consistency_distillation --target_ema_mode fixed --start_ema 0.95 --scale_mode fixed
--start_scales 40 --loss_norm l2 --weight_schedule uniform``, Heun teacher solver,
$\sigma \in [0.002, 80]$, $\sigma_d = 0.5$): $N = 40$, $\mu = 0.95$. The student
starts as the teacher's network with the boundary scalings, as ``cm_train.py`` copies
the teacher's parameters into it.

Deviations (declared): (1) LPIPS (their other released loss) needs images, so only
``"l2"`` and ``"l1"`` are offered. (2) Their network reads the noise level as
$250\ln\sigma$ (``rescaled_t``); ours reads $\ln\sigma/4$ (EDM's $c_\mathrm{noise}$),
the same information scaled (the comparison feeds their function a model that divides
by 1000). (3) No dropout, so their trick of replaying the dropout RNG state for the
target network has nothing to replay. (4) The batch mean is taken here; their
function returns per-sample losses that the training loop averages (uniform
schedule-sampler weights).
"""

from __future__ import annotations

import copy

import torch

from reference_impls.common.diffusion import Denoiser, as_consistency_model, karras_sigmas
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import freeze
from reference_impls.common.validation import at_least, in_unit_interval, one_of

SOLVERS = ("heun", "euler")
LOSS_NORMS = ("l2", "l1")
WEIGHT_SCHEDULES = ("uniform", "snr", "snr+1", "karras", "truncated-snr")


class ConsistencyDistillation(DistillationProcedure):
    """Consistency distillation: ``forward(x0)`` is the student's loss on a data batch.

    Args:
        teacher: the diffusion model (EDM-preconditioned ``Denoiser``); frozen here.
        student: the consistency model; default the teacher's network with the
            consistency scalings (``as_consistency_model``).
        num_scales: $N$, the number of discretisation points.
        target_ema: $\\mu$ of the target network's EMA.
        solver: the teacher's ODE step, ``"heun"`` (the authors') or ``"euler"``.
        loss_norm: ``"l2"`` or ``"l1"`` (mean over dimensions).
        weight_schedule: $\\lambda(\\sigma_n)$, ``"uniform"`` or one of the authors' others.
        rho: the grid's exponent.
    """

    def __init__(
        self,
        teacher: Denoiser,
        student: Denoiser | None = None,
        num_scales: int = 40,
        target_ema: float = 0.95,
        solver: str = "heun",
        loss_norm: str = "l2",
        weight_schedule: str = "uniform",
        rho: float = 7.0,
    ) -> None:
        super().__init__()
        self.teacher = freeze(teacher)
        self.student = student if student is not None else as_consistency_model(teacher)
        if self.student.preconditioning != "consistency":
            raise ValueError(
                "student must be a consistency model (a Denoiser with "
                f'preconditioning="consistency"), got preconditioning={self.student.preconditioning!r}'
            )
        self.target = freeze(copy.deepcopy(self.student))
        self.target_ema = in_unit_interval("target_ema", target_ema)
        self.solver = one_of("solver", solver, SOLVERS)
        self.loss_norm = one_of("loss_norm", loss_norm, LOSS_NORMS)
        self.weight_schedule = one_of("weight_schedule", weight_schedule, WEIGHT_SCHEDULES)
        at_least("num_scales", num_scales, 2)
        sigmas = karras_sigmas(num_scales, self.student.sigma_min, self.student.sigma_max, rho)
        self.register_buffer("sigmas", sigmas.float())

    def train(self, mode: bool = True) -> ConsistencyDistillation:
        super().train(mode)
        self.teacher.eval()
        self.target.eval()
        return self

    @torch.no_grad()
    def update_target(self) -> None:
        """$\\theta^- \\leftarrow \\mu\\theta^- + (1-\\mu)\\theta$ (after each optimiser step)."""
        for target, online in zip(self.target.parameters(), self.student.parameters(), strict=True):
            target.lerp_(online.detach(), 1 - self.target_ema)

    def after_optimizer_step(self) -> None:
        self.update_target()

    @torch.no_grad()
    def teacher_step(self, x: torch.Tensor, sigma: torch.Tensor, next_sigma: torch.Tensor):
        """One Euler or Heun step of the teacher's probability-flow ODE from ``sigma`` to ``next_sigma``."""
        s, s_next = sigma[:, None], next_sigma[:, None]
        slope = (x - self.teacher(x, sigma)) / s
        euler = x + slope * (s_next - s)
        if self.solver == "euler":
            return euler
        next_slope = (euler - self.teacher(euler, next_sigma)) / s_next
        return x + (slope + next_slope) * (s_next - s) / 2

    def weights(self, sigma: torch.Tensor) -> torch.Tensor:
        snr = sigma**-2
        if self.weight_schedule == "uniform":
            return torch.ones_like(snr)
        if self.weight_schedule == "snr":
            return snr
        if self.weight_schedule == "snr+1":
            return snr + 1
        if self.weight_schedule == "karras":
            return snr + 1 / self.student.sigma_data**2
        return snr.clamp(min=1.0)

    def forward(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        if x0.dim() != 2 or x0.shape[1] != self.student.dim:
            raise ValueError(
                f"x0 must be data points of shape [B, {self.student.dim}], got {tuple(x0.shape)}"
            )
        x0 = at_least_float32(x0)
        noise = torch.randn_like(x0)
        index = torch.randint(0, len(self.sigmas) - 1, (x0.shape[0],), device=x0.device)
        sigmas = self.sigmas.to(x0.dtype)
        sigma, next_sigma = sigmas[index], sigmas[index + 1]
        x_t = x0 + noise * sigma[:, None]
        prediction = self.student(x_t, sigma)
        x_next = self.teacher_step(x_t, sigma, next_sigma)
        with torch.no_grad():
            target = self.target(x_next, next_sigma)
        difference = prediction - target
        distance = difference.pow(2) if self.loss_norm == "l2" else difference.abs()
        loss = (distance.mean(1) * self.weights(sigma)).mean()
        return {"loss": loss, "consistency": loss.detach()}
