"""The input check the CLIP losses share: pairs, widths, rows, logit scales."""

from __future__ import annotations

import pytest
import torch

from reference_impls.applications.foundation_models._clip_inputs import clip_inputs


def test_checked_inputs_give_the_rows_and_the_scales_as_tensors():
    image, text = torch.randn(5, 4), torch.randn(5, 4)
    teacher_image, teacher_text = torch.randn(5, 8), torch.randn(5, 8)
    rows, student_scale, teacher_scale = clip_inputs(
        image, teacher_image, text, teacher_text, 10.0, torch.tensor([100.0]), 4, 8
    )
    assert rows == 5
    assert student_scale.shape == teacher_scale.shape == ()
    assert float(student_scale) == 10.0 and float(teacher_scale) == 100.0
    # without widths, any width: student and teacher may differ
    assert clip_inputs(image, teacher_image, text, teacher_text, 1.0, 1.0)[0] == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"student_text": torch.randn(5, 3)}, r"student_text must have shape \[5, 4\]"),
        ({"teacher_image": torch.randn(5, 6)}, r"teacher_image must have shape \[B, 8\]"),
        ({"teacher_image": torch.randn(4, 8), "teacher_text": torch.randn(4, 8)}, "same 5"),
        ({"student_logit_scale": 0.0}, "student_logit_scale must be positive"),
        ({"teacher_logit_scale": torch.ones(2)}, "teacher_logit_scale must be a scalar"),
    ],
)
def test_bad_inputs_name_the_argument(change, message):
    inputs = {
        "student_image": torch.randn(5, 4),
        "teacher_image": torch.randn(5, 8),
        "student_text": torch.randn(5, 4),
        "teacher_text": torch.randn(5, 8),
        "student_logit_scale": 1.0,
        "teacher_logit_scale": 1.0,
    } | change
    with pytest.raises(ValueError, match=message):
        clip_inputs(**inputs, student_dim=4, teacher_dim=8)
