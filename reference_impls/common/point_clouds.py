r"""Generated point clouds of simple shapes, their depth renders, and tiny 3-D and multi-view models.

For the 3D-input and multi-view leaves: methods made for point clouds (local
k-NN distillation), for images paired with points (2D→3D transfer) and for several
rendered views of one shape (multi-view teachers) run here on the kind of input they
were made for, built in about a second without any download.

**The shapes.** Six classes of closed surfaces (:data:`SHAPE_CLASSES`): sphere,
cube, cylinder, cone, torus and octahedron. A cloud of class $c$ is $P$ points drawn
uniformly *by area* on the class's surface (each face or patch chosen with probability
proportional to its area; on the torus by rejection on the area element
$(R + r\cos\varphi)$), then stretched by a random diagonal scale $S$, rotated by a
uniformly random rotation $R \in SO(3)$ and perturbed by Gaussian noise:

$$
p_i = R\,S\,u_i + \sigma\,\varepsilon_i, \qquad u_i \sim \mathcal U(\partial\Omega_c),\quad
S = \mathrm{diag}(s_1, s_2, s_3),\ s_j \sim \mathcal U[1 - a, 1 + a],\quad
\varepsilon_i \sim \mathcal N(0, I_3),
$$

and finally centred and scaled into the unit ball. The stretch blurs the classes (a
stretched sphere is an ellipsoid, a stretched cube a box), so a small network does not
reach perfect accuracy. Everything is drawn from ``numpy.random.default_rng(seed)``.

**The renders.** Each cloud is seen from ``num_views`` fixed cameras on a ring at
30° elevation, at azimuths $360°\,v / V$ (MVCNN's ring of views). A camera with unit
direction $d_v$ (from the object to the camera) and image axes $r_v$ (right),
$u_v$ (up) projects orthographically onto an ``image_size`` × ``image_size`` grid over
$[-1, 1]^2$: point $p$ falls in the pixel of $(r_v^\top p,\ u_v^\top p)$, at
nearness $z = (d_v^\top p + 1) / 2$. The depth image keeps in each pixel the nearness of
its nearest point (a z-buffer, background 0):

$$
D_v[\text{pixel}] = \max_{i:\ \pi_v(p_i) = \text{pixel}} z_{v,i}.
$$

Each point knows the pixel it projects to in every view (``pixels``, flat indices
``row * image_size + col``) and whether it is visible there (``visible``: its nearness
within ``visibility_tolerance`` of the pixel's z-buffer value): the pairing a
2D→3D method needs. The views are images of the same shapes, so a 2-D network
trained on them is a teacher of another modality.

Build time of :func:`load_point_clouds` at its defaults (600 training and 300 test
clouds of 128 points, six 16×16 views): 0.6 s on one core (measured on a shared
machine under load).

**The models.** :class:`PointNet` is a PointNet without its input transforms: a
shared per-point MLP (1×1 convolutions, batch norm, ReLU), max pooling over the points,
a linear classifier; it returns a :class:`~reference_impls.common.models.ModelOutput`
whose ``features`` are the per-point maps ``[B, C, N]`` after each layer (what a local
point-distillation method reads) and whose ``embedding`` is the pooled global feature.
:func:`teacher_pointnet` is 32-64-128 wide, :func:`student_pointnet` 8-16-32. Besides
the coordinates each point's first layer reads its distance to the centroid, which
the random rotations leave unchanged (these PointNets have no input transform).
:class:`ViewCNN` reads one depth view ``[B, 1, H, W]`` at full resolution (no
down-sampling, so every pixel has a feature: what a 2D→3D method pairs points with);
:class:`MultiViewCNN` is MVCNN-style: one shared CNN per view, a per-view descriptor
(linear, batch norm, ReLU, as PointMCD's teacher; stages after the first halve the
map), max pooling over views, a fusion
layer and a classifier; its ``features`` are the per-view descriptors ``[B, V, D]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reference_impls.common.data import DataSplit
from reference_impls.common.models import ModelOutput
from reference_impls.common.validation import at_least, in_unit_interval, non_negative

SHAPE_CLASSES: tuple[str, ...] = ("sphere", "cube", "cylinder", "cone", "torus", "octahedron")


# ----------------------------------------------------------------------------- surfaces


def _sphere(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.standard_normal((n, 3))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def _cube(rng: np.random.Generator, n: int) -> np.ndarray:
    half = 0.8
    face_axis = rng.integers(0, 3, n)
    face_sign = rng.choice([-1.0, 1.0], n)
    points = rng.uniform(-half, half, (n, 3))
    points[np.arange(n), face_axis] = face_sign * half
    return points


def _cylinder(rng: np.random.Generator, n: int) -> np.ndarray:
    radius, half_height = 0.7, 0.8
    lateral_area = 2 * math.pi * radius * 2 * half_height
    cap_area = 2 * math.pi * radius**2
    on_side = rng.random(n) < lateral_area / (lateral_area + cap_area)
    angle = rng.uniform(0, 2 * math.pi, n)
    # caps: uniform on the disc (radius ~ sqrt(U)); side: radius fixed
    r = np.where(on_side, radius, radius * np.sqrt(rng.random(n)))
    z = np.where(on_side, rng.uniform(-half_height, half_height, n), 0.0)
    z = np.where(on_side, z, rng.choice([-half_height, half_height], n))
    return np.stack([r * np.cos(angle), r * np.sin(angle), z], axis=1)


def _cone(rng: np.random.Generator, n: int) -> np.ndarray:
    radius, height = 0.8, 1.6
    slant = math.hypot(radius, height)
    lateral_area, base_area = math.pi * radius * slant, math.pi * radius**2
    on_side = rng.random(n) < lateral_area / (lateral_area + base_area)
    angle = rng.uniform(0, 2 * math.pi, n)
    t = np.sqrt(rng.random(n))  # fraction of the way from the apex (area grows as t^2)
    r = np.where(on_side, radius * t, radius * np.sqrt(rng.random(n)))
    z = np.where(on_side, height / 2 - height * t, -height / 2)
    return np.stack([r * np.cos(angle), r * np.sin(angle), z], axis=1)


def _torus(rng: np.random.Generator, n: int) -> np.ndarray:
    major, minor = 0.7, 0.28
    accepted: list[np.ndarray] = []
    count = 0
    while count < n:  # rejection on the area element (R + r cos phi) / (R + r)
        theta = rng.uniform(0, 2 * math.pi, 2 * n)
        phi = rng.uniform(0, 2 * math.pi, 2 * n)
        keep = rng.random(2 * n) < (major + minor * np.cos(phi)) / (major + minor)
        ring = major + minor * np.cos(phi[keep])
        block = np.stack(
            [ring * np.cos(theta[keep]), ring * np.sin(theta[keep]), minor * np.sin(phi[keep])],
            axis=1,
        )
        accepted.append(block)
        count += len(block)
    return np.concatenate(accepted)[:n]


def _octahedron(rng: np.random.Generator, n: int) -> np.ndarray:
    # |x| + |y| + |z| = 1: uniform on a face is a flat Dirichlet, the face a random octant
    weights = rng.dirichlet(np.ones(3), n)
    return weights * rng.choice([-1.0, 1.0], (n, 3))


SURFACES = (_sphere, _cube, _cylinder, _cone, _torus, _octahedron)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation drawn uniformly from SO(3) (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def sample_shape(
    label: int, num_points: int, rng: np.random.Generator, stretch: float, noise: float
) -> np.ndarray:
    """One cloud ``[num_points, 3]`` of class ``label``: stretched, rotated, noisy, in the unit ball."""
    points = SURFACES[label](rng, num_points)
    points = points * rng.uniform(1 - stretch, 1 + stretch, 3)
    points = points @ random_rotation(rng).T
    points = points + noise * rng.standard_normal(points.shape)
    points = points - points.mean(axis=0)
    return points / np.linalg.norm(points, axis=1).max()


# ----------------------------------------------------------------------------- renders


def view_directions(num_views: int, elevation_degrees: float = 30.0) -> torch.Tensor:
    """``[V, 3, 3]`` camera frames: rows are (right, up, direction to the camera) of each view."""
    elevation = math.radians(elevation_degrees)
    frames = []
    for view in range(num_views):
        azimuth = 2 * math.pi * view / num_views
        direction = np.array(
            [
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ]
        )
        right = np.cross([0.0, 0.0, 1.0], direction)
        right /= np.linalg.norm(right)
        up = np.cross(direction, right)
        frames.append(np.stack([right, up, direction]))
    return torch.tensor(np.stack(frames), dtype=torch.float32)


@dataclass(frozen=True)
class Renders:
    """Depth renders of clouds and the point-to-pixel pairing.

    Attributes:
        images: ``[N, V, H, W]`` nearness z-buffers in [0, 1] (0 is background).
        pixels: ``[N, P, V]`` int64, the flat pixel (``row * W + col``) each point falls in.
        visible: ``[N, P, V]`` bool, whether the point is the surface seen in that pixel.
    """

    images: torch.Tensor
    pixels: torch.Tensor
    visible: torch.Tensor


def render_depth(
    points: torch.Tensor,
    frames: torch.Tensor,
    image_size: int = 16,
    visibility_tolerance: float = 0.06,
) -> Renders:
    """Orthographic z-buffer renders of ``points`` ``[N, P, 3]`` from each camera of ``frames``."""
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape [N, P, 3], got shape {tuple(points.shape)}")
    at_least("image_size", image_size, 2)
    non_negative("visibility_tolerance", visibility_tolerance)
    camera = torch.einsum("npk,vjk->npvj", points, frames)  # [N, P, V, 3]: right, up, toward
    to_index = lambda coordinate: (  # noqa: E731  [-1, 1] -> 0 .. image_size - 1
        ((coordinate + 1) / 2 * image_size).floor().clamp(0, image_size - 1).long()
    )
    col = to_index(camera[..., 0])
    row = to_index(-camera[..., 1])  # image rows grow downwards
    pixels = row * image_size + col
    nearness = ((camera[..., 2] + 1) / 2).clamp(0.02, 1.0)  # > 0: background stays 0
    n, p, v = pixels.shape
    flat = pixels.permute(0, 2, 1).reshape(n * v, p)
    buffer = torch.zeros(n * v, image_size * image_size)
    buffer.scatter_reduce_(1, flat, nearness.permute(0, 2, 1).reshape(n * v, p), reduce="amax")
    front = buffer.gather(1, flat).reshape(n, v, p).permute(0, 2, 1)
    visible = nearness >= front - visibility_tolerance
    images = buffer.reshape(n, v, image_size, image_size)
    return Renders(images, pixels, visible)


# ----------------------------------------------------------------------------- the data set


@dataclass(frozen=True)
class PointClouds:
    """Labelled point clouds, their depth renders and pairing; a train and a test split.

    Attributes:
        train_points, test_points: ``[N, P, 3]`` clouds in the unit ball.
        train_labels, test_labels: ``[N]`` int64 class indices (:data:`SHAPE_CLASSES`).
        train_renders, test_renders: the :class:`Renders` of each split.
        frames: ``[V, 3, 3]`` camera frames of the views (:func:`view_directions`).
        num_classes: number of classes.
    """

    train_points: torch.Tensor
    train_labels: torch.Tensor
    test_points: torch.Tensor
    test_labels: torch.Tensor
    train_renders: Renders
    test_renders: Renders
    frames: torch.Tensor
    num_classes: int

    @property
    def num_points(self) -> int:
        return self.train_points.shape[1]

    @property
    def num_views(self) -> int:
        return self.frames.shape[0]

    @property
    def image_size(self) -> int:
        return self.train_renders.images.shape[-1]

    def points(self) -> DataSplit:
        """The clouds as a ``DataSplit`` (``x`` ``[N, P, 3]``): what a point network reads."""
        return DataSplit(
            self.train_points,
            self.train_labels,
            self.test_points,
            self.test_labels,
            self.num_classes,
        )

    def views(self, view: int | None = None) -> DataSplit:
        """All views ``[N, V, H, W]`` (``view=None``) or one view ``[N, 1, H, W]`` as a ``DataSplit``."""

        def pick(images: torch.Tensor) -> torch.Tensor:
            return images if view is None else images[:, view : view + 1]

        if view is not None and not 0 <= view < self.num_views:
            raise ValueError(f"view must lie in [0, {self.num_views}), got {view}")
        return DataSplit(
            pick(self.train_renders.images),
            self.train_labels,
            pick(self.test_renders.images),
            self.test_labels,
            self.num_classes,
        )


def load_point_clouds(
    seed: int = 0,
    train_per_class: int = 100,
    test_per_class: int = 50,
    num_points: int = 128,
    num_views: int = 6,
    image_size: int = 16,
    stretch: float = 0.2,
    noise: float = 0.02,
    visibility_tolerance: float = 0.06,
) -> PointClouds:
    """Clouds of the six shapes with their renders, decided by ``seed`` (module docstring).

    Classes are balanced and interleaved (sample ``i`` has class ``i % 6``), so the
    first ``n`` training clouds of :meth:`DataSplit.with_train_subset` cover every class.
    """
    at_least("train_per_class", train_per_class, 1)
    at_least("test_per_class", test_per_class, 1)
    at_least("num_points", num_points, 1)
    at_least("num_views", num_views, 1)
    in_unit_interval("stretch", stretch)
    non_negative("noise", noise)
    rng = np.random.default_rng(seed)
    num_classes = len(SHAPE_CLASSES)
    frames = view_directions(num_views)

    def split(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = np.arange(per_class * num_classes) % num_classes
        clouds = np.stack([sample_shape(c, num_points, rng, stretch, noise) for c in labels])
        return torch.tensor(clouds, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)

    train_points, train_labels = split(train_per_class)
    test_points, test_labels = split(test_per_class)
    return PointClouds(
        train_points,
        train_labels,
        test_points,
        test_labels,
        render_depth(train_points, frames, image_size, visibility_tolerance),
        render_depth(test_points, frames, image_size, visibility_tolerance),
        frames,
        num_classes,
    )


def grid_superpixels(image_size: int, cell: int = 4) -> torch.Tensor:
    """``[H, W]`` int64 region ids: the image cut into ``cell`` × ``cell`` squares, row by row."""
    at_least("cell", cell, 1)
    rows = torch.arange(image_size) // cell
    per_row = math.ceil(image_size / cell)
    return rows[:, None] * per_row + rows[None, :]


# ----------------------------------------------------------------------------- models


def point_clouds_batch(points: torch.Tensor, owner: str = "points") -> None:
    """A floating batch of clouds ``[B, N, 3]``."""
    if points.dim() != 3 or points.shape[-1] != 3 or not points.dtype.is_floating_point:
        raise ValueError(
            f"{owner} must be a floating batch of point clouds [B, N, 3], got shape "
            f"{tuple(points.shape)} and dtype {points.dtype}"
        )


class PointNet(nn.Module):
    """Shared per-point MLP (1×1 conv, batch norm, ReLU per layer), max pooling, linear classifier.

    Input ``[B, N, 3]``; ``features`` are the per-point maps ``[B, C, N]`` of each layer.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128), num_classes: int = 6) -> None:
        super().__init__()
        self.channels = tuple(widths)
        self.num_classes = num_classes
        layers = []
        previous = 4  # x, y, z and the distance to the centroid
        for width in self.channels:
            layers.append(
                nn.Sequential(
                    nn.Conv1d(previous, width, 1, bias=False),
                    nn.BatchNorm1d(width),
                    nn.ReLU(inplace=True),
                )
            )
            previous = width
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(previous, num_classes)

    @property
    def embedding_dim(self) -> int:
        return self.channels[-1]

    def forward(self, points: torch.Tensor) -> ModelOutput:
        point_clouds_batch(points, f"{type(self).__name__} input")
        # the distance to the centroid rides along with the coordinates: it does not change
        # under the clouds' random rotations, which a PointNet without its T-Net cannot undo
        radius = points.norm(dim=-1, keepdim=True)
        h = torch.cat([points, radius], dim=-1).transpose(1, 2)
        features = []
        for layer in self.layers:
            h = layer(h)
            features.append(h)
        embedding = h.amax(dim=2)
        return ModelOutput(self.fc(embedding), features=features, embedding=embedding)


