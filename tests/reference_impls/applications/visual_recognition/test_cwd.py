"""CWD: hand value, the property that it reads where each class is, not per-pixel balance,
a training effect, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.applications.visual_recognition.cwd import CWDLoss


def test_a_value_by_hand_one_image_one_channel_two_locations():
    student = torch.tensor([0.0, 0.0]).reshape(1, 1, 1, 2)
    teacher = torch.tensor([math.log(3.0), 0.0]).reshape(1, 1, 1, 2)
    # tau = 1: teacher (3/4, 1/4), student (1/2, 1/2); KL = 3/4 ln(3/2) + 1/4 ln(1/2)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    loss = CWDLoss(temperature=1.0, weight=1.0)(student, teacher)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # the authors' weight 3 and tau^2 scaling at tau = 4
    loss4 = CWDLoss()(student, teacher * 4)  # the same distributions at tau = 4
    assert loss4.item() == pytest.approx(3 * 16 * expected, rel=1e-6)


def test_it_ignores_what_is_constant_over_the_locations_of_a_channel():
    """A per-channel offset (a class made likelier everywhere) does not change where the
    class is: the spatial softmax, and so the loss, are unchanged."""
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 5, 6, 6, generator=generator)
    teacher = torch.randn(2, 5, 6, 6, generator=generator)
    offset = torch.randn(2, 5, 1, 1, generator=generator) * 10
    loss = CWDLoss()
    torch.testing.assert_close(loss(student + offset, teacher), loss(student, teacher))
    assert loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_the_mean_is_over_images_and_channels():
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(1, 3, 4, 4, generator=generator)
    teacher = torch.randn(1, 3, 4, 4, generator=generator)
    twice = CWDLoss()(student.repeat(2, 2, 1, 1), teacher.repeat(2, 2, 1, 1))
    assert twice.item() == pytest.approx(CWDLoss()(student, teacher).item(), rel=1e-5)


def test_distilling_moves_the_student_to_the_teachers_spatial_maps():
    generator = torch.Generator().manual_seed(2)
    teacher = torch.randn(2, 4, 5, 5, generator=generator) * 3
    student = torch.zeros(2, 4, 5, 5, requires_grad=True)
    optimizer = torch.optim.SGD([student], lr=0.5)
    loss = CWDLoss()
    first = loss(student, teacher).item()
    for _ in range(200):
        optimizer.zero_grad()
        loss(student, teacher).backward()
        optimizer.step()
    assert loss(student, teacher).item() < 0.05 * first


@pytest.mark.parametrize(
    ("student", "teacher", "message"),
    [
        (torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), "must have shape \\[B, C, H, W\\]"),
        (torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5), "must have one shape"),
    ],
)
def test_bad_inputs_are_named(student, teacher, message):
    with pytest.raises(ValueError, match=message):
        CWDLoss()(student, teacher)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="temperature"):
        CWDLoss(temperature=0.0)
    with pytest.raises(ValueError, match="weight"):
        CWDLoss(weight=-1.0)
