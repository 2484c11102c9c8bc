r"""NormKD: a per-sample temperature proportional to the spread of each sample's logits.

Citation: ``chi2023normkd`` (Chi et al., arXiv 2023).
Authors' code: https://github.com/gizi1/NormKD (``mdistiller/distillers/NormKD.py``,
defaults in ``mdistiller/engine/cfg.py``).

One global temperature softens some samples too much and others too little,
because the logits of different samples have very different ranges. NormKD
gives every sample $b$ of every model its own temperature, the standard
deviation of its logits times one hyper-parameter $T_{\mathrm{norm}}$:

$$
T^{s}_b = T_{\mathrm{norm}}\,\sigma(z^{s}_b), \qquad T^{t}_b = T_{\mathrm{norm}}\,\sigma(z^{t}_b),
$$

$$
\mathcal{L}_{\mathrm{NormKD}} = \frac{1}{B}\sum_b \left(T^{t}_b\right)^{2}
  \mathrm{KL}\!\left(\mathrm{softmax}(z^{t}_b / T^{t}_b)\,\middle\|\,
                     \mathrm{softmax}(z^{s}_b / T^{s}_b)\right).
$$

Dividing by $\sigma$ normalises every sample's logits to unit spread (the
distribution is that of a standard-normal-like logit vector at temperature
$T_{\mathrm{norm}}$); the factor $(T^t_b)^2$ plays the role of KD's $\tau^2$
per sample, as in the authors' code.

Defaults (authors' ``cfg.py``, used by all CIFAR-100 configs): $T_{\mathrm{norm}} = 2$,
total loss $0.1\,\mathrm{CE} + 0.9\,\mathcal{L}_{\mathrm{NormKD}}$ (``OfflineDistiller(...,
ce_weight=0.1, kd_weight=0.9)``).

Deviations: the standard deviation is the unbiased one, as in the authors'
code, but a small floor (``1e-7``) keeps constant logit rows from dividing by
zero (the authors have none); everything is computed in at least float32 (the
shared policy of ``reference_impls.common.losses``) so that bf16 autocast does not
distort the per-sample temperatures. The teacher's temperature, which scales the
loss, is computed from the detached teacher.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32, kl_divergence, softened_log_probs
from reference_impls.common.validation import logit_pair, positive

STD_FLOOR = 1e-7


def sample_temperatures(logits: torch.Tensor, temperature_norm: float) -> torch.Tensor:
    """``[B, 1]`` per-sample temperatures $T_{\\mathrm{norm}}\\,\\sigma(z_b)$ (unbiased std)."""
    spread = at_least_float32(logits).std(dim=1, keepdim=True).clamp_min(STD_FLOOR)
    return temperature_norm * spread


def normkd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature_norm: float
) -> torch.Tensor:
    """Per-sample-temperature KD, each sample's KL scaled by its teacher temperature squared."""
    teacher_logits = teacher_logits.detach()
    t_student = sample_temperatures(student_logits, temperature_norm)
    t_teacher = sample_temperatures(teacher_logits, temperature_norm)
    kl = kl_divergence(
        softened_log_probs(student_logits, t_student),
        softened_log_probs(teacher_logits, t_teacher),
        reduction="none",
    )
    return (kl * t_teacher.squeeze(1) ** 2).mean()


class NormKDLoss(DistillationLoss):
    """KD with a normalised, per-sample temperature.

    Args:
        temperature_norm: $T_{\\mathrm{norm}}$, the temperature in units of the
            logits' standard deviation (authors: 2).
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = False

    def __init__(self, temperature_norm: float = 2.0) -> None:
        super().__init__()
        self.temperature_norm = positive("temperature_norm", temperature_norm)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        logit_pair(student_logits, teacher_logits)
        return normkd_loss(student_logits, teacher_logits, self.temperature_norm)

    def extra_repr(self) -> str:
        return f"temperature_norm={self.temperature_norm}"
