"""SimKD (Chen et al., 2022): the reused classifier, a value by hand, training."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common import TinyCNN, accuracy, student_cnn, teacher_cnn, train
from reference_impls.common.testing import digits_setup, pretrained_digits_teacher
from reference_impls.sources.feature.simkd import SimKD


class AddConstant(nn.Module):
    """A stand-in projector for same-width models: shifts every feature by ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.value


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 8, 8, generator=generator), torch.arange(8) % 10


def fresh_pair(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return student_cnn(), teacher_cnn()


def test_projector_is_the_authors_factor_2_bottleneck():
    student, teacher = fresh_pair()
    projector = SimKD(student, teacher).student.projector
    convs = [m for m in projector if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (32, 64, (1, 1)),
        (64, 64, (3, 3)),
        (64, 128, (1, 1)),
    ]
    assert isinstance(projector[-1], nn.ReLU)  # matches the teacher's post-ReLU map


def test_student_reuses_the_teacher_classifier(batch):
    student, teacher = fresh_pair()
    procedure = SimKD(student, teacher).eval()
    assert procedure.student.teacher_head is teacher.fc
    before = procedure.predict(batch[0])
    with torch.no_grad():
        teacher.fc.bias.add_(1.5)
    torch.testing.assert_close(procedure.predict(batch[0]), before + 1.5)


def test_a_perfect_projection_reproduces_the_teacher(batch):
    # student = a copy of the teacher, projector = identity: zero loss, the teacher's logits
    _, teacher = fresh_pair()
    procedure = SimKD(copy.deepcopy(teacher), teacher).eval()
    procedure.student.projector = nn.Identity()
    assert procedure(*batch)["loss"].item() == 0.0
    torch.testing.assert_close(procedure.predict(batch[0]), teacher(batch[0]).logits)


def test_hand_computed_value(batch):
    # projected = teacher map + 0.5 everywhere: MSE = 0.25, weighted by beta = 2;
    # the pooled embedding moves by 0.5 per channel, so the logits move by 0.5 * fc.weight.sum(1)
    _, teacher = fresh_pair()
    procedure = SimKD(copy.deepcopy(teacher), teacher, beta=2.0).eval()
    procedure.student.projector = AddConstant(0.5)
    terms = procedure(*batch)
    assert terms["feature_mse"].item() == pytest.approx(0.25)
    assert terms["loss"].item() == pytest.approx(0.5)
    shift = 0.5 * teacher.fc.weight.sum(dim=1)
    torch.testing.assert_close(procedure.predict(batch[0]), teacher(batch[0]).logits + shift)
    expected_ce = F.cross_entropy(teacher(batch[0]).logits + shift, batch[1])
    assert terms["ce"].item() == pytest.approx(expected_ce.item(), rel=1e-5)


def test_ce_weight_adds_the_reused_heads_cross_entropy(batch):
    student, teacher = fresh_pair()
    procedure = SimKD(student, teacher, beta=1.0, ce_weight=0.5).eval()
    terms = procedure(*batch)
    expected = terms["feature_mse"] + 0.5 * terms["ce"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_larger_teacher_map_is_pooled_to_the_student_size(batch):
    # student_cnn ends at 2x2; a two-stage teacher ends at 4x4 and is average-pooled down
    procedure = SimKD(student_cnn(), TinyCNN((32, 64))).eval()
    assert procedure(*batch)["feature_mse"].dim() == 0


@pytest.mark.parametrize(
    ("student", "teacher"),
    [(TinyCNN((8, 16)), teacher_cnn()), (student_cnn(), TinyCNN((8, 16, 32, 64)))],
    ids=["4x4-student-2x2-teacher", "2x2-student-1x1-teacher"],
)
def test_rejects_a_student_map_larger_than_the_teachers(batch, student, teacher):
    with pytest.raises(ValueError, match="larger than the teacher"):
        SimKD(student, teacher)(*batch)


def test_rejects_bad_arguments():
    with pytest.raises(TypeError, match=r"teacher\.fc"):
        SimKD(student_cnn(), nn.Sequential())
    with pytest.raises(ValueError, match="student_channels"):
        SimKD(nn.Sequential(), teacher_cnn())
    with pytest.raises(ValueError, match="beta"):
        SimKD(student_cnn(), teacher_cnn(), beta=0.0, ce_weight=0.0)
    with pytest.raises(ValueError, match="factor"):
        SimKD(student_cnn(), teacher_cnn(), factor=256)


def test_training_without_labels_classifies_through_the_teacher_head():
    pretrained_digits_teacher(0)  # cache first, so both students below start from the same init
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    data, teacher, student = digits_setup(seed=0)
    simkd = SimKD(student, teacher)  # the authors' setting: feature MSE only, no labels
    train(simkd, data, **kwargs)
    baseline_data, _, baseline_student = digits_setup(seed=0)
    # same architecture and head, trained on labels only
    baseline = SimKD(baseline_student, teacher, beta=0.0, ce_weight=1.0)
    train(baseline, baseline_data, **kwargs)

    def held_out_feature_mse(procedure: SimKD) -> float:
        procedure.eval()
        with torch.no_grad():
            projected = procedure.student(data.x_test).features[-1]
            return F.mse_loss(projected, teacher(data.x_test).features[-1]).item()

    assert held_out_feature_mse(simkd) < 0.8 * held_out_feature_mse(baseline)
    assert accuracy(simkd.student, data.x_test, data.y_test) > 0.85
