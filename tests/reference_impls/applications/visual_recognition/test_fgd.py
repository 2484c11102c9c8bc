"""FGD: masks and attention by hand, the paper's area normalisation, the focal weighting,
the learnable GcBlocks, a training effect on the generated detection task, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.applications.visual_recognition.fgd import (
    FGDLoss,
    attention_maps,
    box_masks,
)

WEIGHTS = {"alpha_fgd": 1.0, "beta_fgd": 1.0, "gamma_fgd": 1.0, "lambda_fgd": 1.0}
DEFAULTS = {"alpha_fgd": 1e-3, "beta_fgd": 5e-4, "gamma_fgd": 5e-4, "lambda_fgd": 5e-6}


def test_masks_by_hand_one_box_on_a_4x4_map():
    # box (0, 0, 1, 1) of a 4 x 4 image on a 4 x 4 map: columns and rows floor(0)..ceil(1),
    # i.e. 0..1, so 2 x 2 cells of 1/4; the 12 other cells share the background, 1/12 each
    foreground, background = box_masks([torch.tensor([[0.0, 0.0, 1.0, 1.0]])], (4, 4), (4, 4))
    expected = torch.zeros(1, 4, 4, dtype=torch.float64)
    expected[0, :2, :2] = 0.25
    torch.testing.assert_close(foreground, expected)
    torch.testing.assert_close(background, (expected == 0).double() / 12)


def test_terms_by_hand_uniform_teacher_and_a_zero_student():
    # teacher all ones: both attentions are 1 everywhere; the student all zeros: its
    # attention is uniform too (attention term 0); the GcBlocks start as the identity
    teacher, student = torch.ones(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    terms = FGDLoss(2, 2).terms(student, teacher, [torch.tensor([[0.0, 0.0, 1.0, 1.0]])], (4, 4))
    assert terms["foreground"].item() == pytest.approx(2 * 4 * 0.25)  # channels x cells x 1/4
    assert terms["background"].item() == pytest.approx(2 * 12 / 12)
    assert terms["attention"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["global"].item() == pytest.approx(2 * 16)  # R(F) = F at initialisation
    total = FGDLoss(2, 2)(student, teacher, [torch.tensor([[0.0, 0.0, 1.0, 1.0]])], (4, 4))
    assert total.item() == pytest.approx(1e-3 * 2 + 5e-4 * 2 + 0 + 5e-6 * 32)


def test_attention_loss_by_hand_one_active_location():
    teacher, student = torch.ones(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    student[0, 0, 0, 0] = 2.0
    # spatial: mean |F| over channels is 1 at (0, 0), 0 elsewhere; T = 0.5 gives e^2 : 1
    z = math.exp(2) + 15
    spatial = abs(16 * math.exp(2) / z - 1) + 15 * abs(16 / z - 1)
    # channel: mean |F| over locations is 2/16 and 0, so 2 softmax(0.25, 0)
    c0 = 2 * math.exp(0.25) / (math.exp(0.25) + 1)
    channel = abs(c0 - 1) + abs(2 - c0 - 1)
    terms = FGDLoss(2, 2).terms(student, teacher, [torch.zeros(0, 4)], (4, 4))
    assert terms["attention"].item() == pytest.approx(spatial + channel, rel=1e-6)
    s_attention, c_attention = attention_maps(student, 0.5)
    assert s_attention.sum().item() == pytest.approx(16.0)  # H W times a distribution
    assert c_attention.sum().item() == pytest.approx(2.0)  # C times a distribution


def test_each_object_weighs_the_same_whatever_its_size():
    """The paper's area normalisation: a box's foreground mask sums to 1; with no boxes
    the background is uniform and sums to 1."""
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [10.0, 10.0, 30.0, 30.0]])
    foreground, background = box_masks([boxes], (32, 32), (16, 16))
    # scaled by 1/2: columns 0..2 (3 x 3 cells) and 5..15 (11 x 11 cells)
    assert foreground[0, :3, :3].sum().item() == pytest.approx(1.0)
    assert foreground[0, 5:, 5:].sum().item() == pytest.approx(1.0)
    assert background.sum().item() == pytest.approx(1.0)
    assert bool(((foreground > 0) ^ (background > 0)).all())  # a cell is one or the other
    _, empty = box_masks([torch.zeros(0, 4)], (32, 32), (16, 16))
    torch.testing.assert_close(empty, torch.full_like(empty, 1 / 256))


def test_where_boxes_overlap_the_smaller_one_wins():
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [2.0, 2.0, 4.0, 4.0]])
    foreground, _ = box_masks([boxes], (8, 8), (8, 8))
    assert foreground[0, 3, 3].item() == pytest.approx(1 / 9)  # rows/cols 2..4
    assert foreground[0, 0, 0].item() == pytest.approx(1 / 81)  # rows/cols 0..8, clipped


def test_background_weight_zero_leaves_the_student_free_outside_the_boxes():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 8, 6, 6, generator=generator)
    teacher = torch.randn(2, 16, 6, 6, generator=generator)
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.tensor([[12.0, 12.0, 20.0, 20.0]])]
    loss = FGDLoss(8, 16, beta_fgd=0.0, gamma_fgd=0.0, lambda_fgd=0.0)
    changed = student.clone()
    changed[0, :, 4:, :] += 5.0  # rows 4-5 of image 0: outside its box (map rows 0..2)
    torch.testing.assert_close(
        loss(changed, teacher, boxes, (24, 24)), loss(student, teacher, boxes, (24, 24))
    )
    changed[0, :, 0, 0] += 5.0  # inside
    assert loss(changed, teacher, boxes, (24, 24)) != loss(student, teacher, boxes, (24, 24))


def test_the_focal_weight_is_the_teachers_attention():
    """The feature terms weight each cell by the teacher's attention: an error at the cell
    the teacher attends to costs more than the same error at a quiet cell."""
    teacher = torch.ones(1, 2, 4, 4)
    teacher[0, :, 0, 0] = 3.0
    loss = FGDLoss(2, 2, **{**WEIGHTS, "gamma_fgd": 0.0, "lambda_fgd": 0.0})
    no_boxes = [torch.zeros(0, 4)]
    at_peak, at_quiet = teacher.clone(), teacher.clone()
    at_peak[0, 0, 0, 0] += 1.0
    at_quiet[0, 0, 3, 3] += 1.0
    assert loss(at_peak, teacher, no_boxes, (4, 4)) > 5 * loss(at_quiet, teacher, no_boxes, (4, 4))


def test_the_gcblocks_and_the_alignment_are_learnable_and_saved():
    loss = FGDLoss(8, 16)
    names = set(loss.state_dict())
    assert {
        "align.weight",
        "student_context.mask.weight",
        "teacher_context.transform.3.weight",
    } <= names
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(2, 8, 6, 6, generator=generator, requires_grad=True)
    teacher = torch.randn(2, 16, 6, 6, generator=generator, requires_grad=True)
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.zeros(0, 4)]
    loss(student, teacher, boxes, (24, 24)).backward()
    assert teacher.grad is None  # the teacher is detached
    assert loss.align.weight.grad.abs().sum() > 0
    # the last convolutions start at zero, so only they learn on the first step...
    assert loss.teacher_context.transform[3].weight.grad.abs().sum() > 0
    assert loss.student_context.mask.weight.grad.abs().sum() == 0
    # ... and once they have moved, the context (attention pooling) learns too
    with torch.no_grad():
        loss.student_context.transform[3].weight.add_(0.1)
    loss.zero_grad()
    loss(student, teacher, boxes, (24, 24)).backward()
    assert loss.student_context.mask.weight.grad.abs().sum() > 0


def test_float64_is_kept_and_bfloat16_is_computed_in_float32():
    generator = torch.Generator().manual_seed(2)
    student = torch.randn(2, 8, 6, 6, generator=generator)
    teacher = torch.randn(2, 16, 6, 6, generator=generator)
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.tensor([[4.0, 4.0, 20.0, 12.0]])]
    loss = FGDLoss(8, 16)
    assert loss.double()(student.double(), teacher.double(), boxes, (24, 24)).dtype == torch.float64
    loss.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss(student, teacher, boxes, (24, 24))
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(loss(student, teacher, boxes, (24, 24)).item(), rel=0.05)


@pytest.mark.parametrize(
    ("boxes", "match"),
    [
        ([torch.tensor([[0.0, 0.0, 8.0, 30.0]])] * 2, "outside the image"),
        ([torch.tensor([[-1.0, 0.0, 8.0, 8.0]])] * 2, "outside the image"),
        ([torch.tensor([[8.0, 0.0, 4.0, 8.0]])] * 2, "x1 > x2"),
        ([torch.tensor([[0.0, 0.0, 8.0, 8.0, 1.0]])] * 2, r"must have shape \[n, 4\]"),
        ([torch.tensor([[0.0, 0.0, 8.0, 8.0]])], "sequence of 2 tensors"),
        (torch.zeros(2, 1, 4), "sequence of 2 tensors"),
    ],
)
def test_bad_boxes_are_refused(boxes, match):
    student, teacher = torch.rand(2, 8, 6, 6), torch.rand(2, 16, 6, 6)
    with pytest.raises(ValueError, match=match):
        FGDLoss(8, 16)(student, teacher, boxes, (24, 24))


def test_bad_maps_and_settings_are_refused():
    boxes = [torch.zeros(0, 4)] * 2
    loss = FGDLoss(8, 16)
    with pytest.raises(ValueError, match="same batch and spatial size"):
        loss(torch.rand(2, 8, 6, 6), torch.rand(2, 16, 5, 6), boxes, (24, 24))
    with pytest.raises(ValueError, match="8 and 16 channels"):
        loss(torch.rand(2, 4, 6, 6), torch.rand(2, 16, 6, 6), boxes, (24, 24))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        loss(torch.rand(8, 6, 6), torch.rand(16, 6, 6), boxes, (24, 24))
    with pytest.raises(ValueError, match="image_size"):
        loss(torch.rand(2, 8, 6, 6), torch.rand(2, 16, 6, 6), boxes, (24, 0))
    with pytest.raises(ValueError, match="temperature"):
        FGDLoss(8, 16, temperature=0.0)
    with pytest.raises(ValueError, match="alpha_fgd"):
        FGDLoss(8, 16, alpha_fgd=-1.0)


def test_a_seeded_run_moves_the_students_map_toward_the_teachers_inside_the_boxes():
    """A small detector (CentreNet of width 8, 64 canvases, 8 epochs) teaches a same-width
    student for 4 epochs; with FGD the student's last map ends nearer the teacher's inside
    the boxes than the same-seed student trained alone. The weights are the authors' times
    10: our maps (16 x 16, 16 channels) are far smaller than a COCO FPN level, and at 1x the
    terms move the map by under 1% in so short a run."""
    from reference_impls.common.dense import (
        CentreNet,
        CentreNetTraining,
        DistilledCentreNet,
        boxes_of,
        load_digit_boxes,
        train_dense,
    )
    from reference_impls.common.training import set_seed

    data = load_digit_boxes(seed=1, n_train=64, n_test=32)
    set_seed(0)
    teacher = CentreNet(8)
    train_dense(CentreNetTraining(teacher), data, epochs=8, seed=0, device="cpu")
    teacher.eval().requires_grad_(False)
    inside, _ = box_masks(boxes_of(data.y_test), (32, 32), (16, 16))

    def distance(student: CentreNet) -> float:
        with torch.no_grad():
            gap = (student(data.x_test).features[-1] - teacher(data.x_test).features[-1]) ** 2
        return float((gap.mean(1) * (inside > 0)).sum() / (inside > 0).sum())

    results = {}
    for scale in (0.0, 10.0):
        set_seed(1)
        student = CentreNet(8)
        loss = FGDLoss(16, 16, **{k: v * scale for k, v in DEFAULTS.items()})
        train_dense(
            DistilledCentreNet(student, teacher, loss), data, epochs=4, seed=1, device="cpu"
        )
        results[scale] = distance(student)
    assert results[10.0] < 0.99 * results[0.0], results
