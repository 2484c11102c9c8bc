"""Frame-level KD for CTC: a hand value, the blank and the padding, the training effect.

The contract every implementation meets (construction at defaults, gradients, determinism,
state_dict, CPU/CUDA and bf16) is checked for all of them by
tests/reference_impls/test_contracts.py; this file holds only what is specific to
CTCFrameKDLoss.
"""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common.speech import CTCNet, SpeechBatch, ctc_loss
from reference_impls.modalities.speech.ctc_frame_kd import CTCFrameKDLoss


def test_hand_computed_value():
    # One utterance, two real frames and one padded frame, labels {blank, a}.
    # Frame 1: teacher logits (0, 0) -> p^t = (1/2, 1/2); student (log 3, 0) -> p^s = (3/4, 1/4)
    #   KL = 1/2 log((1/2)/(3/4)) + 1/2 log((1/2)/(1/4)) = 1/2 log(2/3) + 1/2 log 2 = 1/2 log(4/3)
    # Frame 2: equal logits -> KL = 0. Mean over the two real frames: 1/4 log(4/3).
    student = torch.tensor([[[math.log(3.0), 0.0], [1.0, 2.0], [50.0, -50.0]]])
    teacher = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    assert float(CTCFrameKDLoss()(student, teacher, mask)) == pytest.approx(0.25 * math.log(4 / 3))


def test_temperature_scales_as_hinton():
    # tau^2 KL(p^{t,tau} || p^{s,tau}) per frame, averaged over the real frames
    generator = torch.Generator().manual_seed(0)
    student, teacher = (
        torch.randn(2, 4, 5, generator=generator),
        torch.randn(2, 4, 5, generator=generator),
    )
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    tau = 2.0
    p_t = torch.softmax(teacher[mask] / tau, -1)
    log_p_s = torch.log_softmax(student[mask] / tau, -1)
    expected = tau**2 * (p_t * (p_t.log() - log_p_s)).sum(-1).mean()
    assert float(CTCFrameKDLoss(temperature=tau)(student, teacher, mask)) == pytest.approx(
        float(expected), rel=1e-6
    )


def test_zero_when_posteriors_agree_and_the_blank_counts():
    # The papers distil the whole posterior, blank included: a student that matches the
    # teacher everywhere but the blank's score is penalised.
    generator = torch.Generator().manual_seed(1)
    teacher = torch.randn(2, 6, 11, generator=generator)
    mask = torch.ones(2, 6, dtype=torch.bool)
    loss = CTCFrameKDLoss()
    assert float(loss(teacher.clone(), teacher, mask)) == pytest.approx(0.0, abs=1e-7)
    shifted = teacher.clone()
    shifted[..., 0] += 2.0  # only the blank (label 0) differs
    assert float(loss(shifted, teacher, mask)) > 0.05


def test_padded_frames_never_contribute():
    generator = torch.Generator().manual_seed(2)
    student = torch.randn(3, 7, 11, generator=generator, requires_grad=True)
    teacher = torch.randn(3, 7, 11, generator=generator)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 3, 5])[:, None]
    loss = CTCFrameKDLoss()
    value = loss(student, teacher, mask)
    (gradient,) = torch.autograd.grad(value, student)
    assert torch.all(gradient[~mask] == 0)
    noisy_student = student.detach().clone()
    noisy_teacher = teacher.clone()
    noisy_student[~mask] = float("nan")  # whatever sits in padding, even NaN
    noisy_teacher[~mask] = 1e4
    assert float(loss(noisy_student, noisy_teacher, mask)) == pytest.approx(float(value.detach()))


def test_bad_inputs_are_named():
    loss = CTCFrameKDLoss()
    logits = torch.zeros(2, 4, 11)
    mask = torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"mask must be a boolean mask of shape \[2, 4\]"):
        loss(logits, logits, torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be a boolean mask"):
        loss(logits, logits, torch.ones(2, 4))
    empty = mask.clone()
    empty[1] = False
    with pytest.raises(ValueError, match="empty sequence"):
        loss(logits, logits, empty)
    with pytest.raises(ValueError, match=r"student_logits must have shape \[B, T, C\]"):
        loss(torch.zeros(2, 11), torch.zeros(2, 11), mask)
    with pytest.raises(ValueError, match="one shape"):
        loss(logits, torch.zeros(2, 5, 11), mask)
    with pytest.raises(ValueError, match="temperature"):
        CTCFrameKDLoss(temperature=0.0)


def test_frame_kd_moves_the_student_towards_the_teacher():
    # A frozen random CTC teacher on random log-mel-like inputs; the same-seed student is
    # trained 40 steps on CTC + frame KD (lambda 0.5) or on CTC alone, on random digit
    # transcripts. The distilled student's frame KL to the teacher on held-out inputs ends
    # lower.
    torch.manual_seed(0)
    teacher = CTCNet(channels=16, hidden=16, layers=1).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(3)
    lengths = torch.randint(12, 21, (64,), generator=generator)
    x = torch.randn(64, 20, 32, generator=generator)
    mask = torch.arange(20)[None, :] < lengths[:, None]
    targets = torch.randint(0, 10, (64, 3), generator=generator)
    kd = CTCFrameKDLoss()

    def train(weight: float) -> float:
        torch.manual_seed(1)
        student = CTCNet(channels=8, hidden=8, layers=1)
        optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
        for step in range(40):
            rows = torch.arange(step % 4 * 12, step % 4 * 12 + 12)
            batch = SpeechBatch(x[rows], mask[rows], targets[rows], torch.full((12,), 3))
            out_mask = student.output_mask(batch.mask)
            logits = student(batch.features, batch.mask).logits
            with torch.no_grad():
                teacher_logits = teacher(batch.features, batch.mask).logits
            loss = (1 - weight) * ctc_loss(logits, out_mask, batch)
            loss = loss + weight * kd(logits, teacher_logits, out_mask)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            held_out = slice(48, 64)
            out_mask = student.output_mask(mask[held_out])
            return float(
                kd(
                    student(x[held_out], mask[held_out]).logits,
                    teacher(x[held_out], mask[held_out]).logits,
                    out_mask,
                )
            )

    assert train(0.5) < 0.7 * train(0.0)
