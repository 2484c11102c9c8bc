"""Video-to-image distillation (V2I-DETR, Jiang et al., 2024): hand values, the mask, padding, training.

The contract every implementation meets is checked by tests/reference_impls/test_contracts.py;
this file holds only what is specific to VideoToImageDistillation.
"""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common.training import train
from reference_impls.common.video import (
    gather_frames,
    image_student,
    load_moving_digits,
    pack_clips,
    video_teacher,
)
from reference_impls.modalities.video.video_to_image import (
    VideoToImageDistillation,
    energy_centroid,
    gaussian_foreground,
    target_guided_feature_loss,
)


@pytest.fixture(scope="module")
def data():
    return load_moving_digits(seed=0, num_train=48, num_test=24)


def test_hand_computed_value():
    # centre (1, 1), sigma 1 on a 3x3 map: 1 at the centre, e^{-1/2} beside it, e^{-1} at corners
    mask = gaussian_foreground(torch.tensor([[1.0, 1.0]]), (3, 3), 1.0)[0]
    assert mask[1, 1].item() == pytest.approx(1.0)
    assert mask[0, 1].item() == pytest.approx(math.exp(-0.5))
    assert mask[2, 2].item() == pytest.approx(math.exp(-1.0))
    # one channel, a 1x2 map: errors (1 - 0)^2 = 1 and (0 - 0)^2 = 0; weights 1 and 0 -> 1;
    # weights 1 and 1 -> 1/2; weights 1 and 3 -> 1/4
    student, teacher = torch.tensor([[[[1.0, 0.0]]]]), torch.zeros(1, 1, 1, 2)
    for weights, value in (([1.0, 0.0], 1.0), ([1.0, 1.0], 0.5), ([1.0, 3.0], 0.25)):
        loss = target_guided_feature_loss(student, teacher, torch.tensor([[weights]]))
        assert loss.item() == pytest.approx(value)
    # the energy centroid of a map lit at one cell is that cell
    lit = torch.zeros(1, 2, 4, 4)
    lit[0, 1, 2, 3] = 5.0
    assert energy_centroid(lit).tolist() == [[2.0, 3.0]]


def test_property_a_wide_gaussian_is_plain_feature_distillation():
    # as sigma grows the soft mask flattens: TFD tends to the unweighted mean over cells
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 3, 4, 4, generator=generator), torch.randn(2, 3, 4, 4)
    centres = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    wide = target_guided_feature_loss(student, teacher, gaussian_foreground(centres, (4, 4), 1e4))
    plain = (student - teacher).pow(2).sum(1).mean()
    torch.testing.assert_close(wide, plain, rtol=1e-5, atol=1e-6)
    narrow = target_guided_feature_loss(
        student, teacher, gaussian_foreground(centres, (4, 4), 0.05)
    )
    at_centres = torch.stack([(student - teacher)[0, :, 1, 2], (student - teacher)[1, :, 3, 0]])
    torch.testing.assert_close(narrow, at_centres.pow(2).sum(1).mean(), rtol=1e-4, atol=1e-6)


def test_the_teacher_is_read_at_the_students_key_frame_and_padding_is_ignored(data):
    torch.manual_seed(0)
    procedure = VideoToImageDistillation(image_student(), video_teacher(), foreground="uniform")
    procedure.eval()
    packed = pack_clips(data.clips_train[:8], data.mask_train[:8])
    terms = procedure(packed, data.y_train[:8])
    student, teacher = procedure.student(packed), procedure.teacher(packed)
    key_map = gather_frames(teacher.frame_maps, student.frame_index)[:, 0]
    expected = (procedure.adapter(student.frame_maps[:, 0]) - key_map).pow(2).sum(1).mean()
    torch.testing.assert_close(terms["feature"], expected.detach())
    noisy = packed.clone()
    noisy[:, :, :-1][~data.mask_train[:8]] = 9.0
    torch.testing.assert_close(procedure(noisy, data.y_train[:8])["loss"], terms["loss"])


def test_training_moves_student_toward_teacher(data):
    # the distilled image student's key-frame map comes closer to the teacher's fused map than
    # that of the same-seed image student trained on labels alone
    split = data.split()
    torch.manual_seed(1)
    teacher = video_teacher().eval()
    distances = {}
    for weights in ((1.0, 1.0), (0.0, 0.0)):
        torch.manual_seed(0)
        student = image_student()
        procedure = VideoToImageDistillation(
            student, teacher, feature_weight=weights[0], query_weight=weights[1]
        )
        train(procedure, split, epochs=4, lr=0.05, batch_size=16, seed=0, device="cpu")
        procedure.eval()
        with torch.no_grad():
            out = student(split.x_test)
            key_map = gather_frames(teacher(split.x_test).frame_maps, out.frame_index)[:, 0]
            error = procedure.adapter(out.frame_maps[:, 0]) - key_map
            distances[weights] = error.pow(2).sum(1).mean().item()
    assert distances[(1.0, 1.0)] < 0.5 * distances[(0.0, 0.0)]


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match=r"centres must have shape \[B, 2\]"):
        gaussian_foreground(torch.zeros(2, 3), (4, 4), 1.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        gaussian_foreground(torch.zeros(2, 2), (4, 4), 0.0)
    maps = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"foreground must have shape \[2, 4, 4\]"):
        target_guided_feature_loss(maps, maps, torch.ones(2, 16))
    with pytest.raises(ValueError, match=r"student_map .adapted. and teacher_map"):
        target_guided_feature_loss(maps, torch.zeros(2, 5, 4, 4), torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="foreground must be one of"):
        VideoToImageDistillation(image_student(), video_teacher(), foreground="box")
    with pytest.raises(ValueError, match="student_channels is required"):
        VideoToImageDistillation(torch.nn.Linear(2, 2), video_teacher())
