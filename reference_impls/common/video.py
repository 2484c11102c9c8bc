r"""Generated clips of moving digits and tiny video models, for the video-distillation methods.

**The data** (:func:`load_moving_digits`). Each clip shows one of scikit-learn's 8x8
digits (the classes 0-4 by default, ``digits=5``) moving across a ``canvas x canvas``
frame (16x16) for up to ``frames`` time steps (10), drawn from a generator seeded with
``seed``:

* the digit's image comes from a per-seed split of the bundled digits (training clips
  use training images only, test clips test images only), its class is $d$;
* it moves horizontally at ``speed`` pixels per frame (0.6), to the right or to the
  left ($s \in \{0, 1\}$), with a small vertical drift; its top-left corner at frame
  $t$ is $p_t = p_0 + t\,v$ (sub-pixel positions are rendered bilinearly);
* each frame also shows a faint ghost of the previous position (weight ``trail``,
  0.4: motion blur, the single-frame cue of the direction), each frame is occluded
  with probability ``occlusion`` (0.25: the digit is missing, only noise remains),
  and every pixel gets Gaussian sensor noise of standard deviation ``noise`` (0.2 on
  the [0, 1] ink scale):

$$
F_t = \mathbb{1}[\text{visible}_t]\,\big(P(x_d, p_t) + \tau\,P(x_d, p_{t-1})\big) + \sigma\,\varepsilon_t,
\qquad \varepsilon_t \sim \mathcal{N}(0, I),
$$

  then standardised with the training frames' mean and standard deviation;
* clips have variable length $L \in [$``min_frames``$, $``frames``$]$ (6 to 10); the
  frames after $L$ are padding (zeros) and the **frame mask** ``[N, T]`` (True = a real
  frame) says so;
* the label reads the digit *and* the direction: $y = 2d + s$ (10 classes by default).
  One frame tells the digit only through noise and may be occluded, and tells the
  direction only through the faint trail; several frames tell both, so a model that
  sees all frames beats one that sees a few, and one that sees a single frame most of all.

The default split (1,200 training and 300 test clips) builds in 2.6 s on one core,
after scikit-learn's import (measured under a load average of about 10 on the shared
2-core machine; 0.56 s of CPU time).
:class:`MovingDigits` keeps the positions and the visibility of the digit in every
frame, for pictures.

**Batches.** The shared training loop (``reference_impls.common.train``) passes one
tensor per batch, so a batch of clips carries its frame mask as an extra channel:
:func:`pack_clips` turns frames ``[B, T, C, H, W]`` and a mask ``[B, T]`` into
``[B, T, C + 1, H, W]`` (the last channel 1 on real frames, 0 on padding) and
:func:`unpack_clips` takes them apart again, checking both. :meth:`MovingDigits.split`
gives the packed clips as a ``DataSplit``.

**The models.** A :class:`FrameEncoder` (two stride-2 3x3 convolutions, then a linear
layer on the flattened map, so that the embedding keeps where the digit is) reads
the real frames only: padded frames never enter a network. :class:`ClipClassifier`
mixes the maps of neighbouring frames (a temporal 3x1x1 convolution over the maps,
residual), embeds each frame, mixes the embeddings over time (a temporal convolution
of width 3) and pools them with a masked softmax attention over time, then
classifies. It reads every frame (``frames=None``: the many-frame teacher,
:func:`video_teacher`) or ``frames=k`` of them, evenly spaced over each clip's real
frames (the few-frame student, :func:`few_frame_student`). :class:`FrameClassifier`
reads one frame, the middle real frame of a clip or a plain image batch ``[B, C, H, W]``
(the image student, :func:`image_student`). All return a :class:`VideoOutput` (a
``ModelOutput`` with the per-frame embeddings, maps, attention, mask and the indices
of the frames seen).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.data import DataSplit
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.models import ModelOutput
from reference_impls.common.training import freeze
from reference_impls.common.validation import (
    at_least,
    class_indices,
    frame_mask,
    in_unit_interval,
    loss_weights,
    non_negative,
)

DIGIT_SIZE = 8
DIRECTIONS = ("right", "left")


# ----------------------------------------------------------------------------- batches
def pack_clips(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Frames ``[B, T, C, H, W]`` and a boolean mask ``[B, T]`` as one ``[B, T, C + 1, H, W]`` tensor.

    Padded frames are zeroed, so nothing of them survives packing.
    """
    if frames.dim() != 5:
        raise ValueError(f"frames must have shape [B, T, C, H, W], got shape {tuple(frames.shape)}")
    frame_mask("mask", mask, frames.shape[0], frames.shape[1])
    frames = frames * mask[:, :, None, None, None].to(frames.dtype)
    channel = mask[:, :, None, None, None].to(frames.dtype).expand(-1, -1, 1, *frames.shape[3:])
    return torch.cat([frames, channel], dim=2)


