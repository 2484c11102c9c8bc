"""CRD (Tian et al., 2020): a hand value, the memory bank, the negatives, training, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.algorithms.contrastive.crd import CRDLoss, draw_contrast_indices, nce_loss
from reference_impls.common import linear_cka, train
from reference_impls.common.testing import digits_student_pair
from reference_impls.schemes.offline.distiller import OfflineDistiller


def identity_loss(num_samples: int = 4, temperature: float = 0.5, weight: float = 1.0) -> CRDLoss:
    """2-d embeddings and contrastive space, identity heads, a chosen memory: values by hand."""
    loss = CRDLoss(
        2, 2, num_samples, feature_dim=2, num_negatives=1, temperature=temperature, weight=weight
    )
    with torch.no_grad():
        for head in (loss.student_head, loss.teacher_head):
            head.linear.weight.copy_(torch.eye(2))
            head.linear.bias.zero_()
        loss.teacher_memory.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
        loss.student_memory.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    return loss


def test_hand_computed_value_and_the_normalisation_constant():
    # student (1, 0), teacher (0, 1) for sample 0; negative: sample 1.
    # student side: vs teacher memory rows 0 (1, 0) and 1 (0, 1): cosines 1 and 0
    # teacher side: vs student memory rows 0 (0, 1) and 1 (1, 0): cosines 1 and 0
    loss = identity_loss()
    value = loss(
        torch.tensor([[3.0, 0.0]]),  # the head normalises: (1, 0)
        torch.tensor([[0.0, 2.0]]),
        torch.tensor([0]),
        torch.tensor([[0, 1]]),
    )
    tau, n, k, eps = 0.5, 4, 1, 1e-7
    scores = [math.exp(1 / tau), math.exp(0 / tau)]
    z = n * sum(scores) / 2  # N times the mean score of the first batch
    noise = k / n
    positive, negative = scores[0] / z, scores[1] / z
    one_side = -(
        math.log(positive / (positive + noise + eps)) + math.log(noise / (negative + noise + eps))
    )
    assert value.item() == pytest.approx(2 * one_side, rel=1e-6)
    torch.testing.assert_close(loss.normalizers, torch.tensor([z, z]))


def test_the_weight_scales_the_loss_and_z_stays_fixed_after_the_first_batch():
    arguments = (torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    contrast = torch.tensor([[0, 1]])
    plain, weighted = identity_loss().eval(), identity_loss(weight=0.8).eval()
    assert weighted(*arguments, contrast).item() == pytest.approx(
        0.8 * plain(*arguments, contrast).item()
    )
    z = plain.normalizers.clone()
    plain(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([2]), contrast)
    torch.testing.assert_close(plain.normalizers, z)


def test_nce_of_the_paper_a_sharper_positive_gives_a_lower_loss():
    # Eq. 18: -log h(positive) - sum log(1 - h(negative)), h = P / (P + K/N)
    flat = torch.tensor([[1.0, 1.0, 1.0]])
    sharp = torch.tensor([[5.0, 0.2, 0.2]])
    assert nce_loss(sharp, 10) < nce_loss(flat, 10)
    p, noise = 5.0, 2 / 10
    expected = -(math.log(p / (p + noise + 1e-7)) + 2 * math.log(noise / (0.2 + noise + 1e-7)))
    assert nce_loss(sharp, 10).item() == pytest.approx(expected, rel=1e-6)


def test_the_student_matching_the_teachers_entry_of_its_own_sample_lowers_the_loss():
    # the positive is the same sample: a student that points where the teacher's memory
    # entry of its own sample points scores lower than one pointing at another sample's
    loss = identity_loss().eval()  # eval: the memory stays put between the two calls
    teacher, index, contrast = torch.tensor([[0.0, 1.0]]), torch.tensor([0]), torch.tensor([[0, 1]])
    loss.normalizers.fill_(4.0)
    own = loss(torch.tensor([[1.0, 0.0]]), teacher, index, contrast)  # = teacher_memory[0]
    other = loss(torch.tensor([[0.0, 1.0]]), teacher, index, contrast)  # = teacher_memory[1]
    assert own < other


def test_memory_moves_toward_the_embeddings_in_training_only():
    loss = identity_loss()
    arguments = (torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    untouched = loss.student_memory[1:].clone(), loss.teacher_memory[1:].clone()
    loss(*arguments, torch.tensor([[0, 1]]))
    half = math.sqrt(0.5)  # normalize(0.5 * (0, 1) + 0.5 * (1, 0))
    torch.testing.assert_close(loss.student_memory[0], torch.tensor([half, half]))
    torch.testing.assert_close(loss.teacher_memory[0], torch.tensor([half, half]))
    torch.testing.assert_close(loss.student_memory[1:], untouched[0])
    torch.testing.assert_close(loss.teacher_memory[1:], untouched[1])
    frozen = loss.student_memory.clone()
    loss.eval()(*arguments, torch.tensor([[0, 1]]))
    torch.testing.assert_close(loss.student_memory, frozen)


def test_memory_banks_are_buffers_saved_and_moved_with_the_loss():
    labels = torch.arange(40) % 4
    loss = CRDLoss(8, 16, 40, labels=labels, num_negatives=10)
    state = loss.state_dict()
    for name in ("student_memory", "teacher_memory", "normalizers", "labels"):
        assert name in state
    assert state["student_memory"].shape == (40, 128)
    assert not any("memory" in name for name, _ in loss.named_parameters())
    loss.double()
    assert loss.student_memory.dtype == torch.float64 and loss.labels.dtype == torch.int64
    value = loss(
        torch.randn(5, 8, dtype=torch.float64),
        torch.randn(5, 16, dtype=torch.float64),
        torch.arange(5),
    )
    assert value.dtype == torch.float64


def test_negatives_come_from_other_classes_without_replacement():
    labels = torch.arange(60) % 3  # 40 samples of other classes for each sample
    index = torch.tensor([0, 4, 8])
    torch.manual_seed(0)
    drawn = draw_contrast_indices(index, 30, 60, labels)
    assert drawn.shape == (3, 31)
    torch.testing.assert_close(drawn[:, 0], index)
    negatives = drawn[:, 1:]
    assert (labels[negatives] != labels[index].unsqueeze(1)).all()
    assert all(row.unique().numel() == 30 for row in negatives)


def test_too_few_negatives_of_other_classes_are_drawn_with_replacement():
    labels = torch.tensor([0] * 18 + [1, 2])  # class 0 has 2 samples of other classes
    torch.manual_seed(0)
    drawn = draw_contrast_indices(torch.tensor([0, 18]), 5, 20, labels)
    assert set(drawn[0, 1:].tolist()) <= {18, 19}  # with replacement, other classes only
    assert (labels[drawn[1, 1:]] != 1).all() and drawn[1, 1:].unique().numel() == 5


def test_without_labels_negatives_are_uniform_over_the_bank():
    torch.manual_seed(0)
    drawn = draw_contrast_indices(torch.tensor([3, 7]), 2000, 10)
    assert drawn.shape == (2, 2001) and drawn[:, 0].tolist() == [3, 7]
    counts = torch.bincount(drawn[:, 1:].flatten(), minlength=10).float()
    assert counts.min() > 0.8 * counts.mean()  # every sample, about equally often


def nearest_centroid_accuracy(model: torch.nn.Module, data) -> float:
    """Test accuracy of the class means of the normalised training embeddings (no trained head)."""
    with torch.no_grad():
        train_points = F.normalize(model(data.x_train).embedding, dim=1)
        test_points = F.normalize(model(data.x_test).embedding, dim=1)
    centroids = torch.stack([train_points[data.y_train == c].mean(0) for c in range(10)])
    return ((test_points @ centroids.T).argmax(1) == data.y_test).float().mean().item()


def test_crd_alone_without_labels_moves_the_students_embeddings_toward_the_teachers():
    # no cross-entropy and uniform negatives: the only signal is the teacher's representation;
    # the same-seed student left untrained is the baseline
    data, teacher, student, baseline = digits_student_pair(seed=0)
    data = data.with_train_subset(300)
    loss = CRDLoss(student.embedding_dim, teacher.embedding_dim, 300, num_negatives=128)
    initial_memory = loss.student_memory.clone()
    distiller = OfflineDistiller(student, teacher, loss, ce_weight=0.0)
    assert distiller.needs_index
    history = train(distiller, data, epochs=4, batch_size=25, seed=0, device="cpu")
    assert (loss.student_memory != initial_memory).any(dim=1).all()  # every row was visited
    assert history.losses[-1]["kd"] < 0.85 * history.losses[0]["kd"]  # the NCE term falls
    student.eval(), baseline.eval()
    with torch.no_grad():
        target = teacher(data.x_test).embedding
        distilled = linear_cka(student(data.x_test).embedding, target)
        untrained = linear_cka(baseline(data.x_test).embedding, target)
    assert distilled > untrained + 0.1
    assert (
        nearest_centroid_accuracy(student, data) > nearest_centroid_accuracy(baseline, data) + 0.1
    )


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"memory bank \(num_samples=100\).*num_negatives=16384"):
        CRDLoss(8, 16, 100)
    with pytest.raises(ValueError, match="temperature"):
        CRDLoss(8, 16, 100, num_negatives=10, temperature=0.0)
    with pytest.raises(ValueError, match="momentum"):
        CRDLoss(8, 16, 100, num_negatives=10, momentum=1.5)
    with pytest.raises(ValueError, match=r"labels must have shape \(100,\)"):
        CRDLoss(8, 16, 100, labels=torch.zeros(50, dtype=torch.long), num_negatives=10)
    with pytest.raises(ValueError, match="single class"):
        CRDLoss(8, 16, 100, labels=torch.zeros(100, dtype=torch.long), num_negatives=10)
    loss = CRDLoss(8, 16, 100, num_negatives=10)
    student, teacher = torch.randn(4, 8), torch.randn(4, 16)
    with pytest.raises(ValueError, match=r"index must lie in \[0, 100\).*from 0 to 100"):
        loss(student, teacher, torch.tensor([0, 1, 2, 100]))
    with pytest.raises(ValueError, match=r"index must have shape \(4,\), got shape \(3,\)"):
        loss(student, teacher, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer sample indices"):
        loss(student, teacher, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="twice"):
        loss(student, teacher, torch.tensor([0, 1, 1, 3]))
    with pytest.raises(ValueError, match=r"contrast_index must have shape \(4, 11\)"):
        loss(student, teacher, torch.arange(4), torch.zeros(4, 10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"student_embedding must have shape \[B, 8\]"):
        loss(torch.randn(4, 9), teacher, torch.arange(4))
    with pytest.raises(ValueError, match="batch sizes 4 and 5"):
        loss(student, torch.randn(5, 16), torch.arange(4))
    with pytest.raises(TypeError, match=r"loss.double\(\)"):
        loss(student.double(), teacher.double(), torch.arange(4))
