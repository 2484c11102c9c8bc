"""ReviewKD (Chen et al., 2021): contract, HCL by hand, the review direction, training."""

from __future__ import annotations

import copy

import pytest
import torch

from reference_impls.common import linear_cka, train
from reference_impls.common.testing import (
    check_loss_contract,
    digits_setup,
    pretrained_digits_teacher,
    random_feature_pair,
)
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.feature.reviewkd import ReviewKDLoss, hierarchical_context_loss

STUDENT_CHANNELS = (8, 16, 32)
TEACHER_CHANNELS = (32, 64, 128)


@pytest.fixture
def preacts() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return random_feature_pair(batch=4, seed=0)


def test_contract_with_student_preact(preacts):
    loss = ReviewKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, student_preact=True)
    check_loss_contract(loss, *preacts)


def test_hcl_by_hand_on_a_2x2_map():
    student = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    teacher = torch.zeros(1, 1, 2, 2)
    # only the 1x1 pyramid level is smaller than 2x2: weights 1 and 1/2, normalised by 1.5
    full = (1 + 4 + 9 + 16) / 4  # 7.5
    pooled = ((1 + 2 + 3 + 4) / 4) ** 2  # 6.25
    expected = (full + 0.5 * pooled) / 1.5
    assert hierarchical_context_loss([student], [teacher]).item() == pytest.approx(expected)


def test_hcl_by_hand_on_a_4x4_map_and_a_1x1_map():
    student = torch.arange(16.0).reshape(1, 1, 4, 4)
    teacher = torch.zeros(1, 1, 4, 4)
    full = sum(v * v for v in range(16)) / 16  # 77.5
    # 2x2 pool of [[0..3],[4..7],[8..11],[12..15]]: block means 2.5, 4.5, 10.5, 12.5
    pooled_2 = (2.5**2 + 4.5**2 + 10.5**2 + 12.5**2) / 4
    pooled_1 = 7.5**2
    four_by_four = (full + 0.5 * pooled_2 + 0.25 * pooled_1) / 1.75
    one_by_one = 3.0**2  # a 1x1 map has no smaller pyramid level: plain MSE
    value = hierarchical_context_loss(
        [student, torch.full((1, 1, 1, 1), 3.0)], [teacher, torch.zeros(1, 1, 1, 1)]
    )
    assert value.item() == pytest.approx(four_by_four + one_by_one)


@pytest.mark.parametrize("size", [8, 4, 2, 1])
def test_hcl_of_a_uniform_offset_is_the_plain_mse(size):
    # every pyramid level sees the same squared offset, and the weights are normalised
    teacher = torch.randn(3, 5, size, size, generator=torch.Generator().manual_seed(size))
    value = hierarchical_context_loss([teacher + 0.7], [teacher])
    assert value.item() == pytest.approx(0.49, rel=1e-5)
    assert hierarchical_context_loss([teacher.clone()], [teacher]).item() == 0.0


def test_review_outputs_have_the_teacher_shapes(preacts):
    student, teacher = preacts
    loss = ReviewKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS)
    pooled = [f.mean((2, 3), keepdim=True) for f in (student[-1], teacher[-1])]
    outputs = loss.review([*student, pooled[0]], [*teacher, pooled[1]])
    assert [tuple(o.shape) for o in outputs] == [
        (4, 32, 8, 8),
        (4, 64, 4, 4),
        (4, 128, 2, 2),
        (4, 128, 1, 1),
    ]


def test_shallow_outputs_review_deeper_student_levels_but_not_the_reverse(preacts):
    # the fusion runs deep -> shallow: the shallowest output depends on the deepest student
    # level (a shallow teacher stage supervises deep student stages), the deepest on itself only
    student, teacher = preacts
    levels = [t.clone().requires_grad_() for t in [*student, student[-1].mean((2, 3), True)]]
    teacher_levels = [*teacher, teacher[-1].mean((2, 3), keepdim=True)]
    outputs = ReviewKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS).review(levels, teacher_levels)
    (shallow_to_deepest,) = torch.autograd.grad(outputs[0].sum(), levels[-1], retain_graph=True)
    assert shallow_to_deepest.abs().sum() > 0
    deepest_to_shallow = torch.autograd.grad(outputs[-1].sum(), levels[0], allow_unused=True)[0]
    assert deepest_to_shallow is None or deepest_to_shallow.abs().sum() == 0


def test_warm_up_scales_the_loss_linearly(preacts):
    loss = ReviewKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, warmup_epochs=20)
    warming = copy.deepcopy(loss)
    warming.on_epoch_start(epoch=3, epochs=240)  # 4th epoch: factor 4/20
    torch.testing.assert_close(warming(*preacts), loss(*preacts) * 0.2)
    warming.on_epoch_start(epoch=30, epochs=240)
    torch.testing.assert_close(warming(*preacts), loss(*preacts))
    no_warmup = ReviewKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, warmup_epochs=0)
    no_warmup.on_epoch_start(epoch=0, epochs=3)
    assert no_warmup.warmup_factor == 1.0


def test_rejects_bad_arguments(preacts):
    with pytest.raises(ValueError, match="same non-zero number of stages"):
        ReviewKDLoss((8, 16), TEACHER_CHANNELS)
    with pytest.raises(ValueError, match="warmup_epochs"):
        ReviewKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, warmup_epochs=-1)
    student, teacher = preacts
    with pytest.raises(ValueError, match="expected 3 student stages"):
        ReviewKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS)(student[:2], teacher)


def test_training_moves_student_features_toward_the_teacher():
    pretrained_digits_teacher(0)  # cache first, so both students below start from the same init
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), baseline_data, **kwargs)
    loss = ReviewKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, warmup_epochs=0)
    train(OfflineDistiller(student, teacher, loss), data, **kwargs)
    with torch.no_grad():
        targets = teacher(data.x_test).preact_features
        distilled = student.eval()(data.x_test).preact_features
        undistilled = baseline.eval()(data.x_test).preact_features
    gains = [
        linear_cka(d, t) - linear_cka(u, t)
        for d, u, t in zip(distilled, undistilled, targets, strict=True)
    ]
    assert all(gain > 0 for gain in gains), gains
    assert sum(gains) / len(gains) > 0.02, gains
