r"""Generated dense-prediction tasks on digit canvases, and small fully convolutional networks.

Dense distillation (segmentation, keypoints) needs images with several objects and a
label per pixel. Here a **canvas** of ``size`` x ``size`` pixels holds one to
``max_digits`` of scikit-learn's 8x8 digits, each in its own cell of a 3 x 3 grid of
8 x 8 cells, shifted by up to one pixel inside the canvas, plus Gaussian noise:

* segmentation: each pixel's class is ``1 + digit`` where that digit's ink exceeds
  ``ink`` (a quarter of the full intensity), else 0, background: 11 classes;
* keypoints: one heatmap per digit class (10 "joint types"), a Gaussian of
  standard deviation ``sigma`` pixels at the centre of each digit of that class,
  the convention of heatmap pose estimation (FPD's SimpleBaseline/HRNet targets).

Everything is drawn from ``seed`` (placements, digits, noise); 800 canvases are built
in about 0.1 s. :class:`DenseNet` is a small fully convolutional network (three
3 x 3 convolution stages at full resolution, the middle one dilated, batch norm,
ReLU, a 1 x 1 head) whose :class:`~reference_impls.common.models.ModelOutput` holds
the per-pixel ``logits`` ``[B, out, H, W]`` and each stage's ``features``; the
teacher and student differ in width. :func:`train_dense` trains any procedure whose
``forward(x, y)`` returns ``{"loss": ...}`` on a :class:`DenseSplit` with the shared
optimiser and schedule, and the metrics (:func:`mean_iou`, :func:`keypoint_error`)
read a model's output on the test canvases.

**Detection** (:func:`load_digit_boxes`, for FGD): canvases of 32 x 32 pixels with one
to three digits, each resized to a side drawn uniformly from 8 to 16 pixels and put at
a random position where its box overlaps no other box (rejection sampling, 50 tries),
plus Gaussian noise; each digit's box is its ink (> 0.25) after resizing, its class the
digit. 800 canvases in about 1 s (3 s under load). :class:`CentreNet` is a CenterNet in
miniature on :class:`DenseNet`'s stages (a stride-2 stage, two dilated ones) with a class
heatmap, a box-size and a centre-offset head; :func:`centre_net_loss` is CenterNet's
(penalty-reduced focal loss, L1 on sizes and offsets), :func:`decode_detections` its
peak decoding, :func:`mean_average_precision` PASCAL VOC's mAP@0.5. The teacher has width
16 (51,614 parameters), the student width 8 (13,142).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reference_impls.common.data import iterate_minibatches
from reference_impls.common.models import ModelOutput
from reference_impls.common.training import (
    default_device,
    logits_of,
    predict_logits,
    set_seed,
)

CELL, GRID = 8, 3  # digits are 8 x 8; a 3 x 3 grid of cells on a 24 x 24 canvas
NUM_SEGMENTATION_CLASSES = 11  # background + ten digits
NUM_KEYPOINT_TYPES = 10  # one heatmap per digit class


@dataclass(frozen=True)
class DenseSplit:
    """Canvases ``[N, 1, S, S]`` and their per-pixel targets, train and test.

    ``y_*`` are class maps ``[N, S, S]`` (int64) for segmentation, heatmaps
    ``[N, K, S, S]`` (float) for keypoints; ``centres_*`` list each canvas's digits
    as ``(class, row, column)`` rows of an ``[N, max_digits, 3]`` tensor, -1 padded.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    centres_train: torch.Tensor
    centres_test: torch.Tensor
    num_outputs: int

    def to(self, device: torch.device | str) -> DenseSplit:
        moved = [getattr(self, name).to(device) for name in self._tensors()]
        return DenseSplit(*moved, self.num_outputs)

    @staticmethod
    def _tensors() -> tuple[str, ...]:
        return ("x_train", "y_train", "x_test", "y_test", "centres_train", "centres_test")


