r"""Curriculum temperature for KD (CTKD): a temperature learned adversarially, from easy to hard.

Citation: ``li2023curriculum`` (Li, Li, Yang, Zhao, Song, Luo, Li and Yang, AAAI 2023), the
global-temperature version. Authors' code: https://github.com/zhengli97/CTKD (commit
``7d52522``): ``models/temp_global.py`` (``Global_T`` and ``GradientReversalFunction``),
``helper/loops.py`` (``train_distill``: the temperature ``t_start + t_end * sigmoid(...)``),
``train_student.py`` (``CosineDecay``, the arguments' defaults), ``distiller_zoo/KD.py``
(``DistillKL``) and ``scripts/run_cifar_distill.sh`` (the CIFAR-100 command).

The temperature is not a hyper-parameter but a learnable scalar $\theta$, mapped into
$(\tau_{\min}, \tau_{\min} + \tau_{\mathrm{range}})$ by a sigmoid. The student minimises
the KD loss; the temperature *maximises* it, through a gradient-reversal layer (GRL:
identity forward, gradient times $-\lambda$ backward), so it keeps choosing the softening
that is hardest for the student:

$$
\tau = \tau_{\min} + \tau_{\mathrm{range}}\,\sigma(\theta), \qquad
\mathcal{L}_{\mathrm{CTKD}} = w\,\tau^{2}\,\frac{1}{B}\sum_{b=1}^{B}
  \mathrm{KL}\!\left(p^{t,\tau}_b \,\middle\|\, p^{s,\tau}_b\right), \qquad
\min_{\theta_s}\,\max_{\theta}\ \mathcal{L}_{\mathrm{CTKD}}.
$$

One optimiser step updates both: the student descends its gradient, $\theta$ receives
$-\lambda\,\partial\mathcal{L}/\partial\theta$ and so ascends. The curriculum is the schedule of
$\lambda$: a cosine from $\lambda_{\mathrm{start}}$ to $\lambda_{\mathrm{end}}$ over the first
$E_\lambda$ epochs, constant afterwards (epochs $e = 1, 2, \dots$ as the authors count):

$$
\lambda_e = \lambda_{\mathrm{start}} + (\lambda_{\mathrm{end}} - \lambda_{\mathrm{start}})\,
  \frac{1 - \cos\!\big(\pi \min(e, E_\lambda) / E_\lambda\big)}{2}.
$$

Early on the adversary is weak (easy), later it pushes the temperature to where the
student's loss is largest (hard).

Defaults, the authors' CIFAR-100 command (``run_cifar_distill.sh``, KD + global CTKD):
$\tau_{\min} = 1$ (``--t_start``), $\tau_{\mathrm{range}} = 20$ (``--t_end``), $\theta$
initialised to 1 (``nn.Parameter(torch.ones(1))``, so $\tau$ starts at
$1 + 20\,\sigma(1) \approx 15.62$); $\lambda$ from 0 to 1 over $E_\lambda = 10$ epochs
(``--decay_max 0 --decay_min -1 --decay_loops 10``, cosine); the loss weights
``-r 0.1 -a 0.9``: cross-entropy 0.1 and KD 0.9. The KD weight 0.9 is folded into this
loss's default ``kd_weight``; set the cross-entropy weight in the distiller,
``OfflineDistiller(student, teacher, CTKDLoss(), ce_weight=0.1)``. $\theta$ is trained by
the student's optimiser (theirs: SGD, learning rate 0.05, momentum 0.9, weight decay
5e-4 on every trainable parameter, $\theta$ included), which the distiller does with the
loss's parameters.

How the code and the paper's notation relate: the authors' schedule value runs from 0 to
$-1$ (``CosineDecay(max_value=0, min_value=-1)``) and their GRL multiplies the gradient by
it; we write the paper's $\lambda \in [0, 1]$ and multiply by $-\lambda$, the same
arithmetic. The schedule is driven by ``on_epoch_start(epoch, epochs)``, which
``OfflineDistiller`` forwards; our epochs count from 0, theirs from 1, so epoch $e$ here
uses their $\lambda_{e+1}$ (their first epoch already has $\lambda_1 \approx 0.024$).
$E_\lambda$ is an absolute number of epochs, as in their code (10 of their 240). A
loss used outside a training loop (``on_epoch_start`` never called) reverses with
$\lambda_{\mathrm{end}}$, the value the schedule holds once it has run.

Deliberate deviations: the KL is computed in log space and in at least float32
(``softened_log_probs``, the shared numerical policy; theirs is
``KLDivLoss(log_softmax, softmax)``) and on any device (their ``temp.cuda()``). The
shared ``kl_divergence`` is not used: it detaches the teacher's side, which here also
carries the temperature's gradient (the teacher's softened distribution depends on
$\tau$); the teacher's logits are detached before the softening instead. The
instance-wise temperature of the paper (an MLP on the logits) is not implemented.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import softened_log_probs
from reference_impls.common.validation import (
    at_least,
    logit_pair,
    non_negative,
    positive,
)


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-strength``."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return tensor.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


def reverse_gradient(tensor: torch.Tensor, strength: float) -> torch.Tensor:
    """Gradient reversal (Ganin and Lempitsky, 2015): ``tensor`` forward, ``-strength`` x gradient back."""
    return _ReverseGradient.apply(tensor, strength)


def cosine_lambda(epoch: int, loop_epochs: int, start: float = 0.0, end: float = 1.0) -> float:
    """$\\lambda$ at the authors' 1-based ``epoch``: a half cosine from ``start`` to ``end``, then flat."""
    progress = min(max(epoch, 0), loop_epochs) / loop_epochs
    return start + (end - start) * (1.0 - math.cos(math.pi * progress)) / 2.0