def unpack_clips(clips: torch.Tensor, name: str = "clips") -> tuple[torch.Tensor, torch.Tensor]:
    """``(frames [B, T, C, H, W], mask [B, T] bool)`` of packed clips (:func:`pack_clips`)."""
    if clips.dim() != 5 or clips.shape[2] < 2:
        raise ValueError(
            f"{name} must be packed clips of shape [B, T, C + 1, H, W] (frames, then the "
            f"frame-mask channel: see pack_clips), got shape {tuple(clips.shape)}"
        )
    if clips.shape[0] == 0 or clips.shape[1] == 0:
        raise ValueError(
            f"{name} must hold at least one clip of one frame, got {tuple(clips.shape)}"
        )
    channel = clips[:, :, -1]
    mask = channel.flatten(2).amax(2) > 0.5
    expected = mask[:, :, None, None].to(channel.dtype).expand_as(channel)
    if not torch.equal(channel, expected):
        raise ValueError(
            f"{name}'s last channel must be the frame mask: 1 everywhere on a real frame and 0 on "
            "padding (see pack_clips)"
        )
    frame_mask(f"{name}'s frame mask", mask, clips.shape[0], clips.shape[1])
    return clips[:, :, :-1], mask


def evenly_spaced_frames(mask: torch.Tensor, count: int) -> torch.Tensor:
    """Indices ``[B, count]`` of ``count`` frames evenly spread over each clip's real frames.

    The $j$-th of $k$ frames is real frame $\\mathrm{round}(j (L - 1) / (k - 1))$ of a clip
    with $L$ real frames (the middle one, $\\lfloor (L - 1) / 2 \\rfloor$, when $k = 1$): the
    first and the last real frames are always seen. A clip shorter than ``count``
    repeats frames.
    """
    at_least("count", count, 1)
    frame_mask("mask", mask)
    lengths = mask.sum(1)  # [B]
    if count == 1:
        ranks = ((lengths - 1) // 2)[:, None]
    else:
        steps = torch.arange(count, device=mask.device, dtype=torch.float64)
        ranks = torch.round(steps[None] * (lengths[:, None] - 1).double() / (count - 1)).long()
    # the real frames in time order first, padding after: rank r is real frame number r
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    return torch.gather(order, 1, ranks)


def gather_frames(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b, k]]`` for per-frame values ``[B, T, ...]`` and indices ``[B, K]``."""
    expanded = index.reshape(*index.shape, *([1] * (values.dim() - 2))).expand(
        -1, -1, *values.shape[2:]
    )
    return torch.gather(values, 1, expanded)


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class MovingDigits:
    """Clips of moving digits, train and test.

    Attributes:
        clips_train, clips_test: standardised frames ``[N, T, 1, H, W]``, zero on padding.
        mask_train, mask_test: ``[N, T]`` bool, True on the real frames (a prefix).
        y_train, y_test: ``2 * digit + direction`` (direction 0 right, 1 left), int64.
        digit_train, digit_test / direction_train, direction_test: the two parts of the label.
        positions_train, positions_test: ``[N, T, 2]`` the digit's top-left (row, column).
        visible_train, visible_test: ``[N, T]`` bool, False where the digit is occluded.
        num_classes: ``2 * digits``.
    """

    clips_train: torch.Tensor
    mask_train: torch.Tensor
    y_train: torch.Tensor
    digit_train: torch.Tensor
    direction_train: torch.Tensor
    positions_train: torch.Tensor
    visible_train: torch.Tensor
    clips_test: torch.Tensor
    mask_test: torch.Tensor
    y_test: torch.Tensor
    digit_test: torch.Tensor
    direction_test: torch.Tensor
    positions_test: torch.Tensor
    visible_test: torch.Tensor
    num_classes: int

    def split(self) -> DataSplit:
        """The packed clips (:func:`pack_clips`) and labels, for ``reference_impls.common.train``."""
        return DataSplit(
            pack_clips(self.clips_train, self.mask_train),
            self.y_train,
            pack_clips(self.clips_test, self.mask_test),
            self.y_test,
            self.num_classes,
        )


def _paste(canvas: np.ndarray, image: np.ndarray, row: float, col: float, weight: float) -> None:
    """Add ``weight * image`` with its top-left corner at the sub-pixel ``(row, col)`` (bilinear)."""
    r0, c0 = int(np.floor(row)), int(np.floor(col))
    fr, fc = row - r0, col - c0
    size = image.shape[0]
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            if wr * wc > 0:
                canvas[r0 + dr : r0 + dr + size, c0 + dc : c0 + dc + size] += (
                    weight * wr * wc * image
                )


def _clips(
    images: np.ndarray,
    labels: np.ndarray,
    count: int,
    rng: np.random.Generator,
    *,
    frames: int,
    min_frames: int,
    canvas: int,
    speed: float,
    trail: float,
    occlusion: float,
    noise: float,
) -> dict[str, np.ndarray]:
    travel = speed * (frames - 1)
    room = canvas - DIGIT_SIZE
    if travel > room:
        raise ValueError(
            f"a digit moving at speed={speed} for frames={frames} travels {travel:.2f} pixels, more "
            f"than the {room} a canvas of {canvas} leaves; lower speed or frames, or widen canvas"
        )
    clips = np.zeros((count, frames, canvas, canvas), dtype=np.float32)
    mask = np.zeros((count, frames), dtype=bool)
    positions = np.zeros((count, frames, 2), dtype=np.float32)
    visible = np.zeros((count, frames), dtype=bool)
    pick = rng.integers(0, len(images), size=count)
    direction = rng.integers(0, 2, size=count)
    lengths = rng.integers(min_frames, frames + 1, size=count)
    drift = rng.uniform(-0.3, 0.3, size=count)
    for i in range(count):
        sign = 1.0 if direction[i] == 0 else -1.0
        start_col = rng.uniform(0, room - travel) + (0.0 if sign > 0 else travel)
        low, high = max(0.0, -drift[i] * (frames - 1)), min(room, room - drift[i] * (frames - 1))
        start_row = rng.uniform(low, high)
        shown = rng.random(frames) >= occlusion
        sensor = rng.normal(0.0, noise, size=(frames, canvas, canvas))
        image = images[pick[i]]
        for t in range(lengths[i]):
            row, col = start_row + drift[i] * t, start_col + sign * speed * t
            positions[i, t] = (row, col)
            visible[i, t] = shown[t]
            padded = np.zeros((canvas + 1, canvas + 1), dtype=np.float32)
            if shown[t]:
                _paste(padded, image, row, col, 1.0)
                previous_row, previous_col = row - drift[i], col - sign * speed
                if 0 <= previous_col <= room and 0 <= previous_row <= room:
                    _paste(padded, image, previous_row, previous_col, trail)
            clips[i, t] = padded[:canvas, :canvas] + sensor[t]
            mask[i, t] = True
    return {
        "clips": clips,
        "mask": mask,
        "digit": labels[pick],
        "direction": direction,
        "positions": positions,
        "visible": visible,
    }


def load_moving_digits(
    seed: int = 0,
    num_train: int = 1200,
    num_test: int = 300,
    frames: int = 10,
    min_frames: int = 6,
    canvas: int = 16,
    speed: float = 0.6,
    trail: float = 0.4,
    occlusion: float = 0.25,
    noise: float = 0.2,
    digits: int = 5,
) -> MovingDigits:
    """Clips of moving digits (see the module docstring), deterministic from ``seed``."""
    at_least("num_train", num_train, 1)
    at_least("num_test", num_test, 1)
    at_least("frames", frames, 1)
    at_least("min_frames", min_frames, 1)
    if min_frames > frames:
        raise ValueError(f"min_frames must be at most frames={frames}, got {min_frames}")
    at_least("canvas", canvas, DIGIT_SIZE)
    non_negative("speed", speed)
    non_negative("trail", trail)
    in_unit_interval("occlusion", occlusion)
    non_negative("noise", noise)
    if not 1 <= digits <= 10:
        raise ValueError(f"digits must be between 1 and 10 (the classes 0..digits-1), got {digits}")
    from sklearn.datasets import load_digits

    bundled = load_digits()
    keep = bundled.target < digits
    images = bundled.images[keep].astype(np.float32) / 16.0
    targets = bundled.target[keep]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    n_test = round(0.25 * len(images))
    test_pool, train_pool = order[:n_test], order[n_test:]
    settings = dict(
        frames=frames,
        min_frames=min_frames,
        canvas=canvas,
        speed=speed,
        trail=trail,
        occlusion=occlusion,
        noise=noise,
    )
    train = _clips(images[train_pool], targets[train_pool], num_train, rng, **settings)
    test = _clips(images[test_pool], targets[test_pool], num_test, rng, **settings)
    real = train["clips"][train["mask"]]
    mean, std = float(real.mean()), float(real.std())

    def tensors(part: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        mask = torch.from_numpy(part["mask"])
        clips = (torch.from_numpy(part["clips"]) - mean) / std * mask[:, :, None, None]
        digit = torch.as_tensor(part["digit"], dtype=torch.int64)
        direction = torch.as_tensor(part["direction"], dtype=torch.int64)
        return {
            "clips": clips[:, :, None].contiguous(),
            "mask": mask,
            "y": 2 * digit + direction,
            "digit": digit,
            "direction": direction,
            "positions": torch.from_numpy(part["positions"]),
            "visible": torch.from_numpy(part["visible"]),
        }

    tr, te = tensors(train), tensors(test)
    return MovingDigits(
        **{f"{key}_train": value for key, value in tr.items()},
        **{f"{key}_test": value for key, value in te.items()},
        num_classes=2 * digits,
    )


# ----------------------------------------------------------------------------- models
@dataclass
class VideoOutput(ModelOutput):
    """A ``ModelOutput`` with what a video model saw and did per frame.

    Attributes (``K`` = the frames the model read):
        frame_embeddings: ``[B, K, D]`` each frame's embedding after the temporal mixing
            (zero on padded frames).
        frame_maps: ``[B, K, C, h, w]`` each frame's last convolutional map (after the
            temporal mixing of maps, for a clip model).
        attention: ``[B, K]`` the temporal attention weights (zero on padded frames).
        mask: ``[B, K]`` bool, the real frames among those read.
        frame_index: ``[B, K]`` which frames of the clip were read.
    """

    frame_embeddings: torch.Tensor | None = None
    frame_maps: torch.Tensor | None = None
    attention: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    frame_index: torch.Tensor | None = None


class FrameEncoder(nn.Module):
    """Two stride-2 3x3 convolutions, then a linear embedding of the flattened map (keeps position)."""

    def __init__(
        self,
        channels: tuple[int, int] = (8, 16),
        dim: int = 64,
        canvas: int = 16,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.dim = dim
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.conv2 = nn.Conv2d(channels[0], channels[1], 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels[1])
        side = (canvas + 1) // 2
        self.map_size = (side + 1) // 2
        self.embed = nn.Linear(channels[1] * self.map_size**2, dim)

    def maps(self, images: torch.Tensor) -> torch.Tensor:
        """The last convolutional map ``[N, C, h, w]`` of images ``[N, C_in, H, W]``."""
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(images))))))

    def embedding(self, maps: torch.Tensor) -> torch.Tensor:
        """The embedding ``[N, D]`` of maps ``[N, C, h, w]`` (flattened: it keeps where the digit is)."""
        return torch.relu(self.embed(maps.flatten(1)))


def _scatter_real(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-real-frame values ``[R, ...]`` back into ``[B, T, ...]``, zeros on padding."""
    out = values.new_zeros(*mask.shape, *values.shape[1:])
    out[mask] = values
    return out


