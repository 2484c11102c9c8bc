"""MobileSAM's decoupled distillation: the MSE by hand, no projection, and a student encoder that serves
the teacher's mask decoder."""

from __future__ import annotations

import pytest
import torch

from reference_impls.applications.foundation_models.mobilesam import DecoupledEncoderLoss


def test_hand_value():
    student = torch.zeros(1, 2, 1, 2)
    teacher = torch.tensor([[[[1.0, 2.0]], [[0.0, -1.0]]]])
    assert DecoupledEncoderLoss()(student, teacher).item() == pytest.approx((1 + 4 + 0 + 1) / 4)
    assert DecoupledEncoderLoss(weight=3.0)(student, teacher).item() == pytest.approx(4.5)


def test_a_list_of_stages_reads_the_last_one():
    generator = torch.Generator().manual_seed(0)
    student = [torch.randn(2, 3, 4, 4, generator=generator) for _ in range(2)]
    teacher = [
        torch.randn(2, 5, 8, 8, generator=generator),
        torch.randn(2, 3, 4, 4, generator=generator),
    ]
    torch.testing.assert_close(
        DecoupledEncoderLoss()(student, teacher), DecoupledEncoderLoss()(student[-1], teacher[-1])
    )


def test_the_teacher_gets_no_gradient_and_half_precision_is_computed_in_float32():
    teacher = torch.randn(2, 4, 3, 3, requires_grad=True)
    student = torch.randn(2, 4, 3, 3, requires_grad=True)
    DecoupledEncoderLoss()(student, teacher).backward()
    assert teacher.grad is None and student.grad is not None
    assert DecoupledEncoderLoss()(student.half(), teacher.half()).dtype == torch.float32


def test_shapes_must_match_no_projection_is_learnt():
    loss = DecoupledEncoderLoss()
    assert not list(loss.parameters())
    with pytest.raises(
        ValueError, match="student_embedding and teacher_embedding must have the same shape"
    ):
        loss(torch.zeros(2, 8, 4, 4), torch.zeros(2, 16, 4, 4))
    with pytest.raises(ValueError, match="weight must be non-negative"):
        DecoupledEncoderLoss(weight=-1.0)


def test_a_decoupled_student_encoder_serves_the_teachers_decoder():
    # the paper's claim at toy scale: trained on embeddings alone (no mask), the small
    # encoder in front of the teacher's frozen decoder segments far better than before
    from reference_impls.common.foundation import (
        MaskEncoder,
        MaskModel,
        load_shape_captions,
        mask_iou,
        mask_teacher,
    )

    data = load_shape_captions(seed=0, num_train=512, num_test=256)
    teacher, _, _ = mask_teacher(data, width=32, depth=3, epochs=6)  # trained once, cached
    teacher_iou = mask_iou(teacher, data.test_images, data.test_masks)

    torch.manual_seed(1)
    student_encoder = MaskEncoder(16, 2)  # half the width, two convs instead of three
    before = mask_iou(
        MaskModel(student_encoder, teacher.decoder), data.test_images, data.test_masks
    )
    with torch.no_grad():
        targets = teacher.encoder(data.train_images)
    optimiser = torch.optim.Adam(student_encoder.parameters(), lr=3e-3)
    loss = DecoupledEncoderLoss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        for batch in torch.randperm(512, generator=generator).split(64):
            value = loss(student_encoder(data.train_images[batch]), targets[batch])
            optimiser.zero_grad()
            value.backward()
            optimiser.step()
    after = mask_iou(MaskModel(student_encoder, teacher.decoder), data.test_images, data.test_masks)
    assert teacher_iou > 0.6, teacher_iou
    assert after > before + 0.2 and after > 0.5 * teacher_iou, (before, after, teacher_iou)
