"""MGD (Yang et al., 2022): contract, masks, a value by hand, seeding, training, CUDA."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reference_impls.common import linear_cka, train
from reference_impls.common.testing import (
    check_cpu_cuda_agreement,
    check_loss_contract,
    digits_setup,
    pretrained_digits_teacher,
    random_feature_pair,
)
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.feature.mgd import MGDLoss, random_keep_mask

STUDENT_CHANNELS = (8, 16, 32)
TEACHER_CHANNELS = (32, 64, 128)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def feats() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    student, teacher = random_feature_pair(batch=4, seed=0)
    return [s.relu() for s in student], [t.relu() for t in teacher]


def identity_generator_loss(channels: int, **kwargs) -> MGDLoss:
    """One stage, equal widths (no align), and a generation block that computes ReLU(x)."""
    loss = MGDLoss((channels,), (channels,), stages=(0,), **kwargs)
    first, _, second = loss.generation[0]
    with torch.no_grad():
        for conv in (first, second):
            conv.weight.zero_()
            conv.bias.zero_()
            for c in range(channels):
                conv.weight[c, c, 1, 1] = 1.0  # centre tap: identity
    return loss


def test_default_distils_the_last_stage_only(feats):
    loss = MGDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, generator=seeded())
    assert isinstance(loss.align[0], nn.Conv2d) and len(loss.generation) == 1
    student, teacher = feats
    student = [s.clone().requires_grad_() for s in student]
    teacher = [t.clone().requires_grad_() for t in teacher]
    loss(student, teacher).backward()
    assert student[0].grad is None and student[1].grad is None
    assert student[2].grad.abs().sum() > 0
    assert all(t.grad is None for t in teacher)
    assert all(p.grad is not None for p in loss.parameters())


def test_contract_with_the_papers_spatial_mask_on_every_stage(feats):
    # the default (channel mask, last stage) is covered by tests/reference_impls/test_contracts.py
    loss = MGDLoss(
        STUDENT_CHANNELS, TEACHER_CHANNELS, stages=(0, 1, 2), mask="spatial", generator=seeded()
    )
    check_loss_contract(loss, *feats)


def test_hand_computed_value_without_masking():
    loss = identity_generator_loss(1, alpha_mgd=1.0, lambda_mgd=0.0)
    student = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    teacher = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    # sample 1: ReLU(s) = [1, 0, 3, 0.5] vs t = [0, 0, 1, 1]: 1 + 0 + 4 + 0.25; sample 2: 0
    # summed over elements, divided by the batch size 2
    assert loss([student], [teacher]).item() == pytest.approx(5.25 / 2)


def test_masks_have_the_papers_and_the_released_codes_shapes():
    features = torch.ones(5, 7, 3, 4)
    spatial = random_keep_mask(features, 0.5, "spatial", seeded())
    channel = random_keep_mask(features, 0.5, "channel", seeded())
    assert spatial.shape == (5, 1, 3, 4)  # one mask shared by all channels
    assert channel.shape == (5, 7, 1, 1)  # whole channels dropped
    assert set(spatial.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(("mask", "ratio"), [("spatial", 0.5), ("channel", 0.15)])
def test_masked_ratio_is_lambda(mask, ratio):
    # all-ones student, zero teacher, identity generator: the loss counts the kept elements
    loss = identity_generator_loss(
        16, alpha_mgd=1.0, lambda_mgd=ratio, mask=mask, generator=seeded()
    )
    student = torch.ones(64, 16, 8, 8)
    kept = loss([student], [torch.zeros_like(student)]).item() * 64
    assert kept / student.numel() == pytest.approx(1 - ratio, abs=0.03)


def test_everything_masked_leaves_nothing_to_learn_from_the_student(feats):
    # lambda = 1 masks every position: the generator sees zeros, the student gets no gradient
    student, teacher = feats
    student = [s.clone().requires_grad_() for s in student]
    loss = MGDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, lambda_mgd=1.0, mask="spatial")
    loss(student, teacher).backward()
    assert student[2].grad is not None and student[2].grad.abs().sum() == 0


def test_masks_are_reproducible_from_a_generator_or_the_global_seed(feats):
    loss = MGDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, lambda_mgd=0.5)
    values = []
    for seed in (0, 0, 1):
        loss.generator = seeded(seed)
        values.append(loss(*feats).item())
    assert values[0] == values[1] != values[2]
    loss.generator = None
    torch.manual_seed(3)
    first = loss(*feats).item()
    torch.manual_seed(3)
    assert loss(*feats).item() == first


def test_rejects_bad_arguments(feats):
    with pytest.raises(ValueError, match="lambda_mgd"):
        MGDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, lambda_mgd=1.5)
    with pytest.raises(ValueError, match="mask"):
        MGDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, mask="pixel")
    with pytest.raises(ValueError, match="alpha_mgd"):
        MGDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, alpha_mgd=0.0)
    with pytest.raises(ValueError, match="stages"):
        MGDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, stages=(5,))
    with pytest.raises(ValueError, match="stages"):
        MGDLoss(STUDENT_CHANNELS[:1], TEACHER_CHANNELS)
    student, teacher = feats
    with pytest.raises(ValueError, match="same spatial size"):
        MGDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS)(student, [teacher[0], teacher[1], teacher[1]])


def test_training_moves_student_features_toward_the_teacher():
    pretrained_digits_teacher(0)  # cache first, so both students below start from the same init
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), baseline_data, **kwargs)
    # the summed error of a 128x2x2 map is ~50x smaller than of ImageNet's 512x7x7 maps, for
    # which alpha = 7e-5 was set; a 3-epoch run needs a larger weight to show its effect
    loss = MGDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, alpha_mgd=1e-2, generator=seeded())
    train(OfflineDistiller(student, teacher, loss), data, **kwargs)
    with torch.no_grad():
        teacher_last = teacher(data.x_test).features[-1]
        distilled = linear_cka(student.eval()(data.x_test).features[-1], teacher_last)
        undistilled = linear_cka(baseline.eval()(data.x_test).features[-1], teacher_last)
    assert distilled > undistilled + 0.015


@pytest.mark.gpu
def test_cpu_cuda_agreement_with_the_spatial_mask_from_a_cpu_generator(feats):
    # the masks are drawn on the generator's device (CPU) and moved to the features'
    loss = MGDLoss(
        STUDENT_CHANNELS, TEACHER_CHANNELS, stages=(0, 1, 2), mask="spatial", generator=seeded()
    )
    check_cpu_cuda_agreement(loss, *feats)