class ClipClassifier(nn.Module):
    """A frame encoder, temporal mixing of maps and embeddings, masked attention pooling over time.

    Args:
        channels, dim: the frame encoder's widths and embedding size.
        num_classes: classes of the clip label.
        frames: ``None`` reads every real frame (the teacher); ``k`` reads ``k`` frames
            evenly spaced over each clip's real frames (:func:`evenly_spaced_frames`).
        canvas: the frame size.
    """

    def __init__(
        self,
        channels: tuple[int, int] = (8, 16),
        dim: int = 64,
        num_classes: int = 10,
        frames: int | None = None,
        canvas: int = 16,
    ) -> None:
        super().__init__()
        self.frames = None if frames is None else at_least("frames", frames, 1)
        self.channels = tuple(channels)
        self.embedding_dim = dim
        self.num_classes = num_classes
        self.encoder = FrameEncoder(channels, dim, canvas)
        # a 3x1x1 convolution over time on the maps: each frame's map sees its neighbours'
        self.map_mixing = nn.Conv3d(channels[1], channels[1], (3, 1, 1), padding=(1, 0, 0))
        self.temporal = nn.Conv1d(dim, dim, 3, padding=1)
        self.attention_score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, clips: torch.Tensor) -> VideoOutput:
        frames, mask = unpack_clips(clips)
        if self.frames is None:
            index = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape[0], -1)
        else:
            index = evenly_spaced_frames(mask, self.frames)
            frames, mask = gather_frames(frames, index), gather_frames(mask, index)
        maps = _scatter_real(self.encoder.maps(frames[mask]), mask)  # [B, K, C, h, w]
        keep = mask[:, :, None, None, None].to(maps.dtype)
        mixed = maps.transpose(1, 2)  # [B, C, K, h, w]
        maps = (maps + torch.relu(self.map_mixing(mixed)).transpose(1, 2)) * keep
        embeddings = _scatter_real(self.encoder.embedding(maps[mask]), mask)  # [B, K, D]
        keep = mask[:, :, None].to(embeddings.dtype)
        context = torch.relu(self.temporal(embeddings.transpose(1, 2))).transpose(1, 2)
        # bounded like an LSTM's state (tanh): the distillation terms on it stay of order one
        embeddings = torch.tanh(embeddings + context) * keep
        scores = at_least_float32(self.attention_score(embeddings).squeeze(-1))
        attention = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        attention = attention.to(embeddings.dtype)
        pooled = (attention[:, :, None] * embeddings).sum(1)
        return VideoOutput(
            logits=self.fc(pooled),
            features=[maps],
            embedding=pooled,
            frame_embeddings=embeddings,
            frame_maps=maps,
            attention=attention,
            mask=mask,
            frame_index=index,
        )


