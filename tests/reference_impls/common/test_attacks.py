"""The PGD attack shared by the robust-distillation methods: the ball, the units, the start."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common import load_digits_split, student_cnn
from reference_impls.common.attacks import (
    DIGITS_PIXELS,
    PixelScale,
    cross_entropy_objective,
    pgd,
    pgd_accuracy,
    uniform_in_ball,
)
from reference_impls.common.validation import labelled_batch

SCALE = PixelScale(mean=0.3, std=0.4)


def images(seed: int = 0, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(batch, 1, 8, 8, generator=generator)
    return (pixels - 0.3) / 0.4, torch.randint(0, 10, (batch,), generator=generator)


def test_digits_scale_is_the_standardisation_of_the_digits():
    data = load_digits_split(seed=0)
    low, high = DIGITS_PIXELS.bounds
    assert data.x_train.min().item() == pytest.approx(low)  # blank pixels exist
    assert data.x_train.max().item() == pytest.approx(high)  # and fully dark ones
    assert DIGITS_PIXELS.distance(0.1) == pytest.approx(0.25)


@pytest.mark.parametrize("start", ["uniform", "normal", "none"])
def test_stays_in_the_ball_and_the_pixel_range(start):
    x, y = images()
    torch.manual_seed(0)
    model = student_cnn().eval()
    attacked = pgd(
        model, x, cross_entropy_objective(y), epsilon=0.1, step_size=0.03, steps=7, start=start,
        scale=SCALE,
    )  # fmt: skip
    radius = SCALE.distance(0.1)
    assert (attacked - x).abs().max().item() <= radius + 1e-6
    low, high = SCALE.bounds
    assert attacked.min().item() >= low - 1e-6 and attacked.max().item() <= high + 1e-6
    assert not attacked.requires_grad


def test_a_linear_model_is_pushed_to_the_corner_of_the_ball():
    # logits [w.x, 0] with label 0: the cross-entropy grows fastest along -sign(w), and
    # 4 steps of 0.3 reach the radius 1: every pixel ends at x - sign(w), clamped
    weight = torch.tensor([[1.0, -2.0, 0.5, -0.1]])

    class Linear(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x @ weight.T, torch.zeros(len(x), 1)], dim=1)

    x = torch.tensor([[0.5, 0.5, 0.2, 0.9]])
    attacked = pgd(
        Linear(), x, cross_entropy_objective(torch.tensor([0])), epsilon=1.0, step_size=0.3,
        steps=4, start="none",
    )  # fmt: skip
    expected = (x - weight.sign()).clamp(0, 1)
    torch.testing.assert_close(attacked, expected)


def test_the_attack_raises_the_objective_and_leaves_parameter_gradients_alone():
    x, y = images()
    torch.manual_seed(0)
    model = student_cnn().eval()
    objective = cross_entropy_objective(y)
    attacked = pgd(model, x, objective, epsilon=0.1, step_size=0.025, steps=10, scale=SCALE)
    assert objective(model(attacked).logits) > objective(model(x).logits) + 0.1
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():  # it enables gradients for itself
        again = pgd(model, x, objective, epsilon=0.1, steps=2, start="none", scale=SCALE)
    assert (again - x).abs().max() > 0


def test_zero_steps_give_the_start_and_zero_radius_the_input():
    x, y = images()
    model = student_cnn().eval()
    objective = cross_entropy_objective(y)
    assert torch.equal(pgd(model, x, objective, steps=0, start="none", scale=SCALE), x)
    torch.manual_seed(0)
    assert torch.equal(pgd(model, x, objective, epsilon=0.0, scale=SCALE), x)


def test_uniform_start_is_torchs_uniform_to_the_bit():
    # the authors draw `zeros_like(x).uniform_(-eps, eps)`; a seed gives the same numbers
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(4, 3, 32, 32, dtype=dtype)
        torch.manual_seed(3)
        theirs = torch.zeros_like(x).uniform_(-8 / 255, 8 / 255)
        torch.manual_seed(3)
        assert torch.equal(uniform_in_ball(x, 8 / 255), theirs)


def test_a_model_that_ignores_its_input_is_not_moved():
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.row = nn.Parameter(torch.zeros(10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.row.expand(len(x), -1)

    x, y = images()
    attacked = pgd(Constant(), x, cross_entropy_objective(y), steps=3, start="none", scale=SCALE)
    assert torch.equal(attacked, x)


def test_pgd_accuracy_is_clean_accuracy_at_radius_zero_and_restores_the_mode():
    x, y = images(batch=32)
    torch.manual_seed(0)
    model = student_cnn().train()
    with torch.no_grad():
        clean = (model.eval()(x).logits.argmax(1) == y).float().mean().item()
    model.train()
    assert pgd_accuracy(model, x, y, epsilon=0.0, steps=3, scale=SCALE) == pytest.approx(clean)
    assert model.training
    attacked = pgd_accuracy(model, x, y, epsilon=0.2, step_size=0.05, scale=SCALE)
    assert attacked <= clean


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epsilon": -0.1}, "epsilon"),
        ({"step_size": -1.0}, "step_size"),
        ({"steps": -1}, "steps"),
        ({"start": "gaussian"}, "start"),
        ({"start_std": -0.1}, "start_std"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    x, y = images()
    with pytest.raises(ValueError, match=match):
        pgd(student_cnn(), x, cross_entropy_objective(y), **kwargs)


def test_rejects_a_scale_without_spread_and_a_batch_without_matching_labels():
    with pytest.raises(ValueError, match="std must be positive"):
        PixelScale(mean=0.5, std=0.0)
    x, y = images()
    with pytest.raises(ValueError, match=r"target must be class indices of shape \(16,\)"):
        labelled_batch(x, y[:3])
    with pytest.raises(ValueError, match="integer class indices"):
        labelled_batch(x, y.float())
    with pytest.raises(ValueError, match=r"inputs must be a floating-point batch"):
        labelled_batch(x.long(), y)
    with pytest.raises(ValueError, match="target"):
        pgd_accuracy(student_cnn(), x, F.one_hot(y, 10))