def _canvases(
    n: int, size: int, max_digits: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images in [0, 1] plus noise, the ink of each digit id, and the digits' centres."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    glyphs = digits.images.astype(np.float32) / 16.0
    images = np.zeros((n, size, size), np.float32)
    owner = np.full((n, size, size), -1, np.int64)  # the class whose ink covers the pixel
    centres = np.full((n, max_digits, 3), -1.0, np.float32)
    span = size - CELL  # top-left corners stay inside the canvas
    for i in range(n):
        count = rng.integers(1, max_digits + 1)
        cells = rng.choice(GRID * GRID, size=count, replace=False)
        for slot, cell in enumerate(cells):
            pick = rng.integers(len(glyphs))
            top = min(max((cell // GRID) * CELL + rng.integers(-1, 2), 0), span)
            left = min(max((cell % GRID) * CELL + rng.integers(-1, 2), 0), span)
            glyph = glyphs[pick]
            window = images[i, top : top + CELL, left : left + CELL]
            np.maximum(window, glyph, out=window)
            ink = glyph > 0.25
            owner[i, top : top + CELL, left : left + CELL][ink] = digits.target[pick]
            rows, cols = np.nonzero(glyph)
            weights = glyph[rows, cols]
            centres[i, slot] = (
                digits.target[pick],
                top + float((rows * weights).sum() / weights.sum()),
                left + float((cols * weights).sum() / weights.sum()),
            )
    images += noise * rng.standard_normal(images.shape).astype(np.float32)
    return images, owner, centres, digits.target


def heatmaps(centres: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """``[N, K, S, S]``: per class, the maximum of Gaussians at that class's digit centres."""
    n = centres.shape[0]
    grid = torch.arange(size, dtype=torch.float32)
    out = torch.zeros(n, NUM_KEYPOINT_TYPES, size, size)
    for slot in range(centres.shape[1]):
        cls, row, col = centres[:, slot, 0], centres[:, slot, 1], centres[:, slot, 2]
        present = cls >= 0
        bump = torch.exp(
            -(
                (grid[None, :, None] - row[:, None, None]) ** 2
                + (grid[None, None, :] - col[:, None, None]) ** 2
            )
            / (2 * sigma**2)
        )
        index = cls.clamp(min=0).long()
        current = out[torch.arange(n), index]
        out[torch.arange(n), index] = torch.where(
            present[:, None, None], current.maximum(bump), current
        )
    return out


def load_digit_canvases(
    task: str = "segmentation",
    n_train: int = 600,
    n_test: int = 200,
    size: int = 24,
    max_digits: int = 2,
    noise: float = 0.1,
    sigma: float = 1.5,
    seed: int = 0,
) -> DenseSplit:
    """Canvases of digits with per-pixel targets: ``task`` is ``"segmentation"`` or ``"keypoints"``."""
    if task not in ("segmentation", "keypoints"):
        raise ValueError(f"task must be 'segmentation' or 'keypoints', got {task!r}")
    if size < GRID * CELL:
        raise ValueError(
            f"size must be at least {GRID * CELL} (a 3 x 3 grid of 8 x 8 digits), got {size}"
        )
    if not 1 <= max_digits <= GRID * GRID:
        raise ValueError(f"max_digits must be between 1 and {GRID * GRID}, got {max_digits}")
    rng = np.random.default_rng(seed)
    images, owner, centres, _ = _canvases(n_train + n_test, size, max_digits, noise, rng)
    x = torch.as_tensor(images)[:, None]
    centres_t = torch.as_tensor(centres)
    if task == "segmentation":
        y = torch.as_tensor(owner + 1)  # background 0, digit d is class d + 1
        outputs = NUM_SEGMENTATION_CLASSES
    else:
        y = heatmaps(centres_t, size, sigma)
        outputs = NUM_KEYPOINT_TYPES
    train, test = slice(0, n_train), slice(n_train, n_train + n_test)
    return DenseSplit(
        x[train], y[train], x[test], y[test], centres_t[train], centres_t[test], outputs
    )


class DenseNet(nn.Module):
    """A small encoder-decoder: a full-resolution stage, two half-resolution stages (the
    second dilated), then the half-resolution map upsampled and added to a skip head."""

    def __init__(self, width: int, out_channels: int, in_channels: int = 1) -> None:
        super().__init__()
        self.channels = (width, 2 * width, 2 * width)

        def stage(inputs: int, outputs: int, stride: int = 1, dilation: int = 1) -> nn.Module:
            return nn.Sequential(
                nn.Conv2d(
                    inputs, outputs, 3, stride, padding=dilation, dilation=dilation, bias=False
                ),
                nn.BatchNorm2d(outputs),
                nn.ReLU(inplace=True),
            )

        self.stages = nn.ModuleList(
            [
                stage(in_channels, self.channels[0]),
                stage(self.channels[0], self.channels[1], stride=2),
                stage(self.channels[1], self.channels[2], dilation=2),
            ]
        )
        self.head = nn.Conv2d(self.channels[2], out_channels, 1)
        self.skip = nn.Conv2d(self.channels[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        features = []
        out = x
        for stage in self.stages:
            out = stage(out)
            features.append(out)
        coarse = nn.functional.interpolate(
            self.head(out), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        return ModelOutput(coarse + self.skip(features[0]), features, None, None)


def teacher_dense(out_channels: int) -> DenseNet:
    return DenseNet(32, out_channels)


def student_dense(out_channels: int) -> DenseNet:
    return DenseNet(8, out_channels)


def train_dense(
    procedure: nn.Module,
    data: DenseSplit | DetectionSplit,
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 16,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> list[float]:
    """Train ``procedure`` (``forward(x, y) -> {"loss": ...}``) on the canvases; mean loss per epoch.

    Adam (or the procedure's ``configure_optimizers``) with a cosine schedule to zero:
    per-pixel digit recognition stays at "all background" for many epochs under the
    shared SGD set-up of the classifiers, and Adam leaves it within a few seconds.
    """
    device = torch.device(device) if device is not None else default_device()
    generator = set_seed(seed)
    procedure.to(device)
    data = data.to(device)
    configure = getattr(procedure, "configure_optimizers", None)
    trainable = [parameter for parameter in procedure.parameters() if parameter.requires_grad]
    optimizers = configure(lr) if configure else [torch.optim.Adam(trainable, lr=lr)]
    steps = epochs * math.ceil(len(data.x_train) / batch_size)
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=steps) for o in optimizers]
    curve = []
    for _ in range(epochs):
        procedure.train()
        total, batches = 0.0, 0
        for x, y in iterate_minibatches(data.x_train, data.y_train, batch_size, True, generator):
            loss = procedure(x, y)["loss"]
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer, scheduler in zip(optimizers, schedulers, strict=True):
                optimizer.step()
                scheduler.step()
            total, batches = total + float(loss.detach()), batches + 1
        curve.append(total / batches)
    procedure.eval()
    return curve


class SegmentationCE(nn.Module):
    """Per-pixel cross-entropy of one network (teachers and baselines)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = nn.functional.cross_entropy(logits_of(self.model(x)).float(), y)
        return {"loss": loss, "ce": loss.detach()}


class HeatmapRegression(nn.Module):
    """Heatmap regression of one network with :func:`joints_mse` (teachers and baselines)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        from reference_impls.applications.visual_recognition.fpd import joints_mse

        loss = joints_mse(logits_of(self.model(x)), y)
        return {"loss": loss, "mse": loss.detach()}


def mean_iou(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Mean intersection over union over the classes present in ``y`` or predicted."""
    predicted = predict_logits(model, x).argmax(1)
    ious = []
    for cls in range(num_classes):
        truth, guess = y == cls, predicted == cls
        union = (truth | guess).sum().item()
        if union:
            ious.append((truth & guess).sum().item() / union)
    return float(np.mean(ious))


def keypoint_error(model: nn.Module, x: torch.Tensor, centres: torch.Tensor) -> float:
    """Mean distance (pixels) between each digit's centre and the peak of its class's heatmap."""
    predicted = predict_logits(model, x)
    size = predicted.shape[-1]
    errors = []
    for slot in range(centres.shape[1]):
        cls = centres[:, slot, 0].long()
        present = cls >= 0
        maps = predicted[torch.arange(len(x)), cls.clamp(min=0)].flatten(1)
        peak = maps.argmax(1)
        rows, cols = (peak // size).float(), (peak % size).float()
        distance = torch.hypot(rows - centres[:, slot, 1], cols - centres[:, slot, 2])
        errors.append(distance[present])
    return float(torch.cat(errors).mean())


# --------------------------------------------------------------------------- detection
# Generated boxes for detection distillation (FGD): digits of several sizes at free
# positions, and a tiny centre-based detector (CenterNet's heads on a DenseNet-like
# backbone) with its loss, decoder and average precision.

NUM_DETECTION_CLASSES = 10  # one class per digit
DETECTION_STRIDE = 2  # the detector's output map is half the canvas


@dataclass(frozen=True)
class DetectionSplit:
    """Canvases ``[N, 1, S, S]`` and their objects, train and test.

    ``y_*`` are ``[N, max_digits, 5]`` rows ``(class, x1, y1, x2, y2)``, -1 padded, the
    box in pixel edges (a digit whose ink spans columns 3 to 9 has ``x1 = 3``,
    ``x2 = 10``), the convention of mmdetection's ``gt_bboxes``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    size: int

    def to(self, device: torch.device | str) -> DetectionSplit:
        moved = [
            getattr(self, name).to(device) for name in ("x_train", "y_train", "x_test", "y_test")
        ]
        return DetectionSplit(*moved, self.num_classes, self.size)


def boxes_of(objects: torch.Tensor) -> list[torch.Tensor]:
    """Each image's boxes ``[n_i, 4]`` (x1, y1, x2, y2) from ``[N, max_digits, 5]`` objects."""
    return [rows[rows[:, 0] >= 0, 1:] for rows in objects]


def load_digit_boxes(
    seed: int = 0,
    n_train: int = 600,
    n_test: int = 200,
    size: int = 32,
    max_digits: int = 3,
    scales: tuple[int, int] = (8, 16),
    noise: float = 0.1,
) -> DetectionSplit:
    """Canvases with one to ``max_digits`` digits, each resized to a side drawn from
    ``scales`` (inclusive) and put where its box overlaps no other; the box is the
    digit's ink (> 0.25) after resizing."""
    if not 1 <= max_digits <= 4:
        raise ValueError(f"max_digits must be between 1 and 4, got {max_digits}")
    low, high = scales
    if not 4 <= low <= high <= size:
        raise ValueError(f"scales must satisfy 4 <= low <= high <= size ({size}), got {scales}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    glyphs = torch.as_tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    images = np.zeros((n, size, size), np.float32)
    objects = np.full((n, max_digits, 5), -1.0, np.float32)
    for i in range(n):
        placed: list[tuple[int, int, int, int]] = []
        for slot in range(rng.integers(1, max_digits + 1)):
            pick, side = rng.integers(len(glyphs)), int(rng.integers(low, high + 1))
            glyph = nn.functional.interpolate(
                glyphs[pick : pick + 1], size=(side, side), mode="bilinear", align_corners=False
            )[0, 0].numpy()
            rows, cols = np.nonzero(glyph > 0.25)
            for _attempt in range(50):  # rejection: boxes never overlap
                top, left = rng.integers(0, size - side + 1, size=2)
                box = (
                    left + cols.min(),
                    top + rows.min(),
                    left + cols.max() + 1,
                    top + rows.max() + 1,
                )
                if all(
                    box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]
                    for b in placed
                ):
                    break
            else:
                continue
            placed.append(box)
            window = images[i, top : top + side, left : left + side]
            np.maximum(window, glyph, out=window)
            objects[i, slot] = (digits.target[pick], *box)
    images += noise * rng.standard_normal(images.shape).astype(np.float32)
    x, y = torch.as_tensor(images)[:, None], torch.as_tensor(objects)
    # slots are filled in order unless a digit found no place: pack the -1 rows last
    y = torch.stack([torch.cat([rows[rows[:, 0] >= 0], rows[rows[:, 0] < 0]]) for rows in y])
    train, test = slice(0, n_train), slice(n_train, n)
    return DetectionSplit(x[train], y[train], x[test], y[test], NUM_DETECTION_CLASSES, size)


@dataclass
class CentreOutput:
    """A :class:`CentreNet`'s output at stride :data:`DETECTION_STRIDE`.

    ``heatmap``: class logits ``[B, K, h, w]`` (a digit of class k peaks at its centre);
    ``sizes``: box width and height in pixels ``[B, 2, h, w]``; ``offsets``: the centre's
    position inside its cell ``[B, 2, h, w]`` (x, y, in cells); ``features``: the
    backbone's stage outputs, the last being the map the heads read (where FGD
    distils, as on an FPN level).
    """

    heatmap: torch.Tensor
    sizes: torch.Tensor
    offsets: torch.Tensor
    features: list[torch.Tensor]


class CentreNet(nn.Module):
    """CenterNet in miniature: :class:`DenseNet`'s stages (full resolution, stride 2,
    then two dilated stages for a receptive field of 29 pixels) and three heads (3 x 3
    convolution, ReLU, 1 x 1) for the class heatmap, box size and centre offset."""

    def __init__(self, width: int, num_classes: int = NUM_DETECTION_CLASSES, in_channels: int = 1):
        super().__init__()
        self.channels = (width, 2 * width, 2 * width, 2 * width)

        def stage(inputs: int, outputs: int, stride: int = 1, dilation: int = 1) -> nn.Module:
            return nn.Sequential(
                nn.Conv2d(inputs, outputs, 3, stride, dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(outputs),
                nn.ReLU(inplace=True),
            )

        c = self.channels
        self.stages = nn.ModuleList(
            [
                stage(in_channels, c[0]),
                stage(c[0], c[1], stride=DETECTION_STRIDE),
                stage(c[1], c[2], dilation=2),
                stage(c[2], c[3], dilation=4),
            ]
        )

        def head(outputs: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c[3], c[3], 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(c[3], outputs, 1),
            )

        self.heatmap, self.size, self.offset = head(num_classes), head(2), head(2)
        nn.init.constant_(self.heatmap[-1].bias, -2.19)  # CenterNet: start at p = 0.1

    def backbone(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stages' outputs alone (a frozen teacher's maps, without the heads' cost)."""
        features, out = [], x
        for stage in self.stages:
            out = stage(out)
            features.append(out)
        return features

    def forward(self, x: torch.Tensor) -> CentreOutput:
        features = self.backbone(x)
        out = features[-1]
        return CentreOutput(self.heatmap(out), self.size(out), self.offset(out), features)


def teacher_centre_net() -> CentreNet:
    return CentreNet(16)


def student_centre_net() -> CentreNet:
    return CentreNet(8)


def centre_targets(
    objects: torch.Tensor, size: int, num_classes: int = NUM_DETECTION_CLASSES
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CenterNet's targets at stride 2: heatmaps ``[N, K, h, w]`` (a Gaussian of standard
    deviation one sixth of the box's larger side, in cells, at each centre's cell, as
    TTFNet does instead of CenterNet's radius rule), and per object its cell index,
    size (pixels), sub-cell offset and whether it is present (``[N, D]`` or ``[N, D, 2]``)."""
    n, slots = objects.shape[:2]
    cells = size // DETECTION_STRIDE
    grid = torch.arange(cells, dtype=torch.float32, device=objects.device)
    out = torch.zeros(n, num_classes, cells, cells, device=objects.device)
    cls = objects[..., 0]
    present = cls >= 0
    corners = objects[..., 1:].float()
    centre = (corners[..., :2] + corners[..., 2:]) / (2 * DETECTION_STRIDE)  # cells, (x, y)
    cell = centre.floor().clamp(0, cells - 1)
    wh = corners[..., 2:] - corners[..., :2]
    sigma = (wh.amax(-1) / DETECTION_STRIDE / 6).clamp(min=0.5)
    rows = torch.arange(n, device=objects.device)
    for slot in range(slots):
        bump = torch.exp(
            -(
                (grid[None, :, None] - cell[:, slot, 1, None, None]) ** 2
                + (grid[None, None, :] - cell[:, slot, 0, None, None]) ** 2
            )
            / (2 * sigma[:, slot, None, None] ** 2)
        )
        index = cls[:, slot].clamp(min=0).long()
        current = out[rows, index]
        out[rows, index] = torch.where(present[:, slot, None, None], current.maximum(bump), current)
    flat_index = (cell[..., 1] * cells + cell[..., 0]).long()
    return out, flat_index, wh, centre - cell, present


def centre_net_loss(
    output: CentreOutput,
    objects: torch.Tensor,
    size_weight: float = 0.1,
    offset_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """CenterNet's loss: the penalty-reduced focal loss on the heatmap (alpha 2, beta 4),
    L1 on sizes (weight 0.1) and offsets (weight 1) at the centres, per object."""
    heatmap = output.heatmap.float()
    size = heatmap.shape[-1] * DETECTION_STRIDE
    target, index, wh, offset, present = centre_targets(objects, size, heatmap.shape[1])
    probability = heatmap.sigmoid().clamp(1e-4, 1 - 1e-4)
    peak = target.eq(1).float()
    positive = -((1 - probability) ** 2 * probability.log() * peak).sum()
    negative = -((1 - target) ** 4 * probability**2 * (1 - probability).log() * (1 - peak)).sum()
    count = present.sum().clamp(min=1)
    focal = (positive + negative) / count

    def at_centres(maps: torch.Tensor) -> torch.Tensor:  # [N, 2, h, w] -> [N, D, 2]
        flat = maps.float().flatten(2)
        return flat.gather(2, index[:, None, :].expand(-1, 2, -1)).transpose(1, 2)

    mask = present[..., None].float()
    size_loss = ((at_centres(output.sizes) - wh).abs() * mask).sum() / count
    offset_loss = ((at_centres(output.offsets) - offset).abs() * mask).sum() / count
    loss = focal + size_weight * size_loss + offset_weight * offset_loss
    return {
        "loss": loss,
        "heatmap": focal.detach(),
        "size": size_loss.detach(),
        "offset": offset_loss.detach(),
    }


class CentreNetTraining(nn.Module):
    """One detector trained with :func:`centre_net_loss` (teachers and baselines)."""

    def __init__(self, model: CentreNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return centre_net_loss(self.model(x), y)


class DistilledCentreNet(nn.Module):
    """A student detector trained with :func:`centre_net_loss` plus a feature
    distillation loss on the backbone's last map, called
    ``distillation(student_map, teacher_map, boxes, image_size)`` (e.g. ``FGDLoss``)."""

    def __init__(self, student: CentreNet, teacher: CentreNet, distillation: nn.Module) -> None:
        super().__init__()
        self.student, self.distillation = student, distillation
        self.teacher = teacher.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> DistilledCentreNet:
        super().train(mode)
        self.teacher.eval()  # a frozen teacher keeps its batch-norm statistics
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        student = self.student(x)
        with torch.no_grad():
            teacher_map = self.teacher.backbone(x)[-1]
        terms = centre_net_loss(student, y)
        distill = self.distillation(
            student.features[-1], teacher_map, boxes_of(y), tuple(x.shape[-2:])
        )
        return {**terms, "loss": terms["loss"] + distill, "distill": distill.detach()}


@dataclass(frozen=True)
class Detections:
    """Per image: boxes ``[k, 4]`` (x1, y1, x2, y2, pixels), scores ``[k]``, classes ``[k]``."""

    boxes: list[torch.Tensor]
    scores: list[torch.Tensor]
    classes: list[torch.Tensor]


@torch.no_grad()
def decode_detections(output: CentreOutput, top_k: int = 10) -> Detections:
    """CenterNet's decoding: peaks of the sigmoid heatmap (kept where a 3 x 3 max pool
    leaves them unchanged), the ``top_k`` best per image, boxes from size and offset."""
    probability = output.heatmap.float().sigmoid()
    _batch, k, h, w = probability.shape
    peaks = probability * (nn.functional.max_pool2d(probability, 3, 1, 1) == probability)
    scores, flat = peaks.flatten(1).topk(min(top_k, k * h * w))
    classes, cell = flat // (h * w), flat % (h * w)
    ys, xs = (cell // w).float(), (cell % w).float()
    sizes = output.sizes.float().flatten(2).gather(2, cell[:, None, :].expand(-1, 2, -1))
    offsets = output.offsets.float().flatten(2).gather(2, cell[:, None, :].expand(-1, 2, -1))
    cx = (xs + offsets[:, 0]) * DETECTION_STRIDE
    cy = (ys + offsets[:, 1]) * DETECTION_STRIDE
    half_w, half_h = sizes[:, 0] / 2, sizes[:, 1] / 2
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], -1)
    return Detections(list(boxes.cpu()), list(scores.cpu()), list(classes.cpu()))


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union of boxes ``[n, 4]`` and ``[m, 4]``: ``[n, m]``."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def mean_average_precision(
    detections: Detections, objects: torch.Tensor, iou_threshold: float = 0.5
) -> float:
    """mAP@0.5: per class, detections by decreasing score are true positives when they
    overlap a not yet matched box of that class with IoU >= ``iou_threshold`` (PASCAL
    VOC's rule); the area under the all-point interpolated precision-recall curve,
    averaged over the classes that have objects."""
    objects = objects.cpu()
    aps = []
    for cls in range(NUM_DETECTION_CLASSES):
        truths = [rows[rows[:, 0] == cls, 1:] for rows in objects]
        total = sum(len(t) for t in truths)
        if total == 0:
            continue
        found = []  # (score, image, box)
        for image, (boxes, scores, classes) in enumerate(
            zip(detections.boxes, detections.scores, detections.classes, strict=True)
        ):
            keep = classes == cls
            found += [(float(s), image, b) for s, b in zip(scores[keep], boxes[keep], strict=True)]
        found.sort(key=lambda item: -item[0])
        matched = [torch.zeros(len(t), dtype=torch.bool) for t in truths]
        hits = []
        for _score, image, box in found:
            hit = False
            if len(truths[image]):
                overlap = box_iou(box[None], truths[image])[0]
                overlap[matched[image]] = -1
                best = int(overlap.argmax())
                if overlap[best] >= iou_threshold:
                    matched[image][best], hit = True, True
            hits.append(hit)
        tp = np.cumsum(hits, dtype=np.float64)
        precision = tp / np.arange(1, len(hits) + 1) if hits else np.zeros(0)
        recall = tp / total
        # all-point interpolation: precision made monotone, integrated over recall
        envelope = np.concatenate([[0.0], precision, [0.0]])
        levels = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
        envelope = np.maximum.accumulate(envelope[::-1])[::-1]
        aps.append(float(np.sum((levels[1:] - levels[:-1]) * envelope[1:])))
    return float(np.mean(aps))


@torch.no_grad()
def detection_map(
    model: CentreNet, x: torch.Tensor, objects: torch.Tensor, batch_size: int = 256
) -> float:
    """mAP@0.5 of ``model`` on canvases ``x`` with their ``objects``."""
    was_training = model.training
    model.eval()
    parts = [decode_detections(model(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    merged = Detections(
        [b for p in parts for b in p.boxes],
        [s for p in parts for s in p.scores],
        [c for p in parts for c in p.classes],
    )
    return mean_average_precision(merged, objects)
