"""DFAD (Fang et al., 2019): the two players' phases, the L1 by hand, a data-free run."""

from __future__ import annotations

import pytest
import torch

from reference_impls.algorithms.adversarial import DFAD, DigitsGenerator
from reference_impls.algorithms.adversarial.dfad import logit_l1
from reference_impls.common import accuracy, load_digits_split, student_cnn, teacher_cnn
from reference_impls.common.testing import pretrained_digits_teacher


def small() -> DFAD:
    torch.manual_seed(0)
    return DFAD(teacher_cnn(), student_cnn(), DigitsGenerator(latent_dim=16, width=8)).train()


def test_logit_l1_by_hand():
    student = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    teacher = torch.tensor([[0.0, 4.0], [1.0, -1.0]])
    assert logit_l1(student, teacher).item() == pytest.approx((1 + 2 + 1 + 1) / 4)


def test_each_phase_trains_only_its_player():
    procedure = small()
    terms = procedure(procedure.sample_latent(8), "student")
    terms["loss"].backward()
    assert all(p.grad is None for p in procedure.generator.parameters())
    assert all(p.grad is not None for p in procedure.student.parameters())
    procedure.zero_grad(set_to_none=True)
    terms = procedure(procedure.sample_latent(8), "generator")
    terms["loss"].backward()
    assert all(p.grad is None for p in procedure.student.parameters())
    assert all(p.grad is not None for p in procedure.generator.parameters())
    assert all(p.requires_grad for p in procedure.student.parameters())  # restored
    assert terms["loss"].item() == pytest.approx(-terms["generator_l1"].item())  # maximised
    assert all(p.grad is None for p in procedure.teacher.parameters())


def test_both_phases_in_one_call_give_each_player_its_own_gradient():
    procedure = small()
    z = procedure.sample_latent(8)
    state = {k: v.clone() for k, v in procedure.state_dict().items()}
    procedure(z, "both")["loss"].backward()
    together = {n: p.grad.clone() for n, p in procedure.named_parameters() if p.grad is not None}
    procedure.zero_grad(set_to_none=True)
    procedure.load_state_dict(state)
    procedure(z, "student")["loss"].backward()
    procedure.load_state_dict(state)  # the batch-norm statistics of the first call
    procedure(z, "generator")["loss"].backward()
    apart = {n: p.grad for n, p in procedure.named_parameters() if p.grad is not None}
    assert together.keys() == apart.keys()
    for name, grad in together.items():
        torch.testing.assert_close(grad, apart[name], msg=name)


def test_schedule_is_five_student_steps_then_one_generator_step():
    assert small().schedule == ("student",) * 5 + ("generator",)
    dfad = DFAD(teacher_cnn(), student_cnn(), DigitsGenerator(16, 8), student_steps=2)
    assert dfad.schedule == ("student", "student", "generator")


def test_the_student_learns_from_generated_images_only():
    teacher = pretrained_digits_teacher()
    data = load_digits_split()
    torch.manual_seed(0)
    student, baseline = student_cnn(), student_cnn()
    baseline.load_state_dict(student.state_dict())
    procedure = DFAD(teacher, student, DigitsGenerator(latent_dim=100), lr_milestones=())
    history = procedure.fit(data, epochs=2, iterations=4, batch_size=32, device="cpu")
    assert len(history.test_accuracy) == 2 and set(history.losses[0]) == {
        "student_l1",
        "generator_l1",
    }
    distilled = accuracy(student, data.x_test, data.y_test)
    assert distilled > accuracy(baseline, data.x_test, data.y_test) + 0.15


def test_learning_rates_step_at_the_milestones():
    procedure = small()
    student, generator = procedure.configure_optimizers()
    procedure.on_epoch_start(50, 500)
    assert student.param_groups[0]["lr"] == 0.1 and generator.param_groups[0]["lr"] == 1e-3
    procedure.on_epoch_start(100, 500)
    assert student.param_groups[0]["lr"] == pytest.approx(0.01)
    assert generator.param_groups[0]["lr"] == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"student_steps": 0}, "student_steps"),
        ({"lr_generator": -1.0}, "lr_generator"),
        ({"weight_decay": -1.0}, "weight_decay"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DFAD(teacher_cnn(), student_cnn(), DigitsGenerator(16, 8), **kwargs)


def test_rejects_bad_inputs():
    procedure = small()
    with pytest.raises(ValueError, match=r"phase must be one of"):
        procedure(procedure.sample_latent(4), "teacher")
    with pytest.raises(ValueError, match=r"\[B, 16\].*\(4, 16, 1\)"):
        procedure(torch.randn(4, 16, 1))
    with pytest.raises(ValueError, match="batch_size"):
        procedure.fit(None, batch_size=1)
    with pytest.raises(ValueError, match="one shape"):
        logit_l1(torch.zeros(4, 10), torch.zeros(3, 10))
