"""AB (Heo et al., 2019): paper properties, a hand value, training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reference_impls.common import train
from reference_impls.common.testing import digits_setup, random_feature_pair
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.feature.ab import ABInitialisation, ABLoss, activation_agreement

STUDENT_CHANNELS = (8, 16, 32)
TEACHER_CHANNELS = (32, 64, 128)


@pytest.fixture
def preacts() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return random_feature_pair(batch=4)


def make_loss(**kwargs) -> ABLoss:
    torch.manual_seed(0)
    return ABLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, **kwargs)


def test_reads_pre_relu_features():
    assert ABLoss.inputs == "preact_features"


def test_zero_once_student_is_past_the_margin_on_the_teacher_side():
    # identity connector (equal widths): +/-1.5 beyond the margin of 1 on the teacher's side
    teacher = torch.randn(2, 4, 3, 3)
    student = torch.where(teacher > 0, 1.5, -1.5)
    loss = ABLoss((4,), (4,), stages=(0,))
    assert loss([student], [teacher]).item() == 0.0


def test_depends_on_the_teacher_only_through_its_signs(preacts):
    student, teacher = preacts
    rescaled = [t * (torch.rand_like(t) * 5 + 0.1) for t in teacher]  # positive, per element
    loss = make_loss()
    torch.testing.assert_close(loss(student, rescaled), loss(student, teacher))


def test_deeper_stages_weigh_more():
    assert make_loss().layer_weights == (0.25, 0.5, 1.0)
    assert make_loss(stages=(1, 2)).layer_weights == (0.5, 1.0)


def test_hand_computed_value():
    # identity connector, margin 1, one sample, map 1x3:
    # s = [0.5, -2, 0], t = [1, 1, -1]
    # t > 0, s = 0.5 <= 1  -> (1 - 0.5)^2 = 0.25
    # t > 0, s = -2        -> (1 + 2)^2   = 9
    # t <= 0, s = 0 > -1   -> (1 + 0)^2   = 1
    # sum 10.25, batch 1, deepest-stage weight 1, times 3 / 1000
    student = torch.tensor([[[[0.5, -2.0, 0.0]]]])
    teacher = torch.tensor([[[[1.0, 1.0, -1.0]]]])
    value = ABLoss((1,), (1,), stages=(0,))([student], [teacher])
    assert value.item() == pytest.approx(10.25 * 3 / 1000, rel=1e-6)


def test_connectors_follow_the_authors_design():
    loss = make_loss()
    conv, batch_norm = loss.connectors[2]
    assert conv.kernel_size == (1, 1) and conv.bias is None
    assert (conv.in_channels, conv.out_channels) == (32, 128)
    assert torch.all(batch_norm.weight == 1) and torch.all(batch_norm.bias == 0)
    assert isinstance(ABLoss((4,), (4,), stages=(0,)).connectors[0], nn.Identity)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"student_channels": (8, 16)}, "stages"),
        ({"stages": ()}, "at least one stage"),
        ({"stages": (3,)}, "out of range"),
        ({"margin": 0.0}, "margin"),
        ({"beta": -1.0}, "beta"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    arguments = {"student_channels": STUDENT_CHANNELS, "teacher_channels": TEACHER_CHANNELS}
    with pytest.raises(ValueError, match=match):
        ABLoss(**{**arguments, **kwargs})


def test_rejects_too_few_feature_maps(preacts):
    student, teacher = preacts
    with pytest.raises(ValueError, match="need 3 feature maps"):
        make_loss()(student[:2], teacher[:2])


@torch.no_grad()
def _boundary_agreement(student: nn.Module, teacher: nn.Module, data) -> float:
    """Held-out on/off agreement with the teacher through a least-squares 1x1 read-out.

    Both students get the same closed-form read-out (fitted on the training set), so
    the comparison does not favour the one whose connectors were trained.
    """
    student.eval()
    scores = []
    for stage in range(3):

        def pixels(model: nn.Module, x: torch.Tensor, stage: int = stage) -> torch.Tensor:
            preact = model(x).preact_features[stage]
            rows = preact.permute(0, 2, 3, 1).reshape(-1, preact.shape[1])
            return torch.cat([rows, torch.ones(len(rows), 1)], dim=1)

        weights = torch.linalg.lstsq(
            pixels(student, data.x_train), pixels(teacher, data.x_train)[:, :-1]
        ).solution
        predicted = pixels(student, data.x_test) @ weights
        scores.append(activation_agreement(predicted, pixels(teacher, data.x_test)[:, :-1]))
    return sum(scores) / len(scores)


def test_initialisation_phase_transfers_activation_boundaries():
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 2, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), baseline_data, **kwargs)
    history = train(ABInitialisation(student, teacher, make_loss()), data, **kwargs)
    assert history.losses[-1]["ab"] < 0.8 * history.losses[0]["ab"]
    distilled = _boundary_agreement(student, teacher, data)
    baseline_score = _boundary_agreement(baseline, teacher, data)
    assert distilled > baseline_score + 0.02


def _two_branch_penalty(student: torch.Tensor, teacher: torch.Tensor, margin: float):
    """The penalty as the equation reads (both branches, then a select): the guard of the
    one-pass form in ``boundary_penalty``."""
    too_low = (margin - student).clamp(min=0).pow(2)
    too_high = (margin + student).clamp(min=0).pow(2)
    return torch.where(teacher > 0, too_low, too_high).sum()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_pass_penalty_equals_the_two_branch_form_at_the_margins_and_extremes(dtype):
    from reference_impls.sources.feature.ab import boundary_penalty

    torch.manual_seed(0)
    student = 3 * torch.randn(4, 6, 5, 5, dtype=dtype)
    # exactly at +/- margin, at 0, and huge values on both sides of both teacher states
    edge = torch.tensor([1.0, -1.0, 0.0, 1e18, -1e18, 1.0, -1.0, 0.0, 1e18, -1e18], dtype=dtype)
    student.view(-1)[:10] = edge
    teacher = torch.randn(4, 6, 5, 5, dtype=dtype)
    teacher.view(-1)[:10] = torch.tensor([1.0] * 5 + [-1.0] * 5, dtype=dtype)
    teacher.view(-1)[10] = 0.0  # a teacher exactly at 0 is off
    ours, reference = student.clone().requires_grad_(), student.clone().requires_grad_()
    value = boundary_penalty(ours, teacher, 1.0)
    expected = _two_branch_penalty(reference, teacher, 1.0)
    value.backward(), expected.backward()
    assert torch.equal(value, expected)
    assert torch.equal(ours.grad, reference.grad)


def test_bf16_autocast_computes_the_penalty_in_float32(preacts):
    student, teacher = preacts
    loss = make_loss()
    bf16_student = [s.bfloat16().float() for s in student]  # what bf16 features hold
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = loss(bf16_student, teacher)
    assert cast.dtype == torch.float32
    # the connectors ran in bf16 under autocast; the penalty on their outputs is float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        connected = loss.connect(bf16_student)
    expected = sum(
        w * _two_branch_penalty(c.float(), teacher[i], loss.margin)
        for w, c, i in zip(loss.layer_weights, connected, loss.stages, strict=True)
    )
    torch.testing.assert_close(cast, loss.beta * expected / student[0].shape[0])
