"""SKD: hand values of the pixel-wise and pair-wise terms, their properties, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.applications.visual_recognition.skd import (
    SKDLoss,
    pair_wise_loss,
    pixel_wise_loss,
    pooled_similarity,
)


def test_the_pixel_wise_term_by_hand_is_summed_over_the_batch_over_w_times_h():
    # two images of 1 x 2 pixels, two classes; teacher (1/2, 1/2) everywhere, student
    # log-probabilities log(1/2) too: the cross-entropy is ln 2 per pixel
    logits = torch.zeros(2, 2, 1, 2)
    expected = 4 * math.log(2.0) / 2  # 4 pixels in the batch, / (W H) = 2
    assert pixel_wise_loss(logits, logits).item() == pytest.approx(expected, rel=1e-6)


def test_the_pair_wise_similarities_are_cosines_between_pooled_locations():
    features = torch.zeros(1, 2, 2, 2)
    features[0, 0, 0, 0] = 1.0  # location (0,0) points along channel 0
    features[0, 1, 1, 1] = 2.0  # location (1,1) along channel 1
    features[0, :, 0, 1] = torch.tensor([3.0, 3.0])  # (0,1) halfway
    similarity = pooled_similarity(features, pool_scale=0.5)  # window 1: no pooling
    assert similarity.shape == (1, 4, 4)
    assert similarity[0, 0, 0].item() == pytest.approx(1.0)
    assert similarity[0, 0, 3].item() == pytest.approx(0.0)
    assert similarity[0, 0, 1].item() == pytest.approx(1 / math.sqrt(2), rel=1e-6)


def test_the_pair_wise_term_ignores_channel_width_and_scale_of_features():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.rand(2, 16, 8, 8, generator=generator)
    student = torch.rand(2, 4, 8, 8, generator=generator)
    assert pair_wise_loss(student, teacher, 0.5).item() > 0
    scaled = pair_wise_loss(student * 7.0, teacher, 0.5)
    torch.testing.assert_close(scaled, pair_wise_loss(student, teacher, 0.5))
    assert pair_wise_loss(teacher, teacher, 0.5).item() == pytest.approx(0.0, abs=1e-7)


def test_the_total_weights_the_terms_ten_and_one():
    generator = torch.Generator().manual_seed(1)
    s_logits, t_logits = torch.randn(2, 3, 8, 8, generator=generator), torch.randn(2, 3, 8, 8)
    s_map, t_map = torch.rand(2, 4, 8, 8), torch.rand(2, 6, 8, 8)
    total = SKDLoss()(s_logits, t_logits, [s_map], [t_map])
    expected = 10 * pixel_wise_loss(s_logits, t_logits) + pair_wise_loss(s_map, t_map, 0.5)
    torch.testing.assert_close(total, expected)


def test_only_the_student_gets_gradients():
    s_logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    t_logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    s_map, t_map = (
        torch.rand(1, 2, 4, 4, requires_grad=True),
        torch.rand(1, 5, 4, 4, requires_grad=True),
    )
    SKDLoss()(s_logits, t_logits, [s_map], [t_map]).backward()
    assert s_logits.grad is not None and s_map.grad is not None
    assert t_logits.grad is None and t_map.grad is None


def test_bad_inputs_are_named():
    logits = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="must have one shape"):
        SKDLoss()(
            logits, torch.zeros(1, 3, 4, 5), [torch.zeros(1, 2, 4, 4)], [torch.zeros(1, 2, 4, 4)]
        )
    with pytest.raises(ValueError, match="one batch and size"):
        SKDLoss()(logits, logits, [torch.zeros(1, 2, 4, 4)], [torch.zeros(1, 2, 2, 2)])
    with pytest.raises(ValueError, match="stage"):
        SKDLoss(stage=3)(logits, logits, [torch.zeros(1, 2, 4, 4)], [torch.zeros(1, 2, 4, 4)])
    with pytest.raises(ValueError, match="pool_scale"):
        SKDLoss(pool_scale=0.0)
