r"""Video-to-image distillation: a single-frame student learns from a teacher that sees the whole clip.

Citation: ``let2024video`` (Jiang, Zhang, Wei, Feng, Li, Wan, Cui and Li, BIBM 2024),
"Let Video Teaches You More: Video-to-Image Knowledge Distillation using DEtection
TRansformer for Medical Video Lesion Detection" (V2I-DETR).

An image model is fast but blind to what neighbouring frames show; a video model
sees them but costs more. V2I-DETR trains a video teacher whose features of a key
frame are fused with those of the other frames (its Multi-scale Spatiotemporal
Interaction module), and distils them into an image student that reads the key frame
alone, which is all it reads at inference. Two terms carry the knowledge:

* **Target-guided feature distillation (TFD)**: the student's key-frame feature map,
  through an adapter $\phi$, regresses the teacher's spatiotemporally fused map of the
  same frame, weighted by a soft Gaussian foreground mask $M$ centred on the target
  (the paper's ablation prefers the Gaussian soft mask to a hard box):

$$
\mathcal{L}_{TFD} = \frac{1}{B}\sum_b \frac{\sum_{h,w} M_{b,hw}\,\lVert \phi(S_b)_{hw} - T_{b,hw} \rVert_2^2}{\sum_{h,w} M_{b,hw}},
\qquad
M_{b,hw} = \exp\!\Big(-\frac{(h - c^r_b)^2 + (w - c^c_b)^2}{2\sigma^2}\Big);
$$

* **Cross-view query distillation (CQD)**: the student's object queries learn from the
  teacher's (the detector's per-object embeddings), with the views drawn at random.
  A classifier of one object per clip has one "query", its embedding: here the
  student's embedding, through a linear projector $\psi$, regresses the teacher's
  context-aware embedding of the key frame:
  $\mathcal{L}_{Q} = \frac{1}{B}\sum_b \lVert \psi(e^s_b) - e^t_{b,\mathrm{key}} \rVert_2^2$.

$$
\mathcal{L} = \mathcal{L}_{CE} + \lambda_{F}\,\mathcal{L}_{TFD} + \lambda_{Q}\,\mathcal{L}_{Q}.
$$

Authors' code: none released (searched GitHub for V2I-DETR and the paper's title, and
the paper's pages, in November 2026); this file is written from the paper's
description, and the tests check the equations above by hand.

Deviations, and what we could not check:

* The task: the paper detects lesions with DETR (boxes and classes per frame); our
  clips have one digit and a clip label, so the detector's losses become the
  cross-entropy of the image student's class, and CQD's set of object queries becomes
  the single embedding above (no Hungarian matching, no cross-view sampling of
  queries: one view of one object).
* The Gaussian's centre: the paper centres $M$ on the ground-truth boxes. Our batches
  carry labels, not boxes, so the centre $c_b$ is where the teacher's fused key-frame
  map is strongest: the centroid of its energy $\sum_c T_{b,c,hw}^2$ (the teacher
  knows where the digit is; on our clips this lands on the digit). $\sigma = 1$ map
  cell (4 pixels of a 16-pixel frame, half a digit) by default.
* Weights: we could read only the paper's abstract and summary offline, not its loss
  weights; $\lambda_F = \lambda_Q = 1$, declared as our choice.
* The teacher is trained beforehand and frozen; the adapter $\phi$ is a 1x1
  convolution when the widths differ (identity when they agree), $\psi$ a linear layer.
"""

from __future__ import annotations

import torch
from torch import nn

from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import one_of, positive
from reference_impls.common.video import ClipDistillation, VideoOutput, gather_frames, model_width


