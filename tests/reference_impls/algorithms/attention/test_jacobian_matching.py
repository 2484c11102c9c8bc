"""Jacobian matching (Srinivas and Fleuret, 2018): hand values, the paper's equation, training.

No authors' code was released: the value and gradients are checked against the paper's
equation computed independently, per sample, with ``torch.autograd.functional.jacobian``.
The contract (construction, gradients, determinism, state_dict, CPU/CUDA, bf16) is in
tests/reference_impls/test_contracts.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from reference_impls.algorithms.attention.jacobian_matching import (
    JacobianMatching,
    input_gradients,
    jacobian_distance,
)
from reference_impls.common import softened_kl, student_cnn, teacher_cnn, train
from reference_impls.common.testing import digits_setup


def linear(weight: list[list[float]]) -> nn.Module:
    """logits = W x on 2-pixel inputs: the input-gradient of class i is the row W_i."""
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return nn.Sequential(nn.Flatten(), layer)


# teacher rows [1, 0] and [0, 1]; student rows [3, 4] -> [.6, .8] and [0, 2] -> [0, 1]
TEACHER, STUDENT = [[1.0, 0.0], [0.0, 1.0]], [[3.0, 4.0], [0.0, 2.0]]
X = torch.tensor([[[[2.0, 1.0]]], [[[-1.0, 3.0]]]])  # the teacher predicts 0, then 1


def jacobian_term(output: str, y: list[int], teacher=TEACHER) -> float:
    procedure = JacobianMatching(linear(STUDENT), linear(teacher), ce_weight=0.0, output=output)
    return procedure(X, torch.tensor(y))["jacobian"].item()


def test_hand_computed_value():
    # class 0: |[.6, .8] - [1, 0]|^2 = .16 + .64 = .8; class 1: |[0, 1] - [0, 1]|^2 = 0
    assert jacobian_term("target", [0, 1]) == pytest.approx((0.8 + 0.0) / 2)
    assert jacobian_term("target", [0, 0]) == pytest.approx(0.8)
    assert jacobian_term("all", [1, 1]) == pytest.approx(0.8)  # both classes, per sample
    # the teacher's predicted classes (0, then 1), whatever the labels
    assert jacobian_term("teacher", [1, 1]) == pytest.approx((0.8 + 0.0) / 2)


def test_equals_the_papers_equation_computed_per_sample():
    torch.manual_seed(0)
    student, teacher = student_cnn().double().eval(), teacher_cnn().double().eval()
    x, y = torch.randn(3, 1, 8, 8, dtype=torch.float64), torch.tensor([1, 4, 7])
    procedure = JacobianMatching(student, teacher, ce_weight=0.0).eval()
    ours = procedure(x, y)["loss"]
    expected = 0.0
    for b in range(3):
        rows = [
            torch.autograd.functional.jacobian(
                lambda v, m=model: m(v).logits[0], x[b : b + 1], create_graph=create
            )[int(y[b])].flatten()
            for model, create in ((student, True), (teacher, False))
        ]
        expected = expected + (rows[0] / rows[0].norm() - rows[1] / rows[1].norm()).pow(2).sum()
    expected = expected / 3
    torch.testing.assert_close(ours, expected)
    parameters = list(student.parameters())  # the classifier's bias moves no input-gradient
    got = torch.autograd.grad(ours, parameters, allow_unused=True)
    want = torch.autograd.grad(expected, parameters, allow_unused=True)
    for g, w, p in zip(got, want, parameters, strict=True):
        zero = torch.zeros_like(p)  # unused: no gradient, or a zero one (ce_weight 0 * CE)
        torch.testing.assert_close(zero if g is None else g, zero if w is None else w)


def test_scale_invariant_and_zero_for_a_copy_of_the_teacher():
    # the normalisation removes the scale of the student's gradients (the paper's motivation)
    assert jacobian_term("all", [0, 1], teacher=STUDENT) == pytest.approx(0.0, abs=1e-12)
    scaled = [[5 * w for w in row] for row in STUDENT]
    a = JacobianMatching(linear(STUDENT), linear(TEACHER), ce_weight=0.0, output="all")
    b = JacobianMatching(linear(scaled), linear(TEACHER), ce_weight=0.0, output="all")
    y = torch.tensor([0, 1])
    torch.testing.assert_close(a(X, y)["loss"], b(X, y)["loss"])


def test_activation_matching_adds_the_softened_kl():
    torch.manual_seed(0)
    student, teacher = student_cnn().eval(), teacher_cnn().eval()
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    terms = JacobianMatching(student, teacher, beta=2.0, kd_weight=0.5, temperature=3.0)(x, y)
    kd = softened_kl(student(x).logits, teacher(x).logits, 3.0)
    torch.testing.assert_close(terms["kd"], kd.detach())
    expected = terms["ce"] + 2.0 * terms["jacobian"] + 0.5 * terms["kd"]
    torch.testing.assert_close(terms["loss"].detach(), expected)


def test_runs_under_no_grad_and_leaves_the_teacher_alone():
    torch.manual_seed(0)
    student, teacher = student_cnn(), teacher_cnn()
    before = copy.deepcopy(teacher.state_dict())
    procedure = JacobianMatching(student, teacher)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    with torch.no_grad():  # input-gradients need autograd; the procedure turns it on
        terms = procedure(x, y)
    assert torch.isfinite(terms["loss"])
    procedure(x, y)["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    torch.testing.assert_close(teacher.state_dict(), before)  # eval mode: no BN statistics moved
    assert x.grad is None  # the caller's input is not made to require grad


def test_input_gradients_of_all_classes_stack_one_row_per_class():
    model = linear(STUDENT)
    x = X.clone().requires_grad_(True)
    grads = input_gradients(model(x), x, None, create_graph=False)
    torch.testing.assert_close(grads, torch.tensor(STUDENT).expand(2, 2, 2))


def _alignment(student, teacher, x, y) -> float:
    """Mean cosine between the student's and the teacher's input-gradients of the label."""
    student.eval()
    s_x, t_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    s = input_gradients(student(s_x).logits, s_x, y, create_graph=False)
    t = input_gradients(teacher(t_x).logits, t_x, y, create_graph=False)
    return torch.nn.functional.cosine_similarity(s, t, dim=-1).mean().item()


def test_training_aligns_the_students_input_gradients_with_the_teachers():
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    data, baseline_data = data.with_train_subset(400), baseline_data.with_train_subset(400)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(JacobianMatching(baseline, teacher, beta=0.0), baseline_data, **kwargs)  # CE alone
    train(JacobianMatching(student, teacher), data, **kwargs)
    x, y = data.x_test[:200], data.y_test[:200]
    distilled, alone = _alignment(student, teacher, x, y), _alignment(baseline, teacher, x, y)
    assert distilled > alone + 0.15


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": -1.0}, "beta"),
        ({"beta": 0.0, "ce_weight": 0.0}, "must not all be zero"),
        ({"output": "max"}, "output must be one of"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        JacobianMatching(student_cnn(), teacher_cnn(), **kwargs)


def test_rejects_bad_inputs():
    procedure = JacobianMatching(student_cnn(num_classes=5), teacher_cnn())
    with pytest.raises(ValueError, match=r"student logits have shape \(2, 5\)"):
        procedure(torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))
    procedure = JacobianMatching(student_cnn(), teacher_cnn())
    with pytest.raises(ValueError, match="floating-point input"):
        procedure(torch.zeros(2, 1, 8, 8, dtype=torch.long), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"target must be class indices of shape \(2,\)"):
        procedure(torch.randn(2, 1, 8, 8), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="one shape"):
        jacobian_distance(torch.randn(2, 1, 64), torch.randn(2, 10, 64))
