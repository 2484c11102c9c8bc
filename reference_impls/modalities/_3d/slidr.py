r"""SLidR: image-to-point self-supervised distillation through superpixels (2D → 3D).

Citation: ``sautier2022image`` (Sautier, Puy, Gidaris, Boulch, Bursuc and Marlet, CVPR
2022). Authors' code: https://github.com/valeoai/SLidR at commit
``14729d0e1d5bd8a88448dee61ab20f13ba6285f2``: the loss is
``LightningPretrain.loss_superpixels_average`` in ``pretrain/lightning_trainer.py`` with
``NCELoss`` in ``pretrain/criterion.py``; the image head is the ``decoder`` of
``DilationFeatureExtractor`` in ``model/image_model.py``; configuration
``config/slidr_minkunet.yaml`` (``losses: [loss_superpixels_average]``,
``NCE_temperature: 0.07``, ``model_n_out: 64``, ``normalize_features: True``).

A frozen 2-D network (the teacher) sees a camera image of the scene; a 3-D network
(the student) sees the point cloud; each point knows the pixel it projects to. The
image is cut into superpixels $S_1, \dots, S_M$ (visually coherent regions) and the
points are grouped by the superpixel of their pixel ("superpoints"). Both networks'
outputs go through a trainable head to $D$ channels and are $\ell_2$-normalised per
point ($f_p$) and per pixel ($g_x$); each region is the average of its members,

$$
k_m = \frac{1}{|P_m| + \epsilon}\sum_{p \in P_m} f_p, \qquad
q_m = \frac{1}{|S_m| + \epsilon}\sum_{x \in S_m} g_x ,
$$

and the superpoint must recognise its own superpixel among all superpixels of the
batch (regions without points left out), by InfoNCE at temperature $\tau$:

$$
\mathcal L_{\mathrm{SLidR}} = -\frac{1}{M'}\sum_{m=1}^{M'}
  \log\frac{\exp(k_m^\top q_m / \tau)}{\sum_{m'=1}^{M'} \exp(k_m^\top q_{m'} / \tau)} .
$$

The student is pre-trained this way without labels, then fine-tuned on few labels
(:class:`SLidRPretraining` runs the pre-training stage).

Defaults and where they come from:

* $\tau = 0.07$ (``NCE_temperature``), $D = 64$ (``model_n_out``), features normalised
  (``normalize_features``), $\epsilon = 10^{-6}$ in both averages (the code's
  ``+ 1e-6``), cross-entropy averaged over the superpoints of the whole batch
  (``nn.CrossEntropyLoss()``), weight 1 (the only loss of the stage).
* The image head is the code's ``decoder``: a 1×1 convolution with bias to $D$
  channels on the frozen encoder's last map; its ``Upsample(scale_factor=4)`` is left
  out because our teacher's maps already have the image's resolution. The point head
  is MinkUNet's ``final`` layer: a 1×1 convolution with bias to $D$ channels. Both
  are trained by this loss (the code optimises ``model_points`` and the image
  ``decoder``; the encoder is frozen).
* The code keeps a superpoint when the first coordinate of its average is non-zero
  (``torch.where(k[:, 0] != 0)``), i.e. when it has points; we keep regions holding
  at least one paired point, the same set except for an average whose first
  coordinate is exactly zero.

Deviations, declared:

* **Superpixels.** The authors use SLIC superpixels of the camera images (at most 150
  per image, precomputed by ``superpixel_segmenter.py``). Our 16×16 depth renders are
  sparse and scikit-image is not a dependency: the superpixels are given to the loss
  by the caller, and the notebook uses 4×4 grid cells
  (:func:`reference_impls.common.point_clouds.grid_superpixels`).
* **Teacher.** The authors' image encoder is a self-supervised ResNet-50 (MoCo v2); ours
  is a small CNN trained on the renders with labels
  (:class:`reference_impls.common.point_clouds.ViewCNN`), tapped at ``stage``.
* **Pairing.** The code pairs every point that projects inside an image, with no
  occlusion test, and so do we (``pixels``, ``-1`` for a point outside the image).
* Similarities and the cross-entropy are computed in at least float32 (half
  precision upcast, float64 kept) with autocast off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.connectors import same_dtype
from reference_impls.common.interfaces import DistillationLoss, DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import freeze
from reference_impls.common.validation import at_least, point_features, positive, stage_index

# the code divides each region's sum by its count + 1e-6
REGION_EPSILON = 1e-6


def region_means(
    features: torch.Tensor, regions: torch.Tensor, num_regions: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average rows of ``features`` ``[R, D]`` by region id ``[R]``: ``([num_regions, D], counts)``."""
    sums = features.new_zeros(num_regions, features.shape[1]).index_add_(0, regions, features)
    counts = torch.bincount(regions, minlength=num_regions).to(features.dtype)
    return sums / (counts[:, None] + REGION_EPSILON), counts


