"""ARD (Goldblum et al., 2020): the loss by hand, the attack on the student, robustness gained."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.algorithms.adversarial import ARD
from reference_impls.common import student_cnn, teacher_cnn
from reference_impls.common.attacks import DIGITS_PIXELS
from reference_impls.common.testing import FixedLogits, digits_setup

from .conftest import pixel_batch


def test_hand_computed_value():
    # 3 classes, tau = 1; teacher [ln 2, 0, 0] -> p = [1/2, 1/4, 1/4]; student
    # [0, 0, ln 2] -> q = [1/4, 1/4, 1/2]: KL(p || q) = ln2/2 - ln2/4 = ln2/4; CE(q, 0) = ln 4.
    # A model that ignores its input cannot be attacked: the loss is the formula's.
    student = FixedLogits([0.0, 0.0, math.log(2.0)])
    teacher = FixedLogits([math.log(2.0), 0.0, 0.0])
    ard = ARD(student, teacher, temperature=1.0, alpha=0.5, kl_scale=0.1)
    terms = ard(torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    assert terms["kl"].item() == pytest.approx(0.1 * math.log(2) / 4, rel=1e-6)
    assert terms["ce"].item() == pytest.approx(math.log(4), rel=1e-6)
    expected = 0.5 * 0.1 * math.log(2) / 4 + 0.5 * math.log(4)
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-6)


def test_without_attack_it_is_kd_at_temperature_plus_cross_entropy():
    # epsilon 0: the "adversarial" batch is the clean one, and ARD is KD (tau^2 KL, times the
    # authors' 1/10) mixed with the cross-entropy by alpha
    x, y = pixel_batch()
    torch.manual_seed(0)
    student, teacher = student_cnn(), teacher_cnn().eval()
    ard = ARD(student, teacher, temperature=4.0, alpha=0.7, epsilon=0.0, scale=DIGITS_PIXELS)
    loss = ard.eval()(x, y)["loss"]
    with torch.no_grad():
        s, t = student(x).logits, teacher(x).logits
        kl = F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="batchmean")
        expected = 0.7 * 16 * 0.1 * kl + 0.3 * F.cross_entropy(s, y)
    torch.testing.assert_close(loss.detach(), expected)


def test_defaults_are_the_authors():
    ard = ARD(student_cnn(), teacher_cnn())
    assert (ard.temperature, ard.alpha, ard.kl_scale) == (30.0, 1.0, 0.1)
    assert (ard.epsilon, ard.step_size, ard.steps) == (8 / 255, 2 / 255, 10)


def test_the_attack_raises_the_students_cross_entropy_within_the_ball():
    data, teacher, student = digits_setup(seed=0)
    x, y = data.x_test[:64], data.y_test[:64]
    ard = ARD(student, teacher, epsilon=0.1, step_size=0.025, scale=DIGITS_PIXELS).eval()
    torch.manual_seed(0)
    attacked = ard.perturb(x, y)
    assert (attacked - x).abs().max().item() <= DIGITS_PIXELS.distance(0.1) + 1e-6
    with torch.no_grad():
        clean_ce = F.cross_entropy(student(x).logits, y)
        attacked_ce = F.cross_entropy(student(attacked).logits, y)
    assert attacked_ce > clean_ce


def test_the_student_is_attacked_in_its_training_mode_as_in_the_authors_code():
    # 10 attack passes, one on the final perturbed batch, one clean: 12 batch-norm updates
    x, y = pixel_batch()
    student = student_cnn()
    ard = ARD(student, teacher_cnn(), scale=DIGITS_PIXELS).train()
    ard(x, y)
    assert student.stem[1].num_batches_tracked.item() == 12
    assert student.training and not ard.teacher.training


def test_works_under_cpu_autocast_and_returns_float32():
    x, y = pixel_batch(8)
    ard = ARD(student_cnn(), teacher_cnn(), steps=2, scale=DIGITS_PIXELS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = ard(x, y)
    assert terms["loss"].dtype == torch.float32 and torch.isfinite(terms["loss"])


def test_robust_student_beats_the_same_seed_cross_entropy_student_under_pgd(
    pgd_accuracy_against_cross_entropy,
):
    robust, plain = pgd_accuracy_against_cross_entropy(
        lambda student, teacher, attack: ARD(student, teacher, kl_scale=1.0, steps=5, **attack)
    )
    assert robust > plain + 0.05


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"kl_scale": 0.0}, "kl_scale"),
        ({"epsilon": -0.1}, "epsilon"),
        ({"step_size": -0.1}, "step_size"),
        ({"steps": -1}, "steps"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ARD(student_cnn(), teacher_cnn(), **kwargs)


def test_rejects_bad_batches_and_mismatched_classes():
    x, y = pixel_batch(8)
    ard = ARD(student_cnn(), teacher_cnn(), steps=1)
    with pytest.raises(ValueError, match=r"target must be class indices of shape \(8,\)"):
        ard(x, y[:5])
    with pytest.raises(ValueError, match="integer class indices"):
        ard(x, y.float())
    with pytest.raises(ValueError, match="floating-point batch"):
        ard(x.long(), y)
    other = ARD(student_cnn(num_classes=10), teacher_cnn(num_classes=7), steps=1)
    with pytest.raises(ValueError, match="10 classes but teacher_logits has 7"):
        other(x, y % 7)
