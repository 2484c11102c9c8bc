"""TTM / WTTM (Zheng and Yang, 2024): contract, the power-temperature identity, a hand value, training, CUDA."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common import predict_logits, train
from reference_impls.common.testing import (
    check_autocast_bf16,
    check_cpu_cuda_agreement,
    check_loss_contract,
    digits_setup,
)
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.ttm import TTMLoss


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, 10, generator=generator), torch.randn(16, 10, generator=generator) * 3


@pytest.fixture
def cifar_sized_logits() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(256, 100, generator=generator) * 2, torch.randn(
        256, 100, generator=generator
    ) * 8


def test_contract_of_wttm(logits):
    # plain TTM (the default) is covered by tests/reference_impls/test_contracts.py
    check_loss_contract(TTMLoss(weighted=True), *logits)


def test_contract_of_wttm_on_cifar100_shaped_logits(cifar_sized_logits):
    check_loss_contract(TTMLoss(weighted=True), *cifar_sized_logits)


def test_power_transform_is_a_temperature_on_the_teacher_only(logits):
    # (p^t)^gamma / sum (p^t)^gamma = softmax(z^t / T) with T = 1 / gamma; the student keeps T = 1
    student, teacher = logits
    gamma = 0.25
    powered = torch.softmax(teacher, dim=1) ** gamma
    transformed = powered / powered.sum(dim=1, keepdim=True)
    torch.testing.assert_close(transformed, torch.softmax(teacher / 4.0, dim=1))
    expected = (transformed * (transformed.log() - F.log_softmax(student, dim=1))).sum(1).mean()
    torch.testing.assert_close(TTMLoss(gamma)(student, teacher), expected)


def test_zero_when_student_matches_the_transformed_teacher(logits):
    _, teacher = logits
    gamma = 0.1
    for weighted in (False, True):
        value = TTMLoss(gamma, weighted)(gamma * teacher, teacher)
        assert value.item() == pytest.approx(0.0, abs=1e-6)


def test_gamma_one_is_plain_kl_and_wttm_equals_ttm(logits):
    # gamma = 1: no transform, and the normaliser sum_j p_j = 1 weights every sample by 1
    student, teacher = logits
    kl = F.kl_div(
        F.log_softmax(student, 1), F.log_softmax(teacher, 1), reduction="batchmean", log_target=True
    )
    torch.testing.assert_close(TTMLoss(1.0)(student, teacher), kl)
    torch.testing.assert_close(TTMLoss(1.0, weighted=True)(student, teacher), kl)


def test_wttm_weights_uncertain_samples_more():
    # same KL per sample, but the flatter teacher gets weight sum_j p_j^gamma closer to C^(1-gamma)
    gamma = 0.5
    confident = torch.tensor([[6.0, 0.0, 0.0]])
    flat = torch.tensor([[0.5, 0.0, 0.0]])
    loss = TTMLoss(gamma, weighted=True)
    ttm = TTMLoss(gamma)
    student = torch.zeros(1, 3)
    ratio_confident = loss(student, confident) / ttm(student, confident)
    ratio_flat = loss(student, flat) / ttm(student, flat)
    assert 1.0 < ratio_confident < ratio_flat < 3 ** (1 - gamma)


def test_hand_computed_value():
    # two classes, gamma = 1/2: teacher p = [0.8, 0.2] -> p^gamma ~ [sqrt .8, sqrt .2], normalised
    # to [2/3, 1/3] (sqrt(.8) = 2 sqrt(.2)); student logits 0 -> [1/2, 1/2]
    teacher = torch.tensor([[math.log(0.8), math.log(0.2)]])
    student = torch.zeros(1, 2)
    kl = (2 / 3) * math.log((2 / 3) / 0.5) + (1 / 3) * math.log((1 / 3) / 0.5)
    assert TTMLoss(0.5)(student, teacher).item() == pytest.approx(kl, rel=1e-6)
    normaliser = math.sqrt(0.8) + math.sqrt(0.2)
    value = TTMLoss(0.5, weighted=True)(student, teacher).item()
    assert value == pytest.approx(normaliser * kl, rel=1e-6)


def test_rejects_non_positive_gamma():
    with pytest.raises(ValueError, match="gamma"):
        TTMLoss(gamma=0.0)


@pytest.mark.parametrize("weighted", [False, True])
def test_training_moves_student_toward_teacher(weighted):
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), baseline_data, **kwargs)
    loss = TTMLoss(gamma=0.1, weighted=weighted)
    # the authors' weight is 45 on CIFAR-100 with 100 classes; 10 keeps SGD stable here
    train(OfflineDistiller(student, teacher, loss, kd_weight=10.0), data, **kwargs)
    # the target of TTM is the teacher at T = 1 / gamma = 10, the student at T = 1:
    # measure KL(softmax(z_t / 10) || softmax(z_s))
    distilled_gap = kl_to_transformed(student, teacher, data.x_test)
    baseline_gap = kl_to_transformed(baseline, teacher, data.x_test)
    assert distilled_gap < 0.8 * baseline_gap


def kl_to_transformed(student, teacher, x) -> float:
    return TTMLoss(0.1)(predict_logits(student, x), predict_logits(teacher, x)).item()


@pytest.mark.gpu
def test_cpu_cuda_agreement_of_wttm(cifar_sized_logits):
    check_cpu_cuda_agreement(TTMLoss(weighted=True), *cifar_sized_logits)


@pytest.mark.gpu
def test_bf16_autocast_of_wttm(cifar_sized_logits):
    loss = TTMLoss(weighted=True)
    value = check_autocast_bf16(loss, *cifar_sized_logits)
    torch.testing.assert_close(value, loss(*cifar_sized_logits), rtol=0.05, atol=0.05)