def teacher_pointnet(num_classes: int = 6) -> PointNet:
    return PointNet((32, 64, 128), num_classes)


def student_pointnet(num_classes: int = 6) -> PointNet:
    return PointNet((8, 16, 32), num_classes)


def _conv_stages(
    in_channels: int, channels: Sequence[int], downsample: bool = False
) -> nn.ModuleList:
    """3x3 conv, batch norm, ReLU per stage; with ``downsample``, stages after the first halve the map."""
    stages = []
    previous = in_channels
    for index, width in enumerate(channels):
        stride = 2 if downsample and index > 0 else 1
        stages.append(
            nn.Sequential(
                nn.Conv2d(previous, width, 3, stride, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            )
        )
        previous = width
    return nn.ModuleList(stages)


class ViewCNN(nn.Module):
    """A CNN for one depth view ``[B, 1, H, W]`` that keeps the full resolution.

    ``features`` are the ``[B, C, H, W]`` maps of each stage (a feature per pixel);
    global average pooling gives the ``embedding``, a linear layer the logits.
    """

    def __init__(
        self, channels: Sequence[int] = (16, 32), num_classes: int = 6, in_channels: int = 1
    ) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.num_classes = num_classes
        self.stages = _conv_stages(in_channels, self.channels)
        self.fc = nn.Linear(self.channels[-1], num_classes)

    @property
    def embedding_dim(self) -> int:
        return self.channels[-1]

    def forward(self, image: torch.Tensor) -> ModelOutput:
        if image.dim() != 4:
            raise ValueError(
                f"ViewCNN input must have shape [B, C, H, W], got {tuple(image.shape)}"
            )
        h, features = image, []
        for stage in self.stages:
            h = stage(h)
            features.append(h)
        embedding = h.mean(dim=(2, 3))
        return ModelOutput(self.fc(embedding), features=features, embedding=embedding)


class MultiViewCNN(nn.Module):
    """MVCNN-style: a shared CNN per view, per-view descriptors, max pooling over views.

    Input ``[B, V, H, W]`` (one depth image per view). Each view goes through the same
    convolutional stages and global average pooling, then a per-view embedding (linear,
    batch norm, ReLU: PointMCD's ``mv_cdw_embedding``) gives the view descriptors
    ``[B, V, D]`` (``features[0]``); their maximum over views, through a fusion layer
    (linear, batch norm, ReLU), is the ``embedding``, classified by a linear layer
    without bias (PointMCD's ``Teacher_Cls``). :meth:`view_logits` classifies each view's
    descriptor with the same classifier.
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64),
        descriptor_dim: int = 64,
        num_classes: int = 6,
        downsample: bool = True,
    ) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.num_classes = num_classes
        self.descriptor_dim = descriptor_dim
        self.stages = _conv_stages(1, self.channels, downsample=downsample)
        self.view_embedding = nn.Sequential(
            nn.Linear(self.channels[-1], descriptor_dim, bias=False),
            nn.BatchNorm1d(descriptor_dim),
            nn.ReLU(inplace=True),
        )
        self.fusion = nn.Sequential(
            nn.Linear(descriptor_dim, descriptor_dim, bias=False),
            nn.BatchNorm1d(descriptor_dim),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(descriptor_dim, num_classes, bias=False)

    @property
    def embedding_dim(self) -> int:
        return self.descriptor_dim

    def view_descriptors(self, views: torch.Tensor) -> torch.Tensor:
        """``[B, V, D]``: each view through the shared CNN and the per-view embedding."""
        if views.dim() != 4:
            raise ValueError(
                f"MultiViewCNN input must have shape [B, V, H, W] (one depth image per view), "
                f"got {tuple(views.shape)}"
            )
        b, v, height, width = views.shape
        h = views.reshape(b * v, 1, height, width)
        for stage in self.stages:
            h = stage(h)
        return self.view_embedding(h.mean(dim=(2, 3))).reshape(b, v, -1)

    def forward(self, views: torch.Tensor) -> ModelOutput:
        descriptors = self.view_descriptors(views)
        embedding = self.fusion(descriptors.amax(dim=1))
        return ModelOutput(self.fc(embedding), features=[descriptors], embedding=embedding)

    def view_logits(self, views: torch.Tensor) -> torch.Tensor:
        """``[B, V, C]``: each view's descriptor through the shared classifier."""
        return self.fc(self.view_descriptors(views))


__all__ = [
    "SHAPE_CLASSES",
    "MultiViewCNN",
    "PointClouds",
    "PointNet",
    "Renders",
    "ViewCNN",
    "grid_superpixels",
    "load_point_clouds",
    "point_clouds_batch",
    "random_rotation",
    "render_depth",
    "sample_shape",
    "student_pointnet",
    "teacher_pointnet",
    "view_directions",
]
