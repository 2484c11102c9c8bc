"""Data that needs no download: scikit-learn's bundled digits and generated sets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class DataSplit:
    """Train and test tensors; images are ``[N, 1, 8, 8]`` floats, labels ``[N]`` int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    def to(self, device: torch.device | str) -> DataSplit:
        return DataSplit(
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
            self.num_classes,
        )

    def with_train_subset(self, n: int) -> DataSplit:
        """The first ``n`` training examples (e.g. a few labelled images) and the same test set."""
        if not 1 <= n <= len(self.x_train):
            raise ValueError(f"n must be between 1 and {len(self.x_train)}, got {n}")
        return DataSplit(
            self.x_train[:n], self.y_train[:n], self.x_test, self.y_test, self.num_classes
        )


def _split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, classes: int
) -> DataSplit:
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.as_tensor(a, dtype=torch.int64)  # noqa: E731
    return DataSplit(as_x(x[train]), as_y(y[train]), as_x(x[test]), as_y(y[test]), classes)


def load_digits_split(test_fraction: float = 0.25, seed: int = 0, flat: bool = False) -> DataSplit:
    """scikit-learn's 1,797 8x8 digit images, scaled to [0, 1] and standardised.

    ``flat=True`` gives ``[N, 64]`` vectors for MLPs instead of ``[N, 1, 8, 8]``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype(np.float32) / 16.0
    x = (x - 0.3) / 0.4  # roughly zero mean, unit variance over the set
    x = x.reshape(len(x), 64) if flat else x[:, None, :, :]
    return _split(x, digits.target, test_fraction, seed, classes=10)


def make_blobs_split(
    n_samples: int = 2000,
    n_features: int = 64,
    num_classes: int = 10,
    noise: float = 1.5,
    test_fraction: float = 0.25,
    seed: int = 0,
    image: bool = False,
) -> DataSplit:
    """Gaussian class clusters; ``image=True`` reshapes 64 features to ``[1, 8, 8]``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, size=(num_classes, n_features))
    y = rng.integers(0, num_classes, size=n_samples)
    x = (centres[y] + noise * rng.normal(size=(n_samples, n_features))).astype(np.float32)
    x /= np.sqrt(1.0 + noise**2)
    if image:
        side = round(n_features**0.5)
        if side * side != n_features:
            raise ValueError(f"image=True needs a square number of features, got {n_features}")
        x = x.reshape(n_samples, 1, side, side)
    return _split(x, y, test_fraction, seed, classes=num_classes)


def iterate_minibatches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    with_index: bool = False,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield ``(x, y)`` batches; shuffling uses ``generator`` so runs are reproducible.

    ``with_index=True`` yields ``(x, y, index)``: each sample's row in ``x`` (int64),
    for methods that keep one memory entry per training sample (CRD's memory bank).
    The batches are the same either way.
    """
    if shuffle:
        order = torch.randperm(len(x), generator=generator).to(x.device)
    else:
        order = torch.arange(len(x), device=x.device)
    for start in range(0, len(x), batch_size):
        index = order[start : start + batch_size]
        yield (x[index], y[index], index) if with_index else (x[index], y[index])


def load_hard_digits_split(
    test_fraction: float = 0.25,
    seed: int = 0,
    max_rotation: float = 30.0,
    distractor: float = 0.5,
    noise: float = 0.2,
) -> DataSplit:
    r"""The digits made harder, for benchmarks where the 8x8 digits are too easy.

    Each image $x$ (in $[0, 1]$) is rotated about its centre by an angle drawn
    uniformly in $\pm$ ``max_rotation`` degrees (bilinear), a digit of another class,
    shifted by up to 2 pixels each way, is laid over it at intensity ``distractor``,
    and Gaussian pixel noise of standard deviation ``noise`` is added:

    $$\tilde x = \min\big(1, R_\theta x + a\, S_{\delta} x'\big) + \sigma \varepsilon,$$

    then standardised with the training images' mean and standard deviation. The
    label stays $x$'s. Everything is drawn from ``seed``; the split is the digits'
    (same ``test_fraction`` and ``seed``), built in about 0.1 s.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed + 1)
    images = torch.as_tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    labels = digits.target
    n = len(images)
    angles = torch.as_tensor(rng.uniform(-max_rotation, max_rotation, n), dtype=torch.float32)
    rotated = _rotated(images, torch.deg2rad(angles))
    others = rng.integers(0, n, size=n)
    while (same := labels[others] == labels).any():  # redraw until every overlay is another class
        others[same] = rng.integers(0, n, size=int(same.sum()))
    overlays = _shifted(images[others], rng.integers(-2, 3, size=(n, 2)))
    mixed = (rotated + distractor * overlays).clamp(max=1.0)
    mixed = mixed + noise * torch.as_tensor(rng.normal(size=mixed.shape), dtype=torch.float32)
    split = _split(mixed.numpy(), labels, test_fraction, seed, classes=10)
    mean, std = split.x_train.mean(), split.x_train.std()
    return DataSplit(
        (split.x_train - mean) / std,
        split.y_train,
        (split.x_test - mean) / std,
        split.y_test,
        split.num_classes,
    )


def _rotated(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """``images`` ``[N, 1, H, W]`` rotated about their centres by ``angles`` (radians)."""
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros_like(angles)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, align_corners=False)


def _shifted(images: torch.Tensor, shifts: np.ndarray) -> torch.Tensor:
    """Each ``[1, H, W]`` image moved by its ``(dy, dx)`` row of ``shifts`` (zeros shifted in)."""
    height, width = images.shape[-2:]
    reach = int(np.abs(shifts).max(initial=0))
    padded = torch.nn.functional.pad(images, (reach, reach, reach, reach))
    out = torch.empty_like(images)
    for dy, dx in {(int(a), int(b)) for a, b in shifts}:
        rows = torch.as_tensor(np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx)))
        top, left = reach - dy, reach - dx
        out[rows] = padded[rows, :, top : top + height, left : left + width]
    return out
