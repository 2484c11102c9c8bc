"""Averaged ensemble (Hinton et al., 2015): hand values, the equal-gradient property, training, errors."""

from __future__ import annotations

import math
from functools import lru_cache

import pytest
import torch

from reference_impls.algorithms.multi_teacher import AveragedEnsembleKD
from reference_impls.algorithms.multi_teacher.averaged_ensemble import averaged_ensemble_kd
from reference_impls.common import (
    accuracy,
    freeze,
    load_digits_split,
    softened_kl,
    student_cnn,
    teacher_cnn,
    train,
    train_supervised,
)
from reference_impls.common.testing import FixedLogits


@lru_cache(maxsize=2)
def _teacher_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    teacher = teacher_cnn()
    train_supervised(teacher, load_digits_split(seed=0), epochs=2, seed=seed, device="cpu")
    return teacher.state_dict()


def trained_teacher(seed: int) -> torch.nn.Module:
    teacher = teacher_cnn()
    teacher.load_state_dict(_teacher_state(seed))
    return freeze(teacher)


def test_hand_computed_value_against_the_mean_distribution():
    # teachers [3/4, 1/4] and [1/2, 1/2]: mean [5/8, 3/8]; student [1/2, 1/2]
    teachers = [torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0.0, 0.0]])]
    student = torch.zeros(1, 2)
    expected = 5 / 8 * math.log(5 / 4) + 3 / 8 * math.log(3 / 4)
    value = averaged_ensemble_kd(student, teachers, temperature=1.0)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    # the mean of the per-teacher losses: KL([3/4, 1/4] || [1/2, 1/2]) / 2 (the second is 0)
    losses = averaged_ensemble_kd(student, teachers, temperature=1.0, average="losses")
    kl_first = 3 / 4 * math.log(3 / 2) + 1 / 4 * math.log(1 / 2)
    assert losses.item() == pytest.approx(kl_first / 2, rel=1e-6)
    assert losses.item() >= value.item()  # the Jensen gap is non-negative


def test_mean_target_and_mean_of_losses_give_the_same_gradient():
    generator = torch.Generator().manual_seed(0)
    teachers = [3 * torch.randn(8, 10, generator=generator, dtype=torch.float64) for _ in range(3)]
    grads = {}
    for average in ("arithmetic", "losses"):
        student = torch.randn(
            8, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64
        )
        student.requires_grad_()
        averaged_ensemble_kd(student, teachers, 4.0, average=average).backward()
        grads[average] = student.grad
    torch.testing.assert_close(grads["arithmetic"], grads["losses"], rtol=1e-10, atol=1e-12)


def test_geometric_mean_is_kd_on_the_mean_logit_and_one_teacher_is_kd():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(6, 10, generator=generator)
    teachers = [torch.randn(6, 10, generator=generator) for _ in range(3)]
    geometric = averaged_ensemble_kd(student, teachers, 4.0, average="geometric")
    mean_logit = torch.stack(teachers).mean(0)
    torch.testing.assert_close(geometric, softened_kl(student, mean_logit, 4.0))
    single = averaged_ensemble_kd(student, teachers[:1], 4.0)
    torch.testing.assert_close(single, softened_kl(student, teachers[0], 4.0))
    # a weight of 0 drops a teacher; weights are normalised
    dropped = averaged_ensemble_kd(student, teachers[:2], 4.0, weights=[2.0, 0.0])
    torch.testing.assert_close(dropped, single)


def test_procedure_value_by_hand_with_fixed_teachers():
    student = FixedLogits([0.0, 0.0])
    teachers = [FixedLogits([math.log(3.0), 0.0]), FixedLogits([0.0, 0.0])]
    procedure = AveragedEnsembleKD(student, teachers, temperature=1.0, ce_weight=0.5)
    terms = procedure(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    kd = 5 / 8 * math.log(5 / 4) + 3 / 8 * math.log(3 / 4)
    assert terms["kd"].item() == pytest.approx(kd, rel=1e-6)
    assert terms["loss"].item() == pytest.approx(0.5 * math.log(2.0) + kd, rel=1e-6)
    assert all(not p.requires_grad for t in procedure.teachers for p in t.parameters())


def test_distilling_two_teachers_beats_the_same_seed_student_alone():
    data = load_digits_split(seed=0)
    labelled = data.with_train_subset(100)
    teachers = [trained_teacher(0), trained_teacher(1)]
    torch.manual_seed(0)
    distilled, alone = student_cnn(), student_cnn()
    alone.load_state_dict(distilled.state_dict())
    settings = {"epochs": 12, "batch_size": 25, "seed": 0, "device": "cpu"}
    train(AveragedEnsembleKD(distilled, teachers), labelled, **settings)
    train_supervised(alone, labelled, **settings)
    gained = accuracy(distilled, data.x_test, data.y_test) - accuracy(
        alone, data.x_test, data.y_test
    )
    assert gained > 0.01, f"the ensemble-distilled student gained only {gained:.3f}"


def test_bad_inputs_name_the_argument_and_the_shapes():
    student = torch.zeros(4, 10)
    with pytest.raises(
        ValueError, match=r"teacher_logits must be a list.*Tensor of shape \(4, 10\)"
    ):
        averaged_ensemble_kd(student, torch.zeros(4, 10))
    with pytest.raises(
        ValueError, match=r"teacher_logits\[1\] must have shape \(4, 10\).*\(4, 9\)"
    ):
        averaged_ensemble_kd(student, [torch.zeros(4, 10), torch.zeros(4, 9)])
    with pytest.raises(ValueError, match=r"teacher_logits\[0\].*got shape \(3, 10\)"):
        averaged_ensemble_kd(student, [torch.zeros(3, 10)])
    with pytest.raises(ValueError, match="weights must give one entry per teacher: got 3 for 2"):
        averaged_ensemble_kd(student, [student, student], weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="must not all be zero"):
        averaged_ensemble_kd(student, [student, student], weights=[0.0, 0.0])
    with pytest.raises(ValueError, match=r"weights\[1\] must be non-negative"):
        averaged_ensemble_kd(student, [student, student], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="average must be one of"):
        averaged_ensemble_kd(student, [student], average="median")
    with pytest.raises(TypeError, match=r"teachers must be a list of models.*\[teacher\]"):
        AveragedEnsembleKD(student_cnn(), teacher_cnn())
    with pytest.raises(ValueError, match="number of teachers must be at least 1, got 0"):
        AveragedEnsembleKD(student_cnn(), [])
    with pytest.raises(ValueError, match="weights must give one entry per teacher"):
        AveragedEnsembleKD(student_cnn(), [teacher_cnn()], weights=[0.5, 0.5])
