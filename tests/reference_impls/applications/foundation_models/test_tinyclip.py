"""TinyCLIP affinity mimicking: a hand value, its minimum at the teacher, scales, training, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.applications.foundation_models.tinyclip import AffinityMimickingLoss


def unit(rows: int, width: int, seed: int) -> torch.Tensor:
    return F.normalize(
        torch.randn(rows, width, generator=torch.Generator().manual_seed(seed)), dim=1
    )


def test_hand_value_on_two_pairs():
    # student: image/text embeddings orthogonal across pairs, scale ln 3 -> affinities
    # softmax([ln 3, 0]) = [3/4, 1/4]; teacher at scale 0+: uniform [1/2, 1/2]
    eye = torch.eye(2)
    loss = AffinityMimickingLoss()(eye, eye, eye, eye, math.log(3.0), 1e-12)
    soft_ce = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))  # per row, both directions equal
    assert loss.item() == pytest.approx(soft_ce, rel=1e-6)


def test_gradient_vanishes_when_the_student_reproduces_the_teacher():
    image, text = unit(16, 8, 0), unit(16, 8, 1)
    student_image, student_text = image.clone().requires_grad_(), text.clone().requires_grad_()
    scale = torch.tensor(20.0, requires_grad=True)
    loss = AffinityMimickingLoss()(student_image, image, student_text, text, scale, 20.0)
    grads = torch.autograd.grad(loss, (student_image, student_text, scale))
    for grad in grads:
        assert grad.abs().max() < 1e-6
    # the value there is the teacher's entropy (soft cross-entropy, not KL)
    logits = 20.0 * image @ text.T
    entropy = lambda z: -(z.softmax(-1) * z.log_softmax(-1)).sum(-1).mean()  # noqa: E731
    assert loss.item() == pytest.approx(
        0.5 * (entropy(logits) + entropy(logits.T)).item(), rel=1e-5
    )


def test_widths_of_student_and_teacher_may_differ_and_directions_average():
    loss = AffinityMimickingLoss(weight=2.0)
    args = (unit(10, 4, 0), unit(10, 12, 1), unit(10, 4, 2), unit(10, 12, 3), 10.0, 50.0)
    image_to_text, text_to_image = loss.directions(*args)
    torch.testing.assert_close(loss(*args), image_to_text + text_to_image)
    assert not torch.allclose(image_to_text, text_to_image)


def test_the_teacher_gets_no_gradient():
    teacher_image = unit(6, 4, 0).requires_grad_()
    teacher_scale = torch.tensor(30.0, requires_grad=True)
    AffinityMimickingLoss()(
        unit(6, 4, 1).requires_grad_(), teacher_image, unit(6, 4, 2), unit(6, 4, 3), 10.0,
        teacher_scale,
    ).backward()  # fmt: skip
    assert teacher_image.grad is None and teacher_scale.grad is None


def test_bad_inputs_name_the_argument():
    loss = AffinityMimickingLoss()
    good = [unit(6, 4, 0), unit(6, 8, 1), unit(6, 4, 2), unit(6, 8, 3), 10.0, 50.0]
    with pytest.raises(ValueError, match="student_text must have shape \\[6, 4\\]"):
        loss(*[good[0], good[1], unit(5, 4, 2), *good[3:]])
    with pytest.raises(ValueError, match="pair the same 6 samples"):
        loss(*[good[0], unit(4, 8, 1), good[2], unit(4, 8, 3), *good[4:]])
    with pytest.raises(ValueError, match="teacher_logit_scale must be positive"):
        loss(*good[:5], -1.0)
    with pytest.raises(ValueError, match="student_logit_scale must be a scalar"):
        loss(*good[:4], torch.ones(2), 50.0)
    with pytest.raises(ValueError, match="weight must be non-negative"):
        AffinityMimickingLoss(weight=-1.0)


def affinity_gap(student, teacher, data) -> float:
    """KL of the teacher's image-to-text affinities to the student's, on 256 test pairs."""
    with torch.no_grad():
        s = student(data.test_images[:256], data.test_tokens[:256])
        t = teacher(data.test_images[:256], data.test_tokens[:256])
        s_logits, t_logits = s.logit_scale * s.image @ s.text.T, t.logit_scale * t.image @ t.text.T
        return float(F.kl_div(s_logits.log_softmax(1), t_logits.log_softmax(1), log_target=True,
                              reduction="batchmean"))  # fmt: skip


def test_a_mimicking_student_moves_toward_the_teacher_more_than_one_trained_alone():
    from reference_impls.common.foundation import (
        DualEncoder,
        clip_contrastive_loss,
        clip_teacher,
        fit_dual_encoder,
        load_shape_captions,
    )

    data = load_shape_captions(seed=0, num_train=512, num_test=256)
    teacher, _, _ = clip_teacher(data, width=32, embed_dim=32, epochs=6)
    mimic = AffinityMimickingLoss()

    def alone(out, teacher_out, labels):
        return clip_contrastive_loss(out.image, out.text, out.logit_scale)

    def distilled(out, t, labels):
        return mimic(out.image, t.image, out.text, t.text, out.logit_scale, t.logit_scale)

    students = {}
    for name, loss_fn in (("alone", alone), ("distilled", distilled)):
        torch.manual_seed(0)
        students[name] = DualEncoder(8, 16)
        fit_dual_encoder(students[name], data, loss_fn, teacher=teacher, epochs=8)
    gaps = {name: affinity_gap(student, teacher, data) for name, student in students.items()}
    assert gaps["distilled"] < 0.8 * gaps["alone"], gaps
