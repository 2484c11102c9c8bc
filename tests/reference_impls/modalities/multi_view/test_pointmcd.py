"""PointMCD (Zhang et al., 2023): a hand value, visibility, the smoothed loss, training, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common.point_clouds import MultiViewCNN, load_point_clouds, student_pointnet
from reference_impls.common.training import set_seed, train, train_supervised
from reference_impls.modalities.multi_view.pointmcd import (
    PointMCD,
    PointMCDLoss,
    smoothed_cross_entropy,
    visible_max_pool,
)

EPS = 1e-5  # batch norm's epsilon: in eval mode with unit variance it scales by 1/sqrt(1 + eps)


def test_hand_computed_value():
    # view 0 sees points 0 and 1, view 1 point 2; the alignment is the identity (eval mode)
    loss = PointMCDLoss([2], 2).eval()
    with torch.no_grad():
        loss.alignment[0].weight.copy_(torch.eye(2))
    features = torch.tensor([[[1.0, 3.0, 5.0], [4.0, 2.0, 0.0]]])  # [1, C=2, N=3]
    visibility = torch.tensor([[[True, False], [True, False], [False, True]]])  # [1, N, V]
    teacher = torch.tensor([[[3.0, 4.0], [4.0, 0.0]]])
    # pooled views: max([1, 4], [3, 2]) = [3, 4] and [5, 0]; scaled by batch norm
    scale = 1 / (1 + EPS) ** 0.5
    expected = (abs(3 * scale - 3) + abs(4 * scale - 4) + abs(5 * scale - 4) + 0) / 4
    assert loss([features], teacher, visibility).item() == pytest.approx(expected, rel=1e-6)


def test_visible_max_pool_masks_then_takes_the_maximum():
    features = torch.tensor([[[1.0, 3.0, 5.0]]])  # [1, 1, 3]
    visibility = torch.tensor([[[1, 0], [1, 0], [0, 0]]])
    torch.testing.assert_close(
        visible_max_pool(features, visibility), torch.tensor([[[3.0], [0.0]]])
    )


def test_points_seen_by_no_view_never_contribute():
    torch.manual_seed(0)
    features = torch.randn(2, 8, 30).relu()
    visibility = torch.rand(2, 30, 6) < 0.5
    visibility[:, :4] = False  # four points hidden from every camera
    teacher = torch.randn(2, 6, 16).relu()
    loss = PointMCDLoss([8], 16)
    value = loss([features], teacher, visibility)
    features[:, :, :4] = 100.0
    torch.testing.assert_close(loss([features], teacher, visibility), value)


def test_smoothing_spreads_epsilon_over_the_wrong_classes_only():
    # the code's smoothing is torch's label smoothing eps * C / (C - 1): 1 - eps on the class
    torch.manual_seed(1)
    logits, target = torch.randn(5, 6), torch.randint(0, 6, (5,))
    ours = smoothed_cross_entropy(logits, target, 0.2)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target, label_smoothing=0.2 * 6 / 5))
    soft = torch.full((5, 6), 0.2 / 5).scatter(1, target[:, None], 0.8)
    torch.testing.assert_close(ours, -(soft * logits.log_softmax(1)).sum(1).mean())


def test_the_teacher_gets_no_gradient_and_the_alignment_does():
    features = torch.randn(2, 8, 30, requires_grad=True)
    teacher = torch.randn(2, 6, 16, requires_grad=True)
    loss = PointMCDLoss([8], 16)
    loss([features.relu()], teacher, torch.rand(2, 30, 6) < 0.5).backward()
    assert teacher.grad is None
    assert features.grad.abs().sum() > 0
    assert loss.alignment[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("teacher", "visibility", "match"),
    [
        (torch.randn(2, 6, 16), torch.ones(2, 29, 6), r"visibility must have shape \[B, N, V\]"),
        (torch.randn(2, 6, 8), torch.ones(2, 30, 6), "teacher_view_descriptors must have shape"),
        (torch.randn(2, 5, 16), torch.ones(2, 30, 6), "teacher_view_descriptors must have shape"),
        (torch.randn(2, 6, 16), torch.ones(2, 30), r"visibility must have shape"),
    ],
)
def test_rejects_mismatched_inputs(teacher, visibility, match):
    with pytest.raises(ValueError, match=match):
        PointMCDLoss([8], 16)([torch.randn(2, 8, 30)], teacher, visibility)


def test_rejects_bad_arguments_and_records():
    with pytest.raises(ValueError, match="teacher_dim"):
        PointMCDLoss([8], 0)
    with pytest.raises(ValueError, match="weight"):
        PointMCDLoss([8], 4, weight=-1.0)
    with pytest.raises(ValueError, match=r"visibility must have shape \[S, N, V\] with S = 4"):
        PointMCD(student_pointnet(), torch.zeros(4, 6, 64), torch.zeros(3, 10, 6))
    with pytest.raises(ValueError, match="label_smoothing"):
        PointMCD(
            student_pointnet(), torch.zeros(4, 6, 64), torch.zeros(4, 10, 6), label_smoothing=2
        )


def test_training_brings_the_student_view_descriptors_to_the_teacher():
    # on held-out clouds, through the trained alignment, the trained student's per-view codes
    # are closer to the teacher's than those of the same student before training
    data = load_point_clouds(seed=0, train_per_class=30, test_per_class=10)
    set_seed(0)
    teacher = MultiViewCNN()
    train_supervised(teacher, data.views(), epochs=4, lr=0.05, batch_size=32, seed=0, device="cpu")
    teacher.requires_grad_(False)
    with torch.no_grad():
        recorded = teacher.view_descriptors(data.train_renders.images)
        held_out = teacher.view_descriptors(data.test_renders.images)
    set_seed(0)
    procedure = PointMCD(student_pointnet(), recorded, data.train_renders.visible)
    untrained = copy.deepcopy(procedure.student)
    history = train(procedure, data.points(), epochs=8, lr=0.1, batch_size=32, seed=0, device="cpu")

    @torch.no_grad()
    def held_out_distance(student: torch.nn.Module) -> float:
        features = student.eval()(data.test_points).features
        return procedure.loss.eval()(features, held_out, data.test_renders.visible).item()

    before, after = held_out_distance(untrained), held_out_distance(procedure.student)
    assert after < 0.8 * before, (before, after)
    assert history.losses[-1]["kd"] < 0.85 * history.losses[0]["kd"]
    assert history.test_accuracy[-1] > 1 / 6 + 0.1