class FrameClassifier(nn.Module):
    """An image classifier: reads one frame (a clip's middle real frame) or images ``[B, C, H, W]``."""

    def __init__(
        self,
        channels: tuple[int, int] = (8, 16),
        dim: int = 32,
        num_classes: int = 10,
        canvas: int = 16,
    ) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.embedding_dim = dim
        self.num_classes = num_classes
        self.encoder = FrameEncoder(channels, dim, canvas)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> VideoOutput:
        if x.dim() == 4:  # plain images
            images, index = x, None
        else:
            frames, mask = unpack_clips(x, "x")
            index = evenly_spaced_frames(mask, 1)  # the key frame: the middle real frame
            images = gather_frames(frames, index)[:, 0]
        maps = self.encoder.maps(images)
        embedding = torch.tanh(self.encoder.embedding(maps))
        return VideoOutput(
            logits=self.fc(embedding),
            features=[maps],
            embedding=embedding,
            frame_maps=maps[:, None],
            frame_index=index,
        )


def video_teacher(num_classes: int = 10, canvas: int = 16) -> ClipClassifier:
    """The many-frame teacher: reads every frame (~36k parameters)."""
    return ClipClassifier((8, 16), 64, num_classes, frames=None, canvas=canvas)


def few_frame_student(frames: int = 3, num_classes: int = 10, canvas: int = 16) -> ClipClassifier:
    """The few-frame student: the teacher's architecture reading only ``frames`` frames.

    Bhardwaj et al.'s setting: the same network, fewer frames (the saving is in frames).
    """
    return ClipClassifier((8, 16), 64, num_classes, frames=frames, canvas=canvas)


