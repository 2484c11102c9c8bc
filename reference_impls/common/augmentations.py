r"""Random views of the 8x8 digits, tiny self-supervised networks, and how their features are judged.

Self-supervised methods learn from two or more **views** of each image, drawn at
random by an augmentation; the self-supervised distillation methods
(``reference_impls.applications.self_supervised``) read them too. The digits are
1,797 8x8 grey images (``reference_impls.common.data.load_digits_split``), so the
views are made in plain torch on whole batches, every random number drawn on the
CPU from a ``torch.Generator`` (``None``: torch's global generator, which the
training loop seeds), then moved to the images' device. Nothing is downloaded.

**A view** (:func:`augment`) of a batch $x$ is, for each image independently:

1. a random resized crop: a box of area $s \sim U(s_{\min}, s_{\max})$ (fraction of
   the image) and aspect ratio $r$ log-uniform in $[3/4, 4/3]$, at a uniform position
   inside the image, resampled bilinearly to ``size`` x ``size`` pixels
   (``F.affine_grid`` + ``F.grid_sample``, as torchvision's ``RandomResizedCrop``);
2. with probability ``jitter_p`` a contrast and brightness jitter of the ink,
   $x \mapsto c\,x + b$ with $c \sim U(1-j, 1+j)$, $b \sim U(-j, j)$ (the one-channel
   form of ``ColorJitter``);
3. with probability ``blur_p`` a 3x3 Gaussian blur of width $\sigma \sim U(0.1, 1)$
   pixel (DINO's ``GaussianBlur`` with its radius range scaled to 8 pixels);
4. additive Gaussian pixel noise of standard deviation ``noise``.

No flips: a mirrored digit is often another digit (or none), unlike a mirrored
photograph. :class:`MultiCrop` draws DINO's multi-crop set: two **global** views
(area 40-100 %, 8x8) and several **local** views (area 20-50 %, 4x4): the authors'
local range (5-40 % of a 224-pixel image, resized to 96) would leave crops of under
two pixels here, so it is raised and the local size halved (their 96/224 ratio).

**Networks.** :class:`SSLNetwork` puts a projection head on a backbone
(``TinyCNN``) and returns a ``ModelOutput`` whose ``logits`` are the head's output
and whose ``embedding`` is the backbone's pooled feature, the representation that is
evaluated. Heads: :class:`DINOHead` (DINO's: an MLP, an l2-normalised bottleneck,
a weight-normalised last layer of ``out_dim`` prototypes) and :class:`ProjectionHead`
(BYOL's projector and predictor: linear, batch norm, ReLU, linear).

**Evaluation** of a frozen representation (the embedding of un-augmented images):
:func:`linear_probe_accuracy` fits a multinomial logistic regression on the training
embeddings (standardised) and reports test accuracy; :func:`knn_accuracy` is DINO's
weighted k-NN classifier (``eval_knn.py``, ``knn_classifier``): cosine similarities
to the training embeddings, the $k = 20$ nearest vote for their class with weight
$\exp(\mathrm{sim}/T)$, $T = 0.07$.

Cost, measured on the shared 2-core machine under a load average of 6 to 15 (so
upper bounds): one :class:`MultiCrop` set (2 global + 8 local views) of a 128-image
batch takes 20 to 110 ms, both probes of a ``student_cnn`` on the digits split 0.2 to
0.8 s; nothing is built ahead (the views are drawn on every batch).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.data import DataSplit
from reference_impls.common.models import ModelOutput, student_cnn
from reference_impls.common.validation import at_least, in_unit_interval, non_negative, positive

# load_digits_split standardises the [0, 1] ink as (x - 0.3) / 0.4: the blank background
BACKGROUND = (0.0 - 0.3) / 0.4


def _uniform(
    shape: Sequence[int], low: float, high: float, generator: torch.Generator | None
) -> torch.Tensor:
    return low + (high - low) * torch.rand(tuple(shape), generator=generator)


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or not images.dtype.is_floating_point:
        raise ValueError(
            f"images must be a floating-point batch [N, C, H, W], got shape "
            f"{tuple(images.shape)} and dtype {images.dtype}"
        )


def _check_scale(name: str, scale: tuple[float, float]) -> None:
    low, high = scale
    if not 0 < low <= high <= 1:
        raise ValueError(f"{name} must be (low, high) with 0 < low <= high <= 1, got {scale}")


def random_resized_crops(
    images: torch.Tensor,
    size: int,
    scale: tuple[float, float],
    generator: torch.Generator | None = None,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """One random box per image (area fraction in ``scale``), resampled to ``size`` x ``size``."""
    _check_images(images)
    _check_scale("scale", scale)
    at_least("size", size, 1)
    n = images.shape[0]
    area = _uniform((n,), *scale, generator)
    log_ratio = _uniform((n,), math.log(ratio[0]), math.log(ratio[1]), generator)
    aspect = torch.exp(log_ratio)
    # half-widths in affine_grid's [-1, 1] coordinates: a box of side w covers w of the image
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    centre_x = (1 - width) * _uniform((n,), -1.0, 1.0, generator)
    centre_y = (1 - height) * _uniform((n,), -1.0, 1.0, generator)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, [n, images.shape[1], size, size], align_corners=False)
    # samples past the outermost pixel centres repeat the border (background), never zeros:
    # the standardised background is not 0, and a crop must not darken its edges
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A 3x3 Gaussian blur of each image with its own width ``sigma`` (background padding)."""
    offsets = torch.tensor([-1.0, 0.0, 1.0])
    kernel_1d = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel_1d = kernel_1d / kernel_1d.sum(1, keepdim=True)
    kernels = (kernel_1d[:, :, None] * kernel_1d[:, None, :]).to(images)  # [N, 3, 3]
    n, channels, h, w = images.shape
    padded = F.pad(images, (1, 1, 1, 1), value=BACKGROUND)
    # one group per (image, channel): each image blurred with its own kernel
    weight = kernels.repeat_interleave(channels, 0)[:, None]
    blurred = F.conv2d(padded.reshape(1, n * channels, h + 2, w + 2), weight, groups=n * channels)
    return blurred.reshape(n, channels, h, w)


