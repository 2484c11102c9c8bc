"""BYOT (Zhang et al., 2019): paper properties, a hand value, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common import load_digits_split, student_cnn, student_mlp, train
from reference_impls.schemes.self.byot import BYOT, byot_loss


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 8, 8, generator=generator), torch.randint(
        0, 10, (8,), generator=generator
    )


def test_one_exit_per_shallow_stage_with_the_last_stage_shape(batch):
    torch.manual_seed(0)
    procedure = BYOT(student_cnn())
    logits, features = procedure.exit_outputs(batch[0])
    assert len(logits) == len(features) == 3
    assert all(item.shape == (8, 10) for item in logits)
    assert all(item.shape == (8, 32) for item in features)


def test_the_deepest_classifier_is_not_pulled_toward_the_shallow_exits(batch):
    # with alpha = 1 and no hint only KD remains, and KD treats the deepest exit as a fixed target
    torch.manual_seed(0)
    procedure = BYOT(student_cnn(), alpha=1.0, beta=0.0)
    procedure(*batch)["loss"].backward()
    assert procedure.model.fc.weight.grad is None or not procedure.model.fc.weight.grad.any()
    assert procedure.exits[0].fc.weight.grad.abs().sum() > 0


def test_kd_and_hint_vanish_when_every_exit_equals_the_deepest():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 5, generator=generator)
    features = torch.randn(4, 3, generator=generator)
    target = torch.tensor([0, 1, 2, 3])
    terms = byot_loss([logits.clone(), logits], [features.clone(), features], target, 3.0, 0.1, 1.0)
    assert terms["kd"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["hint"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["ce"].item() == pytest.approx(2 * F.cross_entropy(logits, target).item(), rel=1e-6)


def test_hand_computed_value():
    # one sample, two classes, one shallow exit; tau = 2, alpha = 0.5, lambda = 0.25
    shallow_logits, deep_logits = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    shallow_features, deep_features = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    target = torch.tensor([0])
    ce_shallow = math.log(2)  # uniform prediction
    ce_deep = -math.log(math.exp(2) / (math.exp(2) + 1))
    p_deep = math.exp(1) / (math.exp(1) + 1)  # softmax([2, 0] / 2)
    kl = p_deep * math.log(p_deep / 0.5) + (1 - p_deep) * math.log((1 - p_deep) / 0.5)
    hint = 1.0**2 + 2.0**2
    expected = 0.5 * (ce_shallow + ce_deep) + 0.5 * 4 * kl + 0.25 * hint
    terms = byot_loss(
        [shallow_logits, deep_logits], [shallow_features, deep_features], target, 2.0, 0.5, 0.25
    )
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-6)


def test_ensemble_is_the_mean_of_the_exits(batch):
    torch.manual_seed(0)
    procedure = BYOT(student_cnn()).eval()
    with torch.no_grad():
        logits, _ = procedure.exit_outputs(batch[0])
    torch.testing.assert_close(procedure.ensemble_logits(batch[0]), sum(logits) / 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"beta": -1.0}, "beta"),
    ],
)
def test_rejects_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BYOT(student_cnn(), **kwargs)


def test_rejects_models_without_stages():
    with pytest.raises(TypeError, match="TinyCNN"):
        BYOT(student_mlp())


def _exit_gap(procedure: BYOT, x: torch.Tensor, temperature: float) -> float:
    """Summed KL(deepest || shallow exit) at the KD temperature on held-out data."""
    procedure.eval()
    with torch.no_grad():
        logits, _ = procedure.exit_outputs(x)
    log_p_deep = F.log_softmax(logits[-1] / temperature, dim=1)
    return sum(
        F.kl_div(
            F.log_softmax(item / temperature, dim=1),
            log_p_deep,
            log_target=True,
            reduction="batchmean",
        ).item()
        for item in logits[:-1]
    )


def test_training_moves_shallow_exits_toward_the_deepest():
    # baseline: the same multi-exit network with cross-entropy on every exit only (alpha = 0)
    data = load_digits_split(seed=0)
    torch.manual_seed(0)
    distilled = BYOT(student_cnn())
    torch.manual_seed(0)
    baseline = BYOT(student_cnn(), alpha=0.0)
    kwargs = {"epochs": 4, "seed": 0, "device": "cpu"}
    train(baseline, data, **kwargs)
    history = train(distilled, data, **kwargs)
    assert history.final_accuracy > 0.9
    assert _exit_gap(distilled, data.x_test, 3.0) < 0.9 * _exit_gap(baseline, data.x_test, 3.0)
