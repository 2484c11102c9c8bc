"""PointDistiller (Zhang et al., 2023): a hand value, the paper's neighbourhoods, training, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reference_impls.common.point_clouds import (
    load_point_clouds,
    student_pointnet,
    teacher_pointnet,
)
from reference_impls.common.training import set_seed, train, train_supervised
from reference_impls.modalities._3d.pointdistiller import (
    PointDistillerLoss,
    knn_in_feature_space,
    neighbourhood_overlap,
)
from reference_impls.schemes.offline.distiller import OfflineDistiller

EPS = 1e-5  # batch norm's epsilon: in eval mode with unit variance it scales by 1/sqrt(1 + eps)


def _set_edge_layer(layer: nn.Sequential, weights: list[float]) -> None:
    with torch.no_grad():
        layer[0].weight.copy_(torch.tensor(weights).view(1, -1, 1, 1))


def test_hand_computed_value():
    # one channel each, two points; the teacher's most salient point is point 1 (3 > 1),
    # with k = 1 its neighbourhood is itself; the teacher's edge layer reads the
    # neighbour's feature (3), the student's the centre's (2); batch norm at identity
    loss = PointDistillerLoss([1], [1], num_queries=1, neighbours=1).eval()
    _set_edge_layer(loss.teacher_graph, [1.0, 0.0])
    _set_edge_layer(loss.student_graph, [0.0, 1.0])
    teacher = torch.tensor([[[1.0, 3.0]]])
    student = torch.tensor([[[5.0, 2.0]]])
    expected = 2.0 * ((2.0 - 3.0) / (1 + EPS) ** 0.5) ** 2  # weight 2 x mean squared error
    assert loss([student], [teacher]).item() == pytest.approx(expected, rel=1e-6)


def test_neighbourhoods_are_found_in_the_teacher_feature_space():
    # point 0's nearest neighbours by feature are points 2 and 1, whatever their 3-D places
    features = torch.tensor([[[0.0, 5.0, 1.0, 9.0]]]).transpose(1, 2)  # [1, 4, 1]
    neighbours = knn_in_feature_space(features[:, :1], features, 3)
    assert sorted(neighbours[0, 0].tolist()) == [0, 1, 2]


def test_zero_when_the_student_is_the_teacher_through_the_same_layer():
    torch.manual_seed(0)
    teacher = [torch.randn(3, 8, 40).relu()]
    loss = PointDistillerLoss([8], [8], num_queries=10, neighbours=5)
    with torch.no_grad():  # the teacher's layer reads 2C = the student's: make them equal
        loss.student_graph.load_state_dict(loss.teacher_graph.state_dict())
    assert loss([teacher[0].clone()], teacher).item() == pytest.approx(0.0, abs=1e-12)


def test_invariant_to_the_order_of_the_points():
    torch.manual_seed(1)
    student, teacher = torch.randn(2, 8, 50), torch.randn(2, 16, 50).relu()
    order = torch.randperm(50)
    loss = PointDistillerLoss([8], [16], num_queries=12, neighbours=6).double()
    value = loss([student.double()], [teacher.double()])
    permuted = loss([student[:, :, order].double()], [teacher[:, :, order].double()])
    assert permuted.item() == pytest.approx(value.item(), rel=1e-12)


def test_reweighting_at_a_high_temperature_is_uniform_and_concentrates_at_a_low_one():
    torch.manual_seed(2)
    student, teacher = torch.randn(2, 8, 50), torch.randn(2, 16, 50).relu()
    kwargs = {"num_queries": 12, "neighbours": 6}
    torch.manual_seed(3)
    plain = PointDistillerLoss([8], [16], **kwargs)
    torch.manual_seed(3)
    flat = PointDistillerLoss([8], [16], reweight=True, temperature=1e9, **kwargs)
    torch.testing.assert_close(flat([student], [teacher]), plain([student], [teacher]))
    torch.manual_seed(3)
    sharp = PointDistillerLoss([8], [16], reweight=True, temperature=1e-6, **kwargs)
    assert not torch.isclose(sharp([student], [teacher]), plain([student], [teacher]))


def test_the_teacher_gets_no_gradient_and_the_graph_layers_do():
    student = [torch.randn(2, 8, 30, requires_grad=True)]
    teacher = [torch.randn(2, 16, 30, requires_grad=True)]
    loss = PointDistillerLoss([8], [16], num_queries=10, neighbours=4)
    loss(student, teacher).backward()
    assert teacher[0].grad is None
    assert student[0].grad is not None and student[0].grad.abs().sum() > 0
    assert loss.teacher_graph[0].weight.grad.abs().sum() > 0


def test_fewer_points_than_neighbours_is_refused_naming_the_argument():
    loss = PointDistillerLoss([8], [16])  # 16 neighbours, 48 queries
    with pytest.raises(ValueError, match=r"neighbours=16 needs clouds of at least 16 points"):
        loss([torch.randn(2, 8, 10)], [torch.randn(2, 16, 10)])
    with pytest.raises(ValueError, match=r"num_queries=48 needs clouds of at least 48"):
        loss([torch.randn(2, 8, 20)], [torch.randn(2, 16, 20)])


@pytest.mark.parametrize(
    ("student", "teacher", "match"),
    [
        (torch.randn(2, 4, 64), torch.randn(2, 16, 64), r"student_features\[stage\] .*\[B, 8, N\]"),
        (torch.randn(2, 8, 64), torch.randn(2, 16, 60), "same clouds"),
        (torch.randn(2, 8, 64), torch.randn(16, 64), r"teacher_features\[stage\]"),
    ],
)
def test_rejects_mismatched_features(student, teacher, match):
    with pytest.raises(ValueError, match=match):
        PointDistillerLoss([8], [16])([student], [teacher])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"neighbours": 0}, "neighbours"),
        ({"num_queries": 0}, "num_queries"),
        ({"temperature": 0.0}, "temperature"),
        ({"weight": -1.0}, "weight"),
        ({"stage": 3}, "stage"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PointDistillerLoss([8, 16, 32], [32, 64, 128], **kwargs)


def test_overlap_is_one_for_the_same_features_and_low_for_unrelated_ones():
    torch.manual_seed(4)
    features = torch.randn(3, 16, 64)
    assert neighbourhood_overlap(features, features) == 1.0
    assert neighbourhood_overlap(torch.randn(3, 8, 64), features) < 0.5


def test_training_moves_the_student_local_structure_toward_the_teacher():
    # the paper's point: the student groups points as the teacher does (k-NN in feature
    # space), measured on held-out clouds against the same seed trained on labels alone
    data = load_point_clouds(seed=0, train_per_class=30, test_per_class=20)
    points = data.points()
    set_seed(0)
    teacher = teacher_pointnet()
    train_supervised(teacher, points, epochs=8, lr=0.01, batch_size=32, seed=0, device="cpu")
    teacher.requires_grad_(False)
    overlaps = {}
    for name in ("alone", "pointdistiller"):
        set_seed(0)
        student = student_pointnet()
        loss = None if name == "alone" else PointDistillerLoss(student.channels, teacher.channels)
        procedure = OfflineDistiller(student, teacher, loss)
        train(procedure, points, epochs=6, lr=0.02, batch_size=32, seed=0, device="cpu")
        with torch.no_grad():
            student_maps = student.eval()(data.test_points).features[-1]
            teacher_maps = teacher(data.test_points).features[-1]
        overlaps[name] = neighbourhood_overlap(student_maps, teacher_maps)
    assert overlaps["pointdistiller"] > overlaps["alone"] + 0.03, overlaps
