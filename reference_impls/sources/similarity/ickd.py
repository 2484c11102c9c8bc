r"""ICKD: match the correlations between the channels of the teacher's feature map.

Citation: ``liu2021exploring`` (Liu et al., ICCV 2021).
Authors' code: https://github.com/ADLab-AutoDrive/ICKD (``Cifar100/distiller_zoo/ICKD.py``,
``Cifar100/train_student.py`` and ``Cifar100/scripts/run_cifar_distill.sh`` for CIFAR-100).

Each channel of a feature map is a feature detector; how channels co-vary
(their diversity and homology) is the knowledge. For one example, flatten the
map into $F \in \mathbb{R}^{c \times hw}$ and take the channel Gram matrix with each
row L2-normalised:

$$
\tilde{G} = F\, F^{\top} \in \mathbb{R}^{c \times c}, \qquad
G_{[i,:]} = \tilde{G}_{[i,:]} \,/\, \lVert \tilde{G}_{[i,:]} \rVert_2 .
$$

The student's map first goes through a trainable 1x1 convolution + batch norm
$C(\cdot)$ that maps its $c_s$ channels to the teacher's $c_t$, so both matrices are
$c_t \times c_t$ (the spatial sizes may differ). With the released code's reduction,

$$
\mathcal{L}_{\mathrm{ICKD}} = \frac{1}{c_t\, B} \sum_{b=1}^{B}
  \big\lVert G^{T}(x_b) - G^{S}\big(C(F^{S}(x_b))\big) \big\rVert_F^2 .
$$

Defaults: the last feature map (``feat[-2]`` in the authors' CIFAR code, the
output of the last stage before pooling), ``stages=(-1,)`` on our 3-stage
models; the ICKD command of the authors' ``Cifar100/README.md`` and
``Cifar100/scripts/run_cifar_distill.sh`` trains $\mathrm{CE} + 2.5\,\mathcal{L}_{\mathrm{ICKD}}$
with no KD term (``-a 0 -b 2.5``, ``-r`` left at 1), i.e.
``OfflineDistiller(..., ce_weight=1.0, kd_weight=2.5)``; their top-level
``Cifar100/train_student.sh`` uses ``-b 4`` instead, and we follow the README. Several stages may be given; their losses are summed, as the
authors' training loop sums the per-stage list. The paper's grid-level variant
(ICKD-L, matrices per spatial patch, for segmentation) is not implemented.

On small models: the similarity notebook (``student_cnn`` on 100 labelled digits, 16 epochs,
batches of 25, seeds 0 and 1) uses the authors' weight,
``OfflineDistiller(..., kd_weight=2.5)`` with ``ICKDLoss(student_channels, teacher_channels)``
(our last stage, a 2x2 map with 128 teacher channels), and measured 0.893 ± 0.007 test
accuracy against 0.886 ± 0.016 for cross-entropy alone: level with it, within the spread of
two seeds. No default was changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.connectors import conv1x1_bn, same_dtype
from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import same_stage_count, stage_indices


def channel_correlation(feature_map: torch.Tensor) -> torch.Tensor:
    """``[B, c, c]`` row-normalised channel Gram matrices of a ``[B, c, h, w]`` map."""
    flat = feature_map.flatten(2)
    return F.normalize(flat @ flat.transpose(1, 2), p=2, dim=2)


class ICKDLoss(DistillationLoss):
    """Liu et al.'s inter-channel correlation loss, with a 1x1 connector per used stage.

    Args:
        student_channels: channels of every student stage (e.g. ``[8, 16, 32]``).
        teacher_channels: channels of every teacher stage (e.g. ``[32, 64, 128]``).
        stages: indices of the stages to match (default: the last one).
    """

    inputs: ClassVar[str] = "features"
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        stages: Sequence[int] = (-1,),
    ) -> None:
        super().__init__()
        same_stage_count(student_channels, teacher_channels)
        self.stages = tuple(
            stage_indices("stages", stages, len(student_channels), negative_ok=True)
        )
        self.connectors = nn.ModuleList(
            # the authors' Embed: 1x1 convolution without bias, then batch norm
            conv1x1_bn(student_channels[stage], teacher_channels[stage])
            for stage in self.stages
        )

    def forward(
        self, student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        same_stage_count(student_feats, teacher_feats, "feature maps")
        total = at_least_float32(student_feats[0].new_zeros(()))
        for stage, connector in zip(self.stages, self.connectors, strict=True):
            same_dtype(type(self).__qualname__, connector, student_feats[stage])
            student = connector(student_feats[stage])
            teacher = teacher_feats[stage].detach()
            if student.shape[:2] != teacher.shape[:2]:
                raise ValueError(
                    f"stage {stage}: connected student map {tuple(student.shape)} does not match "
                    f"the teacher's batch and channels {tuple(teacher.shape)}"
                )
            batch, channels = teacher.shape[:2]
            # Gram matrices sum hw products: compute them in float32 under autocast
            with torch.autocast(device_type=student.device.type, enabled=False):
                difference = channel_correlation(at_least_float32(student)) - channel_correlation(
                    at_least_float32(teacher)
                )
                total = total + difference.pow(2).sum() / (channels * batch)
        return total

    def extra_repr(self) -> str:
        return f"stages={self.stages}"
