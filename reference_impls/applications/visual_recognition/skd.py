r"""Structured knowledge distillation (SKD) for segmentation: pixel-wise and pair-wise terms.

Citation: ``liu2019structured`` (Liu, Chen, Liu, Qu, Luo and Wang, CVPR 2019).
Authors' code: https://github.com/irfanICMLL/structure_knowledge_distillation (commit
ce208e1), ``utils/criterion.py`` (``CriterionPixelWise``,
``CriterionPairWiseforWholeFeatAfterPool``) and ``utils/utils.py`` (``sim_dis_compute``),
weights from ``utils/train_options.py``: ``--lambda-pi 10``, ``--lambda-pa 1``,
``--pool-scale 0.5``.

**Pixel-wise.** The student's class distribution at every pixel is taught by the
teacher's; the code takes the cross-entropy $-\sum_c q^T_{i,c} \log q^S_{i,c}$ (the
KL of the paper plus the teacher's entropy, a constant: the same gradient), summed
over the pixels of the batch and divided by $W H$:

$$
\ell_{pi} = \frac{1}{W H} \sum_{n=1}^{N} \sum_{i=1}^{W H} \sum_{c} -q^{T}_{n,i,c}\,\log q^{S}_{n,i,c}.
$$

**Pair-wise.** A feature map is max-pooled with a window of ``pool_scale`` of its
height and width (``ceil_mode``), each pooled location's feature vector is divided by
its L2 norm (the norm is detached, as in the code), and the student's matrix of
cosine similarities between all pairs of locations $a_{ij}$ is matched to the
teacher's:

$$
\ell_{pa} = \frac{1}{N (W' H')^2} \sum_{n=1}^{N} \sum_{i, j} \big(a^{S}_{n,ij} - a^{T}_{n,ij}\big)^2 .
$$

Total: $\lambda_{pi}\,\ell_{pi} + \lambda_{pa}\,\ell_{pa}$ with the authors' $\lambda_{pi} = 10$,
$\lambda_{pa} = 1$. Where the code and the paper differ, this follows the code: the
pixel-wise term is summed over the images of the batch (the paper's equation averages
over the pixels of one image, so the code's term grows with the batch size; the
authors train with batches of 8) and is a cross-entropy rather than a KL.

Deviations, declared: the holistic (adversarial, WGAN-GP discriminator) term of the
paper, $\lambda_{ho} = 0.1$, is not part of this loss: it needs a discriminator trained
in alternation, which a procedure, not a loss, would own. The pair-wise term reads
one feature stage, ``stage`` (default the last stage before the head); the authors'
``feat_ind=-5`` picks one block's output of their PSPNet's list of outputs.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32, softened_log_probs
from reference_impls.common.validation import (
    dense_maps,
    in_unit_interval,
    non_negative,
    stage_index,
)


def pixel_wise_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """$\\sum$ over the batch's pixels of $-\\sum_c q^T \\log q^S$, divided by $W H$."""
    classes = student_logits.shape[1]
    student_log = softened_log_probs(student_logits.movedim(1, -1).reshape(-1, classes))
    teacher = softened_log_probs(teacher_logits.detach().movedim(1, -1).reshape(-1, classes)).exp()
    height, width = student_logits.shape[-2:]
    return -(teacher * student_log).sum() / (height * width)


def pooled_similarity(features: torch.Tensor, pool_scale: float) -> torch.Tensor:
    """``[N, M, M]`` cosine similarities between the ``M`` max-pooled locations."""
    height, width = features.shape[-2:]
    window = (max(int(height * pool_scale), 1), max(int(width * pool_scale), 1))
    pooled = F.max_pool2d(at_least_float32(features), window, window, ceil_mode=True)
    norm = pooled.pow(2).sum(dim=1, keepdim=True).sqrt().detach() + 1e-8
    flat = (pooled / norm).flatten(2)  # [N, C, M]
    return torch.einsum("ncm,nck->nmk", flat, flat)


def pair_wise_loss(
    student_features: torch.Tensor, teacher_features: torch.Tensor, pool_scale: float
) -> torch.Tensor:
    """Squared differences of the pooled similarity matrices, over $N (W' H')^2$."""
    student = pooled_similarity(student_features, pool_scale)
    teacher = pooled_similarity(teacher_features.detach(), pool_scale)
    locations = student.shape[-1]
    return (student - teacher).pow(2).sum() / (locations**2 * student.shape[0])


class SKDLoss(DistillationLoss):
    """Liu et al.'s pixel-wise and pair-wise structured distillation for segmentation.

    Called ``loss(student_logits, teacher_logits, student_features, teacher_features)``
    with dense logits ``[B, C, H, W]`` and lists of feature maps ``[B, C_k, H_k, W_k]``
    (student and teacher maps of the chosen stage may differ in width, not in size).

    Args:
        pixel_weight: $\\lambda_{pi}$ (authors: 10).
        pair_weight: $\\lambda_{pa}$ (authors: 1).
        pool_scale: the pooling window as a share of the map's height and width (0.5).
        stage: which feature stage the pair-wise term reads (default: the last).
    """

    inputs: ClassVar[tuple[str, str]] = ("logits", "features")
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        pixel_weight: float = 10.0,
        pair_weight: float = 1.0,
        pool_scale: float = 0.5,
        stage: int = -1,
    ) -> None:
        super().__init__()
        self.pixel_weight = non_negative("pixel_weight", pixel_weight)
        self.pair_weight = non_negative("pair_weight", pair_weight)
        self.pool_scale = in_unit_interval("pool_scale", pool_scale)
        if self.pool_scale == 0:
            raise ValueError("pool_scale must be greater than 0, got 0")
        self.stage = stage

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        student_features: list[torch.Tensor],
        teacher_features: list[torch.Tensor],
    ) -> torch.Tensor:
        dense_maps(student_logits, teacher_logits, ("student_logits", "teacher_logits"))
        stage_index("stage", self.stage, len(student_features), negative_ok=True)
        stage_index("stage", self.stage, len(teacher_features), negative_ok=True)
        student_map, teacher_map = student_features[self.stage], teacher_features[self.stage]
        same_size = student_map.shape[0] == teacher_map.shape[0] and (
            student_map.shape[2:] == teacher_map.shape[2:]
        )
        if student_map.dim() != 4 or teacher_map.dim() != 4 or not same_size:
            raise ValueError(
                f"the student's and teacher's feature maps at stage {self.stage} must be "
                f"[B, C, H, W] of one batch and size, got {tuple(student_map.shape)} and "
                f"{tuple(teacher_map.shape)}"
            )
        pixel = pixel_wise_loss(student_logits, teacher_logits)
        pair = pair_wise_loss(student_map, teacher_map, self.pool_scale)
        return self.pixel_weight * pixel + self.pair_weight * pair

    def extra_repr(self) -> str:
        return (
            f"pixel_weight={self.pixel_weight}, pair_weight={self.pair_weight}, "
            f"pool_scale={self.pool_scale}, stage={self.stage}"
        )
