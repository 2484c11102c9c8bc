"""Shared by the adversarial-robustness tests (ARD, RSLAD): a batch of digit-like inputs and
the same-seed comparison of a robust student with a cross-entropy one under PGD."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from reference_impls.common import Supervised, train
from reference_impls.common.attacks import DIGITS_PIXELS, pgd_accuracy
from reference_impls.common.testing import digits_setup

# The notebook's attack on the digits: a tenth of the pixel range, steps of a quarter of it.
ATTACK = {"epsilon": 0.1, "step_size": 0.025, "scale": DIGITS_PIXELS}


def pixel_batch(size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` random 8x8 images of 17 grey levels, standardised as the digits are, and labels."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 17, (size, 1, 8, 8), generator=generator) / 16
    return (pixels - 0.3) / 0.4, torch.randint(0, 10, (size,), generator=generator)


RobustMethod = Callable[[nn.Module, nn.Module, dict], nn.Module]


@pytest.fixture
def pgd_accuracy_against_cross_entropy() -> Callable[[RobustMethod], tuple[float, float]]:
    """Train ``make(student, teacher, attack)`` and a same-seed cross-entropy student (2 epochs,
    600 digits); return both students' PGD accuracy on 150 test digits (robust, plain)."""

    def compare(make: RobustMethod) -> tuple[float, float]:
        data, teacher, student = digits_setup(seed=0)
        _, _, baseline = digits_setup(seed=0)
        data = data.with_train_subset(600)
        settings = {"epochs": 2, "batch_size": 50, "seed": 0, "device": "cpu"}
        train(Supervised(baseline), data, **settings)
        train(make(student, teacher, ATTACK), data, **settings)
        x, y = data.x_test[:150], data.y_test[:150]
        return pgd_accuracy(student, x, y, **ATTACK), pgd_accuracy(baseline, x, y, **ATTACK)

    return compare
