r"""Focal and global distillation (FGD) for detectors: box-aware, attention-weighted feature imitation.

Citation: ``yang2022focal`` (Yang, Li, Jiang, Li, Yuan, Zhao and Yuan, CVPR 2022).
Authors' code: https://github.com/yzd-v/FGD (commit c03a6cf), ``mmdet/distillation/losses/fgd.py``,
``FeatureLoss``; one loss per FPN level, called with the level's student and teacher maps,
the images' ground-truth boxes and ``img_metas``. Their main setting, the RetinaNet
configs (``configs/distillers/fgd/fgd_retina_rx101_64x4d_distill_retina_r50_fpn_2x_coco.py``):
$T = 0.5$, $\alpha = 10^{-3}$, $\beta = 5 \cdot 10^{-4}$, $\gamma = 5 \cdot 10^{-4}$,
$\lambda = 5 \cdot 10^{-6}$, our defaults (the class's own default $\gamma = 10^{-3}$ is
used by no config; the Faster R-CNN configs divide all four weights by 20).

**Focal part.** The boxes, scaled to the map (floor of the top-left, ceiling of the
bottom-right corner), give a foreground mask $M_{ij} = 1 / (H_r W_r)$ inside box $r$
($H_r, W_r$ its rows and columns on the map, the smaller box winning where boxes
overlap) and a background mask $N_{ij} = 1/\#\{M = 0\}$ where $M = 0$: each object
weighs the same whatever its size. The teacher's absolute feature map gives the
attention over locations and channels,

$$
A^S = H W \,\mathrm{softmax}\Big(\frac{1}{T C}\sum_c |F_c|\Big), \qquad
A^C = C \,\mathrm{softmax}\Big(\frac{1}{T H W}\sum_{ij} |F_{ij}|\Big),
$$

and the student's (aligned by a $1 \times 1$ convolution $f$) features imitate the teacher's
weighted by both,

$$
\mathcal{L}_{fea} = \alpha \sum_{c,i,j} M_{ij} A^S_{ij} A^C_c (F^T_{cij} - f(F^S)_{cij})^2
 + \beta \sum_{c,i,j} N_{ij} A^S_{ij} A^C_c (F^T_{cij} - f(F^S)_{cij})^2,
\qquad
\mathcal{L}_{at} = \gamma \big(\lVert A^S_T - A^S_S\rVert_1 + \lVert A^C_T - A^C_S\rVert_1\big).
$$

**Global part.** A GcBlock $\mathcal{R}(F) = F + W_2\,\mathrm{ReLU}(\mathrm{LN}(W_1
\sum_j \mathrm{softmax}_j(W_k F)_j F_j))$ models each map's context, one block for the
student and one for the teacher (both learnable, the last convolution starting at zero),
and $\mathcal{L}_{global} = \lambda \sum (\mathcal{R}_T(F^T) - \mathcal{R}_S(f(F^S)))^2$.
Every sum is divided by the batch size.

Following their code: the attention loss uses the student's attention (so it trains
the student through $A_S$), while the feature losses weight by the teacher's attention
only; the area of a box counts its rows and columns before clipping to the map (a box
reaching the map's edge covers one row or column fewer than its area counts); the
context blocks are initialised as ``reset_parameters`` does (Kaiming-normal fan-in
context convolutions, zero last convolution). Deviations: the teacher's map is
detached here (their distiller computes it under ``torch.no_grad``); one image size
for the whole batch (``img_metas[i]['img_shape']`` is per image in mmdetection, and
boxes are scaled by it, not by the padded size: with padding, their masks are
stretched); boxes outside the image are refused rather than clipped by slicing.
Computed in at least float32 (float64 kept); the GcBlocks and the alignment are
registered submodules, in ``state_dict`` and moved with ``.to(device)``.
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
from reference_impls.common.validation import detection_boxes, non_negative, positive


def box_masks(
    boxes: Sequence[torch.Tensor], image_size: tuple[int, int], map_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground and background masks ``[B, H, W]`` of boxes ``(x1, y1, x2, y2)`` given in
    pixels of an image of ``image_size`` (height, width), on a map of ``map_size``.

    Foreground: $1/(H_r W_r)$ inside box $r$ (the largest value where boxes overlap),
    0 elsewhere; background: 1 where the foreground is 0, divided by their count.
    Built on the CPU in float64 (boxes are few; some devices have no float64)."""
    (image_h, image_w), (h, w) = image_size, map_size
    device = torch.device("cpu")
    rows = torch.arange(h, device=device)[None, :, None]
    cols = torch.arange(w, device=device)[None, None, :]
    foreground = []
    for image_boxes in boxes:
        scaled = image_boxes.detach().to(device, torch.float64)
        left = torch.floor(scaled[:, 0] / image_w * w).long()
        right = torch.ceil(scaled[:, 2] / image_w * w).long()
        top = torch.floor(scaled[:, 1] / image_h * h).long()
        bottom = torch.ceil(scaled[:, 3] / image_h * h).long()
        area = 1.0 / ((bottom + 1 - top) * (right + 1 - left)).double()
        inside = (
            (rows >= top[:, None, None])
            & (rows <= bottom[:, None, None])
            & (cols >= left[:, None, None])
            & (cols <= right[:, None, None])
        )
        weights = torch.where(
            inside, area[:, None, None], torch.zeros((), dtype=torch.float64, device=device)
        )
        foreground.append(weights.amax(0) if len(image_boxes) else weights.new_zeros(h, w))
    mask = torch.stack(foreground)
    background = (mask == 0).double()
    background = background / background.sum((1, 2), keepdim=True).clamp(min=1)
    return mask, background


