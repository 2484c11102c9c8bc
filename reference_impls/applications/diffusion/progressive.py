r"""Progressive distillation: a student learns in one DDIM step what the teacher does in two.

Citation: ``salimans2022progressive`` (Salimans and Ho, ICLR 2022).
Authors' code: https://github.com/google-research/google-research/tree/master/diffusion_distillation
(JAX; ``diffusion_distillation/dpm.py``, ``Model.training_losses`` with ``target_model_fn``
set, and ``Model.ddim_step``; configs ``config/cifar_distill.py``).

The teacher samples with $2N$ DDIM steps on the cosine grid $u = i/2N$. The student,
initialised as a copy of the teacher, is trained to sample with $N$: for a data point
$x$, a step index $i \sim \mathcal U\{0, \dots, N-1\}$, $u = (i+1)/N$ and
$x_\sigma = x + \sigma(u)\,\varepsilon$, the teacher takes two DDIM steps,
$u \to u - \tfrac{1}{2N} \to u - \tfrac1N$, landing at $x''$; the student's target is
the $\tilde x$ from which *one* DDIM step lands at the same point,

$$
\tilde x = \frac{x'' - (\sigma''/\sigma)\,x_\sigma}{1 - \sigma''/\sigma}
\quad(\text{at } i = 0:\ \tilde x = \text{the teacher's last denoised estimate}),
$$

$$
\mathcal L = \mathbb E\,\max\!\big(\lVert \hat x - \tilde x\rVert^2,\
  \lVert \hat\varepsilon - \tilde\varepsilon\rVert^2\big)
  = \mathbb E\,\max(\mathrm{SNR}, 1)\,\lVert \hat x - \tilde x\rVert^2 ,
$$

each norm a mean over the dimensions, $\hat\varepsilon = (x_\sigma - \hat x)/\sigma$ and
$\mathrm{SNR} = 1/\sigma^2$: the paper's "truncated SNR" weighting, which the code writes
``jnp.maximum(x_mse, eps_mse)`` (``mean_loss_weight_type='snr_trunc'``; ``'snr'`` and
``'constant'`` are here too). When the student matches the targets, $N$ of its steps
reproduce $2N$ of the teacher's; :meth:`ProgressiveDistillation.next_round` then makes
the student the (frozen) teacher and halves $N$ again, starting from the current
student, as the authors' loop does.

We write the process in the variance-exploding form of ``reference_impls.common.diffusion``
($z_t = \alpha_t x_\sigma$, $\sigma = \sigma_t/\alpha_t$): the DDIM step, the target
and both MSEs are the authors' expressions after this change of variables (the
``stdv_frac`` $\sigma_s/\sigma_t$ of the variance-preserving form becomes
$\sigma''\alpha''/(\sigma\alpha)$ and the $\alpha$s cancel). Discrete-time training as
theirs: $u = (i+1)/N$.

Defaults: the authors' CIFAR-10 setting: the teacher samples with 8192 steps (the
student with 4096 in the first round), truncated-SNR weighting; their Adam, learning
rate 5e-5 with linear decay, 50,000 steps per round, gradient clipping at 1, belong to
the training loop (the notebook's: Adam 1e-3, 1,500 steps per round, from 32 teacher
steps down to 1).

Deviations (declared): (1) the denoiser is the shared EDM-preconditioned one
(``Denoiser``) rather than a network predicting $x$ (their CIFAR-10 config,
``mean_type='x'``) or $v$ (the paper's other settings); the loss is the same function
of $\hat x$ whatever the network predicts, and at $\sigma_d = 1$ EDM's preconditioning
is exactly $v$-prediction. (2) The cosine log-SNR schedule is clipped to
$[-2\ln 80, -2\ln 0.002]$ instead of $[-20, 20]$: the teacher is trained on EDM's range
$\sigma \in [0.002, 80]$. (3) No gradient clipping and no learning-rate decay in our
loop (a few thousand steps on a 2-D problem).

Equality with the authors' code: their ``Model.training_losses`` (distillation,
``mean_type='x'``, ``'snr_trunc'``, the cosine schedule above), transcribed with its
helpers and run in JAX 0.10 (float64) outside this repository, with our denoiser written
in JAX as their ``model_fn`` ($x_\sigma = z_t/\alpha_t$, $\sigma = e^{-\mathrm{logSNR}/2}$)
and its step indices and noise fed to ours: loss and gradients w.r.t. the student's
parameters agree to a relative 4e-15 for $N$ = 1, 2, 4, 16 (256 points, 2x64 MLPs),
2e-12 for $N = 4096$. The repository's runner (``scripts/verify_official.py``) runs
PyTorch only, so there is no committed record.
"""

