"""Supervision transfer (Gupta et al., 2016): the paired views, a hand value, no labels, training."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from reference_impls.algorithms.cross_modal.supervision_transfer import (
    StitchedClassifier,
    SupervisionTransfer,
)
from reference_impls.common import (
    ModelOutput,
    Supervised,
    accuracy,
    student_cnn,
    teacher_cnn,
    train,
)
from reference_impls.common.data import load_digits_split
from reference_impls.common.paired_views import (
    edge_view,
    gradient_magnitude,
    load_paired_digits,
    split_modalities,
)
from reference_impls.common.testing import pretrained_digits_teacher


class FixedMaps(nn.Module):
    """A stand-in network whose one feature map is given (a leaf, to read its gradient)."""

    def __init__(self, feature_map: torch.Tensor) -> None:
        super().__init__()
        self.feature_map = feature_map
        self.channels = (feature_map.shape[1],)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(torch.zeros(len(x), 10), [self.feature_map])


# ----------------------------------------------------------------------------- paired views


def test_the_edge_view_is_the_sobel_magnitude_plus_seeded_noise():
    image = torch.zeros(1, 1, 5, 5)
    image[0, 0, :, 2:] = 1.0  # a vertical step between columns 1 and 2: |G_x| = 1 + 2 + 1
    magnitude = gradient_magnitude(image)
    assert magnitude[0, 0, 2, 1].item() == pytest.approx(4.0)
    assert magnitude[0, 0, 2, 2].item() == pytest.approx(4.0)
    assert magnitude[0, 0, 2, 3].item() == pytest.approx(0.0)  # flat ink: no edge
    assert magnitude[0, 0, 2, 4].item() == pytest.approx(4.0)  # zero padding: an edge at the border
    assert magnitude[0, 0, 0, 0].item() == pytest.approx(0.0)
    standardised = (image - 0.3) / 0.4  # as load_digits_split stores the digits
    torch.testing.assert_close(edge_view(standardised, noise=0.0), magnitude)
    noisy, again, other = (edge_view(standardised, 0.3, s) for s in (0, 0, 1))
    torch.testing.assert_close(noisy, again, rtol=0, atol=0)
    assert not torch.equal(noisy, other)
    torch.testing.assert_close((noisy - magnitude).std(), torch.tensor(0.3), rtol=0.3, atol=0)


def test_paired_digits_pair_by_index_and_frames_stack_the_two_views():
    data = load_digits_split(seed=0)
    pairs = load_paired_digits(data)
    assert pairs.images is data and pairs.edges.x_train.shape == data.x_train.shape
    assert torch.equal(pairs.edges.y_train, data.y_train)
    mean, std = pairs.edges.x_train.mean().item(), pairs.edges.x_train.std().item()
    assert mean == pytest.approx(0.0, abs=1e-5) and std == pytest.approx(1.0, abs=1e-5)
    frames = pairs.frames(labelled=50)
    assert frames.x_train.shape == (50, 2, 8, 8)
    assert torch.equal(frames.x_train[:, :1], data.x_train[:50])
    assert torch.equal(frames.x_train[:, 1:], pairs.edges.x_train[:50])
    assert torch.equal(frames.x_test, pairs.edges.x_test)  # the student is tested on its own view
    torch.testing.assert_close(load_paired_digits(data).edges.x_test, pairs.edges.x_test)


def test_split_modalities_reads_stacked_frames_or_a_pair():
    frames = torch.randn(4, 3, 8, 8)
    teacher_input, student_input = split_modalities(frames, 2, "X")
    assert teacher_input.shape == (4, 2, 8, 8) and student_input.shape == (4, 1, 8, 8)
    audio, video = torch.randn(4, 1, 64, 16), torch.randn(4, 3, 8, 8)
    assert split_modalities((audio, video), 1, "X") == (audio, video)
    with pytest.raises(
        ValueError, match=r"X: paired frames must have more than .*=1.*\(4, 1, 8, 8\)"
    ):
        split_modalities(torch.randn(4, 1, 8, 8), 1, "X")
    with pytest.raises(ValueError, match=r"batch sizes 4 and 3"):
        split_modalities((audio, video[:3]), 1, "X")
    with pytest.raises(ValueError, match="two tensors"):
        split_modalities((audio,), 1, "X")


# ----------------------------------------------------------------------------- the loss


def test_hand_computed_value_is_caffe_euclidean_loss_and_labels_are_never_read():
    # two samples, 1 channel, 1x2 maps; per-sample squared distances 1+4 = 5 and 9+16 = 25
    student_map = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 0.0]]]], requires_grad=True)
    teacher_map = torch.tensor([[[[0.0, 0.0]]], [[[3.0, 4.0]]]])
    procedure = SupervisionTransfer(FixedMaps(student_map), FixedMaps(teacher_map))
    assert isinstance(procedure.connector, nn.Identity)  # equal widths: t = identity
    frames = torch.zeros(2, 2, 1, 2)
    terms = procedure(frames)
    assert terms["loss"].item() == pytest.approx(0.5 * (5 + 25) / 2)  # 7.5
    terms["loss"].backward()
    torch.testing.assert_close(student_map.grad, (student_map - teacher_map).detach() / 2)
    for target in (torch.tensor([0, 1]), torch.tensor([7, 7])):
        assert procedure(frames, target)["loss"].item() == pytest.approx(7.5)


def test_the_teacher_is_frozen_and_the_connector_bridges_widths():
    teacher = teacher_cnn()
    procedure = SupervisionTransfer(student_cnn(), teacher)
    assert isinstance(procedure.connector, nn.Conv2d)
    assert (procedure.connector.in_channels, procedure.connector.out_channels) == (32, 128)
    procedure.train()
    assert not teacher.training and procedure.student.training
    assert not any(p.requires_grad for p in teacher.parameters())
    middle = SupervisionTransfer(student_cnn(), teacher_cnn(), stage=1)
    assert (middle.connector.in_channels, middle.connector.out_channels) == (16, 64)
    same_width = SupervisionTransfer(student_cnn(), student_cnn())
    assert isinstance(same_width.connector, nn.Identity)


def test_a_pair_of_tensors_gives_the_value_of_the_stacked_frames():
    torch.manual_seed(0)
    procedure = SupervisionTransfer(student_cnn(), teacher_cnn()).eval()
    frames = torch.randn(6, 2, 8, 8)
    stacked = procedure(frames)["loss"]
    paired = procedure((frames[:, :1], frames[:, 1:]))["loss"]
    torch.testing.assert_close(stacked, paired, rtol=0, atol=0)


def test_stitched_classifier_is_student_connector_then_the_teachers_head():
    torch.manual_seed(0)
    teacher = teacher_cnn().eval()
    procedure = SupervisionTransfer(student_cnn(), teacher).eval()
    x = torch.randn(5, 1, 8, 8)
    stitched = procedure.stitched()
    assert isinstance(stitched, StitchedClassifier)
    by_hand = teacher.fc(
        teacher.pool(procedure.connector(procedure.student(x).features[-1])).flatten(1)
    )
    torch.testing.assert_close(stitched(x).logits, by_hand)
    middle = SupervisionTransfer(student_cnn(), teacher, stage=1).eval()
    out = middle.connector(middle.student(x).features[1])
    out, _ = teacher.stages[2](out)
    torch.testing.assert_close(
        middle.stitched()(x).logits, teacher.fc(teacher.pool(out).flatten(1))
    )
    stitched.train()
    assert not teacher.training  # evaluating or training the stitched model never moves the teacher
    with pytest.raises(TypeError, match=r"stages.*lacks"):
        StitchedClassifier(student_cnn(), nn.Identity(), nn.Linear(2, 2), -1)


def test_bad_inputs_are_refused_naming_the_argument_and_the_shapes():
    with pytest.raises(ValueError, match="stage: stage 3 out of range for 3 stages"):
        SupervisionTransfer(student_cnn(), teacher_cnn(), stage=3)
    with pytest.raises(ValueError, match=r"student_width is required.*Linear"):
        SupervisionTransfer(nn.Linear(2, 2), teacher_cnn())
    with pytest.raises(ValueError, match="teacher_input_channels must be at least 1"):
        SupervisionTransfer(student_cnn(), teacher_cnn(), teacher_input_channels=0)
    small = SupervisionTransfer(
        FixedMaps(torch.zeros(2, 4, 2, 2)), FixedMaps(torch.zeros(2, 4, 3, 3))
    )
    with pytest.raises(ValueError, match=r"\(2, 4, 2, 2\) but the teacher's \(2, 4, 3, 3\)"):
        small(torch.zeros(2, 2, 1, 1))
    procedure = SupervisionTransfer(student_cnn(), teacher_cnn())
    with pytest.raises(ValueError, match=r"more than teacher_input_channels=1.*\(4, 1, 8, 8\)"):
        procedure(torch.zeros(4, 1, 8, 8))


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def transferred() -> tuple[SupervisionTransfer, object]:
    """400 unlabelled pairs, 5 epochs of transfer at the notebook's learning rate."""
    teacher = pretrained_digits_teacher()
    pairs = load_paired_digits(load_digits_split(seed=0))
    torch.manual_seed(0)
    procedure = SupervisionTransfer(student_cnn(), teacher)
    history = train(
        procedure, pairs.frames(400), epochs=5, lr=0.002, batch_size=25, seed=0, device="cpu"
    )
    return procedure, pairs, history