def attention_maps(features: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial ``[B, H, W]`` and channel ``[B, C]`` attention of a map: ``H W`` (or ``C``)
    times the softmax of the mean absolute value over channels (or locations) over $T$."""
    batch, channels, h, w = features.shape
    value = features.abs()
    spatial = h * w * F.softmax(value.mean(1).reshape(batch, -1) / temperature, dim=1)
    channel = channels * F.softmax(value.mean((2, 3)) / temperature, dim=1)
    return spatial.reshape(batch, h, w), channel


class ContextBlock(nn.Module):
    """GcBlock's global context: softmax attention pooling ($W_k$, ``mask``), then a
    bottleneck transform ($W_1$, LayerNorm, ReLU, $W_2$) added to every location."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mask = nn.Conv2d(channels, 1, kernel_size=1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=1),
            nn.LayerNorm([channels // 2, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 2, channels, kernel_size=1),
        )
        # the authors' reset_parameters: mmcv kaiming_init(mode='fan_in'), last_zero_init
        nn.init.kaiming_normal_(self.mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.mask.bias)
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels = features.shape[:2]
        weights = F.softmax(self.mask(features).reshape(batch, 1, -1), dim=2)  # [B, 1, HW]
        context = torch.einsum("bcn,bn->bc", features.reshape(batch, channels, -1), weights[:, 0])
        return features + self.transform(context.reshape(batch, channels, 1, 1))


class FGDLoss(DistillationLoss):
    """Yang et al.'s focal and global distillation on one feature map (an FPN level).

    Called ``loss(student_map, teacher_map, boxes, image_size)``: maps ``[B, C, H, W]``
    of one spatial size, ``boxes`` a sequence of ``B`` tensors ``[n_i, 4]`` (x1, y1, x2, y2,
    pixels of the input image, as mmdetection's ``gt_bboxes``), ``image_size`` the
    input's (height, width). Use one loss per distilled level.

    Args:
        student_channels: channels of the student's map (aligned by a 1 x 1 convolution
            to the teacher's when they differ).
        teacher_channels: channels of the teacher's map.
        temperature: $T$ of the attention softmax (``temp``, 0.5).
        alpha_fgd: weight of the foreground feature loss (RetinaNet configs: 1e-3).
        beta_fgd: weight of the background feature loss (5e-4).
        gamma_fgd: weight of the attention loss (5e-4).
        lambda_fgd: weight of the global relation loss (5e-6).
    """

    inputs: ClassVar[str] = "features"
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        temperature: float = 0.5,
        alpha_fgd: float = 1e-3,
        beta_fgd: float = 5e-4,
        gamma_fgd: float = 5e-4,
        lambda_fgd: float = 5e-6,
    ) -> None:
        super().__init__()
        self.temperature = positive("temperature", temperature)
        self.alpha_fgd = non_negative("alpha_fgd", alpha_fgd)
        self.beta_fgd = non_negative("beta_fgd", beta_fgd)
        self.gamma_fgd = non_negative("gamma_fgd", gamma_fgd)
        self.lambda_fgd = non_negative("lambda_fgd", lambda_fgd)
        if teacher_channels < 2:
            raise ValueError(
                f"teacher_channels must be at least 2 (GcBlock halves it), got {teacher_channels}"
            )
        self.student_channels, self.teacher_channels = student_channels, teacher_channels
        self.align = (
            nn.Conv2d(student_channels, teacher_channels, kernel_size=1)
            if student_channels != teacher_channels
            else nn.Identity()
        )
        self.student_context = ContextBlock(teacher_channels)
        self.teacher_context = ContextBlock(teacher_channels)

    def terms(
        self,
        student_map: torch.Tensor,
        teacher_map: torch.Tensor,
        boxes: Sequence[torch.Tensor],
        image_size: tuple[int, int],
    ) -> dict[str, torch.Tensor]:
        """The four unweighted terms: ``foreground``, ``background``, ``attention``, ``global``."""
        if student_map.dim() != 4 or teacher_map.dim() != 4:
            raise ValueError(
                f"student_map and teacher_map must have shape [B, C, H, W], got "
                f"{tuple(student_map.shape)} and {tuple(teacher_map.shape)}"
            )
        if (student_map.shape[1], teacher_map.shape[1]) != (
            self.student_channels,
            self.teacher_channels,
        ):
            raise ValueError(
                f"student_map and teacher_map must have {self.student_channels} and "
                f"{self.teacher_channels} channels (as built), got {student_map.shape[1]} and "
                f"{teacher_map.shape[1]}"
            )
        if (
            student_map.shape[0] != teacher_map.shape[0]
            or student_map.shape[-2:] != teacher_map.shape[-2:]
        ):
            raise ValueError(
                f"student_map and teacher_map must have the same batch and spatial size, got "
                f"{tuple(student_map.shape)} and {tuple(teacher_map.shape)}"
            )
        detection_boxes("boxes", boxes, student_map.shape[0], image_size)
        same_dtype(type(self).__qualname__, self.student_context, student_map)
        student = at_least_float32(self.align(student_map))
        teacher = at_least_float32(teacher_map.detach())
        batch = student.shape[0]
        foreground, background = box_masks(boxes, image_size, tuple(student.shape[-2:]))
        foreground = foreground.to(student.device, student.dtype)[:, None]
        background = background.to(student.device, student.dtype)[:, None]
        spatial_t, channel_t = attention_maps(teacher, self.temperature)
        spatial_s, channel_s = attention_maps(student, self.temperature)
        weight = spatial_t[:, None] * channel_t[:, :, None, None]  # [B, C, H, W]
        squared = weight * (student - teacher) ** 2
        global_term = (
            at_least_float32(self.student_context(student))
            - at_least_float32(self.teacher_context(teacher))
        ) ** 2
        return {
            "foreground": (squared * foreground).sum() / batch,
            "background": (squared * background).sum() / batch,
            "attention": ((channel_s - channel_t).abs().sum() + (spatial_s - spatial_t).abs().sum())
            / batch,
            "global": global_term.sum() / batch,
        }

    def forward(
        self,
        student_map: torch.Tensor,
        teacher_map: torch.Tensor,
        boxes: Sequence[torch.Tensor],
        image_size: tuple[int, int],
    ) -> torch.Tensor:
        t = self.terms(student_map, teacher_map, boxes, image_size)
        return (
            self.alpha_fgd * t["foreground"]
            + self.beta_fgd * t["background"]
            + self.gamma_fgd * t["attention"]
            + self.lambda_fgd * t["global"]
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, alpha_fgd={self.alpha_fgd}, beta_fgd={self.beta_fgd}, "
            f"gamma_fgd={self.gamma_fgd}, lambda_fgd={self.lambda_fgd}"
        )
