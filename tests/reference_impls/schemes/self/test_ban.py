"""Born-Again Networks (Furlanello et al., 2018): contract, paper properties, a hand value, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common import kl_to_teacher, load_digits_split, student_cnn, train
from reference_impls.common.testing import check_procedure_contract
from reference_impls.common.training import Supervised, freeze
from reference_impls.schemes.self.ban import BornAgain, born_again_kd_loss


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 8, 8, generator=generator), torch.randint(
        0, 10, (8,), generator=generator
    )


def _with_teacher(**kwargs) -> BornAgain:
    torch.manual_seed(0)
    procedure = BornAgain(student_cnn, **kwargs)
    procedure.next_generation()  # the untrained first student becomes a (frozen) teacher
    return procedure


def test_contract_generation_zero_is_plain_cross_entropy(batch):
    torch.manual_seed(0)
    procedure = BornAgain(student_cnn)
    terms = check_procedure_contract(procedure, *batch)
    assert set(terms) == {"loss", "ce"}
    torch.testing.assert_close(terms["loss"].detach(), terms["ce"])


def test_contract_with_a_teacher(batch):
    procedure = _with_teacher(ce_weight=1.0)
    terms = check_procedure_contract(procedure, *batch, frozen=[procedure.teacher])
    torch.testing.assert_close(terms["loss"].detach(), terms["ce"] + terms["kd"])


def test_teacher_is_a_frozen_copy_and_the_student_is_fresh(batch):
    procedure = _with_teacher()
    teacher, student = procedure.teacher, procedure.student
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    assert not torch.equal(teacher.fc.weight, student.fc.weight)
    procedure.train()
    assert not teacher.training and student.training


def test_kd_gradient_is_student_minus_teacher_probabilities():
    # paper §3.2: at tau = 1 the KD gradient on logit i is (p_i - q_i) / B
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(4, 6, generator=generator, requires_grad=True)
    teacher = torch.randn(4, 6, generator=generator)
    born_again_kd_loss(student, teacher, temperature=1.0).backward()
    expected = (F.softmax(student.detach(), dim=1) - F.softmax(teacher, dim=1)) / 4
    torch.testing.assert_close(student.grad, expected)


def test_zero_when_student_equals_teacher():
    logits = torch.randn(5, 10)
    assert born_again_kd_loss(logits.clone(), logits, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_hand_computed_value():
    # tau = 1, teacher logits [1, 0], student logits [0, 0]: KL(q || 0.5, 0.5)
    q = math.exp(1) / (math.exp(1) + 1)
    kl = q * math.log(q / 0.5) + (1 - q) * math.log((1 - q) / 0.5)
    value = born_again_kd_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), 1.0)
    assert value.item() == pytest.approx(kl, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"ce_weight": 0.0, "kd_weight": 0.0}, "not all be zero"),
        ({"kd_weight": -1.0}, "non-negative"),
    ],
)
def test_rejects_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BornAgain(student_cnn, **kwargs)


def test_rejects_bad_run_and_ensemble_arguments():
    procedure = BornAgain(student_cnn)
    with pytest.raises(RuntimeError, match="run"):
        procedure.ensemble_probabilities(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="generations"):
        procedure.run(None, generations=-1)  # refused before any data is read


def test_born_again_student_moves_toward_its_teacher_and_the_ensemble_averages():
    data = load_digits_split(seed=0)
    procedure = BornAgain(student_cnn)
    histories = procedure.run(data, generations=1, epochs=3, seed=0, device="cpu")
    assert len(histories) == 2 and len(procedure.generations) == 2
    assert all(history.final_accuracy > 0.9 for history in histories)
    first, second = procedure.generations
    # baseline: the same initialisation and shuffling as generation 1, labels only
    torch.manual_seed(1)
    baseline = student_cnn()
    train(Supervised(baseline), data, epochs=3, seed=1, device="cpu", evaluate=baseline)
    born_again_gap = kl_to_teacher(second, first, data.x_test)
    assert born_again_gap < 0.85 * kl_to_teacher(freeze(baseline), first, data.x_test)
    ensemble = procedure.ensemble_probabilities(data.x_test)
    torch.testing.assert_close(ensemble.sum(dim=1), torch.ones(len(data.x_test)))
    single = procedure.ensemble_probabilities(data.x_test, members=[1])
    torch.testing.assert_close(single, F.softmax(second(data.x_test).logits, dim=1))
    halfway = (single + procedure.ensemble_probabilities(data.x_test, members=[0])) / 2
    torch.testing.assert_close(ensemble, halfway)