@dataclass(frozen=True)
class ViewSettings:
    """How one kind of view is drawn (see the module docstring for each step)."""

    size: int = 8
    scale: tuple[float, float] = (0.4, 1.0)
    jitter: float = 0.4
    jitter_p: float = 0.8
    blur_p: float = 0.5
    noise: float = 0.1

    def __post_init__(self) -> None:
        at_least("size", self.size, 1)
        _check_scale("scale", self.scale)
        in_unit_interval("jitter", self.jitter)
        in_unit_interval("jitter_p", self.jitter_p)
        in_unit_interval("blur_p", self.blur_p)
        non_negative("noise", self.noise)


def augment(
    images: torch.Tensor,
    settings: ViewSettings = ViewSettings(),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random view of each image of ``[N, C, H, W]`` standardised digits."""
    _check_images(images)
    n = images.shape[0]
    views = random_resized_crops(images, settings.size, settings.scale, generator)
    # the draws are made whether or not they are applied, so one setting never shifts another's
    apply_jitter = torch.rand(n, generator=generator) < settings.jitter_p
    contrast = _uniform((n,), 1 - settings.jitter, 1 + settings.jitter, generator)
    brightness = _uniform((n,), -settings.jitter, settings.jitter, generator)
    contrast = torch.where(apply_jitter, contrast, torch.ones(n))
    brightness = torch.where(apply_jitter, brightness, torch.zeros(n))
    views = (
        contrast.to(views)[:, None, None, None] * views + brightness.to(views)[:, None, None, None]
    )
    apply_blur = torch.rand(n, generator=generator) < settings.blur_p
    sigma = _uniform((n,), 0.1, 1.0, generator)
    blurred = _gaussian_blur(views, sigma)
    views = torch.where(apply_blur.to(views.device)[:, None, None, None], blurred, views)
    noise = torch.randn(tuple(views.shape), generator=generator).to(views)
    return views + settings.noise * noise


@dataclass(frozen=True)
class MultiCrop:
    """DINO's multi-crop set: ``global_crops`` global views, then ``local_crops`` local ones."""

    global_crops: int = 2
    local_crops: int = 8
    global_view: ViewSettings = ViewSettings(size=8, scale=(0.4, 1.0))
    local_view: ViewSettings = ViewSettings(size=4, scale=(0.2, 0.5))

    def __post_init__(self) -> None:
        at_least("global_crops", self.global_crops, 1)
        at_least("local_crops", self.local_crops, 0)

    @property
    def num_crops(self) -> int:
        return self.global_crops + self.local_crops

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        views = [augment(images, self.global_view, generator) for _ in range(self.global_crops)]
        views += [augment(images, self.local_view, generator) for _ in range(self.local_crops)]
        return views


# ----------------------------------------------------------------------------- networks


def _truncated_normal_(module: nn.Module) -> None:
    """DINO's initialisation of every linear layer: truncated normal, std 0.02, zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class DINOHead(nn.Module):
    """DINO's projection head: MLP, l2-normalised bottleneck, weight-normalised prototypes.

    As ``vision_transformer.py`` ``DINOHead`` (facebookresearch/dino): ``nlayers`` linear
    layers with GELU between them, the bottleneck output l2-normalised, then a linear
    layer without bias whose weight is normalised per prototype,
    $W = g\\,V/\\lVert V\\rVert$ (``weight_norm``), with the gain $g$ fixed to 1 when
    ``norm_last_layer`` (their default). Their sizes (2048 hidden, 256 bottleneck, 65536
    prototypes) are scaled down to the digits' (128, 64, 256).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 256,
        hidden_dim: int = 128,
        bottleneck_dim: int = 64,
        nlayers: int = 3,
        norm_last_layer: bool = True,
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        at_least("nlayers", nlayers, 1)
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for index, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(d_in, d_out))
            if index < nlayers - 1:
                if use_bn:  # their --use_bn_in_head: batch norm after each hidden layer
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.mlp.apply(_truncated_normal_)
        self.out_dim = out_dim
        # weight_norm's direction V (their default init of nn.Linear) and gain g (filled with 1)
        last = nn.Linear(bottleneck_dim, out_dim, bias=False)
        self.prototypes = nn.Parameter(last.weight.detach().clone())
        self.gain = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not norm_last_layer)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        bottleneck = F.normalize(self.mlp(embedding), dim=-1, p=2)
        weight = self.gain * self.prototypes / self.prototypes.norm(dim=1, keepdim=True)
        return F.linear(bottleneck, weight)


