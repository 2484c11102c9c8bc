"""SLidR (Sautier et al., 2022): a hand value, what pairs and what does not, training, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common.point_clouds import (
    ViewCNN,
    grid_superpixels,
    load_point_clouds,
    student_pointnet,
)
from reference_impls.common.training import set_seed, train, train_supervised
from reference_impls.modalities._3d.slidr import REGION_EPSILON, SLidRLoss, SLidRPretraining


def _identity_heads(loss: SLidRLoss) -> SLidRLoss:
    with torch.no_grad():
        for head in (loss.point_head, loss.image_head):
            head.weight.zero_()
            head.weight[:, :, ...].view(head.weight.shape[0], -1).copy_(torch.eye(2))
            head.bias.zero_()
    return loss


def test_hand_computed_value():
    # two regions (the two pixels of a 1x2 image); points 0 and 1 fall in region 0 with
    # feature e1, point 2 in region 1 with e2; the pixels' features are e1 and e2
    loss = _identity_heads(SLidRLoss([2], [2], projection_dim=2, temperature=0.5))
    points = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # [1, 2, 3]
    image = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # [1, 2, 1, 2]
    pixels = torch.tensor([[0, 0, 1]])
    superpixels = torch.tensor([[[0, 1]]])
    key_0, key_1 = 2 / (2 + REGION_EPSILON), 1 / (1 + REGION_EPSILON)
    query = 1 / (1 + REGION_EPSILON)
    # each superpoint's similarity to its own superpixel, 0 to the other one, over tau = 0.5
    expected = 0.5 * sum(
        -math.log(math.exp(k * query / 0.5) / (math.exp(k * query / 0.5) + 1))
        for k in (key_0, key_1)
    )
    value = loss([points], [image], pixels, superpixels)
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    pixels = torch.randint(0, 64, (3, 40))
    pixels[:, :5] = -1
    return {
        "points": torch.randn(3, 8, 40),
        "image": torch.randn(3, 16, 8, 8),
        "pixels": pixels,
        "superpixels": grid_superpixels(8, cell=4).expand(3, -1, -1).clone(),
    }


def _value(loss: SLidRLoss, batch: dict) -> torch.Tensor:
    return loss([batch["points"]], [batch["image"]], batch["pixels"], batch["superpixels"])


def test_unpaired_points_never_contribute(batch):
    loss = SLidRLoss([8], [16])
    value = _value(loss, batch)
    batch["points"][:, :, :5] = 1e3 * torch.randn(3, 8, 5)  # the points outside the image
    torch.testing.assert_close(_value(loss, batch), value)


def test_regions_without_points_are_left_out(batch):
    loss = SLidRLoss([8], [16])
    batch["superpixels"][:, :4, :4] = 7  # a region of its own ...
    batch["pixels"] = torch.where(batch["pixels"] // 8 < 4, batch["pixels"] + 32, batch["pixels"])
    assert not bool(((batch["pixels"] // 8 < 4) & (batch["pixels"] % 8 < 4)).any())
    value = _value(loss, batch)  # ... that no point falls in
    batch["image"][:, :, :4, :4] = torch.randn(3, 16, 4, 4)
    torch.testing.assert_close(_value(loss, batch), value)


def test_invariant_to_the_order_of_the_points(batch):
    loss = SLidRLoss([8], [16]).double()
    order = torch.randperm(40)
    value = _value(loss, {k: v.double() if v.is_floating_point() else v for k, v in batch.items()})
    batch["points"], batch["pixels"] = batch["points"][:, :, order], batch["pixels"][:, order]
    permuted = _value(
        loss, {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    )
    assert permuted.item() == pytest.approx(value.item(), rel=1e-12)


def test_the_image_network_gets_no_gradient_and_both_heads_do(batch):
    batch["points"].requires_grad_(True)
    batch["image"].requires_grad_(True)
    loss = SLidRLoss([8], [16])
    _value(loss, batch).backward()
    assert batch["image"].grad is None
    assert batch["points"].grad.abs().sum() > 0
    assert loss.image_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda b: b.update(pixels=b["pixels"][:, :10]), r"pixels must have shape \[B, N\]"),
        (lambda b: b.update(pixels=b["pixels"] + 100), r"pixels must lie in \[-1, 64\)"),
        (lambda b: b.update(pixels=b["pixels"].float()), "integer indices"),
        (lambda b: b.update(superpixels=b["superpixels"][:, :4]), "superpixels must have shape"),
        (lambda b: b.update(pixels=torch.full_like(b["pixels"], -1)), "no point is paired"),
        (lambda b: b.update(image=b["image"][:, :8]), r"teacher_features\[stage\]"),
        (lambda b: b.update(points=b["points"][:2]), "same samples"),
    ],
)
def test_rejects_bad_input(batch, change, match):
    change(batch)
    with pytest.raises(ValueError, match=match):
        _value(SLidRLoss([8], [16]), batch)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"temperature": 0.0}, "temperature"), ({"projection_dim": 0}, "projection_dim")],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SLidRLoss([8], [16], **kwargs)


def test_pretraining_aligns_the_point_network_with_the_image_network():
    # the InfoNCE of held-out clouds falls well below its value for the untrained student
    data = load_point_clouds(seed=0, train_per_class=30, test_per_class=10)
    images = data.views(0)
    set_seed(0)
    teacher = ViewCNN()
    train_supervised(teacher, images, epochs=3, lr=0.05, batch_size=32, seed=0, device="cpu")
    regions = grid_superpixels(data.image_size)
    set_seed(0)
    procedure = SLidRPretraining(
        student_pointnet(), teacher, images.x_train, data.train_renders.pixels[..., 0], regions
    )

    @torch.no_grad()
    def held_out_loss() -> float:
        procedure.eval()
        student_maps = procedure.student(data.test_points).features
        image_maps = procedure.teacher(images.x_test).features
        pairs = data.test_renders.pixels[..., 0], regions.expand(len(images.x_test), -1, -1)
        return procedure.loss(student_maps, image_maps, *pairs).item()

    before = held_out_loss()
    train(procedure, data.points(), epochs=4, lr=0.05, batch_size=32, seed=0, device="cpu")
    after = held_out_loss()
    assert after < before - 0.5, (before, after)
    assert not any(p.requires_grad for p in procedure.teacher.parameters())


def test_pretraining_checks_its_pairing():
    with pytest.raises(ValueError, match=r"pixels must have shape \[S, N\] with S = 4"):
        SLidRPretraining(
            student_pointnet(),
            ViewCNN(),
            torch.zeros(4, 1, 8, 8),
            torch.zeros(3, 10),
            torch.zeros(8, 8),
        )
