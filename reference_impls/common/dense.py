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
    data: DenseSplit,
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