class ProjectionHead(nn.Module):
    """BYOL's MLP (``networks.MLP``): linear, batch norm, ReLU, linear; projector and predictor."""

    def __init__(self, in_dim: int, out_dim: int = 64, hidden_dim: int = 128) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SSLNetwork(nn.Module):
    """A backbone and a projection head: ``logits`` = the head's output, ``embedding`` = the backbone's.

    The backbone is any model returning a ``ModelOutput`` with an ``embedding``
    (``TinyCNN``); its own classifier is not used.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> ModelOutput:
        out = self.backbone(x)
        if not isinstance(out, ModelOutput) or out.embedding is None:
            raise TypeError(
                f"the backbone must return a ModelOutput with an embedding, got {type(out).__name__}"
            )
        return ModelOutput(
            self.head(out.embedding), out.features, out.preact_features, out.embedding
        )


def _without_classifier(backbone: nn.Module | None) -> nn.Module:
    backbone = backbone if backbone is not None else student_cnn()
    classifier = getattr(backbone, "fc", None)
    if isinstance(classifier, nn.Module):
        classifier.requires_grad_(False)  # a self-supervised model has no classifier to train
    return backbone


def _embedding_dim(backbone: nn.Module) -> int:
    width = getattr(backbone, "embedding_dim", None)
    if not isinstance(width, int):
        raise ValueError(
            f"the backbone ({type(backbone).__name__}) must have an integer `embedding_dim`, "
            "as TinyCNN and TinyMLP do"
        )
    return width


def embedding_of(output: ModelOutput | torch.Tensor) -> torch.Tensor:
    """The pooled ``embedding`` of a model's ``ModelOutput`` (a plain tensor is one already)."""
    if isinstance(output, ModelOutput):
        if output.embedding is None:
            raise ValueError("the model's ModelOutput has no embedding")
        return output.embedding
    return output


def dino_network(
    backbone: nn.Module | None = None, out_dim: int = 256, use_bn: bool = False
) -> SSLNetwork:
    """``backbone`` (default ``student_cnn()``) with a :class:`DINOHead` of ``out_dim`` prototypes."""
    backbone = _without_classifier(backbone)
    return SSLNetwork(backbone, DINOHead(_embedding_dim(backbone), out_dim, use_bn=use_bn))


