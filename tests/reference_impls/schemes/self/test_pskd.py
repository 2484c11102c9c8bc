"""PS-KD (Kim et al., 2021): schedule, decomposition, a hand value, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common import load_digits_split, predict_logits, student_cnn, train
from reference_impls.common.training import Supervised
from reference_impls.schemes.self.pskd import PSKD, progressive_targets, soft_cross_entropy


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 8, 8, generator=generator), torch.randint(
        0, 10, (8,), generator=generator
    )


def _second_epoch_procedure() -> PSKD:
    torch.manual_seed(0)
    procedure = PSKD(student_cnn())
    procedure.on_epoch_start(0, 4)
    with torch.no_grad():  # move the model so that its past self differs from it
        for parameter in procedure.model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    procedure.on_epoch_start(1, 4)
    with torch.no_grad():
        procedure.model.fc.weight.mul_(1.5)
    return procedure


def test_alpha_schedule_and_snapshots():
    torch.manual_seed(0)
    procedure = PSKD(student_cnn(), alpha_T=0.8)
    procedure.on_epoch_start(0, 4)
    assert procedure.alpha_t == pytest.approx(0.2) and procedure.previous_model is None
    procedure.on_epoch_start(3, 4)
    assert procedure.alpha_t == pytest.approx(0.8)
    snapshot = procedure.previous_model
    assert snapshot is not procedure.model and not snapshot.training
    torch.testing.assert_close(snapshot.fc.weight, procedure.model.fc.weight)
    with torch.no_grad():
        procedure.model.fc.weight.add_(1.0)
    assert not torch.equal(snapshot.fc.weight, procedure.model.fc.weight)
    procedure.train()
    assert not procedure.previous_model.training


def test_first_epoch_is_plain_cross_entropy(batch):
    torch.manual_seed(0)
    procedure = PSKD(student_cnn())
    procedure.on_epoch_start(0, 10)
    terms = procedure(*batch)
    torch.testing.assert_close(terms["loss"].detach(), terms["ce"])


def test_loss_decomposes_into_label_and_past_self_terms(batch):
    # soft-target CE is linear in the target: (1 - a) CE(y) + a CE(P_{t-1})
    procedure = _second_epoch_procedure()
    x, y = batch
    terms = procedure(x, y)
    with torch.no_grad():
        logits = procedure.model(x).logits
        previous = F.softmax(procedure.previous_model(x).logits, dim=1)
    alpha = procedure.alpha_t
    expected = (1 - alpha) * F.cross_entropy(logits, y) + alpha * soft_cross_entropy(
        logits, previous
    )
    torch.testing.assert_close(terms["loss"].detach(), expected)


def test_hand_computed_value():
    # 2 classes, label 0, past prediction [0.25, 0.75], alpha_t = 0.4 -> targets [0.7, 0.3]
    targets = progressive_targets(torch.tensor([0]), 2, torch.tensor([[0.25, 0.75]]), 0.4)
    torch.testing.assert_close(targets, torch.tensor([[0.7, 0.3]]))
    logits = torch.tensor([[math.log(3.0), 0.0]])  # softmax -> [0.75, 0.25]
    expected = -(0.7 * math.log(0.75) + 0.3 * math.log(0.25))
    assert soft_cross_entropy(logits, targets).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("alpha_T", [-0.1, 1.5])
def test_rejects_bad_alpha(alpha_T):
    with pytest.raises(ValueError, match="alpha_T"):
        PSKD(student_cnn(), alpha_T=alpha_T)


def test_rejects_bad_epochs():
    with pytest.raises(ValueError, match="epoch"):
        PSKD(student_cnn()).on_epoch_start(5, 5)


def _mean_entropy(model: torch.nn.Module, x: torch.Tensor) -> float:
    log_p = F.log_softmax(predict_logits(model, x), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean().item()


def test_training_on_its_past_self_softens_predictions():
    # the past self's soft targets keep held-out predictions far less peaked than plain CE
    data = load_digits_split(seed=0)
    torch.manual_seed(0)
    model = student_cnn()
    torch.manual_seed(0)
    baseline = student_cnn()
    kwargs = {"epochs": 4, "seed": 0, "device": "cpu"}
    train(Supervised(baseline), data, evaluate=baseline, **kwargs)
    history = train(PSKD(model), data, **kwargs)
    assert history.final_accuracy > 0.85
    assert _mean_entropy(model, data.x_test) > 1.5 * _mean_entropy(baseline, data.x_test)
