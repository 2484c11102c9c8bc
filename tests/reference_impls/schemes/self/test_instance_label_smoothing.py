"""Beta smoothing (Zhang & Sabuncu, 2020): paper properties, a hand value, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common import load_digits_split, predict_logits, student_cnn, train
from reference_impls.common.training import Supervised
from reference_impls.schemes.self.instance_label_smoothing import (
    InstanceSpecificLabelSmoothing,
    beta_smoothing_loss,
    beta_smoothing_targets,
    sample_beta_confidences,
)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 8, 8, generator=generator), torch.randint(
        0, 10, (8,), generator=generator
    )


def test_beta_draws_follow_beta_beta_one():
    # Beta(3, 1): mean 3/4 and CDF x^3, so P(b <= 1/2) = 1/8
    draws = sample_beta_confidences(200_000, 3.0, generator=torch.Generator().manual_seed(0))
    assert draws.mean().item() == pytest.approx(0.75, abs=0.005)
    assert (draws <= 0.5).float().mean().item() == pytest.approx(0.125, abs=0.005)


def test_smoothing_follows_the_teacher_confidence_ranking():
    generator = torch.Generator().manual_seed(0)
    teacher = F.softmax(3 * torch.randn(32, 10, generator=generator), dim=1)
    target = torch.randint(0, 10, (32,), generator=generator)
    draws = sample_beta_confidences(32, 3.0, generator=generator)
    smoothed = beta_smoothing_targets(teacher, target, draws)
    torch.testing.assert_close(smoothed.sum(dim=1), torch.ones(32))
    on_target = smoothed.gather(1, target[:, None]).squeeze(1)
    torch.testing.assert_close(on_target.sort().values, draws.sort().values)  # the same draws
    teacher_confidence = teacher.gather(1, target[:, None]).squeeze(1)
    assert torch.equal(on_target.argsort(), teacher_confidence.argsort())  # handed out by rank
    off_target = smoothed.masked_fill(F.one_hot(target, 10).bool(), 0.0)
    torch.testing.assert_close(off_target.sum(dim=1), 1 - on_target)
    assert torch.allclose(off_target.max(dim=1).values * 9, 1 - on_target)  # spread evenly


def test_hand_computed_value():
    # teacher is 0.9 sure of sample 0 (label 0), 0.2 of sample 1 (label 2); draws 0.8 and 0.5
    teacher = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.4, 0.2]])
    target = torch.tensor([0, 2])
    smoothed = beta_smoothing_targets(teacher, target, torch.tensor([0.8, 0.5]))
    torch.testing.assert_close(smoothed, torch.tensor([[0.8, 0.1, 0.1], [0.25, 0.25, 0.5]]))
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]])  # p0 = [.5, .25, .25]
    ce = (-math.log(0.5) + math.log(3.0)) / 2
    soft = (-(0.8 * math.log(0.5) + 0.2 * math.log(0.25)) + math.log(3.0)) / 2
    total, _, _ = beta_smoothing_loss(logits, target, smoothed, alpha=0.6)
    assert total.item() == pytest.approx(0.4 * ce + 0.6 * soft, rel=1e-6)


def test_teacher_is_the_running_mean_of_the_weights_early_on(batch):
    torch.manual_seed(0)
    procedure = InstanceSpecificLabelSmoothing(student_cnn())
    weights = []
    for step in range(3):
        with torch.no_grad():  # stands in for an optimiser step
            procedure.model.fc.weight.add_(float(step))
        weights.append(procedure.model.fc.weight.detach().clone())
        procedure(*batch)
    torch.testing.assert_close(procedure.teacher.fc.weight, torch.stack(weights).mean(dim=0))


def test_no_teacher_update_outside_training(batch):
    torch.manual_seed(0)
    procedure = InstanceSpecificLabelSmoothing(student_cnn()).eval()
    procedure(*batch)
    with torch.no_grad():
        procedure.train()(*batch)
    assert procedure.steps_seen == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"alpha": 1.2}, "alpha"), ({"beta": 0.0}, "beta"), ({"ema_decay": 1.0}, "ema_decay")],
)
def test_rejects_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InstanceSpecificLabelSmoothing(student_cnn(), **kwargs)


def _mean_entropy(model: torch.nn.Module, x: torch.Tensor) -> float:
    log_p = F.log_softmax(predict_logits(model, x), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean().item()


def test_training_smooths_predictions_without_losing_accuracy():
    data = load_digits_split(seed=0)
    torch.manual_seed(0)
    model = student_cnn()
    torch.manual_seed(0)
    baseline = student_cnn()
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(Supervised(baseline), data, evaluate=baseline, **kwargs)
    history = train(InstanceSpecificLabelSmoothing(model), data, **kwargs)
    assert history.final_accuracy > 0.9
    assert _mean_entropy(model, data.x_test) > 1.5 * _mean_entropy(baseline, data.x_test)