def byol_network(backbone: nn.Module | None = None, projection_dim: int = 64) -> SSLNetwork:
    """``backbone`` (default ``student_cnn()``) with BYOL's projector (a :class:`ProjectionHead`)."""
    backbone = _without_classifier(backbone)
    return SSLNetwork(backbone, ProjectionHead(_embedding_dim(backbone), projection_dim))


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The pooled ``embedding`` of un-augmented images, in eval mode, as float32 on the CPU."""
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        out = model(images[start : start + batch_size])
        chunks.append((out.embedding if isinstance(out, ModelOutput) else out).float().cpu())
    model.train(was_training)
    return torch.cat(chunks)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """DINO's weighted k-NN accuracy: the k most cosine-similar training samples vote,
    each with weight ``exp(similarity / temperature)``."""
    at_least("k", k, 1)
    positive("temperature", temperature)
    for name, features, labels in (
        ("train", train_features, train_labels),
        ("test", test_features, test_labels),
    ):
        if features.dim() != 2 or labels.shape != (features.shape[0],):
            raise ValueError(
                f"{name}_features must be [N, D] with {name}_labels [N], got shapes "
                f"{tuple(features.shape)} and {tuple(labels.shape)}"
            )
    k = min(k, len(train_features))
    num_classes = int(torch.cat([train_labels, test_labels]).max()) + 1
    train_features = F.normalize(train_features.double(), dim=1)
    test_features = F.normalize(test_features.double(), dim=1)
    similarity = test_features @ train_features.T
    top_similarity, top_index = similarity.topk(k, dim=1)
    votes = torch.zeros(len(test_features), num_classes, dtype=torch.float64)
    votes.scatter_add_(1, train_labels[top_index], torch.exp(top_similarity / temperature))
    return (votes.argmax(1) == test_labels).double().mean().item()


def linear_probe_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    regularisation: float = 1.0,
) -> float:
    """Test accuracy of a logistic regression (L-BFGS, L2 strength ``1 / regularisation``
    as scikit-learn's ``C``) fitted on the standardised training features."""
    from sklearn.linear_model import LogisticRegression

    positive("regularisation", regularisation)
    mean, std = train_features.mean(0), train_features.std(0).clamp(min=1e-6)
    train_x = ((train_features - mean) / std).double().numpy()
    test_x = ((test_features - mean) / std).double().numpy()
    probe = LogisticRegression(C=regularisation, max_iter=2000)
    probe.fit(train_x, train_labels.numpy())
    return float((probe.predict(test_x) == test_labels.numpy()).mean())


def probe(model: nn.Module, data: DataSplit, k: int = 20) -> dict[str, float]:
    """Linear-probe and k-NN test accuracy of ``model``'s embedding on ``data``."""
    train_features = embed(model, data.x_train)
    test_features = embed(model, data.x_test)
    y_train, y_test = data.y_train.cpu(), data.y_test.cpu()
    return {
        "linear": linear_probe_accuracy(train_features, y_train, test_features, y_test),
        "knn": knn_accuracy(train_features, y_train, test_features, y_test, k=k),
    }


def cosine_schedule(
    base: float, final: float, epochs: int, steps_per_epoch: int, warmup_epochs: int = 0
) -> torch.Tensor:
    """DINO's ``utils.cosine_scheduler``: a linear warm-up from 0, then a cosine from ``base``
    to ``final``, one value per training step (float64). The last step is one short of
    ``final``, as theirs (the cosine's argument runs over ``i / n`` for ``i < n``)."""
    at_least("epochs", epochs, 1)
    at_least("steps_per_epoch", steps_per_epoch, 1)
    warmup_steps = warmup_epochs * steps_per_epoch
    warmup = torch.linspace(0, base, warmup_steps, dtype=torch.float64)
    steps = torch.arange(epochs * steps_per_epoch - warmup_steps, dtype=torch.float64)
    cosine = final + 0.5 * (base - final) * (1 + torch.cos(math.pi * steps / len(steps)))
    return torch.cat([warmup, cosine])


__all__ = [
    "BACKGROUND",
    "DINOHead",
    "MultiCrop",
    "ProjectionHead",
    "SSLNetwork",
    "ViewSettings",
    "augment",
    "byol_network",
    "cosine_schedule",
    "dino_network",
    "embed",
    "embedding_of",
    "knn_accuracy",
    "linear_probe_accuracy",
    "probe",
    "random_resized_crops",
]
