"""The generated point clouds, their renders and the tiny 3-D and multi-view models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reference_impls.common.point_clouds import (
    SHAPE_CLASSES,
    MultiViewCNN,
    PointNet,
    ViewCNN,
    grid_superpixels,
    load_point_clouds,
    random_rotation,
    render_depth,
    sample_shape,
    student_pointnet,
    teacher_pointnet,
    view_directions,
)


@pytest.fixture(scope="module")
def small():
    return load_point_clouds(seed=0, train_per_class=4, test_per_class=2, num_points=64)


def test_deterministic_from_the_seed_and_different_across_seeds(small):
    again = load_point_clouds(seed=0, train_per_class=4, test_per_class=2, num_points=64)
    other = load_point_clouds(seed=1, train_per_class=4, test_per_class=2, num_points=64)
    torch.testing.assert_close(again.train_points, small.train_points)
    torch.testing.assert_close(again.test_renders.images, small.test_renders.images)
    assert not torch.allclose(other.train_points, small.train_points)


def test_shapes_balanced_classes_and_unit_ball(small):
    assert small.train_points.shape == (24, 64, 3)
    assert small.test_points.shape == (12, 64, 3)
    assert small.num_classes == len(SHAPE_CLASSES) == 6
    assert torch.bincount(small.train_labels).tolist() == [4] * 6
    assert small.train_labels[:6].tolist() == list(range(6))  # interleaved: a prefix has all
    radii = small.train_points.norm(dim=-1)
    assert radii.max(dim=1).values == pytest.approx(torch.ones(24))  # scaled into the ball
    torch.testing.assert_close(
        small.train_points.mean(dim=1), torch.zeros(24, 3), atol=1e-6, rtol=0
    )
    assert small.train_renders.images.shape == (24, 6, 16, 16)
    assert small.train_renders.pixels.shape == small.train_renders.visible.shape == (24, 64, 6)
    assert small.points().x_train.shape == (24, 64, 3)
    assert small.views().x_train.shape == (24, 6, 16, 16)
    assert small.views(2).x_test.shape == (12, 1, 16, 16)
    with pytest.raises(ValueError, match="view must lie in"):
        small.views(6)


def test_surfaces_are_the_named_shapes():
    from reference_impls.common.point_clouds import _cube, _octahedron, _sphere

    rng = np.random.default_rng(0)
    assert np.linalg.norm(_sphere(rng, 100), axis=1) == pytest.approx(np.ones(100))
    assert np.abs(_octahedron(rng, 100)).sum(axis=1) == pytest.approx(np.ones(100))
    assert np.abs(_cube(rng, 100)).max(axis=1) == pytest.approx(np.full(100, 0.8))
    # a sampled cloud: centred, in the unit ball, its farthest point on the sphere
    cloud = sample_shape(2, 300, rng, stretch=0.2, noise=0.02)
    assert np.linalg.norm(cloud, axis=1).max() == pytest.approx(1.0)
    assert cloud.mean(axis=0) == pytest.approx(np.zeros(3), abs=1e-12)


def test_random_rotation_is_a_rotation():
    rotation = random_rotation(np.random.default_rng(3))
    assert rotation @ rotation.T == pytest.approx(np.eye(3), abs=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_z_buffer_keeps_the_nearest_point_and_marks_the_hidden_one():
    frames = view_directions(1, elevation_degrees=0.0)  # camera on +x, right = +y, up = +z
    torch.testing.assert_close(frames[0], torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]]))
    # two points on the camera's axis (same pixel), the first nearer; a third elsewhere
    points = torch.tensor([[[0.5, 0.0, 0.0], [-0.5, 0.0, 0.0], [0.0, 0.9, 0.9]]])
    renders = render_depth(points, frames, image_size=4, visibility_tolerance=0.06)
    near, far = (0.5 + 1) / 2, (-0.5 + 1) / 2
    # (0, 0) falls in pixel row 2, col 2 (coordinates [-1, 1] cut in 4, rows downwards)
    assert renders.pixels[0, :, 0].tolist() == [2 * 4 + 2, 2 * 4 + 2, 0 * 4 + 3]
    assert renders.images[0, 0, 2, 2].item() == pytest.approx(near)
    assert renders.visible[0, :, 0].tolist() == [True, False, True]
    assert renders.images[0, 0].count_nonzero().item() == 2
    assert far < near


def test_grid_superpixels():
    regions = grid_superpixels(8, cell=4)
    assert regions.tolist()[0] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert regions[7, 7].item() == 3
    assert regions.unique().tolist() == [0, 1, 2, 3]


def test_pointnet_is_invariant_to_point_order_and_exposes_per_point_maps(small):
    model = teacher_pointnet().eval()
    points = small.test_points[:3]
    permuted = points[:, torch.randperm(points.shape[1])]
    out = model(points)
    torch.testing.assert_close(model(permuted).logits, out.logits, atol=1e-5, rtol=1e-5)
    assert [tuple(f.shape) for f in out.features] == [(3, 32, 64), (3, 64, 64), (3, 128, 64)]
    assert out.embedding.shape == (3, 128)
    assert student_pointnet().channels == (8, 16, 32)
    assert sum(p.numel() for p in student_pointnet().parameters()) < sum(
        p.numel() for p in model.parameters()
    )


def test_pointnet_refuses_a_batch_that_is_not_clouds():
    with pytest.raises(ValueError, match=r"point clouds \[B, N, 3\]"):
        PointNet()(torch.randn(2, 3, 64))


def test_view_cnn_keeps_the_resolution_and_multi_view_pools_over_views(small):
    out = ViewCNN().eval()(small.views(0).x_test[:2])
    assert [tuple(f.shape) for f in out.features] == [(2, 16, 16, 16), (2, 32, 16, 16)]
    model = MultiViewCNN().eval()
    views = small.views().x_test[:2]
    out = model(views)
    assert out.features[0].shape == (2, 6, 64)
    assert model.view_logits(views).shape == (2, 6, 6)
    reordered = views[:, torch.tensor([3, 1, 5, 0, 2, 4])]
    torch.testing.assert_close(model(reordered).logits, out.logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[B, V, H, W\]"):
        model(views[:, :, None])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_points": 0}, "num_points"),
        ({"stretch": 1.5}, "stretch"),
        ({"noise": -0.1}, "noise"),
        ({"num_views": 0}, "num_views"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_point_clouds(train_per_class=1, test_per_class=1, **kwargs)


def test_views_ring_at_thirty_degrees():
    frames = view_directions(6)
    toward = frames[:, 2]
    elevation = torch.rad2deg(torch.asin(toward[:, 2]))
    torch.testing.assert_close(elevation, torch.full((6,), 30.0))
    azimuths = torch.rad2deg(torch.atan2(toward[:, 1], toward[:, 0])) % 360
    torch.testing.assert_close(azimuths, torch.arange(6) * 60.0, atol=1e-4, rtol=0)
    assert math.isclose(float(torch.linalg.det(frames[0])), 1.0, rel_tol=1e-5)
