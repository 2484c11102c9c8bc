"""ONE (Lan et al., 2018): network, ensemble/gate properties, hand value, training."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common import load_digits_split, train
from reference_impls.schemes.online.one import (
    ONE,
    ONENetwork,
    ensemble_logits,
    one_loss,
    sigmoid_rampup,
)


@pytest.fixture
def network() -> ONENetwork:
    torch.manual_seed(0)
    return ONENetwork()


def test_network_shapes_and_gate(network, batch):
    x, _ = batch
    branch_logits, gate = network.forward_branches(x)
    assert branch_logits.shape == (8, 3, 10) and gate.shape == (8, 3)
    torch.testing.assert_close(gate.sum(1), torch.ones(8))
    assert (gate >= 0).all()
    network.eval()
    branch_logits, gate = network.forward_branches(x)
    manual = sum(gate[:, i : i + 1] * branch_logits[:, i] for i in range(3))
    torch.testing.assert_close(network(x).logits, manual)


def test_identical_branches_have_no_kl_and_loss_is_m_plus_one_ce(network, batch):
    for branch, classifier in zip(network.branches[1:], network.classifiers[1:], strict=True):
        branch.load_state_dict(network.branches[0].state_dict())
        classifier.load_state_dict(network.classifiers[0].state_dict())
    x, y = batch
    terms = ONE(network, rampup_epochs=0)(x, y)
    assert terms["kl"].item() == pytest.approx(0.0, abs=1e-6)
    # the gated sum of equal logits is those logits: every CE is the same
    torch.testing.assert_close(terms["ce_ensemble"] * 3, terms["ce"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["loss"], 4 * terms["ce_ensemble"], rtol=1e-5, atol=1e-6)


def test_teacher_is_detached_in_the_kl():
    # with CE weights removed from the picture, only the branches move through the KL:
    # the gate's gradient comes from the ensemble's cross-entropy alone
    branch_logits = torch.randn(4, 2, 5, requires_grad=True)
    gate_logits = torch.randn(4, 2, requires_grad=True)
    target = torch.randint(0, 5, (4,))
    terms = one_loss(branch_logits, gate_logits.softmax(1), target, temperature=3.0)
    (gate_grad_total,) = torch.autograd.grad(terms["loss"], gate_logits, retain_graph=True)
    ensemble = ensemble_logits(branch_logits, gate_logits.softmax(1))
    (gate_grad_ce,) = torch.autograd.grad(F.cross_entropy(ensemble, target), gate_logits)
    torch.testing.assert_close(gate_grad_total, gate_grad_ce)


def test_hand_computed_loss():
    # two branches, logits [0, 0] and [ln 9, 0], equal gates, T = 1, label 0, KL weight 1:
    # ensemble [ln 3, 0] -> p_e = [3/4, 1/4]
    branch_logits = torch.tensor([[[0.0, 0.0], [math.log(9.0), 0.0]]])
    gate = torch.tensor([[0.5, 0.5]])
    ce = math.log(2.0) + math.log(10 / 9) + math.log(4 / 3)  # two branches + ensemble
    kl_first = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    kl_second = 0.75 * math.log(0.75 / 0.9) + 0.25 * math.log(0.25 / 0.1)
    terms = one_loss(branch_logits, gate, torch.tensor([0]), temperature=1.0)
    assert terms["loss"].item() == pytest.approx(ce + kl_first + kl_second, rel=1e-6)
    # T = 3 scales each KL's softened value by T^2
    soft = one_loss(branch_logits, gate, torch.tensor([0]), temperature=3.0)["kl"].item()
    p_e = torch.softmax(torch.tensor([math.log(3.0), 0.0]) / 3, 0)
    kls = [
        float((p_e * (p_e / torch.softmax(torch.tensor(z) / 3, 0)).log()).sum())
        for z in ([0.0, 0.0], [math.log(9.0), 0.0])
    ]
    assert soft == pytest.approx(9 * sum(kls), rel=1e-5)


def test_rampup_schedule(network):
    procedure = ONE(network, rampup_epochs=80)
    assert procedure.kl_weight == pytest.approx(math.exp(-5))
    procedure.on_epoch_start(40, 300)
    assert procedure.kl_weight == pytest.approx(math.exp(-5 * 0.25))
    procedure.on_epoch_start(120, 300)
    assert procedure.kl_weight == 1.0
    assert sigmoid_rampup(0, 0) == 1.0


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: ONENetwork(num_branches=1), "branches"),
        (lambda: ONE(ONENetwork(), temperature=0.0), "temperature"),
        (lambda: ONE(ONENetwork(), rampup_epochs=-1), "rampup"),
    ],
)
def test_rejects_bad_arguments(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def branch_gap_to_ensemble(network: ONENetwork, x: torch.Tensor, temperature: float) -> float:
    """Mean over branches of KL(ensemble || branch) at temperature T on held-out inputs."""
    network.eval()
    with torch.no_grad():
        branch_logits, gate = network.forward_branches(x)
        log_p_e = F.log_softmax(ensemble_logits(branch_logits, gate) / temperature, 1)
        gaps = [
            F.kl_div(
                F.log_softmax(branch_logits[:, i] / temperature, 1),
                log_p_e,
                log_target=True,
                reduction="batchmean",
            )
            for i in range(network.num_branches)
        ]
    return torch.stack(gaps).mean().item()


def test_branches_move_toward_the_gated_ensemble():
    data = load_digits_split(seed=0)
    torch.manual_seed(0)
    network = ONENetwork()
    without_kl = copy.deepcopy(network)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(ONE(network, rampup_epochs=0), data, **kwargs)
    baseline = ONE(without_kl, rampup_epochs=0)
    baseline.on_epoch_start = lambda epoch, epochs: None  # keep the weight set below
    baseline.kl_weight = 0.0  # same network and CE terms, no distillation
    train(baseline, data, **kwargs)
    distilled = branch_gap_to_ensemble(network, data.x_test, 3.0)
    undistilled = branch_gap_to_ensemble(without_kl, data.x_test, 3.0)
    assert distilled < 0.7 * undistilled