def test_transfer_lowers_the_distance_and_gives_a_classifier_without_any_label(transferred):
    # the paper's zero-shot use: the teacher's top layers on the student's transferred features
    procedure, pairs, history = transferred
    assert history.losses[-1]["l2"] < 0.6 * history.losses[0]["l2"]
    edges_x, edges_y = pairs.edges.x_test, pairs.edges.y_test
    zero_label = accuracy(procedure.stitched(), edges_x, edges_y)
    teacher_on_edges = accuracy(procedure.teacher, edges_x, edges_y)  # the modality gap
    assert teacher_on_edges < 0.4
    assert zero_label > 0.7 and zero_label > teacher_on_edges + 0.3


def test_fine_tuning_the_transferred_student_beats_the_same_student_from_scratch(transferred):
    # the paper's main use: pre-training for a modality with few labels
    procedure, pairs, _ = transferred
    few = pairs.edges.with_train_subset(50)
    torch.manual_seed(0)
    scratch = student_cnn()
    results = {}
    for name, model in (("transferred", copy.deepcopy(procedure.student)), ("scratch", scratch)):
        results[name] = train(
            Supervised(model), few, epochs=10, batch_size=25, device="cpu"
        ).final_accuracy
    assert results["transferred"] > results["scratch"] + 0.05, results
