"""ESKD (Cho and Hariharan, 2019): the two stages, the kept teacher, a hand value, early-stopped KD, training."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from reference_impls.algorithms.adaptive.eskd import ESKD
from reference_impls.common import (
    Supervised,
    kl_to_teacher,
    load_digits_split,
    student_cnn,
    teacher_cnn,
    train,
)
from reference_impls.common.testing import FixedLogits, check_procedure_contract


def _eskd(**kwargs) -> ESKD:
    torch.manual_seed(0)
    return ESKD(teacher_cnn(), student_cnn(), **kwargs)


def test_teacher_stage_trains_the_teacher_alone(batch):
    procedure = _eskd()
    terms = check_procedure_contract(procedure, *batch, frozen=[procedure.student])
    assert set(terms) == {"loss", "teacher_ce"}


def test_student_stage_distils_from_the_frozen_teacher(batch):
    procedure = _eskd()
    procedure.start_distillation()
    terms = check_procedure_contract(procedure, *batch, frozen=[procedure.teacher])
    torch.testing.assert_close(terms["loss"].detach(), 0.1 * terms["ce"] + 0.9 * terms["kd"])
    procedure.train()
    assert not procedure.teacher.training and procedure.student.training


def test_hand_computed_student_loss():
    # teacher logits [2, 0], student [0, 0], label 0, tau = 2: 0.1 log 2 + 0.9 tau^2 KL
    procedure = ESKD(FixedLogits([2.0, 0.0]), FixedLogits([0.0, 0.0]), temperature=2.0)
    procedure.start_distillation()
    q = math.exp(1) / (math.exp(1) + 1)
    kl = q * math.log(q / 0.5) + (1 - q) * math.log((1 - q) / 0.5)
    terms = procedure(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))
    assert terms["loss"].item() == pytest.approx(0.1 * math.log(2) + 0.9 * 4 * kl, rel=1e-6)


def test_early_stopped_kd_drops_the_kd_term(batch):
    procedure = _eskd(kd_epochs=2)
    procedure.start_distillation()
    procedure.on_epoch_start(1, 10)
    terms = procedure(*batch)
    assert terms["loss"].item() > 0.1 * terms["ce"].item()
    procedure.on_epoch_start(2, 10)
    terms = procedure(*batch)
    torch.testing.assert_close(terms["loss"].detach(), 0.1 * terms["ce"])


def test_run_keeps_the_teacher_of_the_stop_epoch_and_the_full_teacher():
    data = load_digits_split(seed=0).with_train_subset(128)
    procedure = _eskd()
    reference = copy.deepcopy(procedure.teacher)  # the same initial weights, trained by hand
    histories = procedure.run(data, epochs=1, teacher_epochs=3, stop_epoch=1, device="cpu")
    assert [len(h.test_accuracy) for h in histories] == [3, 1]
    after_epoch = []
    train(
        Supervised(reference),
        data,
        epochs=3,
        seed=0,
        device="cpu",
        evaluate=reference,
        progress=lambda epoch, _: after_epoch.append(copy.deepcopy(reference.state_dict())),
    )
    torch.testing.assert_close(procedure.teacher.state_dict(), after_epoch[0])
    torch.testing.assert_close(procedure.full_teacher.state_dict(), after_epoch[-1])
    assert not any(p.requires_grad for p in procedure.teacher.parameters())
    with pytest.raises(RuntimeError, match="run"):
        procedure.run(data, epochs=1)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        ESKD(teacher_cnn(), student_cnn(), temperature=0.0)
    with pytest.raises(ValueError, match="not all be zero"):
        ESKD(teacher_cnn(), student_cnn(), ce_weight=0.0, kd_weight=0.0)
    with pytest.raises(ValueError, match="kd_epochs"):
        ESKD(teacher_cnn(), student_cnn(), kd_epochs=0)
    data = load_digits_split(seed=0).with_train_subset(16)
    with pytest.raises(ValueError, match="stop_epoch"):
        ESKD(teacher_cnn(), student_cnn()).run(data, epochs=1, teacher_epochs=2, stop_epoch=3)


def test_distilled_student_moves_toward_its_early_stopped_teacher():
    data = load_digits_split(seed=0)
    procedure = _eskd()
    baseline = copy.deepcopy(procedure.student)  # the same initial weights, labels alone
    schedule = {"teacher_epochs": 2, "teacher_lr": 0.1, "teacher_batch_size": 128}
    kwargs = {"epochs": 2, "seed": 0, "device": "cpu"}
    procedure.run(data, stop_epoch=1, **schedule, **kwargs)
    train(Supervised(baseline), data, evaluate=baseline, **kwargs)
    assert procedure.full_teacher is not None
    teacher = procedure.teacher  # the teacher after epoch 1, not the full one
    distilled_gap = kl_to_teacher(procedure.student, teacher, data.x_test)
    assert distilled_gap < 0.5 * kl_to_teacher(baseline, teacher, data.x_test)
