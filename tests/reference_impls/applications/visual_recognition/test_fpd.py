"""FPD: hand value of the mixed heatmap loss, target weights, alpha's ends, bad inputs."""

from __future__ import annotations

import pytest
import torch

from reference_impls.applications.visual_recognition.fpd import FPDLoss, joints_mse


def test_a_value_by_hand():
    student = torch.zeros(1, 2, 1, 2)
    teacher = torch.ones(1, 2, 1, 2)  # squared error 1 everywhere
    truth = torch.full((1, 2, 1, 2), 2.0)  # squared error 4 everywhere
    # 0.5 * (1 - 0.5) * 4 + 0.5 * 0.5 * 1
    assert FPDLoss()(student, teacher, truth).item() == pytest.approx(1.25)


def test_alpha_zero_and_one_are_the_ground_truth_and_the_teacher_alone():
    generator = torch.Generator().manual_seed(0)
    student, teacher, truth = (torch.rand(2, 3, 4, 4, generator=generator) for _ in range(3))
    torch.testing.assert_close(
        FPDLoss(alpha=0.0)(student, teacher, truth), joints_mse(student, truth)
    )
    torch.testing.assert_close(
        FPDLoss(alpha=1.0)(student, teacher, truth), joints_mse(student, teacher)
    )


def test_a_keypoint_with_target_weight_zero_does_not_count():
    generator = torch.Generator().manual_seed(1)
    student, teacher, truth = (torch.rand(2, 3, 4, 4, generator=generator) for _ in range(3))
    weight = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    loss = FPDLoss()
    changed = student.clone()
    changed[0, 1] += 5.0  # an invisible keypoint's prediction
    changed[1, 2] -= 5.0
    torch.testing.assert_close(
        loss(changed, teacher, truth, target_weight=weight),
        loss(student, teacher, truth, target_weight=weight),
    )


def test_bad_inputs_are_named():
    maps = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match="target_heatmaps"):
        FPDLoss()(maps, maps, torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="target_weight"):
        FPDLoss()(maps, maps, maps, target_weight=torch.ones(1, 3))
    with pytest.raises(ValueError, match="alpha"):
        FPDLoss(alpha=1.5)
