r"""Vanilla knowledge distillation: match the teacher's temperature-softened class probabilities.

Citation: ``hinton2015distilling`` (Hinton, Vinyals and Dean, 2015).
Authors' code: none released; defaults follow mdistiller's KD
(https://github.com/megvii-research/mdistiller, ``mdistiller/distillers/KD.py``,
CIFAR-100 config), the reference implementation most later papers compare against.

With logits $z^s$ (student) and $z^t$ (teacher) and temperature $\tau$, the
softened distributions are $p_i^{\tau} = \exp(z_i/\tau) / \sum_j \exp(z_j/\tau)$ and

$$
\mathcal{L}_{\mathrm{KD}} = \tau^{2}\,
  \frac{1}{B}\sum_{b=1}^{B} \mathrm{KL}\!\left(p^{t,\tau}_b \,\middle\|\, p^{s,\tau}_b\right).
$$

The factor $\tau^2$ keeps the gradient magnitude independent of $\tau$
(the gradient of the soft term scales as $1/\tau^2$, §2 of the paper). The
mean is over the batch (``batchmean``), the sum over classes. In mdistiller's
CIFAR-100 setting $\tau = 4$ and the total loss is $0.1\,\mathrm{CE} + 0.9\,\mathcal{L}_{\mathrm{KD}}$
(use ``OfflineDistiller(..., ce_weight=0.1, kd_weight=0.9)``). The term is computed
by the shared ``reference_impls.common.losses.softened_kl`` (half precision in float32).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import softened_kl
from reference_impls.common.validation import logit_pair, positive


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """$\\tau^2 \\cdot \\mathrm{KL}(p^t \\| p^s)$ at temperature $\\tau$, summed over classes, batch mean."""
    return softened_kl(student_logits, teacher_logits, temperature)


class KDLoss(DistillationLoss):
    """Hinton et al.'s soft-target loss.

    Args:
        temperature: softening temperature $\\tau$ (mdistiller CIFAR-100: 4).
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = False

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = positive("temperature", temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        logit_pair(student_logits, teacher_logits, tokens_ok=True)
        return kd_loss(student_logits, teacher_logits, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
