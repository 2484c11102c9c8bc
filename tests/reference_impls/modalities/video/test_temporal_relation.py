"""Frame hints plus temporal relations: hand values, SP's invariance, padding, training.

The contract every implementation meets is checked by tests/reference_impls/test_contracts.py;
this file holds only what is specific to TemporalRelationDistillation.
"""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common.training import train
from reference_impls.common.video import (
    few_frame_student,
    gather_frames,
    load_moving_digits,
    video_teacher,
)
from reference_impls.modalities.video.temporal_relation import (
    TemporalRelationDistillation,
    frame_hint_loss,
    temporal_relation_loss,
    temporal_similarity,
)


def test_hand_computed_value():
    # student frames e1, e2: Gram = I, rows already unit; teacher frames e1, e1: Gram = all
    # ones, rows normalised to 1/sqrt 2. ||G_s - G_t||_F^2 = 2 (1 - 1/sqrt 2)^2 + 2 (1/2),
    # divided by n^2 = 4: (2 - sqrt 2) / 2 = 1 - 1/sqrt 2
    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    teacher = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    value = temporal_relation_loss(student, teacher, mask)
    assert value.item() == pytest.approx(1 - 1 / math.sqrt(2))
    # the hint: (1 - 1)^2 + (0 - 0)^2 = 0 and (0 - 1)^2 + (1 - 0)^2 = 2, mean over 2 frames
    assert frame_hint_loss(student, teacher, mask).item() == pytest.approx(1.0)


def test_property_relation_is_scale_invariant_and_zero_for_proportional_frames():
    # SP's row normalisation: scaling a clip's frames changes nothing, so frames proportional
    # to the teacher's have its relations exactly (while the hint still sees the scale)
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(3, 5, 8, generator=generator)
    mask = torch.ones(3, 5, dtype=torch.bool)
    assert temporal_relation_loss(3.0 * teacher, teacher, mask).item() == pytest.approx(0, abs=1e-6)
    student = torch.randn(3, 5, 8, generator=generator)
    torch.testing.assert_close(
        temporal_relation_loss(student, teacher, mask),
        temporal_relation_loss(0.5 * student, teacher, mask),
    )
    assert frame_hint_loss(3.0 * teacher, teacher, mask).item() > 0


def test_padded_frames_never_contribute():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 6, 4, generator=generator)
    teacher = torch.randn(2, 6, 4, generator=generator)
    mask = torch.arange(6)[None] < torch.tensor([[6], [3]])
    changed_s, changed_t = student.clone(), teacher.clone()
    changed_s[~mask] = 100.0
    changed_t[~mask] = -7.0
    for loss in (temporal_relation_loss, frame_hint_loss):
        torch.testing.assert_close(loss(student, teacher, mask), loss(changed_s, changed_t, mask))
    # and the short clip's relation equals that of its real frames alone
    alone = temporal_relation_loss(student[1:, :3], teacher[1:, :3], mask[1:, :3])
    full = temporal_similarity(student, mask)
    assert full[1, 3:].abs().sum() == 0 and full[1, :, 3:].abs().sum() == 0
    per_clip = [
        temporal_relation_loss(student[:1], teacher[:1], mask[:1]),
        alone,
    ]
    torch.testing.assert_close(
        temporal_relation_loss(student, teacher, mask), torch.stack(per_clip).mean()
    )


def test_the_procedure_compares_the_teacher_at_the_students_frames():
    data = load_moving_digits(seed=0, num_train=16, num_test=8)
    split = data.split()
    torch.manual_seed(0)
    procedure = TemporalRelationDistillation(few_frame_student(), video_teacher()).eval()
    x, y = split.x_train[:8], split.y_train[:8]
    terms = procedure(x, y)
    student, teacher = procedure.student(x), procedure.teacher(x)
    picked = gather_frames(teacher.frame_embeddings, student.frame_index)
    expected = temporal_relation_loss(student.frame_embeddings, picked, student.mask)
    torch.testing.assert_close(terms["relation"], expected.detach())
    total = terms["ce"] + terms["frame"] + 100 * terms["relation"]
    torch.testing.assert_close(terms["loss"].detach(), total)


def test_training_moves_student_toward_teacher():
    # after a few epochs the distilled student's temporal similarity matrices are closer to the
    # (fixed, untrained) teacher's than those of the same-seed student trained on labels alone
    data = load_moving_digits(seed=0, num_train=48, num_test=24)
    split = data.split()
    torch.manual_seed(1)
    teacher = video_teacher().eval()
    distances = {}
    for weights in ((1.0, 100.0), (0.0, 0.0)):
        torch.manual_seed(0)
        student = few_frame_student()
        procedure = TemporalRelationDistillation(
            student, teacher, frame_weight=weights[0], relation_weight=weights[1]
        )
        train(procedure, split, epochs=4, lr=0.05, batch_size=16, seed=0, device="cpu")
        with torch.no_grad():
            out = student.eval()(split.x_test)
            picked = gather_frames(teacher(split.x_test).frame_embeddings, out.frame_index)
            distances[weights] = temporal_relation_loss(
                out.frame_embeddings, picked, out.mask
            ).item()
    assert distances[(1.0, 100.0)] < 0.9 * distances[(0.0, 0.0)]


def test_bad_input_names_the_argument():
    frames = torch.zeros(2, 4, 3)
    mask = torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"mask must have shape \[2, 4\]"):
        temporal_relation_loss(frames, frames, mask[:, :3])
    with pytest.raises(ValueError, match="mask must be boolean"):
        frame_hint_loss(frames, frames, mask.int())
    with pytest.raises(ValueError, match=r"student_frames must have shape \[B, K, D\]"):
        temporal_relation_loss(frames[0], frames, mask)
    empty = mask.clone()
    empty[0] = False
    with pytest.raises(ValueError, match=r"clips \[0\] are empty"):
        frame_hint_loss(frames, frames, empty)
    with pytest.raises(ValueError, match=r"student_frames .mapped. and teacher_frames"):
        frame_hint_loss(frames, torch.zeros(2, 4, 5), mask)
    with pytest.raises(ValueError, match="must not all be zero"):
        TemporalRelationDistillation(few_frame_student(), video_teacher(), 0.0, 0.0, 0.0)