def image_student(num_classes: int = 10, canvas: int = 16) -> FrameClassifier:
    """The image student: one frame, the clip's middle real frame (~10k parameters)."""
    return FrameClassifier((8, 16), 32, num_classes, canvas)


# ----------------------------------------------------------------------------- procedures
class ClipDistillation(DistillationProcedure):
    """What the video procedures share: a frozen clip teacher, the labels, weighted terms.

    A method subclasses it, passes its weights to ``__init__`` (``label_weight`` for the
    cross-entropy and ``<term>_weight`` for each term, in the order the loss adds them)
    and writes :meth:`distillation_terms`, its paper's terms by name. :meth:`forward` runs
    the teacher on the packed clips under ``no_grad`` and the student with gradients,
    checks the labels, and returns the weighted sum with each term detached::

        {"loss": sum of weight * term, "ce": ce, "<term>": term, ...}
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, **weights: float) -> None:
        super().__init__()
        loss_weights(**weights)
        self.student = student
        self.teacher = freeze(teacher)
        self._terms = tuple(name.removesuffix("_weight") for name in weights)
        for name, weight in weights.items():
            setattr(self, name, weight)

    def train(self, mode: bool = True) -> ClipDistillation:
        super().train(mode)
        self.teacher.eval()  # the frozen teacher's batch-norm statistics never move
        return self

    def distillation_terms(
        self, student: VideoOutput, teacher: VideoOutput
    ) -> dict[str, torch.Tensor]:
        """The method's terms, ``{"<term>": value}`` (one per ``<term>_weight``)."""
        raise NotImplementedError

    def forward(self, clips: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            teacher = self.teacher(clips)
        student = self.student(clips)
        class_indices(target, student.logits)
        terms = self.distillation_terms(student, teacher)
        terms["label"] = F.cross_entropy(at_least_float32(student.logits), target)
        weighted = [getattr(self, f"{term}_weight") * terms[term] for term in self._terms]
        total = sum(weighted[1:], weighted[0])  # added in the method's order
        ce = terms.pop("label")
        return {"loss": total, "ce": ce.detach()} | {
            name: value.detach() for name, value in terms.items()
        }


def model_width(model: nn.Module, name: str, given: int | None, what: str = "dim") -> int:
    """``given``, else ``model``'s embedding width (``embedding_dim``) or, for ``what="channels"``,
    its last map width (``channels[-1]``); ``name`` (``"student"``) names it in the error."""
    if given is not None:
        return int(given)
    if what == "channels":
        channels = getattr(model, "channels", None)
        value = channels[-1] if isinstance(channels, tuple | list) and channels else None
    else:
        value = getattr(model, "embedding_dim", None)
    if not isinstance(value, int):
        raise ValueError(
            f"{name}_{what} is required: the {name} ({type(model).__name__}) does not say it "
            f"({'`channels`' if what == 'channels' else '`embedding_dim`'})"
        )
    return value


__all__ = [
    "DIRECTIONS",
    "ClipClassifier",
    "ClipDistillation",
    "FrameClassifier",
    "FrameEncoder",
    "MovingDigits",
    "VideoOutput",
    "evenly_spaced_frames",
    "few_frame_student",
    "gather_frames",
    "image_student",
    "load_moving_digits",
    "model_width",
    "pack_clips",
    "unpack_clips",
    "video_teacher",
]
