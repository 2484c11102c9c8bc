"""RSLAD (Zi et al., 2021): soft labels in every term, the attack on them, robustness gained."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.algorithms.adversarial import RSLAD
from reference_impls.common import student_cnn, teacher_cnn
from reference_impls.common.attacks import DIGITS_PIXELS
from reference_impls.common.testing import FixedLogits, digits_setup

from .conftest import pixel_batch


def test_hand_computed_value():
    # teacher p = [1/2, 1/4, 1/4], student q = [1/4, 1/4, 1/2]: KL(p || q) = ln2/4 on the
    # natural and (unattackable model) on the perturbed batch: loss = 1/10 (5/6 + 1/6) ln2/4
    student = FixedLogits([0.0, 0.0, math.log(2.0)])
    teacher = FixedLogits([math.log(2.0), 0.0, 0.0])
    terms = RSLAD(student, teacher)(torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    kl = 0.1 * math.log(2) / 4
    assert terms["kl_adversarial"].item() == pytest.approx(kl, rel=1e-6)
    assert terms["kl_natural"].item() == pytest.approx(kl, rel=1e-6)
    assert terms["loss"].item() == pytest.approx(kl, rel=1e-6)


def test_without_attack_it_is_the_weighted_kl_to_the_soft_labels():
    x, y = pixel_batch()
    torch.manual_seed(0)
    student, teacher = student_cnn(), teacher_cnn().eval()
    rslad = RSLAD(
        student, teacher, adversarial_weight=2.0, natural_weight=1.0, epsilon=0.0,
        scale=DIGITS_PIXELS,
    )  # fmt: skip
    loss = rslad.eval()(x, y)["loss"]
    with torch.no_grad():
        s, t = student(x).logits, teacher(x).logits
        kl = F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="batchmean")
    torch.testing.assert_close(loss.detach(), 3.0 * 0.1 * kl)


def test_defaults_are_the_authors():
    rslad = RSLAD(student_cnn(), teacher_cnn())
    assert (rslad.adversarial_weight, rslad.natural_weight) == (5 / 6, 1 / 6)
    assert (rslad.kl_scale, rslad.start_std) == (0.1, 0.001)
    assert (rslad.epsilon, rslad.step_size, rslad.steps) == (8 / 255, 2 / 255, 10)


def test_the_attack_pushes_the_student_away_from_the_soft_labels_within_the_ball():
    data, teacher, student = digits_setup(seed=0)
    x = data.x_test[:64]
    rslad = RSLAD(student, teacher, epsilon=0.1, step_size=0.025, scale=DIGITS_PIXELS)
    with torch.no_grad():
        soft_labels = teacher(x).logits
    torch.manual_seed(0)
    attacked = rslad.perturb(x, soft_labels)
    assert (attacked - x).abs().max().item() <= DIGITS_PIXELS.distance(0.1) + 1e-6

    def kl(inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            log_q = F.log_softmax(student.eval()(inputs).logits, 1)
        return F.kl_div(log_q, F.softmax(soft_labels, 1), reduction="batchmean")

    assert kl(attacked) > kl(x) + 0.01


def test_the_labels_are_not_used():
    x, y = pixel_batch()
    torch.manual_seed(0)
    rslad = RSLAD(student_cnn(), teacher_cnn(), steps=2, scale=DIGITS_PIXELS).eval()
    values = []
    for labels in (y, (y + 3) % 10):
        torch.manual_seed(1)
        values.append(rslad(x, labels)["loss"].detach())
    assert torch.equal(values[0], values[1])


def test_the_student_is_attacked_in_eval_mode_and_put_back():
    # as rslad_inner_loss: no batch-norm update during the attack; then the perturbed and
    # the clean pass in training mode
    x, y = pixel_batch()
    student = student_cnn()
    rslad = RSLAD(student, teacher_cnn(), scale=DIGITS_PIXELS).train()
    rslad(x, y)
    assert student.stem[1].num_batches_tracked.item() == 2
    assert student.training and not rslad.teacher.training


def test_works_under_cpu_autocast_and_returns_float32():
    x, y = pixel_batch(8)
    rslad = RSLAD(student_cnn(), teacher_cnn(), steps=2, scale=DIGITS_PIXELS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = rslad(x, y)
    assert terms["loss"].dtype == torch.float32 and torch.isfinite(terms["loss"])


def test_robust_student_beats_the_same_seed_cross_entropy_student_under_pgd(
    pgd_accuracy_against_cross_entropy,
):
    robust, plain = pgd_accuracy_against_cross_entropy(
        lambda student, teacher, attack: RSLAD(student, teacher, kl_scale=1.0, steps=5, **attack)
    )
    assert robust > plain + 0.05


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"adversarial_weight": -1.0}, "adversarial_weight"),
        ({"adversarial_weight": 0.0, "natural_weight": 0.0}, "must not all be zero"),
        ({"kl_scale": 0.0}, "kl_scale"),
        ({"epsilon": -0.1}, "epsilon"),
        ({"steps": -1}, "steps"),
        ({"start_std": -0.001}, "start_std"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RSLAD(student_cnn(), teacher_cnn(), **kwargs)


def test_rejects_bad_batches_and_mismatched_classes():
    x, y = pixel_batch(8)
    rslad = RSLAD(student_cnn(), teacher_cnn(), steps=1)
    with pytest.raises(ValueError, match=r"target must be class indices of shape \(8,\)"):
        rslad(x, y[:, None])
    with pytest.raises(ValueError, match="floating-point batch"):
        rslad(x[0, 0, 0], y)
    other = RSLAD(student_cnn(num_classes=10), teacher_cnn(num_classes=7), steps=1)
    with pytest.raises(ValueError, match="10 classes but teacher_logits has 7"):
        other(x, y)
