"""DML (Zhang et al., 2018): contract, reduction to CE, hand values, gradients, training."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common import (
    load_digits_split,
    predict_logits,
    student_cnn,
    train,
    train_supervised,
)
from reference_impls.common.testing import FixedLogits, check_procedure_contract
from reference_impls.schemes.online.dml import DML


def test_contract_of_a_cohort_of_three_and_every_student_gets_gradients(batch):
    # a cohort of two: tests/reference_impls/test_contracts.py
    cohort = 3
    torch.manual_seed(0)
    students = [student_cnn() for _ in range(cohort)]
    terms = check_procedure_contract(DML(students), *batch)
    assert {f"kl_{k}" for k in range(cohort)} <= set(terms)
    for student in students:
        assert all(
            p.grad is not None and torch.isfinite(p.grad).all() for p in student.parameters()
        )
        assert sum(p.grad.abs().sum() for p in student.parameters()) > 0


def test_identical_students_reduce_to_cross_entropy(batch):
    torch.manual_seed(0)
    first = student_cnn()
    procedure = DML([first, copy.deepcopy(first)])
    x, y = batch
    terms = procedure(x, y)
    ce = F.cross_entropy(first(x).logits, y)
    assert terms["kl_0"].item() == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(terms["loss"], 2 * ce)


def test_hand_computed_value_for_two_students():
    # student A logits [0, 0] -> [1/2, 1/2]; B logits [ln 3, 0] -> [3/4, 1/4]; label 0
    a, b = FixedLogits([0.0, 0.0]), FixedLogits([math.log(3.0), 0.0])
    kl_b_a = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL(p_B || p_A)
    kl_a_b = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(p_A || p_B)
    expected = math.log(2.0) + kl_b_a + math.log(4 / 3) + kl_a_b
    terms = DML([a, b])(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert terms["kl_0"].item() == pytest.approx(kl_b_a, rel=1e-6)


def test_each_student_gets_only_its_own_objective_gradient():
    # d/dz_A [CE(z_A, y) + KL(p_B || p_A)] = (p_A - onehot) + (p_A - p_B); peers are constants
    a, b = FixedLogits([0.0, 0.0]), FixedLogits([math.log(3.0), 0.0])
    DML([a, b])(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))["loss"].backward()
    p_a, p_b, onehot = torch.tensor([0.5, 0.5]), torch.tensor([0.75, 0.25]), torch.tensor([1.0, 0])
    torch.testing.assert_close(a.row.grad, (p_a - onehot) + (p_a - p_b))
    torch.testing.assert_close(b.row.grad, (p_b - onehot) + (p_b - p_a))


def test_hand_computed_value_for_three_students_sums_the_peers():
    # A [0, 0] -> [1/2, 1/2]; B [ln 3, 0] -> [3/4, 1/4]; C [0, ln 3] -> [1/4, 3/4]; label 0.
    # The authors' code sums the peers' KLs (the paper's Eq. 10 would halve each kl_k here).
    students = [FixedLogits([0.0, 0.0]), FixedLogits([math.log(3.0), 0.0])]
    students.append(FixedLogits([0.0, math.log(3.0)]))
    kl_b_a = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # = KL(p_C || p_A)
    kl_a_b = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # = KL(p_A || p_C)
    kl_c_b = 0.25 * math.log(0.25 / 0.75) + 0.75 * math.log(0.75 / 0.25)  # = KL(p_B || p_C)
    kl_0, kl_1 = 2 * kl_b_a, kl_a_b + kl_c_b
    ce = [math.log(2.0), math.log(4 / 3), math.log(4.0)]
    terms = DML(students)(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))
    assert terms["kl_0"].item() == pytest.approx(kl_0, rel=1e-6)
    assert terms["kl_1"].item() == pytest.approx(kl_1, rel=1e-6)
    assert terms["kl_2"].item() == pytest.approx(kl_1, rel=1e-6)  # C mirrors B
    assert terms["loss"].item() == pytest.approx(sum(ce) + kl_0 + 2 * kl_1, rel=1e-6)


def test_three_students_sum_of_kls_versus_ensemble_of_peers():
    rows = [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]
    x, y = torch.zeros(1, 1), torch.zeros(1, dtype=torch.long)
    probs = [torch.softmax(torch.tensor(r), 0) for r in rows]

    def kl(p: torch.Tensor, q: torch.Tensor) -> float:
        return float((p * (p / q).log()).sum())

    sum_of_kls = DML([FixedLogits(r) for r in rows])(x, y)["kl_0"].item()
    assert sum_of_kls == pytest.approx(kl(probs[1], probs[0]) + kl(probs[2], probs[0]))
    ensemble = DML([FixedLogits(r) for r in rows], ensemble_peers=True)(x, y)["kl_0"].item()
    assert ensemble == pytest.approx(kl((probs[1] + probs[2]) / 2, probs[0]), rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"students": [nn.Linear(2, 2)]}, "at least 2"), ({"temperature": 0.0}, "temperature")],
)
def test_rejects_bad_arguments(kwargs, match):
    arguments = {"students": [nn.Linear(2, 2), nn.Linear(2, 2)], **kwargs}
    with pytest.raises(ValueError, match=match):
        DML(**arguments)


def peer_disagreement(first: nn.Module, second: nn.Module, x: torch.Tensor) -> float:
    """Symmetric KL between two students' predictions on held-out inputs."""
    log_p = F.log_softmax(predict_logits(first, x), 1)
    log_q = F.log_softmax(predict_logits(second, x), 1)
    forward = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    backward = F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
    return (forward + backward).item()


def test_mutual_learning_pulls_the_cohort_together():
    data = load_digits_split(seed=0)
    torch.manual_seed(0)
    students = [student_cnn(), student_cnn()]
    independent = copy.deepcopy(students)  # same initialisation, trained apart
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(DML(students), data, **kwargs)
    for model in independent:
        train_supervised(model, data, **kwargs)
    mutual = peer_disagreement(*students, data.x_test)
    apart = peer_disagreement(*independent, data.x_test)
    assert mutual < 0.7 * apart
