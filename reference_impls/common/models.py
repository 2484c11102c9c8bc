"""Tiny teacher and student networks with named feature taps.

Every model returns a :class:`ModelOutput` holding the logits, the feature map
after each stage (post-activation), the same maps before their last ReLU
(``preact_features``, needed by AB and OFD), and the pooled penultimate
embedding (``embedding``, used by relation losses). This mirrors mdistiller's
``(logits, {"feats", "preact_feats", "pooled_feat"})`` so that every method
sees the same inputs; for models you did not write, use
:class:`reference_impls.common.hooks.FeatureTaps` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ModelOutput:
    """What every model in this package returns."""

    logits: torch.Tensor
    features: list[torch.Tensor] = field(default_factory=list)
    preact_features: list[torch.Tensor] = field(default_factory=list)
    embedding: torch.Tensor | None = None


class ConvStage(nn.Module):
    """Two 3x3 conv-BN layers; the second ReLU is kept apart so its input can be tapped."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if downsample or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.relu(self.bn1(self.conv1(x)))
        preact = self.bn2(self.conv2(out)) + self.shortcut(x)
        return torch.relu(preact), preact


class TinyCNN(nn.Module):
    """A small residual CNN for 8x8 (digits) or 32x32 images.

    ``channels`` sets the width of each stage; stages after the first halve the
    spatial size. The classifier is a linear layer on the global-average-pooled
    last stage, exposed as ``fc`` so SimKD can reuse a teacher's classifier.
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 64),
        num_classes: int = 10,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        previous = channels[0]
        for index, width in enumerate(channels):
            stages.append(ConvStage(previous, width, downsample=index > 0))
            previous = width
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels[-1], num_classes)

    @property
    def embedding_dim(self) -> int:
        return self.channels[-1]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        out = self.stem(x)
        features, preacts = [], []
        for stage in self.stages:
            out, preact = stage(out)
            features.append(out)
            preacts.append(preact)
        embedding = torch.flatten(self.pool(out), 1)
        return ModelOutput(self.fc(embedding), features, preacts, embedding)


class TinyMLP(nn.Module):
    """A multilayer perceptron; each hidden layer's activation is a tapped feature."""

    def __init__(
        self,
        in_features: int = 64,
        hidden: tuple[int, ...] = (256, 256),
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.hidden = tuple(hidden)
        self.num_classes = num_classes
        layers = []
        previous = in_features
        for width in hidden:
            layers.append(nn.Linear(previous, width))
            previous = width
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(previous, num_classes)

    @property
    def embedding_dim(self) -> int:
        return self.hidden[-1]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        out = torch.flatten(x, 1)
        features, preacts = [], []
        for layer in self.layers:
            preact = layer(out)
            out = torch.relu(preact)
            features.append(out)
            preacts.append(preact)
        return ModelOutput(self.fc(out), features, preacts, out)


def teacher_cnn(num_classes: int = 10, in_channels: int = 1) -> TinyCNN:
    """The standard teacher: about 4x wider than the student (~0.31M parameters)."""
    return TinyCNN((32, 64, 128), num_classes, in_channels)


def student_cnn(num_classes: int = 10, in_channels: int = 1) -> TinyCNN:
    """The standard student (~20k parameters)."""
    return TinyCNN((8, 16, 32), num_classes, in_channels)


def teacher_mlp(in_features: int = 64, num_classes: int = 10) -> TinyMLP:
    return TinyMLP(in_features, (512, 512), num_classes)


def student_mlp(in_features: int = 64, num_classes: int = 10) -> TinyMLP:
    return TinyMLP(in_features, (64, 64), num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