from __future__ import annotations

import copy

import torch

from reference_impls.common.diffusion import Denoiser, cosine_sigma, trainable_copy
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import freeze
from reference_impls.common.validation import at_least, one_of

WEIGHTINGS = ("snr_trunc", "snr", "constant")


class ProgressiveDistillation(DistillationProcedure):
    """One round of progressive distillation: ``forward(x0)`` is the student's loss on a data batch.

    Args:
        teacher: the diffusion model (a ``Denoiser``) whose ``teacher_steps``-step DDIM
            sampler is distilled; frozen here.
        teacher_steps: the teacher's number of DDIM steps (even); the student learns
            ``teacher_steps // 2``.
        student: the student denoiser; default a trainable copy of the teacher (the
            authors initialise it so).
        weighting: ``"snr_trunc"`` ($\\max(\\mathrm{SNR}, 1)$ on the $x$-MSE, the
            authors'), ``"snr"`` (the $\\varepsilon$-MSE) or ``"constant"`` (the $x$-MSE).
    """

    def __init__(
        self,
        teacher: Denoiser,
        teacher_steps: int = 8192,
        student: Denoiser | None = None,
        weighting: str = "snr_trunc",
    ) -> None:
        super().__init__()
        if at_least("teacher_steps", teacher_steps, 2) % 2:
            raise ValueError(f"teacher_steps must be even, got {teacher_steps}")
        self.teacher = freeze(teacher)
        self.student = student if student is not None else trainable_copy(teacher)
        self.weighting = one_of("weighting", weighting, WEIGHTINGS)
        # a buffer, so that a saved procedure remembers its round
        self.register_buffer("steps", torch.tensor(teacher_steps // 2))

    @property
    def student_steps(self) -> int:
        """$N$: the student's number of DDIM steps in this round (the teacher's is $2N$)."""
        return int(self.steps)

    def train(self, mode: bool = True) -> ProgressiveDistillation:
        super().train(mode)
        self.teacher.eval()
        return self

    def next_round(self) -> None:
        """The student becomes the frozen teacher, and the new student (its copy) halves the steps."""
        if self.student_steps < 2:
            raise ValueError("the student already samples in one step: there is no next round")
        self.teacher = freeze(copy.deepcopy(self.student))
        self.steps.floor_divide_(2)

    def sigma(self, u: torch.Tensor) -> torch.Tensor:
        return cosine_sigma(u, self.teacher.sigma_min, self.teacher.sigma_max)

    @torch.no_grad()
    def target(self, x_t: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """$\\tilde x$: what one student step from $u = (i+1)/N$ must predict to land where two teacher steps land."""
        n = self.student_steps
        u = (step.to(x_t.dtype) + 1) / n
        sigma, sigma_mid, sigma_next = (self.sigma(u - k / (2 * n))[:, None] for k in range(3))
        denoised = self.teacher(x_t, sigma[:, 0])
        x_mid = denoised + sigma_mid / sigma * (x_t - denoised)
        denoised_mid = self.teacher(x_mid, sigma_mid[:, 0])
        x_next = denoised_mid + sigma_next / sigma_mid * (x_mid - denoised_mid)
        ratio = sigma_next / sigma
        implied = (x_next - ratio * x_t) / (1 - ratio)
        return torch.where((step == 0)[:, None], denoised_mid, implied)

    def forward(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        if x0.dim() != 2 or x0.shape[1] != self.student.dim:
            raise ValueError(
                f"x0 must be data points of shape [B, {self.student.dim}], got {tuple(x0.shape)}"
            )
        x0 = at_least_float32(x0)
        step = torch.randint(0, self.student_steps, (x0.shape[0],), device=x0.device)
        sigma = self.sigma((step.to(x0.dtype) + 1) / self.student_steps)
        x_t = x0 + sigma[:, None] * torch.randn_like(x0)
        target = self.target(x_t, step)
        denoised = self.student(x_t, sigma)
        x_mse = (denoised - target).pow(2).mean(1)
        # the epsilon implied by each x prediction (the authors' predict_eps_from_x)
        eps_mse = ((x_t - denoised) / sigma[:, None] - (x_t - target) / sigma[:, None]).pow(2)
        eps_mse = eps_mse.mean(1)
        if self.weighting == "snr_trunc":
            loss = torch.maximum(x_mse, eps_mse)
        elif self.weighting == "snr":
            loss = eps_mse
        else:
            loss = x_mse
        return {
            "loss": loss.mean(),
            "x_mse": x_mse.mean().detach(),
            "eps_mse": eps_mse.mean().detach(),
        }
