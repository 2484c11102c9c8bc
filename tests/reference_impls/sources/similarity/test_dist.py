"""DIST (Huang et al., 2022): paper properties, a hand value, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common import train
from reference_impls.common.testing import digits_student_pair
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.kd import KDLoss
from reference_impls.sources.similarity.dist import DISTLoss


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, 10, generator=generator), torch.randn(16, 10, generator=generator) * 3


def test_zero_when_student_equals_teacher(logits):
    _, teacher = logits
    # float32 rounding of 1 - rho, times tau^2 (beta + gamma) = 64, stays below 1e-4
    assert DISTLoss()(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-4)


def test_zero_for_a_less_confident_copy_that_kl_still_penalises(logits):
    # the paper's relaxed match: probabilities a * p_t + b (a > 0) correlate perfectly
    _, teacher = logits
    temperature = 4.0
    p_teacher = (teacher / temperature).softmax(dim=1)
    p_student = 0.5 * p_teacher + 0.5 / p_teacher.shape[1]
    student = temperature * p_student.log()  # logits whose softmax at tau is p_student
    assert DISTLoss(temperature=temperature)(student, teacher).item() == pytest.approx(
        0.0, abs=1e-4
    )
    assert KDLoss(temperature=temperature)(student, teacher).item() > 0.01


def pearson(u: list[float], v: list[float]) -> float:
    mu, mv = sum(u) / len(u), sum(v) / len(v)
    cov = sum((a - mu) * (b - mv) for a, b in zip(u, v, strict=True))
    su = math.sqrt(sum((a - mu) ** 2 for a in u))
    sv = math.sqrt(sum((b - mv) ** 2 for b in v))
    return cov / (su * sv)


def test_hand_computed_value():
    # tau = 1 and logits = log p, so the softmax returns these probabilities exactly
    p_t = [[0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.1, 0.7, 0.2]]
    p_s = [[0.4, 0.4, 0.2], [0.3, 0.3, 0.4], [0.3, 0.3, 0.4]]
    inter = 1 - sum(pearson(s, t) for s, t in zip(p_s, p_t, strict=True)) / 3
    columns = [([row[j] for row in p_s], [row[j] for row in p_t]) for j in range(3)]
    intra = 1 - sum(pearson(s, t) for s, t in columns) / 3
    value = DISTLoss(beta=1.0, gamma=3.0, temperature=1.0)(
        torch.tensor(p_s).log(), torch.tensor(p_t).log()
    )
    # the authors' 1e-8 in the denominator and float32 limit the agreement to ~1e-5
    assert value.item() == pytest.approx(inter + 3.0 * intra, rel=1e-4)


def test_temperature_squared_scaling(logits):
    # with beta = gamma = 1 the loss is tau^2 times the relation terms at that temperature
    student, teacher = logits
    at_tau = DISTLoss(beta=1.0, gamma=1.0, temperature=2.0)(student, teacher)
    unscaled = DISTLoss(beta=1.0, gamma=1.0, temperature=1.0)(student / 2.0, teacher / 2.0)
    torch.testing.assert_close(at_tau, 4.0 * unscaled)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        DISTLoss(temperature=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        DISTLoss(beta=-1.0)
    with pytest.raises(ValueError, match="shape"):
        DISTLoss()(torch.randn(4, 10), torch.randn(4, 9))


@torch.no_grad()
def held_out_dist(student, teacher, x) -> float:
    student.eval()
    return DISTLoss()(student(x).logits, teacher(x).logits).item()


def test_training_moves_student_toward_teacher():
    data, teacher, student, baseline = digits_student_pair()
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), data, **kwargs)
    # the CIFAR-100 weights make the DIST term 32x its relation terms; in a 3-epoch run
    # at lr 0.05 that swamps the cross-entropy, so the test scales the term down
    train(OfflineDistiller(student, teacher, DISTLoss(), kd_weight=0.1), data, **kwargs)
    distilled = held_out_dist(student, teacher, data.x_test)
    assert distilled < 0.75 * held_out_dist(baseline, teacher, data.x_test)
