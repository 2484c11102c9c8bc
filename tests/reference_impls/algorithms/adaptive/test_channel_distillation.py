"""Channel distillation (Zhou et al., 2020): hand values, the pooled attention, guided KD, early decay, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.algorithms.adaptive.channel_distillation import (
    ChannelDistillation,
    channel_distillation_loss,
    guided_kd_loss,
)
from reference_impls.common import accuracy, kl_to_teacher, student_cnn, teacher_cnn, train
from reference_impls.common.testing import check_procedure_contract, digits_student_pair
from reference_impls.schemes.offline.distiller import OfflineDistiller

STUDENT, TEACHER = (8, 16, 32), (32, 64, 128)


def _procedure(**kwargs) -> ChannelDistillation:
    torch.manual_seed(0)
    return ChannelDistillation(student_cnn(), teacher_cnn(), STUDENT, TEACHER, **kwargs)


def test_hand_computed_channel_loss():
    # one stage, one sample, two channels: student means (1, 3), teacher means (2, 2)
    student = torch.tensor([[[[0.0, 2.0]], [[3.0, 3.0]]]])  # [1, 2, 1, 2]
    teacher = torch.tensor([[[[2.0, 2.0]], [[1.0, 3.0]]]])
    expected = ((1 - 2) ** 2 + (3 - 2) ** 2) / 2
    value = channel_distillation_loss([student], [teacher])
    assert value.item() == pytest.approx(expected)
    # two stages add up
    assert channel_distillation_loss([student] * 2, [teacher] * 2).item() == pytest.approx(
        2 * expected
    )


def test_channel_loss_ignores_where_a_channel_fires():
    # the attention is a global pool: moving activations around a map changes nothing
    generator = torch.Generator().manual_seed(0)
    student, teacher = (
        torch.randn(4, 6, 5, 5, generator=generator),
        torch.randn(4, 6, 5, 5, generator=generator),
    )
    shuffled = student.flatten(2)[:, :, torch.randperm(25, generator=generator)].view_as(student)
    torch.testing.assert_close(
        channel_distillation_loss([shuffled], [teacher]),
        channel_distillation_loss([student], [teacher]),
    )


def test_hand_computed_guided_kd():
    # sample 0: teacher right (argmax 0 = label); sample 1: teacher wrong -> ignored
    teacher = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    student = torch.zeros(2, 2)
    target = torch.tensor([0, 1])
    q = math.exp(2) / (math.exp(2) + 1)
    kl = q * math.log(q / 0.5) + (1 - q) * math.log((1 - q) / 0.5)
    assert guided_kd_loss(student, teacher, target, 1.0).item() == pytest.approx(kl, rel=1e-6)


def test_guided_kd_learns_nothing_from_the_teacher_s_mistakes():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(8, 5, generator=generator, requires_grad=True)
    teacher = torch.randn(8, 5, generator=generator)
    target = teacher.argmax(1).clone()
    target[:3] = (target[:3] + 1) % 5  # the teacher is wrong on the first three
    guided_kd_loss(student, teacher, target, 1.0).backward()
    assert not student.grad[:3].any() and student.grad[3:].any()
    none_right = (teacher.argmax(1) + 1) % 5
    assert guided_kd_loss(student, teacher, none_right, 1.0).item() == 0.0  # theirs: NaN


def test_contract_and_the_teacher_stays_frozen(batch):
    procedure = _procedure()
    terms = check_procedure_contract(procedure, *batch, frozen=[procedure.teacher])
    assert set(terms) == {"loss", "ce", "gkd", "cd"}
    expected = terms["ce"] + 0.1 * terms["gkd"] + 6.0 * terms["cd"]
    torch.testing.assert_close(terms["loss"].detach(), expected)
    procedure.train()
    assert not procedure.teacher.training and procedure.student.training


def test_early_decay_teacher_follows_the_authors_cifar_schedule():
    # cifar_config.py + adjust_loss_alpha(lrdv2): 200 epochs, labels off through epoch 60,
    # the CD weight 6 times 0.9 from epoch 60 and 0.9^2 from epoch 160 (their epochs from 1)
    procedure = _procedure()
    weights = {}
    for epoch in (0, 58, 59, 60, 158, 159, 199):
        procedure.on_epoch_start(epoch, 200)
        weights[epoch + 1] = (procedure.label_factor, procedure.cd_factor * procedure.cd_weight)
    assert weights[1] == (0.0, 6.0) and weights[59] == (0.0, 6.0)
    assert weights[60] == (0.0, pytest.approx(5.4)) and weights[61] == (1.0, pytest.approx(5.4))
    assert weights[159] == (1.0, pytest.approx(5.4)) and weights[160] == (1.0, pytest.approx(4.86))
    assert weights[200] == (1.0, pytest.approx(4.86))


def test_early_decay_off_and_the_label_terms_off_at_first(batch):
    constant = _procedure(milestones=())
    constant.on_epoch_start(0, 10)
    assert (constant.label_factor, constant.cd_factor) == (1.0, 1.0)
    procedure = _procedure()
    procedure.on_epoch_start(0, 10)
    terms = procedure(*batch)
    torch.testing.assert_close(terms["loss"].detach(), 6.0 * terms["cd"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"student_channels": (8, 16)}, "channel sizes"),
        ({"student_channels": ()}, "at least one stage"),
        ({"cd_weight": 0.0}, "cd_weight"),
        ({"temperature": 0.0}, "temperature"),
        ({"decay": 1.5}, "decay"),
        ({"milestones": (0.8, 0.3)}, "increasing"),
        ({"milestones": (1.5,)}, "milestones"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    arguments = {"student_channels": STUDENT, "teacher_channels": TEACHER, **kwargs}
    student_channels = arguments.pop("student_channels")
    teacher_channels = arguments.pop("teacher_channels")
    with pytest.raises(ValueError, match=match):
        ChannelDistillation(
            student_cnn(), teacher_cnn(), student_channels, teacher_channels, **arguments
        )


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        channel_distillation_loss([torch.zeros(2, 3)], [torch.zeros(2, 3)])
    with pytest.raises(ValueError, match="batch and channels"):
        channel_distillation_loss([torch.zeros(2, 3, 4, 4)], [torch.zeros(2, 5, 4, 4)])
    with pytest.raises(ValueError, match="feature maps"):
        channel_distillation_loss([torch.zeros(2, 3, 4, 4)], [])
    with pytest.raises(ValueError, match="target"):
        guided_kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    # connectors built for three stages, a student with two widths of another size
    procedure = ChannelDistillation(student_cnn(), teacher_cnn(), (8, 16, 64), TEACHER)
    with pytest.raises(ValueError, match=r"student_channels\[2\] = 64"):
        procedure(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))


def test_distilled_student_beats_the_baseline_and_moves_toward_the_teacher():
    # the authors' defaults, early decay teacher included (the first epoch on channels alone)
    data, teacher, student, baseline = digits_student_pair(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), data, **kwargs)
    train(ChannelDistillation(student, teacher, STUDENT, TEACHER), data, **kwargs)
    assert accuracy(student, data.x_test, data.y_test) > accuracy(
        baseline, data.x_test, data.y_test
    )
    distilled_gap = kl_to_teacher(student, teacher, data.x_test, temperature=4.0)
    assert distilled_gap < 0.95 * kl_to_teacher(baseline, teacher, data.x_test, temperature=4.0)
