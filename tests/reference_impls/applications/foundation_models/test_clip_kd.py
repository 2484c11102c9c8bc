"""CLIP-KD: each term by hand, the un-exponentiated ICL scale, the projections, training, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.applications.foundation_models.clip_kd import CLIPKDLoss


def unit(rows: int, width: int, seed: int) -> torch.Tensor:
    return F.normalize(
        torch.randn(rows, width, generator=torch.Generator().manual_seed(seed)), dim=1
    )


def test_each_term_by_hand_on_two_pairs():
    loss = CLIPKDLoss(2, 2)
    student_image = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # unit after normalisation: e1, e2
    student_text = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # e2, e1
    teacher = torch.eye(2)
    terms = loss.terms(student_image, teacher, student_text, teacher, math.log(3.0), 1e-12)
    # FD: images equal the teacher's (0); texts swapped: squared error 4 over 4 entries -> 1
    assert terms["fd"].item() == pytest.approx(1.0)
    # ICL, kappa = ln(1/0.07) used as is: image i vs teacher texts -> right pair at kappa;
    # text i vs teacher images -> the right pair at 0, the wrong one at kappa
    kappa = math.log(1 / 0.07)
    right = -math.log(math.exp(kappa) / (math.exp(kappa) + 1))
    wrong = -math.log(1 / (1 + math.exp(kappa)))
    assert terms["icl"].item() == pytest.approx((right + wrong) / 2, rel=1e-6)
    # CKD: student affinities softmax([0, ln 3]) = [1/4, 3/4] per row, teacher uniform
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert terms["ckd"].item() == pytest.approx(kl, rel=1e-6)
    total = loss(student_image, teacher, student_text, teacher, math.log(3.0), 1e-12)
    torch.testing.assert_close(total, 2000 * terms["fd"] + terms["icl"] + terms["ckd"])


def test_icl_scale_is_a_learnt_multiplier_not_exponentiated():
    loss = CLIPKDLoss(4, 4)
    assert loss.icl_scale.item() == pytest.approx(math.log(1 / 0.07))
    args = (unit(8, 4, 0), unit(8, 4, 1), unit(8, 4, 2), unit(8, 4, 3), 10.0, 50.0)
    value = loss(*args)
    value.backward()
    assert loss.icl_scale.grad is not None and loss.icl_scale.grad.abs() > 0
    with torch.no_grad():
        loss.icl_scale.fill_(2.0)
    image_hat, teacher_text = F.normalize(args[0], dim=1), args[3]
    expected = F.cross_entropy(2.0 * image_hat @ teacher_text.T, torch.arange(8))
    expected = (expected + F.cross_entropy(2.0 * args[2] @ args[1].T, torch.arange(8))) / 2
    torch.testing.assert_close(loss.terms(*args)["icl"], expected)


def test_projections_only_when_the_widths_differ():
    assert {name for name, _ in CLIPKDLoss(8, 8).named_parameters()} == {"icl_scale"}
    loss = CLIPKDLoss(4, 8)
    assert loss.image_projection.weight.shape == (8, 4) and loss.text_projection.bias.shape == (8,)
    loss(unit(6, 4, 0), unit(6, 8, 1), unit(6, 4, 2), unit(6, 8, 3), 10.0, 50.0).backward()
    assert loss.image_projection.weight.grad.abs().sum() > 0
    assert loss.text_projection.weight.grad.abs().sum() > 0


def test_weights_select_the_terms():
    args = (unit(6, 4, 0), unit(6, 8, 1), unit(6, 4, 2), unit(6, 8, 3), 10.0, 50.0)
    torch.manual_seed(0)
    only_fd = CLIPKDLoss(4, 8, fd_weight=1.0, icl_weight=0.0, ckd_weight=0.0)
    torch.testing.assert_close(only_fd(*args), only_fd.terms(*args)["fd"])
    with pytest.raises(ValueError, match="must not all be zero"):
        CLIPKDLoss(4, 8, fd_weight=0.0, icl_weight=0.0, ckd_weight=0.0)


def test_zero_fd_and_ckd_when_the_student_is_the_teacher():
    image, text = unit(8, 4, 0), unit(8, 4, 1)
    terms = CLIPKDLoss(4, 4).terms(3 * image, image, 2 * text, text, 20.0, 20.0)
    assert terms["fd"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["ckd"].item() == pytest.approx(0.0, abs=1e-6)


def test_bad_inputs_name_the_argument():
    loss = CLIPKDLoss(4, 8)
    with pytest.raises(ValueError, match="student_image must have shape \\[B, 4\\]"):
        loss(unit(6, 5, 0), unit(6, 8, 1), unit(6, 5, 2), unit(6, 8, 3), 10.0, 50.0)
    with pytest.raises(ValueError, match="teacher_text must have shape \\[6, 8\\]"):
        loss(unit(6, 4, 0), unit(6, 8, 1), unit(6, 4, 2), unit(5, 8, 3), 10.0, 50.0)
    with pytest.raises(ValueError, match="student_logit_scale must be positive"):
        loss(unit(6, 4, 0), unit(6, 8, 1), unit(6, 4, 2), unit(6, 8, 3), 0.0, 50.0)
    with pytest.raises(ValueError, match="fd_weight must be non-negative"):
        CLIPKDLoss(4, 8, fd_weight=-1.0)


def test_a_clip_kd_student_shares_the_teachers_geometry_more_than_one_trained_alone():
    # FD at weight 2000 pulls the student's (projected) embeddings onto the teacher's: the
    # ranking of image pairs by cosine similarity becomes the teacher's
    from reference_impls.common.foundation import (
        DualEncoder,
        clip_contrastive_loss,
        clip_teacher,
        fit_dual_encoder,
        load_shape_captions,
        similarity_ranking,
    )

    data = load_shape_captions(seed=0, num_train=512, num_test=256)
    teacher, _, _ = clip_teacher(data, width=32, embed_dim=32, epochs=6)
    kd = CLIPKDLoss(16, 32)

    def alone(out, teacher_out, labels):
        return clip_contrastive_loss(out.image, out.text, out.logit_scale)

    def distilled(out, t, labels):
        task = clip_contrastive_loss(out.image, out.text, out.logit_scale)
        return task + kd(out.image, t.image, out.text, t.text, out.logit_scale, t.logit_scale)

    rho = {}
    for name, loss_fn, extra in (("alone", alone, []), ("distilled", distilled, kd.parameters())):
        torch.manual_seed(0)
        student = DualEncoder(8, 16)
        fit_dual_encoder(
            student, data, loss_fn, teacher=teacher, epochs=4, extra_parameters=list(extra)
        )
        with torch.no_grad():
            student_image = student(data.test_images, data.test_tokens).image
            teacher_image = teacher(data.test_images, data.test_tokens).image
        rho[name] = similarity_ranking(student_image, teacher_image)
    assert rho["distilled"] > rho["alone"] + 0.1, rho
