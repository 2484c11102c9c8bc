r"""Fast pose distillation (FPD): a small keypoint network learns the teacher's heatmaps.

Citation: ``zhang2019fast`` (Zhang, Zhu and Ye, "Fast Human Pose Estimation", CVPR 2019).
Authors' code: https://github.com/ilovepose/fast-human-pose-estimation.pytorch (commit
c4722f8), ``lib/core/function.py`` (``fpd_train``: the mixed loss), ``lib/core/loss.py``
(``JointsMSELoss``), ``lib/config/default.py`` (``KD.ALPHA = 0.5``).

Heatmap pose estimators predict one map per keypoint type and are trained by
regressing Gaussian target maps. FPD trains the student on a mix of the ground-truth
maps $M^{gt}$ and the teacher's predicted maps $M^{T}$:

$$
\mathcal{L}_{\mathrm{FPD}} = (1 - \alpha)\,\mathcal{L}_{\mathrm{mse}}(M^{S}, M^{gt})
  + \alpha\,\mathcal{L}_{\mathrm{mse}}(M^{S}, M^{T}),\qquad
\mathcal{L}_{\mathrm{mse}}(P, Q) = \frac{1}{K}\sum_{k=1}^{K} \frac{1}{2}\,
  \mathrm{mean}_{b,i}\big(P_{b,k,i} - Q_{b,k,i}\big)^2,
$$

$\alpha = 0.5$ (the authors' default). $\mathcal{L}_{\mathrm{mse}}$ is ``JointsMSELoss``:
half the mean squared error per keypoint type, averaged over types; with
``target_weight`` ``[B, K]`` (their ``USE_TARGET_WEIGHT``), both maps of a keypoint are
multiplied by its weight first, so invisible keypoints (weight 0) do not count.
This loss includes the ground-truth term (``needs_target``): plug it into
``OfflineDistiller`` with ``ce_weight=0``, the training step of the authors' code.
The teacher's maps are detached; the squared errors are computed in float32 at least.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import dense_maps, in_unit_interval


def joints_mse(
    predicted: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """``JointsMSELoss``: per keypoint type, half the mean squared error; averaged over types."""
    predicted, target = at_least_float32(predicted), at_least_float32(target)
    if target_weight is not None:
        weight = at_least_float32(target_weight)[:, :, None, None]
        predicted, target = predicted * weight, target * weight
    return 0.5 * (predicted - target).pow(2).mean()


class FPDLoss(DistillationLoss):
    """Zhang et al.'s fast pose distillation on keypoint heatmaps ``[B, K, H, W]``.

    Called ``loss(student_heatmaps, teacher_heatmaps, target_heatmaps)`` (the ground
    truth as the target), or with ``target_weight`` ``[B, K]`` as a keyword.

    Args:
        alpha: the weight of the teacher's maps against the ground truth (0.5).
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = True

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        self.alpha = in_unit_interval("alpha", alpha)

    def forward(
        self,
        student_heatmaps: torch.Tensor,
        teacher_heatmaps: torch.Tensor,
        target_heatmaps: torch.Tensor,
        target_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        dense_maps(student_heatmaps, teacher_heatmaps, ("student_heatmaps", "teacher_heatmaps"))
        dense_maps(student_heatmaps, target_heatmaps, ("student_heatmaps", "target_heatmaps"))
        if target_weight is not None and target_weight.shape != student_heatmaps.shape[:2]:
            raise ValueError(
                f"target_weight must have shape [B, K] = {tuple(student_heatmaps.shape[:2])}, "
                f"got {tuple(target_weight.shape)}"
            )
        truth = joints_mse(student_heatmaps, target_heatmaps, target_weight)
        taught = joints_mse(student_heatmaps, teacher_heatmaps.detach(), target_weight)
        return (1 - self.alpha) * truth + self.alpha * taught

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