def gaussian_foreground(centres: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Soft foreground masks ``[B, h, w]``: a Gaussian of width ``sigma`` (cells) at each ``[B, 2]`` centre."""
    positive("sigma", sigma)
    if centres.dim() != 2 or centres.shape[1] != 2:
        raise ValueError(
            f"centres must have shape [B, 2] (row, column of each target, in map cells), got "
            f"shape {tuple(centres.shape)}"
        )
    rows = torch.arange(size[0], device=centres.device, dtype=centres.dtype)
    cols = torch.arange(size[1], device=centres.device, dtype=centres.dtype)
    distance = (rows[None, :, None] - centres[:, 0, None, None]) ** 2 + (
        cols[None, None, :] - centres[:, 1, None, None]
    ) ** 2
    return torch.exp(-distance / (2 * sigma**2))


def energy_centroid(maps: torch.Tensor) -> torch.Tensor:
    """The centroid ``[B, 2]`` (row, column) of each map's energy $\\sum_c T_{c,hw}^2$ (``maps`` ``[B, C, h, w]``)."""
    energy = at_least_float32(maps).pow(2).sum(1)  # [B, h, w]
    weights = energy / energy.sum((1, 2), keepdim=True).clamp_min(torch.finfo(energy.dtype).tiny)
    rows = torch.arange(maps.shape[2], device=maps.device, dtype=weights.dtype)
    cols = torch.arange(maps.shape[3], device=maps.device, dtype=weights.dtype)
    return torch.stack([(weights.sum(2) * rows).sum(1), (weights.sum(1) * cols).sum(1)], dim=1)


def target_guided_feature_loss(
    student_map: torch.Tensor, teacher_map: torch.Tensor, foreground: torch.Tensor
) -> torch.Tensor:
    """$\\mathcal{L}_{TFD}$: squared error over channels, weighted by ``foreground`` ``[B, h, w]``, normalised per sample."""
    if student_map.dim() != 4 or student_map.shape != teacher_map.shape:
        raise ValueError(
            f"student_map (adapted) and teacher_map must both have shape [B, C, h, w], got "
            f"shapes {tuple(student_map.shape)} and {tuple(teacher_map.shape)}"
        )
    expected = (student_map.shape[0], *student_map.shape[2:])
    if tuple(foreground.shape) != expected:
        raise ValueError(
            f"foreground must have shape {list(expected)} (one weight per map cell), got shape "
            f"{tuple(foreground.shape)}"
        )
    error = (at_least_float32(student_map) - at_least_float32(teacher_map.detach())).pow(2).sum(1)
    foreground = at_least_float32(foreground.detach())
    return ((foreground * error).sum((1, 2)) / foreground.sum((1, 2))).mean()


class VideoToImageDistillation(ClipDistillation):
    """An image student (one key frame) taught by a clip teacher's fused key-frame features and embedding.

    Args:
        student: reads packed clips (it picks its key frame) and returns a ``VideoOutput``
            with ``frame_maps`` ``[B, 1, C, h, w]``, ``embedding`` and ``frame_index``
            (``reference_impls.common.video.image_student``).
        teacher: reads every frame and returns ``frame_maps`` and ``frame_embeddings``
            for all of them (``reference_impls.common.video.video_teacher``); frozen.
        feature_weight: $\\lambda_F$ (1).
        query_weight: $\\lambda_Q$ (1).
        label_weight: weight of the cross-entropy (1).
        sigma: width of the Gaussian foreground mask, in map cells (1).
        foreground: ``"gaussian"`` (the paper's soft mask) or ``"uniform"`` (every
            cell weighs the same: plain feature distillation, the paper's ablation).
        student_channels, teacher_channels: widths of the two maps; student_dim,
            teacher_dim: of the two embeddings (read from the models when omitted).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        feature_weight: float = 1.0,
        query_weight: float = 1.0,
        label_weight: float = 1.0,
        sigma: float = 1.0,
        foreground: str = "gaussian",
        student_channels: int | None = None,
        teacher_channels: int | None = None,
        student_dim: int | None = None,
        teacher_dim: int | None = None,
    ) -> None:
        # the weights in the order the loss adds their terms (the same float rounding)
        super().__init__(
            student,
            teacher,
            label_weight=label_weight,
            feature_weight=feature_weight,
            query_weight=query_weight,
        )
        self.sigma = positive("sigma", sigma)
        self.foreground = one_of("foreground", foreground, ("gaussian", "uniform"))
        student_channels = model_width(student, "student", student_channels, "channels")
        teacher_channels = model_width(teacher, "teacher", teacher_channels, "channels")
        self.adapter: nn.Module = (
            nn.Identity()
            if student_channels == teacher_channels
            else nn.Conv2d(student_channels, teacher_channels, kernel_size=1)
        )
        self.projector = nn.Linear(
            model_width(student, "student", student_dim),
            model_width(teacher, "teacher", teacher_dim),
        )

    def distillation_terms(
        self, student: VideoOutput, teacher: VideoOutput
    ) -> dict[str, torch.Tensor]:
        key = student.frame_index  # [B, 1]: the frame the image student read
        teacher_map = gather_frames(teacher.frame_maps, key)[:, 0]
        teacher_query = gather_frames(teacher.frame_embeddings, key)[:, 0]
        student_map = self.adapter(student.frame_maps[:, 0])
        if self.foreground == "gaussian":
            mask = gaussian_foreground(
                energy_centroid(teacher_map), tuple(teacher_map.shape[2:]), self.sigma
            )
        else:
            mask = teacher_map.new_ones(teacher_map.shape[0], *teacher_map.shape[2:]).float()
        query_error = at_least_float32(self.projector(student.embedding)) - at_least_float32(
            teacher_query
        )
        return {
            "feature": target_guided_feature_loss(student_map, teacher_map, mask),
            "query": query_error.pow(2).sum(1).mean(),
        }

    def extra_repr(self) -> str:
        return (
            f"feature_weight={self.feature_weight}, query_weight={self.query_weight}, "
            f"label_weight={self.label_weight}, sigma={self.sigma}, foreground={self.foreground!r}"
        )
