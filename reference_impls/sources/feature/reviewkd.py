r"""ReviewKD: distilling knowledge via knowledge review (ABF fusion + hierarchical context loss).

Citation: ``chen2021distilling`` (Chen, Liu, Zhao and Jia, CVPR 2021).
Authors' code: https://github.com/dvlab-research/ReviewKD
(``CIFAR-100/model/reviewkd.py``, ``CIFAR-100/train.py``); defaults cross-checked
with mdistiller's ``ReviewKD`` (https://github.com/megvii-research/mdistiller).

"Review": a *shallow* teacher stage supervises not only the student's stage
at the same depth but also the deeper student stages. The student's features
$F_s^1, \dots, F_s^{n}$ (shallow to deep; the last level is the pooled
embedding seen as a $1\times 1$ map) are fused from deep to shallow by
attention-based fusion (ABF): each level is projected by a 1x1 conv + BN to a
common width, the running fused map from the deeper level is upsampled
(nearest), and two per-pixel attention maps $a, b$ from a 1x1 conv + sigmoid on
their concatenation mix them,

$$
Z^{k} = a^{k} \odot \mathrm{conv}_{1\times 1}(F_s^{k}) + b^{k} \odot \mathrm{up}(Z^{k+1}),
\qquad
\hat F_s^{k} = \mathrm{BN}\big(\mathrm{conv}_{3\times 3}(Z^{k})\big),
$$

and $\hat F_s^{k}$ (with the teacher's width) is compared with the teacher's
$F_t^{k}$ by the hierarchical context loss (HCL), an MSE on a spatial pyramid
(levels $4, 2, 1$ below the map's own size, weights halving each level,
normalised to sum to 1):

$$
\mathrm{HCL}(\hat F, F) = \frac{\mathrm{MSE}(\hat F, F) + \sum_{j} 2^{-j}\,
  \mathrm{MSE}\big(P_{l_j}(\hat F), P_{l_j}(F)\big)}{1 + \sum_j 2^{-j}},
\qquad
\mathcal{L}_{\mathrm{ReviewKD}} = \min\!\Big(1, \tfrac{e}{E_w}\Big)\sum_{k} \mathrm{HCL}(\hat F_s^{k}, F_t^{k}),
$$

where $P_l$ is adaptive average pooling to $l \times l$ (only levels $l$ smaller
than the map are used) and $E_w$ is the warm-up length in epochs.

Inputs, as the authors (and mdistiller's CIFAR config): the teacher's pre-ReLU
stage maps plus its pooled embedding; the student's post-ReLU stage maps plus
its pooled embedding. This loss reads ``preact_features`` from both models and
recovers the student's post-ReLU maps and both pooled embeddings as
$\mathrm{ReLU}(\cdot)$ and its spatial mean, which is exactly what ``TinyCNN``
computes (``student_preact=True`` uses the student's pre-ReLU maps instead, as
mdistiller's ``STU_PREACT``).

Defaults (authors' CIFAR-100 ``train.py``): fused width
$\min(512, C_s^{n})$; ABF convs Kaiming-uniform with $a=1$; loss weight 1
(``OfflineDistiller(..., kd_weight=1.0)``; the authors' scripts use 5.0 for
WRN-40-2/ResNet32x4 teachers with WRN-16-2, WRN-40-1, ShuffleNet, ResNet8x4,
8.0 for ShuffleNetV2, 0.6 for ResNet56→ResNet20); warm-up over 20 epochs;
cross-entropy weight 1.

Deviations, all from mapping the authors' 4-level CIFAR setting onto our
3-stage tiny models: levels are our three stages plus the pooled embedding;
spatial sizes are read from the tensors instead of the authors' per-model
``shapes``/``out_shapes`` tables; and the warm-up factor is
$\min(1, (e+1)/E_w)$ with a 0-based epoch $e$ (mdistiller's 1-based epoch),
so the first epoch is not silently undistilled (the original ``train.py``
gives 0 there). Called outside a training loop (no epoch reported), the
factor is 1. HCL is computed in at least float32 (half precision is upcast, float64
kept); the fusion modules are not cast on each call: features of another dtype than the
loss's parameters raise ``TypeError`` saying to move the loss.

The authors' ``CIFAR-100/train.py`` never calls ``teacher.eval()`` (only the
student, in its ``test`` function): the teacher's batch norms normalise with
the statistics of each training batch (its weights are frozen by
``load_teacher_weight`` in ``CIFAR-100/util/misc.py``). ``OfflineDistiller``
keeps the teacher in eval mode (running statistics), like mdistiller's
``Distiller.train``.

On small models: the warm-up is counted in epochs, so the default 20 does not end in a
short run (after 9 epochs the factor is 0.45). The feature notebook (``student_cnn`` on 100
labelled digits, 9 epochs, seeds 0 and 1) keeps the authors' fraction of the run,
``ReviewKDLoss(student_channels, teacher_channels, warmup_epochs=WARMUP)`` with
``WARMUP = max(1, round(9 * 20 / 240)) = 1``, and measured 0.875 ± 0.013 test accuracy
against 0.866 ± 0.011 for cross-entropy alone. In a scratch run of that set-up with only the
warm-up changed, the default ``warmup_epochs=20`` measured 0.876 ± 0.010: the same, so the
choice did not matter here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.connectors import same_dtype
from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import non_negative

PYRAMID_LEVELS = (4, 2, 1)


def hierarchical_context_loss(
    student_maps: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor]
) -> torch.Tensor:
    """HCL: per level, an MSE on the map and on its 4x4, 2x2, 1x1 pools (those smaller than it)."""
    total = at_least_float32(student_maps[0].new_zeros(()))
    for student, teacher in zip(student_maps, teacher_maps, strict=True):
        student, teacher = at_least_float32(student), at_least_float32(teacher.detach())
        height = student.shape[-2]
        loss = F.mse_loss(student, teacher)
        weight, weight_sum = 1.0, 1.0
        for level in PYRAMID_LEVELS:
            if level >= height:
                continue
            weight /= 2.0
            pooled_student = F.adaptive_avg_pool2d(student, level)
            pooled_teacher = F.adaptive_avg_pool2d(teacher, level)
            loss = loss + weight * F.mse_loss(pooled_student, pooled_teacher)
            weight_sum += weight
        total = total + loss / weight_sum
    return total


class AttentionBasedFusion(nn.Module):
    """ABF: project one student level, fuse it with the deeper fused map, map to teacher width."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(mid_channels),
        )
        self.output = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        # two attention maps (one for each input) from both inputs; the deepest level has none
        self.attention = (
            nn.Sequential(nn.Conv2d(2 * mid_channels, 2, kernel_size=1), nn.Sigmoid())
            if fuse
            else None
        )
        nn.init.kaiming_uniform_(self.project[0].weight, a=1)
        nn.init.kaiming_uniform_(self.output[0].weight, a=1)

    def forward(
        self,
        features: torch.Tensor,
        deeper: torch.Tensor | None,
        out_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (map compared with the teacher, fused map passed to the shallower level)."""
        fused = self.project(features)
        if self.attention is not None:
            if deeper is None:
                raise ValueError("a fusing ABF needs the deeper level's fused map")
            deeper = F.interpolate(deeper, size=fused.shape[-2:], mode="nearest")
            weights = self.attention(torch.cat([fused, deeper], dim=1))
            fused = fused * weights[:, 0:1] + deeper * weights[:, 1:2]
        resized = fused
        if tuple(resized.shape[-2:]) != tuple(out_size):
            resized = F.interpolate(resized, size=out_size, mode="nearest")
        return self.output(resized), resized


class ReviewKDLoss(DistillationLoss):
    """Chen et al.'s knowledge review: ABF fusion of student levels + HCL to teacher levels.

    Args:
        student_channels: channels of every student stage (e.g. ``student.channels``).
        teacher_channels: channels of every teacher stage.
        warmup_epochs: the loss ramps up linearly over this many epochs (authors: 20);
            0 disables the warm-up.
        student_preact: fuse the student's pre-ReLU maps instead of its post-ReLU maps.
        max_mid_channels: cap on the fused width (authors: 512).
    """

    inputs: ClassVar[str] = "preact_features"
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        warmup_epochs: float = 20.0,
        student_preact: bool = False,
        max_mid_channels: int = 512,
    ) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels) or not student_channels:
            raise ValueError(
                f"need the same non-zero number of stages, got student {len(student_channels)} "
                f"and teacher {len(teacher_channels)}"
            )
        self.warmup_epochs = non_negative("warmup_epochs", warmup_epochs)
        self.student_preact = student_preact
        # levels: every stage, then the pooled embedding (same channels as the last stage)
        in_channels = [*student_channels, student_channels[-1]]
        out_channels = [*teacher_channels, teacher_channels[-1]]
        mid_channels = min(max_mid_channels, in_channels[-1])
        deepest = len(in_channels) - 1
        self.fusions = nn.ModuleList(
            AttentionBasedFusion(c_in, mid_channels, c_out, fuse=level < deepest)
            for level, (c_in, c_out) in enumerate(zip(in_channels, out_channels, strict=True))
        )
        self.warmup_factor = 1.0

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        if self.warmup_epochs > 0:
            self.warmup_factor = min(1.0, (epoch + 1) / self.warmup_epochs)

    def review(
        self, student_levels: Sequence[torch.Tensor], teacher_levels: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Fuse student levels from deep to shallow; one output per level, teacher-shaped."""
        outputs: list[torch.Tensor] = []
        deeper = None
        for level in reversed(range(len(self.fusions))):
            out_size = tuple(teacher_levels[level].shape[-2:])
            output, deeper = self.fusions[level](student_levels[level], deeper, out_size)
            outputs.insert(0, output)
        return outputs

    def forward(
        self, student_preacts: Sequence[torch.Tensor], teacher_preacts: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        if len(student_preacts) != len(self.fusions) - 1:
            raise ValueError(
                f"expected {len(self.fusions) - 1} student stages, got {len(student_preacts)}"
            )
        student_maps = (
            list(student_preacts) if self.student_preact else [F.relu(f) for f in student_preacts]
        )
        student_levels = [*student_maps, F.relu(student_preacts[-1]).mean((2, 3), keepdim=True)]
        teacher_preacts = [t.detach() for t in teacher_preacts]
        teacher_levels = [
            *teacher_preacts,
            F.relu(teacher_preacts[-1]).mean((2, 3), keepdim=True),
        ]
        same_dtype(type(self).__qualname__, self.fusions, student_levels[0])
        reviewed = self.review(student_levels, teacher_levels)
        return self.warmup_factor * hierarchical_context_loss(reviewed, teacher_levels)

    def extra_repr(self) -> str:
        return f"warmup_epochs={self.warmup_epochs}, student_preact={self.student_preact}"
