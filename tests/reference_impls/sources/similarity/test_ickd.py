"""ICKD (Liu et al., 2021): contract, paper properties, a hand value, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common import train
from reference_impls.common.testing import (
    check_loss_contract,
    digits_student_pair,
    random_feature_pair,
)
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.similarity.ickd import ICKDLoss, channel_correlation

STUDENT_CHANNELS = (8, 16, 32)
TEACHER_CHANNELS = (32, 64, 128)


@pytest.fixture
def features() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return random_feature_pair(batch=6)


def identity_connector(loss: ICKDLoss) -> ICKDLoss:
    """Make the (square) 1x1 connector the identity; batch norm in eval mode with unit stats."""
    with torch.no_grad():
        for connector in loss.connectors:
            conv = connector[0]
            conv.weight.copy_(torch.eye(conv.out_channels).view_as(conv.weight))
    return loss.eval()


def test_contract_all_stages(features):
    check_loss_contract(ICKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, stages=(0, 1, 2)), *features)


def test_zero_when_student_equals_teacher_through_an_identity_connector(features):
    _, teacher = features
    loss = identity_connector(ICKDLoss(TEACHER_CHANNELS, TEACHER_CHANNELS, stages=(0, 1, 2)))
    assert loss([t.clone() for t in teacher], teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_channel_correlations_ignore_where_and_at_what_resolution_things_are(features):
    # the c x c Gram sums over positions: the teacher map may be shuffled spatially, and
    # a teacher map at twice the resolution (each position repeated) gives the same loss
    student, teacher = features
    loss = ICKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS).eval()
    reference = loss(student, teacher)
    last = teacher[-1]
    order = torch.randperm(
        last.shape[2] * last.shape[3], generator=torch.Generator().manual_seed(4)
    )
    shuffled = last.flatten(2)[:, :, order].view_as(last)
    upsampled = torch.nn.functional.interpolate(last, scale_factor=2.0, mode="nearest")
    torch.testing.assert_close(loss(student, [*teacher[:-1], shuffled]), reference)
    torch.testing.assert_close(loss(student, [*teacher[:-1], upsampled]), reference)


def test_hand_computed_value():
    # one example, two channels, two positions; identity connector (row normalisation
    # removes batch norm's 1/sqrt(1 + eps)).
    # student F = [[1, 0], [0, 1]]: Gram I.  Teacher F = [[1, 1], [1, 1]]: rows (1, 1)/sqrt2.
    loss = identity_connector(ICKDLoss((2,), (2,)))
    student = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)]
    teacher = [torch.ones(1, 2, 1, 2)]
    r = 1 / math.sqrt(2.0)
    squared = 2 * ((1 - r) ** 2 + r**2)
    assert loss(student, teacher).item() == pytest.approx(squared / (2 * 1), rel=1e-5)
    assert torch.allclose(channel_correlation(teacher[0])[0], torch.full((2, 2), r))


def test_rejects_bad_arguments(features):
    with pytest.raises(ValueError, match="teacher stages"):
        ICKDLoss((8, 16), TEACHER_CHANNELS)
    with pytest.raises(ValueError, match="out of range"):
        ICKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, stages=(3,))
    with pytest.raises(ValueError, match="teacher feature maps"):
        ICKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS)(features[0][:2], features[1])


@torch.no_grad()
def last_maps(model, x) -> torch.Tensor:
    model.eval()
    return model(x).features[-1]


def fitted_connector(student, teacher, data, steps: int = 150) -> ICKDLoss:
    """A fresh connector fitted to a frozen student's maps (Adam, minibatches of 64)."""
    torch.manual_seed(0)
    probe = ICKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS)
    student_maps, teacher_maps = last_maps(student, data.x_train), last_maps(teacher, data.x_train)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = torch.randperm(len(student_maps), generator=generator)[:64]
        value = probe([student_maps[batch]], [teacher_maps[batch]])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return probe.eval()


@torch.no_grad()
def held_out_ickd(loss: ICKDLoss, student, teacher, x) -> float:
    return loss.eval()([last_maps(student, x)], [last_maps(teacher, x)]).item()


def test_training_moves_student_toward_teacher():
    data, teacher, student, baseline = digits_student_pair()
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), data, **kwargs)
    loss = ICKDLoss(STUDENT_CHANNELS, TEACHER_CHANNELS)
    # the authors' CIFAR-100 weight: CE + 2.5 ICKD, no KD term
    train(OfflineDistiller(student, teacher, loss, kd_weight=2.5), data, **kwargs)
    # judge the students, not the connectors: both get a fresh connector fitted the same way
    # (the baseline never trained one; the distilled student's own one is not reused)
    distilled = held_out_ickd(
        fitted_connector(student, teacher, data), student, teacher, data.x_test
    )
    fitted_baseline = held_out_ickd(
        fitted_connector(baseline, teacher, data), baseline, teacher, data.x_test
    )
    assert distilled < 0.95 * fitted_baseline