def softened_kl_with_temperature(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """$\\tau^2\\,\\mathrm{KL}(p^{t,\\tau} \\| p^{s,\\tau})$, batch mean, differentiable in $\\tau$ on both sides."""
    log_p_student = softened_log_probs(student_logits, temperature)
    log_p_teacher = softened_log_probs(teacher_logits.detach(), temperature)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(dim=-1)
    return kl.mean() * temperature**2


class CTKDLoss(DistillationLoss):
    """KD with a global temperature learned adversarially through gradient reversal.

    Args:
        kd_weight: weight of the KD term (authors' CIFAR-100 ``-a 0.9``; their
            cross-entropy weight 0.1 goes to the distiller's ``ce_weight``).
        min_temperature: $\\tau_{\\min}$, the lowest temperature (``--t_start``, 1).
        temperature_range: $\\tau_{\\mathrm{range}}$; $\\tau < \\tau_{\\min} + \\tau_{\\mathrm{range}}$
            (``--t_end``, 20).
        initial_parameter: initial $\\theta$ (their ``torch.ones(1)``: $\\tau_0 \\approx 15.62$).
        lambda_start, lambda_end: the reversal strength $\\lambda$ at the first and at the
            last epoch of the cosine curriculum (0 and 1).
        lambda_epochs: $E_\\lambda$, the epochs over which $\\lambda$ rises (``--decay_loops``, 10).
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        kd_weight: float = 0.9,
        min_temperature: float = 1.0,
        temperature_range: float = 20.0,
        initial_parameter: float = 1.0,
        lambda_start: float = 0.0,
        lambda_end: float = 1.0,
        lambda_epochs: int = 10,
    ) -> None:
        super().__init__()
        self.kd_weight = positive("kd_weight", kd_weight)
        self.min_temperature = positive("min_temperature", min_temperature)
        self.temperature_range = positive("temperature_range", temperature_range)
        if not math.isfinite(initial_parameter):
            raise ValueError(f"initial_parameter must be finite, got {initial_parameter}")
        self.lambda_start = non_negative("lambda_start", lambda_start)
        self.lambda_end = non_negative("lambda_end", lambda_end)
        self.lambda_epochs = at_least("lambda_epochs", lambda_epochs, 1)
        # theta, shape [1] as the authors' ``global_T``; trained by the student's optimiser
        self.temperature_parameter = nn.Parameter(torch.full((1,), float(initial_parameter)))
        self.lambda_ = self.lambda_end  # outside a training loop: the schedule's final value

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Cosine curriculum of the reversal strength; ``epoch`` counts from 0 (theirs from 1)."""
        self.lambda_ = cosine_lambda(
            epoch + 1, self.lambda_epochs, self.lambda_start, self.lambda_end
        )

    def temperature_of(self, parameter: torch.Tensor) -> torch.Tensor:
        """$\\tau_{\\min} + \\tau_{\\mathrm{range}}\\,\\sigma(\\theta)$ as a 0-dimensional tensor."""
        return (self.min_temperature + self.temperature_range * torch.sigmoid(parameter)).squeeze(0)

    @property
    def temperature(self) -> float:
        """The current temperature $\\tau$ (a number, for logging and plots)."""
        return float(self.temperature_of(self.temperature_parameter.detach()))

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        logit_pair(student_logits, teacher_logits)
        parameter = reverse_gradient(self.temperature_parameter, self.lambda_)
        temperature = self.temperature_of(parameter)
        return self.kd_weight * softened_kl_with_temperature(
            student_logits, teacher_logits, temperature
        )

    def extra_repr(self) -> str:
        return (
            f"kd_weight={self.kd_weight}, temperature={self.temperature:.3f}, "
            f"range=({self.min_temperature}, {self.min_temperature + self.temperature_range}), "
            f"lambda_={self.lambda_:.3f}, lambda_epochs={self.lambda_epochs}"
        )
