"""DAFL (Chen et al., 2019): the generator's three terms by hand, its gradients, a data-free run."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.algorithms.adversarial import DAFL, DigitsGenerator
from reference_impls.algorithms.adversarial.dafl import dafl_generator_terms
from reference_impls.common import (
    ModelOutput,
    accuracy,
    load_digits_split,
    student_cnn,
    teacher_cnn,
)
from reference_impls.common.testing import pretrained_digits_teacher


def test_generator_terms_by_hand():
    # two samples, three classes; teacher logits [ln 2, 0, 0] -> p = [1/2, 1/4, 1/4], and
    # [0, ln 2, 0] -> p = [1/4, 1/2, 1/4]; features [1, -3] and [2, 2]
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0], [0.0, math.log(2.0), 0.0]])
    features = torch.tensor([[1.0, -3.0], [2.0, 2.0]])
    terms = dafl_generator_terms(logits, features)
    assert terms["one_hot"].item() == pytest.approx(-math.log(0.5))  # CE to the argmax classes
    assert terms["activation"].item() == pytest.approx(-2.0)  # minus the mean |feature|
    mean = [3 / 8, 3 / 8, 1 / 4]  # the batch's mean prediction; entropy in base 10, negated
    assert terms["information_entropy"].item() == pytest.approx(
        sum(p * math.log10(p) for p in mean)
    )


def test_information_entropy_is_lowest_when_classes_are_balanced():
    # the paper's property: the term is minimal (-log10 C) for a uniform mean prediction
    balanced = dafl_generator_terms(torch.eye(4) * 5, torch.ones(4, 2))["information_entropy"]
    one_class = dafl_generator_terms(torch.eye(4)[[0, 0, 0, 0]] * 5, torch.ones(4, 2))
    assert balanced.item() == pytest.approx(-math.log10(4))
    assert one_class["information_entropy"] > balanced


def test_one_backward_trains_generator_and_student_and_never_the_teacher():
    torch.manual_seed(0)
    procedure = DAFL(teacher_cnn(), student_cnn(), DigitsGenerator(latent_dim=16, width=8))
    terms = procedure.train()(procedure.sample_latent(8))
    terms["loss"].backward()
    assert all(p.grad is not None for p in procedure.generator.parameters())
    assert all(p.grad is not None for p in procedure.student.parameters())
    assert all(p.grad is None for p in procedure.teacher.parameters())
    expected = (
        0.5 * terms["one_hot"] + 0.1 * terms["activation"] + 20 * terms["information_entropy"]
    )
    torch.testing.assert_close(terms["generator"], expected)
    torch.testing.assert_close(terms["loss"].detach(), terms["generator"] + terms["kd"])


def test_the_student_learns_from_generated_images_only():
    teacher = pretrained_digits_teacher()
    data = load_digits_split()
    torch.manual_seed(0)
    student, baseline = student_cnn(), student_cnn()
    baseline.load_state_dict(student.state_dict())
    procedure = DAFL(teacher, student, DigitsGenerator(latent_dim=100), lr_milestones=())
    history = procedure.fit(None, epochs=1, iterations=40, batch_size=32, device="cpu")
    assert history.losses and not history.test_accuracy  # no data: nothing measured
    distilled = accuracy(student, data.x_test, data.y_test)
    assert distilled > accuracy(baseline, data.x_test, data.y_test) + 0.15
    assert distilled > 0.3  # ten classes: chance is 0.1


def test_student_learning_rate_steps_at_the_milestones():
    procedure = DAFL(teacher_cnn(), student_cnn(), DigitsGenerator(latent_dim=16, width=8))
    optimizers = procedure.configure_optimizers()
    rates = []
    for epoch in range(10):
        procedure.on_epoch_start(epoch, 10)
        rates.append(optimizers[0].param_groups[0]["lr"])
    assert (
        rates[:4] == [0.1] * 4
        and rates[4] == pytest.approx(0.01)
        and rates[8] == pytest.approx(1e-3)
    )
    assert optimizers[1].param_groups[0]["lr"] == 0.02  # the generator keeps its rate


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"one_hot_weight": -1.0}, "one_hot_weight"),
        ({"lr_student": 0.0}, "lr_student"),
        ({"student_optimizer": "rmsprop"}, "student_optimizer"),
        ({"lr_milestones": (1.5,)}, "lr_milestones"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DAFL(teacher_cnn(), student_cnn(), DigitsGenerator(latent_dim=16, width=8), **kwargs)


def test_rejects_bad_inputs():
    procedure = DAFL(teacher_cnn(), student_cnn(), DigitsGenerator(latent_dim=16, width=8))
    with pytest.raises(ValueError, match=r"z must be latent codes of shape \[B, 16\].*\(8, 15\)"):
        procedure(torch.randn(8, 15))
    with pytest.raises(ValueError, match="B >= 2"):
        procedure(torch.randn(1, 16))
    with pytest.raises(ValueError, match="phase must be one of"):
        procedure(torch.randn(4, 16), "student")
    with pytest.raises(ValueError, match="latent_dim"):
        DAFL(teacher_cnn(), student_cnn(), torch.nn.Linear(4, 64))
    with pytest.raises(ValueError, match="multiple of 4"):
        DigitsGenerator(image_size=6)


def test_the_teacher_must_give_features():
    class LogitsOnly(torch.nn.Module):
        def forward(self, x):
            return ModelOutput(torch.zeros(len(x), 10, requires_grad=True))

    procedure = DAFL(LogitsOnly(), student_cnn(), DigitsGenerator(latent_dim=16, width=8))
    with pytest.raises(ValueError, match="embedding"):
        procedure(torch.randn(4, 16))
