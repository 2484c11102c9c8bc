"""Fewer frames (Bhardwaj et al., 2019): hand values, the authors' weighting, padding, training.

The contract every implementation meets (construction at defaults, gradients, determinism,
state_dict, CPU/CUDA and bf16) is checked for all of them by
tests/reference_impls/test_contracts.py; this file holds only what is specific to
FewerFramesDistillation.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reference_impls.common.training import predict_logits, train
from reference_impls.common.video import (
    ClipClassifier,
    few_frame_student,
    load_moving_digits,
    pack_clips,
    video_teacher,
)
from reference_impls.modalities.video.fewer_frames import (
    FewerFramesDistillation,
    prediction_loss,
    representation_loss,
)


@pytest.fixture(scope="module")
def clips():
    data = load_moving_digits(seed=0, num_train=48, num_test=24)
    return data, data.split()


def test_hand_computed_value():
    # E^t = [0, 0], E^s = [1, 2]: ||E^t - E^s||^2 = 1 + 4 = 5; second sample identical
    student, teacher = torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.zeros(2, 2)
    assert representation_loss(student, teacher).item() == pytest.approx((5 + 9) / 2)
    # P^t = softmax([ln 3, 0]) = (3/4, 1/4), P^s = (1/2, 1/2):
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812..., summed over two equal rows
    teacher_logits = torch.tensor([[math.log(3.0), 0.0]] * 2)
    student_logits = torch.zeros(2, 2)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert prediction_loss(student_logits, teacher_logits).item() == pytest.approx(2 * kl)
    assert prediction_loss(student_logits, teacher_logits, "mean").item() == pytest.approx(kl)


def test_equals_the_authors_tensorflow_expressions_transcribed():
    # train.py: pred_loss = reduce_sum(KL(Categorical(probs=teacher), Categorical(probs=student))),
    # tf's Categorical(probs=p) has logits log p, and its KL is sum softmax(a) (log_softmax(a) -
    # log_softmax(b)): transcribed in NumPy (float64) on unnormalised probabilities, as the
    # authors' sigmoid outputs are, then fed to ours as log-probabilities
    rng = np.random.default_rng(0)
    p_teacher, p_student = rng.uniform(0.01, 1, (8, 5)), rng.uniform(0.01, 1, (8, 5))

    def log_softmax(a):
        return a - np.log(np.exp(a).sum(1, keepdims=True))

    a, b = np.log(p_teacher), np.log(p_student)
    theirs = (np.exp(log_softmax(a)) * (log_softmax(a) - log_softmax(b))).sum()
    ours = prediction_loss(torch.from_numpy(b), torch.from_numpy(a))
    assert ours.item() == pytest.approx(theirs, rel=1e-12)
    # student_loss_state = reduce_mean(reduce_sum(square(teacher_state - student_state), 1))
    e_t, e_s = rng.normal(size=(8, 6)), rng.normal(size=(8, 6))
    theirs_state = np.square(e_t - e_s).sum(1).mean()
    ours_state = representation_loss(torch.from_numpy(e_s), torch.from_numpy(e_t))
    assert ours_state.item() == pytest.approx(theirs_state, rel=1e-12)


def test_total_is_twice_the_representation_plus_prediction_plus_ce(clips):
    # total_student_loss = L_rep + L_pred + L_CE + L_rep in the authors' train.py
    _, split = clips
    torch.manual_seed(0)
    procedure = FewerFramesDistillation(few_frame_student(), video_teacher()).eval()
    x, y = split.x_train[:16], split.y_train[:16]
    terms = procedure(x, y)
    expected = 2 * terms["representation"] + terms["prediction"] + terms["ce"]
    torch.testing.assert_close(terms["loss"].detach(), expected)
    student = procedure.student(x)
    teacher = procedure.teacher(x)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(student.logits, y).detach())
    torch.testing.assert_close(
        terms["representation"],
        representation_loss(procedure.connector(student.embedding), teacher.embedding).detach(),
    )


def test_property_zero_distillation_when_the_student_reads_what_the_teacher_reads(clips):
    # a student of the teacher's architecture and weights that reads every frame has the
    # teacher's representation and predictions: both distillation terms vanish
    _, split = clips
    torch.manual_seed(0)
    teacher = video_teacher()
    student = copy.deepcopy(teacher)
    procedure = FewerFramesDistillation(student, teacher).eval()
    terms = procedure(split.x_train[:16], split.y_train[:16])
    assert isinstance(procedure.connector, torch.nn.Identity)
    assert terms["representation"].item() == pytest.approx(0.0, abs=1e-10)
    assert terms["prediction"].item() == pytest.approx(0.0, abs=1e-6)


def test_padded_frames_never_contribute(clips):
    data, _ = clips
    torch.manual_seed(0)
    procedure = FewerFramesDistillation(few_frame_student(), video_teacher()).eval()
    packed = pack_clips(data.clips_train[:12], data.mask_train[:12])
    noisy = packed.clone()
    padded = ~data.mask_train[:12]
    noisy[:, :, :-1][padded] = 50.0
    first, second = procedure(packed, data.y_train[:12]), procedure(noisy, data.y_train[:12])
    torch.testing.assert_close(first["loss"], second["loss"], rtol=0, atol=0)


def test_training_moves_student_toward_teacher(clips):
    # the same-seed student trained on labels alone does not learn the teacher's
    # representation; the distilled one does (a fixed, untrained teacher suffices to see it)
    _, split = clips
    torch.manual_seed(1)
    teacher = video_teacher()

    def distance(student: ClipClassifier, procedure: FewerFramesDistillation) -> float:
        student.eval()
        with torch.no_grad():
            mapped = procedure.connector(student(split.x_test).embedding)
            return representation_loss(mapped, teacher.eval()(split.x_test).embedding).item()

    results = {}
    for weights in ((2.0, 1.0), (0.0, 0.0)):
        torch.manual_seed(0)
        student = few_frame_student()
        procedure = FewerFramesDistillation(
            student, teacher, representation_weight=weights[0], prediction_weight=weights[1]
        )
        train(procedure, split, epochs=4, lr=0.05, batch_size=16, seed=0, device="cpu")
        results[weights] = distance(student, procedure)
    assert results[(2.0, 1.0)] < 0.5 * results[(0.0, 0.0)]
    assert predict_logits(teacher, split.x_test).shape == (24, 10)


def test_bad_input_names_the_argument(clips):
    _, split = clips
    with pytest.raises(ValueError, match="student_representation and teacher_representation"):
        representation_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="student_logits has 3 classes"):
        prediction_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction must be one of"):
        prediction_loss(torch.zeros(2, 3), torch.zeros(2, 3), "none")
    with pytest.raises(ValueError, match="prediction_reduction must be one of"):
        FewerFramesDistillation(few_frame_student(), video_teacher(), prediction_reduction="x")
    with pytest.raises(ValueError, match="must not all be zero"):
        FewerFramesDistillation(
            few_frame_student(), video_teacher(), 0.0, prediction_weight=0.0, label_weight=0.0
        )
    with pytest.raises(ValueError, match="student_dim is required"):
        FewerFramesDistillation(torch.nn.Linear(2, 2), video_teacher())
    procedure = FewerFramesDistillation(few_frame_student(), video_teacher())
    with pytest.raises(ValueError, match=r"target must be class indices of shape \(4,\)"):
        procedure(split.x_train[:4], split.y_train[:3])
    with pytest.raises(ValueError, match="clips must be packed clips"):
        procedure(split.x_train[:4, :, 0], split.y_train[:4])
