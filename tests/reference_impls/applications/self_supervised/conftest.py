"""Shared by the self-supervised distillation tests: the digits, a trained MLP teacher, fast views."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reference_impls.common.augmentations import MultiCrop, ViewSettings
from reference_impls.common.data import DataSplit, load_digits_split
from reference_impls.common.models import teacher_mlp
from reference_impls.common.training import freeze, train_supervised


@pytest.fixture(scope="session")
def digits() -> DataSplit:
    return load_digits_split(seed=0)


@pytest.fixture(scope="session")
def mlp_teacher(digits: DataSplit) -> nn.Module:
    """A ``teacher_mlp`` trained with labels for four epochs (about 96% test accuracy), frozen:
    a teacher whose embedding separates the classes far better than a random student's."""
    torch.manual_seed(0)
    teacher = teacher_mlp()
    train_supervised(teacher, digits, epochs=4, seed=0, device="cpu")
    return freeze(teacher)


@pytest.fixture
def fast_crops() -> MultiCrop:
    """Two global and two local views, all 8x8 (MLP backbones read a fixed 64-pixel input)."""
    return MultiCrop(local_crops=2, local_view=ViewSettings(size=8, scale=(0.2, 0.5)))
