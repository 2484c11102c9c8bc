"""FSP (Yim et al., 2017): contract, paper properties, hand values, training."""

from __future__ import annotations

import pytest
import torch

from reference_impls.common import train
from reference_impls.common.models import TinyCNN
from reference_impls.common.testing import check_loss_contract, digits_setup, random_feature_pair
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.similarity.fsp import FSPLoss

STUDENT_CHANNELS = (8, 16, 32)
TEACHER_CHANNELS = (32, 64, 128)


@pytest.fixture
def equal_width_features() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return random_feature_pair(batch=6, student_channels=TEACHER_CHANNELS)


@pytest.fixture
def thin_student_features() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return random_feature_pair(batch=6)


def test_contract_equal_widths(equal_width_features):
    check_loss_contract(FSPLoss(), *equal_width_features)


def test_no_connector_where_widths_already_match():
    loss = FSPLoss(student_channels=(32, 16, 128), teacher_channels=TEACHER_CHANNELS)
    assert isinstance(loss.connectors[0], torch.nn.Identity)
    assert not isinstance(loss.connectors[1], torch.nn.Identity)


def test_zero_when_student_equals_teacher(equal_width_features):
    _, teacher = equal_width_features
    assert FSPLoss()([t.clone() for t in teacher], teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_invariant_to_a_shared_permutation_of_positions():
    # an FSP matrix sums over positions: shuffling them (identically in both maps) changes nothing
    generator = torch.Generator().manual_seed(3)
    student = [
        torch.randn(4, 8, 4, 4, generator=generator),
        torch.randn(4, 16, 4, 4, generator=generator),
    ]
    teacher = [
        torch.randn(4, 8, 4, 4, generator=generator),
        torch.randn(4, 16, 4, 4, generator=generator),
    ]
    order = torch.randperm(16, generator=generator)

    def shuffle(m: torch.Tensor) -> torch.Tensor:
        return m.flatten(2)[:, :, order].view_as(m)

    loss = FSPLoss(pairs=((0, 1),))
    shuffled = loss([shuffle(s) for s in student], teacher)
    torch.testing.assert_close(shuffled, loss(student, teacher), rtol=1e-5, atol=1e-4)
    assert loss(student, teacher).item() > 1.0  # and the value compared is not trivially 0


def test_hand_computed_value():
    # one example, one channel, two positions: G_s = (1*3 + 2*4)/2 = 5.5, G_t = (0*1 + 1*1)/2 = 0.5
    student = [torch.tensor([1.0, 2.0]).view(1, 1, 1, 2), torch.tensor([3.0, 4.0]).view(1, 1, 1, 2)]
    teacher = [torch.tensor([0.0, 1.0]).view(1, 1, 1, 2), torch.tensor([1.0, 1.0]).view(1, 1, 1, 2)]
    value = FSPLoss(pairs=((0, 1),), lambdas=(2.0,))(student, teacher)
    assert value.item() == pytest.approx(2.0 * (5.5 - 0.5) ** 2)


def test_hand_computed_value_with_pooling():
    # the 2x2 map is average-pooled to the 1x1 map's size: mean(1, 2, 3, 4) = 2.5, G_s = 2.5 * 2 = 5
    student = [
        torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2),
        torch.tensor([2.0]).view(1, 1, 1, 1),
    ]
    teacher = [torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)]
    assert FSPLoss(pairs=((0, 1),))(student, teacher).item() == pytest.approx(25.0)


def test_rejects_bad_arguments(thin_student_features):
    with pytest.raises(ValueError, match="lambdas"):
        FSPLoss(lambdas=(1.0,))
    with pytest.raises(ValueError, match="both"):
        FSPLoss(student_channels=STUDENT_CHANNELS)
    with pytest.raises(ValueError, match="connectors"):
        FSPLoss()(*thin_student_features)


@torch.no_grad()
def held_out_fsp(student, teacher, x) -> float:
    student.eval()
    return FSPLoss()(student(x).features, teacher(x).features).item()


def test_first_stage_moves_student_toward_teacher():
    # the paper's setting: a student as wide as the teacher (no connector) first learns
    # the teacher's FSP matrices alone (stage 1, no cross-entropy)
    data, teacher, _ = digits_setup(seed=0)
    kwargs = {"epochs": 2, "seed": 0, "device": "cpu"}
    torch.manual_seed(0)
    baseline = TinyCNN(TEACHER_CHANNELS)
    torch.manual_seed(0)
    student = TinyCNN(TEACHER_CHANNELS)
    train(OfflineDistiller(baseline, teacher, None), data, **kwargs)
    # lambda = 0.01 is about RepDistiller's weight 50 on its entry mean (50 / (m n))
    loss = FSPLoss(lambdas=(0.01, 0.01))
    train(OfflineDistiller(student, teacher, loss, ce_weight=0.0, kd_weight=1.0), data, **kwargs)
    distilled = held_out_fsp(student, teacher, data.x_test)
    assert distilled < 0.5 * held_out_fsp(baseline, teacher, data.x_test)
