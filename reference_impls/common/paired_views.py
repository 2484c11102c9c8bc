r"""A second modality of the digits, for cross-modal methods: each image paired with its edge map.

Cross-modal distillation needs the same scenes seen by two sensors (RGB and depth,
video and audio): a teacher trained on one modality teaches a student that sees
the other. Here the second "sensor" is made from the first, deterministically: the
**edge view** of a digit is the magnitude of its Sobel gradient, computed on the raw
[0, 1] image, plus Gaussian sensor noise drawn from a generator seeded with
``seed``, then standardised with the training images' mean and standard deviation:

$$
E(x) = \mathrm{standardise}\Big(\sqrt{(K_x * x)^2 + (K_y * x)^2} + \sigma\,\varepsilon\Big),
\qquad \varepsilon \sim \mathcal{N}(0, I).
$$

It keeps where the strokes are but not their ink: strokes become pairs of ridges, and
a network trained on the images reads it poorly (the modality gap), while a network
trained on it can still recognise the digit. The whole split is built in a few
milliseconds.

:func:`load_paired_digits` gives both views of one digits split, paired by index and
sharing labels (:class:`PairedViews`). Its :meth:`PairedViews.frames` stacks the two
views of each training image along the channels, as an RGB-D frame stacks colour and
depth: a cross-modal procedure's teacher reads the first channel(s), its student the
rest. The test images of that split are the student's modality alone, which is what
the student is deployed on, so ``reference_impls.common.train`` reports the
student's accuracy on its own modality.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reference_impls.common.data import DataSplit, load_digits_split
from reference_impls.common.validation import non_negative

# load_digits_split standardises the [0, 1] images as (x - 0.3) / 0.4
DIGITS_MEAN, DIGITS_STD = 0.3, 0.4

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of each channel of ``[N, C, H, W]`` images (zero padding)."""
    if images.dim() != 4:
        raise ValueError(f"images must have shape [N, C, H, W], got {tuple(images.shape)}")
    channels = images.shape[1]
    kernels = torch.stack([SOBEL_X, SOBEL_X.T]).to(images)[:, None]  # [2, 1, 3, 3]
    kernels = kernels.repeat(channels, 1, 1, 1)  # each channel its own x and y kernels
    gradients = F.conv2d(images, kernels, padding=1, groups=channels)
    gx, gy = gradients[:, 0::2], gradients[:, 1::2]
    return torch.sqrt(gx**2 + gy**2)


def edge_view(images: torch.Tensor, noise: float = 0.3, seed: int = 0) -> torch.Tensor:
    """The unstandardised edge view of standardised digits: Sobel magnitude plus seeded noise."""
    non_negative("noise", noise)
    raw = images * DIGITS_STD + DIGITS_MEAN  # back to [0, 1] ink
    generator = torch.Generator().manual_seed(seed)
    sensor_noise = torch.randn(images.shape, generator=generator).to(images)
    return gradient_magnitude(raw) + noise * sensor_noise


@dataclass
class PairedViews:
    """One digits split seen by two sensors, paired by index, with the same labels.

    Attributes:
        images: the digits as they are (the teacher's modality), ``[N, 1, 8, 8]``.
        edges: their edge views (the student's modality), ``[N, 1, 8, 8]``.
    """

    images: DataSplit
    edges: DataSplit

    def frames(self, labelled: int | None = None) -> DataSplit:
        """Paired training frames ``[N, 2, 8, 8]`` (image, edges) and test edge maps alone.

        ``labelled``: keep the first ``labelled`` training pairs (all by default); the
        labels travel with them, for the methods that read them.
        """
        images = self.images if labelled is None else self.images.with_train_subset(labelled)
        edges = self.edges if labelled is None else self.edges.with_train_subset(labelled)
        return DataSplit(
            torch.cat([images.x_train, edges.x_train], dim=1),
            edges.y_train,
            edges.x_test,
            edges.y_test,
            edges.num_classes,
        )


def load_paired_digits(
    data: DataSplit | None = None, noise: float = 0.3, seed: int = 0
) -> PairedViews:
    """The digits (``data``, default ``load_digits_split(seed=0)``) and their edge views.

    The training images' noise is drawn under ``seed``, the test images' under
    ``seed + 1``; both are standardised with the statistics of the training edge maps,
    so the test set leaks nothing into the training data.
    """
    data = data if data is not None else load_digits_split(seed=0)
    train_edges = edge_view(data.x_train.cpu(), noise, seed)
    test_edges = edge_view(data.x_test.cpu(), noise, seed + 1)
    mean, std = train_edges.mean(), train_edges.std()
    device = data.x_train.device
    edges = DataSplit(
        ((train_edges - mean) / std).to(device),
        data.y_train,
        ((test_edges - mean) / std).to(device),
        data.y_test,
        data.num_classes,
    )
    return PairedViews(images=data, edges=edges)


def split_modalities(
    frames: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor],
    teacher_input_channels: int,
    owner: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(teacher_input, student_input)`` of a paired batch.

    ``frames`` is either a pair of tensors (modalities of any shapes, e.g. video and
    audio) or one ``[B, C, H, W]`` tensor whose first ``teacher_input_channels``
    channels are the teacher's modality and the rest the student's (:meth:`PairedViews.frames`).
    """
    if isinstance(frames, tuple | list):
        if len(frames) != 2:
            raise ValueError(
                f"{owner}: a paired batch given as a sequence must hold two tensors "
                f"(teacher_input, student_input), got {len(frames)}"
            )
        teacher_input, student_input = frames
        if teacher_input.shape[0] != student_input.shape[0]:
            raise ValueError(
                f"{owner}: teacher_input and student_input must pair the same samples, got "
                f"batch sizes {teacher_input.shape[0]} and {student_input.shape[0]} (shapes "
                f"{tuple(teacher_input.shape)} and {tuple(student_input.shape)})"
            )
        return teacher_input, student_input
    if frames.dim() < 2 or frames.shape[1] <= teacher_input_channels:
        raise ValueError(
            f"{owner}: paired frames must have more than teacher_input_channels="
            f"{teacher_input_channels} channels (the teacher's, then the student's), got shape "
            f"{tuple(frames.shape)}; pass (teacher_input, student_input) for unstacked modalities"
        )
    return frames[:, :teacher_input_channels], frames[:, teacher_input_channels:]


__all__ = [
    "PairedViews",
    "edge_view",
    "gradient_magnitude",
    "load_paired_digits",
    "split_modalities",
]