def info_nce(keys: torch.Tensor, queries: torch.Tensor, temperature: float) -> torch.Tensor:
    """The code's ``NCELoss``: each key's positive is the query of the same row."""
    logits = keys @ queries.T / temperature
    return F.cross_entropy(logits, torch.arange(len(keys), device=keys.device))


def _check_pairing(
    pixels: torch.Tensor, superpixels: torch.Tensor, batch: int, num_points: int, hw: tuple
) -> None:
    if tuple(pixels.shape) != (batch, num_points):
        raise ValueError(
            f"pixels must have shape [B, N] = {(batch, num_points)} (the flat pixel index of "
            f"each point, -1 where it has none), got shape {tuple(pixels.shape)}"
        )
    if tuple(superpixels.shape) != (batch, *hw):
        raise ValueError(
            f"superpixels must have shape [B, H, W] = {(batch, *hw)} (a region id per pixel of "
            f"the teacher's map), got shape {tuple(superpixels.shape)}"
        )
    for name, tensor in (("pixels", pixels), ("superpixels", superpixels)):
        if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer indices, got dtype {tensor.dtype}")
    if pixels.numel() and (int(pixels.min()) < -1 or int(pixels.max()) >= hw[0] * hw[1]):
        raise ValueError(
            f"pixels must lie in [-1, {hw[0] * hw[1]}) (flat indices into the {hw[0]}x{hw[1]} "
            f"map, -1 for none), got values from {int(pixels.min())} to {int(pixels.max())}"
        )
    if superpixels.numel() and int(superpixels.min()) < 0:
        raise ValueError(f"superpixels must be non-negative ids, got {int(superpixels.min())}")


