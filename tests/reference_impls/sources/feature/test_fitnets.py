"""FitNets (Romero et al., 2015): paper properties, a hand value, training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reference_impls.common import train
from reference_impls.common.testing import digits_setup, random_feature_pair
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.feature.fitnets import FitNetsHintStage, FitNetsLoss

STUDENT_CHANNELS = (8, 16, 32)
TEACHER_CHANNELS = (32, 64, 128)


@pytest.fixture
def feats() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return random_feature_pair(batch=4)


def test_only_the_guided_layer_receives_gradient(feats):
    student, teacher = feats
    student = [s.clone().requires_grad_() for s in student]
    FitNetsLoss(STUDENT_CHANNELS, TEACHER_CHANNELS)(student, teacher).backward()
    assert student[0].grad is None and student[2].grad is None
    assert student[1].grad.abs().sum() > 0


def test_regressor_matches_the_hint_shape_as_in_the_paper():
    # k = H_guided - H_hint + 1: a 4x4 guided layer regresses onto a 2x2 hint with a 3x3 kernel
    loss = FitNetsLoss((8,), (32,), hint_layer=0, student_size=4, teacher_size=2)
    assert loss.regressor[0].kernel_size == (3, 3)
    value = loss([torch.randn(2, 8, 4, 4)], [torch.randn(2, 32, 2, 2)])
    assert value.dim() == 0 and torch.isfinite(value)


def test_zero_when_the_regressor_reproduces_the_hint():
    # identity 1x1 regressor (BN at running statistics 0/1, eps 0) on non-negative features
    loss = FitNetsLoss((4,), (4,), hint_layer=0)
    conv, batch_norm, _ = loss.regressor
    with torch.no_grad():
        conv.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        conv.bias.zero_()
    batch_norm.eps = 0.0
    loss.eval()
    hint = torch.rand(3, 4, 5, 5)
    assert loss([hint.clone()], [hint]).item() == pytest.approx(0.0, abs=1e-10)


def test_hand_computed_value():
    # regressor: weight 2, bias 0, BN at running mean 0 / var 1 (eval), ReLU.
    # guided [1, -1] -> conv [2, -2] -> BN [2, -2] / sqrt(1 + eps) -> ReLU [2 / sqrt(1 + eps), 0]
    # hint [1, 1]: MSE = ((2 / sqrt(1 + eps) - 1)^2 + (0 - 1)^2) / 2, times beta = 100
    loss = FitNetsLoss((1,), (1,), hint_layer=0)
    conv, batch_norm, _ = loss.regressor
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.zero_()
    loss.eval()
    scaled = 2 / math.sqrt(1 + batch_norm.eps)
    expected = 100 * ((scaled - 1) ** 2 + 1) / 2
    value = loss([torch.tensor([[[[1.0, -1.0]]]])], [torch.tensor([[[[1.0, 1.0]]]])])
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"student_channels": (8, 16), "teacher_channels": (32, 64, 128)}, "stages"),
        ({"hint_layer": 3}, "out of range"),
        ({"beta": -1.0}, "beta"),
        ({"student_size": 4}, "both"),
        ({"student_size": 2, "teacher_size": 4}, "at least as large"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    arguments = {"student_channels": STUDENT_CHANNELS, "teacher_channels": TEACHER_CHANNELS}
    with pytest.raises(ValueError, match=match):
        FitNetsLoss(**{**arguments, **kwargs})


def test_rejects_mismatched_feature_shapes(feats):
    student, teacher = feats
    loss = FitNetsLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, hint_layer=1)
    with pytest.raises(ValueError, match="regressed guided layer"):
        loss(student, [teacher[0], teacher[0], teacher[2]])  # hint of the wrong size
    with pytest.raises(ValueError, match="need 2 feature maps each"):
        loss(student[:1], teacher[:1])


@torch.no_grad()
def _hint_predictability(student: nn.Module, teacher: nn.Module, data, stage: int = 1) -> float:
    """Held-out R^2 of the best per-pixel linear map from the guided layer to the hint.

    Both students get the same closed-form read-out (least squares on the training set),
    so the comparison does not favour the one whose regressor was trained.
    """
    student.eval()

    def pixels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        feature = model(x).features[stage]
        return feature.permute(0, 2, 3, 1).reshape(-1, feature.shape[1])

    def with_bias(rows: torch.Tensor) -> torch.Tensor:
        return torch.cat([rows, torch.ones(len(rows), 1)], dim=1)

    weights = torch.linalg.lstsq(
        with_bias(pixels(student, data.x_train)), pixels(teacher, data.x_train)
    ).solution
    target = pixels(teacher, data.x_test)
    residual = with_bias(pixels(student, data.x_test)) @ weights - target
    return 1 - (residual.pow(2).sum() / (target - target.mean(0)).pow(2).sum()).item()


def test_training_makes_the_hint_predictable_from_the_guided_layer():
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), baseline_data, **kwargs)
    loss = FitNetsLoss(STUDENT_CHANNELS, TEACHER_CHANNELS)
    train(OfflineDistiller(student, teacher, loss), data, **kwargs)
    distilled = _hint_predictability(student, teacher, data)
    baseline_score = _hint_predictability(baseline, teacher, data)
    assert distilled > baseline_score + 0.15


def test_hint_stage_trains_only_up_to_the_guided_layer():
    data, teacher, student = digits_setup(seed=0)
    stage = FitNetsHintStage(student, teacher, FitNetsLoss(STUDENT_CHANNELS, TEACHER_CHANNELS))
    later = {
        name: p.detach().clone()
        for name, p in student.named_parameters()
        if name.startswith(("stages.2.", "fc."))
    }

    def held_out_hint() -> float:
        stage.eval()
        with torch.no_grad():
            return stage(data.x_test, data.y_test)["hint"].item()

    before = held_out_hint()
    train(stage, data, epochs=2, seed=0, device="cpu")
    assert held_out_hint() < 0.85 * before
    for name, parameter in student.named_parameters():
        if name in later:
            torch.testing.assert_close(parameter.detach(), later[name], msg=name)
