r"""Channel-wise distillation (CWD) for dense prediction: match each channel's spatial distribution.

Citation: ``shu2021channel`` (Shu, Liu, Gao, Yan and Shen, ICCV 2021).
Authors' code: https://github.com/irfanICMLL/TorchDistiller (commit 78bac7c),
``SemSeg-distill/utils/criterion.py``, ``CriterionCWD`` with ``norm_type='channel'``
and ``divergence='kl'``; the README's command for distilling the logits map,
``bash exp_cwd.sh channel kl 3 4``, sets the loss weight 3 and $\tau = 4$.

Each channel $c$ of a dense map $y \in \mathbb{R}^{C \times H \times W}$ (here the
segmentation logits) is turned into a distribution over the $H W$ locations,
$\phi(y_c)_i = \exp(y_{c,i}/\tau) / \sum_j \exp(y_{c,j}/\tau)$, so that the student
learns *where* each class is most salient, not the per-pixel class balance:

$$
\mathcal{L}_{\mathrm{CWD}} = \lambda\,\frac{\tau^2}{N C} \sum_{n=1}^{N} \sum_{c=1}^{C}
  \sum_{i=1}^{H W} \phi(y^{T}_{n,c})_i \log\frac{\phi(y^{T}_{n,c})_i}{\phi(y^{S}_{n,c})_i}.
$$

Defaults are the README's logits setting: $\lambda = 3$ (folded into ``weight``)
and $\tau = 4$. The sum is over locations, the mean over images and channels, as
``CriterionCWD`` divides by ``n * c``; the teacher is detached; the softmax is
computed in float32 at least. Student and teacher maps must have the same shape
(for feature maps of other widths the authors add a 1 x 1 convolution first;
project before calling).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import kl_divergence, softened_log_probs
from reference_impls.common.validation import dense_maps, non_negative, positive


def channel_wise_divergence(
    student_map: torch.Tensor, teacher_map: torch.Tensor, temperature: float
) -> torch.Tensor:
    """$\\tau^2$ times the KL of each channel's spatial softmax, summed over locations,
    averaged over images and channels."""
    batch, channels = student_map.shape[:2]
    student_log = softened_log_probs(student_map.reshape(batch * channels, -1), temperature)
    teacher_log = softened_log_probs(
        teacher_map.detach().reshape(batch * channels, -1), temperature
    )
    return temperature**2 * kl_divergence(student_log, teacher_log, reduction="batchmean")


class CWDLoss(DistillationLoss):
    """Shu et al.'s channel-wise distillation on dense logits ``[B, C, H, W]``.

    Args:
        temperature: $\\tau$ of the spatial softmax (authors' logits setting: 4).
        weight: $\\lambda$, the loss weight (authors' logits setting: 3).
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = False

    def __init__(self, temperature: float = 4.0, weight: float = 3.0) -> None:
        super().__init__()
        self.temperature = positive("temperature", temperature)
        self.weight = non_negative("weight", weight)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        dense_maps(student_logits, teacher_logits, ("student_logits", "teacher_logits"))
        return self.weight * channel_wise_divergence(
            student_logits, teacher_logits, self.temperature
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, weight={self.weight}"