class SLidRLoss(DistillationLoss):
    """Superpoint-to-superpixel InfoNCE between a point network and a frozen image network.

    Args:
        student_channels: the width of each tapped stage of the point network.
        teacher_channels: the width of each tapped stage of the image network.
        stage: which stage of each is read (default the last): the point network's
            ``[B, C_s, N]`` map, the image network's ``[B, C_t, H, W]`` map.
        projection_dim: $D$ of the two heads (``model_n_out``).
        temperature: $\\tau$ (``NCE_temperature``).

    Called ``loss(student_features, teacher_features, pixels, superpixels)`` with the two
    lists of maps, ``pixels`` ``[B, N]`` (int, the flat pixel ``row * W + col`` each point
    projects to, ``-1`` for none) and ``superpixels`` ``[B, H, W]`` (int region ids).
    """

    inputs: ClassVar[str] = "features"

    def __init__(
        self,
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        stage: int = -1,
        projection_dim: int = 64,
        temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.stage = stage
        stage_index("stage", stage, len(student_channels), negative_ok=True)
        stage_index("stage", stage, len(teacher_channels), negative_ok=True)
        self.student_channels = student_channels[stage]
        self.teacher_channels = teacher_channels[stage]
        self.projection_dim = at_least("projection_dim", projection_dim, 1)
        self.temperature = positive("temperature", temperature)
        self.point_head = nn.Conv1d(self.student_channels, projection_dim, 1)
        self.image_head = nn.Conv2d(self.teacher_channels, projection_dim, 1)

    def forward(
        self,
        student_features: Sequence[torch.Tensor],
        teacher_features: Sequence[torch.Tensor],
        pixels: torch.Tensor,
        superpixels: torch.Tensor,
    ) -> torch.Tensor:
        stage_index("stage", self.stage, len(student_features), negative_ok=True)
        stage_index("stage", self.stage, len(teacher_features), negative_ok=True)
        points = student_features[self.stage]
        image = teacher_features[self.stage].detach()
        point_features("student_features[stage]", points, self.student_channels)
        if image.dim() != 4 or image.shape[1] != self.teacher_channels:
            raise ValueError(
                f"teacher_features[stage] must be an image feature map [B, "
                f"{self.teacher_channels}, H, W], got shape {tuple(image.shape)}"
            )
        batch, _, num_points = points.shape
        if image.shape[0] != batch:
            raise ValueError(
                f"student and teacher features must pair the same samples, got batch sizes "
                f"{batch} and {image.shape[0]}"
            )
        height, width = image.shape[2:]
        _check_pairing(pixels, superpixels, batch, num_points, (height, width))
        same_dtype(type(self).__name__, self.point_head, points)
        same_dtype(type(self).__name__, self.image_head, image, "teacher features")

        point_out = F.normalize(self.point_head(points), dim=1)  # [B, D, N]
        pixel_out = F.normalize(self.image_head(image), dim=1)  # [B, D, H, W]
        with torch.autocast(points.device.type, enabled=False):
            point_out, pixel_out = at_least_float32(point_out), at_least_float32(pixel_out)
            # region ids made unique over the batch: sample b's regions are b * M + id
            num_regions = int(superpixels.max()) + 1
            offsets = torch.arange(batch, device=points.device)[:, None] * num_regions
            flat_regions = superpixels.flatten(1) + offsets  # [B, H*W]
            paired = pixels >= 0
            point_regions = flat_regions.gather(1, pixels.clamp(min=0))[paired]  # [P']
            total = batch * num_regions
            keys, counts = region_means(point_out.transpose(1, 2)[paired], point_regions, total)
            queries, _ = region_means(
                pixel_out.flatten(2).transpose(1, 2).reshape(-1, self.projection_dim),
                flat_regions.reshape(-1),
                total,
            )
            kept = counts > 0
            if not bool(kept.any()):
                raise ValueError("no point is paired with a pixel (pixels is -1 everywhere)")
            return info_nce(keys[kept], queries[kept], self.temperature)


class SLidRPretraining(DistillationProcedure):
    """SLidR's pre-training stage: the point network learns from a frozen image network, no labels.

    Args:
        student: a point network returning a ``ModelOutput`` with per-point ``features``.
        teacher: an image network returning per-pixel ``features`` (frozen here).
        images: ``[S, C, H, W]`` the teacher's image of each training sample.
        pixels: ``[S, N]`` the flat pixel each point of each sample projects to (``-1``: none).
        superpixels: ``[H, W]`` (shared) or ``[S, H, W]`` region ids.
        loss: the :class:`SLidRLoss` (default: built from the two networks' ``channels``).

    Called ``procedure(points, labels, index)`` by ``reference_impls.common.train`` (it
    declares ``needs_index``: ``index`` picks each cloud's image and pairing, as the
    authors' data loader pairs each scan with its camera images); the labels are not read.
    """

    needs_index: ClassVar[bool] = True

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        images: torch.Tensor,
        pixels: torch.Tensor,
        superpixels: torch.Tensor,
        loss: SLidRLoss | None = None,
    ) -> None:
        super().__init__()
        if images.dim() != 4:
            raise ValueError(f"images must have shape [S, C, H, W], got {tuple(images.shape)}")
        if pixels.dim() != 2 or pixels.shape[0] != images.shape[0]:
            raise ValueError(
                f"pixels must have shape [S, N] with S = {images.shape[0]} (one row per image), "
                f"got shape {tuple(pixels.shape)}"
            )
        if superpixels.dim() == 2:
            superpixels = superpixels.expand(images.shape[0], -1, -1)
        self.student = student
        self.teacher = freeze(teacher)
        self.loss = loss if loss is not None else SLidRLoss(student.channels, teacher.channels)
        self.register_buffer("images", images.clone())
        self.register_buffer("pixels", pixels.clone())
        self.register_buffer("superpixels", superpixels.clone())

    def train(self, mode: bool = True) -> SLidRPretraining:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(
        self, points: torch.Tensor, labels: torch.Tensor, index: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if tuple(index.shape) != (points.shape[0],):
            raise ValueError(
                f"index must have shape {(points.shape[0],)} (one sample index per cloud), got "
                f"shape {tuple(index.shape)}"
            )
        student_out = self.student(points)
        with torch.no_grad():
            teacher_out = self.teacher(self.images[index])
        loss = self.loss(
            student_out.features, teacher_out.features, self.pixels[index], self.superpixels[index]
        )
        return {"loss": loss, "info_nce": loss.detach()}


__all__ = ["SLidRLoss", "SLidRPretraining", "info_nce", "region_means"]
