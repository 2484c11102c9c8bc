"""The shared argument checks: accepted values pass through, refused ones name the argument."""

from __future__ import annotations

import math

import pytest

from reference_impls.common.validation import (
    at_least,
    enough_feature_maps,
    in_unit_interval,
    loss_weights,
    non_negative,
    one_of,
    positive,
    same_stage_count,
    stage_index,
    stage_indices,
)


def test_accepted_values_are_returned():
    assert positive("temperature", 4.0) == 4.0
    assert non_negative("beta", 0.0) == 0.0
    assert in_unit_interval("alpha", 1.0) == 1.0
    assert at_least("branches", 3, 2) == 3
    assert one_of("mode", "kd", ("kd", "dkd")) == "kd"
    assert loss_weights(ce_weight=0.0, kd_weight=1.0) == {"ce_weight": 0.0, "kd_weight": 1.0}
    assert stage_indices("stages", (0, 2), 3) == [0, 2]
    assert stage_indices("stages", (-1,)) == [-1]  # the count is known only in forward
    assert stage_index("stages", -3, 3, negative_ok=True) == -3
    assert same_stage_count([8, 16], [32, 64]) is None
    assert enough_feature_maps("stages", (0, 2), [1, 2, 3], [1, 2, 3]) is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: positive("temperature", 0.0), "temperature must be positive, got 0.0"),
        (lambda: positive("temperature", math.nan), "temperature must be positive, got nan"),
        (lambda: non_negative("beta", -1), "beta must be non-negative, got -1"),
        (lambda: in_unit_interval("alpha", 1.5), r"alpha must lie in \[0, 1\], got 1.5"),
        (lambda: at_least("num_branches", 1, 2), "num_branches must be at least 2, got 1"),
        (lambda: one_of("mode", "x", ("kd", "dkd")), "mode must be one of"),
        (lambda: loss_weights(a=0.0, b=0.0), "a and b must not all be zero"),
        (lambda: loss_weights(a=-1.0, b=1.0), "a must be non-negative"),
        (lambda: stage_indices("stages", (), 3), "stages must name at least one stage"),
        (lambda: stage_indices("stages", (3,), 3), "stage 3 out of range for 3 stages"),
        (lambda: stage_index("stage", -1, 3), "stage -1 out of range for 3 stages"),
        (lambda: stage_index("stage", -4, 3, negative_ok=True), "stage -4 out of range"),
        (lambda: same_stage_count([8], [16, 32]), "got 1 student stages but 2 teacher stages"),
        (
            lambda: enough_feature_maps("stages", (0, 2), [1, 2, 3], [1, 2]),
            r"stages \(0, 2\): student and teacher need 3 feature maps each, got 3 \(student\)",
        ),
    ],
)
def test_refused_values_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_shared_mask_check_names_the_argument_shape_and_empty_rows():
    import torch

    from reference_impls.common.validation import frame_mask, sequence_mask

    mask = torch.tensor([[True, True, False], [True, False, False]])
    sequence_mask("mask", mask, (2, 3))
    sequence_mask("mask", mask, ("B", 3))  # a string leaves that axis free
    with pytest.raises(ValueError, match=r"mask must be a boolean mask of shape \[B, 4\]"):
        sequence_mask("mask", mask, ("B", 4))
    with pytest.raises(ValueError, match=r"got shape \(2, 3\) and dtype torch.int64"):
        sequence_mask("mask", mask.long(), (2, 3))
    empty = mask.clone()
    empty[1] = False
    with pytest.raises(ValueError, match=r"in every sequence; sequences \[1\] are empty"):
        sequence_mask("mask", empty, (2, 3))
    with pytest.raises(ValueError, match=r"mask is empty \(shape \(0, 3\)\)"):
        sequence_mask("mask", mask[:0], (0, 3))
    # the video wording: its own shape and dtype errors, the shared check's empty rows
    frame_mask("mask", mask, frames=3)
    with pytest.raises(ValueError, match=r"mask must have shape \[B, 4\]"):
        frame_mask("mask", mask, frames=4)
    with pytest.raises(ValueError, match="mask must be boolean"):
        frame_mask("mask", mask.float())
    with pytest.raises(ValueError, match=r"real frame in every clip; clips \[1\] are empty"):
        frame_mask("mask", empty, 2, 3)
