"""UHC (Vongkulbhisal et al., 2019): hand value, renormalised targets, label-set checks, training."""

from __future__ import annotations

import math
from functools import lru_cache

import pytest
import torch
from torch import nn

from reference_impls.algorithms.multi_teacher import UHC
from reference_impls.algorithms.multi_teacher.uhc import uhc_loss
from reference_impls.common import (
    DataSplit,
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

LOW, HIGH = list(range(5)), list(range(5, 10))


def only_classes(data: DataSplit, classes: list[int]) -> DataSplit:
    """The images of ``classes``, relabelled 0..len(classes)-1 (what a specialist teacher sees)."""
    relabel = torch.full((data.num_classes,), -1, dtype=torch.long)
    relabel[classes] = torch.arange(len(classes))
    train_mask, test_mask = relabel[data.y_train] >= 0, relabel[data.y_test] >= 0
    return DataSplit(
        data.x_train[train_mask],
        relabel[data.y_train[train_mask]],
        data.x_test[test_mask],
        relabel[data.y_test[test_mask]],
        len(classes),
    )


@lru_cache(maxsize=2)
def _specialist_state(low: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    teacher = teacher_cnn(num_classes=5)
    data = only_classes(load_digits_split(seed=0), LOW if low else HIGH)
    train_supervised(teacher, data, epochs=3, seed=0, device="cpu")
    return teacher.state_dict()


def specialist(low: bool) -> nn.Module:
    teacher = teacher_cnn(num_classes=5)
    teacher.load_state_dict(_specialist_state(low))
    return freeze(teacher)


def test_hand_computed_value_with_overlapping_label_sets():
    # teacher A knows {0, 1}: [3/4, 1/4]; teacher B knows {1, 2}: [1/2, 1/2]; student uniform
    teachers = [torch.tensor([[math.log(3.0), 0.0]]), torch.zeros(1, 2)]
    value = uhc_loss(torch.zeros(1, 3), teachers, [[0, 1], [1, 2]])
    expected = 3 / 4 * math.log(3 / 2) + 1 / 4 * math.log(1 / 2)  # B is matched already
    assert value.item() == pytest.approx(expected, rel=1e-6)
    # the renormalised restriction: a student [0.5, 0.3, 0.2] restricted to {1, 2} is [0.6, 0.4]
    student = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    teacher = torch.log(torch.tensor([[0.6, 0.4]]))
    assert uhc_loss(student, [teacher], [[1, 2]]).item() == pytest.approx(0.0, abs=1e-6)


def test_one_teacher_over_all_classes_is_kd_and_disjoint_sets_ignore_the_split_between_them():
    generator = torch.Generator().manual_seed(0)
    student, teacher = (
        torch.randn(6, 10, generator=generator),
        torch.randn(6, 10, generator=generator),
    )
    torch.testing.assert_close(
        uhc_loss(student, [teacher], [list(range(10))], 4.0), softened_kl(student, teacher, 4.0)
    )
    teachers = [torch.randn(6, 5, generator=generator) for _ in range(2)]
    shifted = student.clone()
    shifted[:, HIGH] += 3.0  # move probability mass from 0-4 to 5-9
    disjoint = [uhc_loss(s, teachers, [LOW, HIGH]) for s in (student, shifted)]
    torch.testing.assert_close(disjoint[0], disjoint[1])
    overlapping = [uhc_loss(s, teachers, [LOW, [4, 5, 6, 7, 8]]) for s in (student, shifted)]
    assert abs(overlapping[0] - overlapping[1]) > 1e-3  # a shared class ties the sets together


def test_procedure_by_hand_and_label_sets_are_buffers():
    teachers = [FixedLogits([math.log(3.0), 0.0]), FixedLogits([0.0, 0.0])]
    procedure = UHC(FixedLogits([0.0, 0.0, 0.0]), teachers, [[0, 1], [1, 2]], num_classes=3)
    terms = procedure(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    expected = 3 / 4 * math.log(3 / 2) + 1 / 4 * math.log(1 / 2)
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert "ce" not in terms  # the paper's setting: unlabelled data
    state = procedure.state_dict()
    assert state["label_set_1"].tolist() == [1, 2]
    assert procedure.double().label_set_0.dtype == torch.long  # indices stay indices
    with_labels = UHC(FixedLogits([0.0, 0.0, 0.0]), teachers, [[0, 1], [1, 2]], 3, ce_weight=1.0)
    terms = with_labels(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    assert terms["loss"].item() == pytest.approx(expected + math.log(3.0), rel=1e-6)


def test_two_specialists_teach_a_student_all_ten_digits_beyond_the_same_seed_baseline():
    data = load_digits_split(seed=0)
    labelled = data.with_train_subset(100)
    teachers = [specialist(low=True), specialist(low=False)]
    torch.manual_seed(0)
    distilled, alone = student_cnn(), student_cnn()
    alone.load_state_dict(distilled.state_dict())
    settings = {"epochs": 12, "batch_size": 25, "seed": 0, "device": "cpu"}
    # disjoint label sets: the labels tell which half a digit is in, the teachers the rest
    train(UHC(distilled, teachers, [LOW, HIGH], 10, ce_weight=1.0), labelled, **settings)
    train_supervised(alone, labelled, **settings)
    gained = accuracy(distilled, data.x_test, data.y_test) - accuracy(
        alone, data.x_test, data.y_test
    )
    assert gained > 0.01, f"the UHC student gained only {gained:.3f}"


def test_bad_inputs_name_the_argument_and_the_shapes(batch):
    teachers = [teacher_cnn(num_classes=5), teacher_cnn(num_classes=5)]
    with pytest.raises(ValueError, match=r"do not cover the student's 10 classes: classes \[9\]"):
        UHC(student_cnn(), teachers, [LOW, [5, 6, 7, 8]], num_classes=10)
    with pytest.raises(
        ValueError, match=r"label_sets\[1\] holds classes \[10\] outside range\(10\)"
    ):
        UHC(student_cnn(), teachers, [LOW, [6, 7, 8, 9, 10]], num_classes=10)
    with pytest.raises(ValueError, match=r"label_sets\[0\] repeats a class"):
        UHC(student_cnn(), teachers, [[0, 0, 1, 2, 3], HIGH], num_classes=10)
    with pytest.raises(ValueError, match="label_sets must give one entry per teacher: got 1 for 2"):
        UHC(student_cnn(), teachers, [list(range(10))], num_classes=10)
    with pytest.raises(ValueError, match=r"label_sets\[1\] is empty"):
        UHC(student_cnn(), teachers, [list(range(10)), []], num_classes=10)
    wrong_student = UHC(student_cnn(num_classes=8), teachers, [LOW, HIGH], num_classes=10)
    with pytest.raises(ValueError, match=r"student_logits must have shape \[B, 10\].*\(8, 8\)"):
        wrong_student(*batch)
    wrong_teacher = UHC(student_cnn(), [teacher_cnn(num_classes=5), teacher_cnn()], [LOW, HIGH], 10)
    with pytest.raises(
        ValueError, match=r"teacher_logits\[1\] must have shape \(8, 5\).*\(8, 10\)"
    ):
        wrong_teacher(*batch)
    with pytest.raises(
        ValueError, match="teacher_logits must give one entry per teacher: got 1 for 2"
    ):
        uhc_loss(torch.zeros(2, 10), [torch.zeros(2, 5)], [LOW, HIGH])
