"""IRG (Liu et al., 2019): contract, paper properties, hand values, training."""

from __future__ import annotations

import pytest
import torch

from reference_impls.common import train
from reference_impls.common.testing import (
    check_loss_contract,
    digits_student_pair,
    random_feature_pair,
)
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.similarity.irg import IRGLoss


@pytest.fixture
def inputs() -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    student, teacher = random_feature_pair(batch=8)
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 10, generator=generator), torch.randn(8, 10, generator=generator)
    # the default terms read the last two stages only
    return student[1:], teacher[1:], *logits


def test_contract_without_the_vertex_term(inputs):
    student, teacher, _, _ = inputs
    check_loss_contract(IRGLoss(lambda_vertex=0.0), student, teacher)


def test_zero_when_student_equals_teacher(inputs):
    _, teacher, _, teacher_logits = inputs
    value = IRGLoss()([t.clone() for t in teacher], teacher, teacher_logits.clone(), teacher_logits)
    assert value.item() == pytest.approx(0.0, abs=1e-6)


def test_graphs_ignore_the_scale_of_each_network(inputs):
    # edges and transformations are divided by their batch maximum
    student, teacher, _, _ = inputs
    loss = IRGLoss(lambda_vertex=0.0)
    scaled = loss([5.0 * s for s in student], [0.1 * t for t in teacher])
    torch.testing.assert_close(scaled, loss(student, teacher), rtol=1e-4, atol=1e-6)


def test_hand_computed_edge_and_vertex():
    # three examples, one-number maps: student 0, 1, 3; teacher 0, 2, 3
    student = [torch.tensor([0.0, 1.0, 3.0]).view(3, 1, 1, 1)]
    teacher = [torch.tensor([0.0, 2.0, 3.0]).view(3, 1, 1, 1)]
    # squared distances (01, 02, 12): student 1, 9, 4 -> /9; teacher 4, 9, 1 -> /9
    # two off-diagonal entries differ by 3/9 each way, twice each, over 9 entries
    edge = 2 * ((1 / 9 - 4 / 9) ** 2 + (4 / 9 - 1 / 9) ** 2) / 9
    student_logits = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    vertex = 1.0 / 6  # mean squared difference with zero teacher logits
    loss = IRGLoss(
        lambda_vertex=0.1,
        lambda_edge=5.0,
        lambda_transformation=0.0,
        edge_stages=(0,),
        embedding_edge=False,
        transformation_stages=(0, 0),
    )
    value = loss(student, teacher, student_logits, torch.zeros(3, 2))
    assert value.item() == pytest.approx(5.0 * edge + 0.1 * vertex, rel=1e-6)


def test_hand_computed_transformation():
    # earlier maps [2, 1, 2, 2] are pooled to 1x1; later maps [2, 2, 1, 1] average their 2 channels
    student = [torch.tensor([1.0, 2.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2)]
    student.append(torch.tensor([[3.0, 5.0], [2.0, 2.0]]).view(2, 2, 1, 1))
    teacher = [torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2)]
    teacher.append(torch.tensor([[1.0, 1.0], [2.0, 2.0]]).view(2, 2, 1, 1))
    # student moves (1 - 4)^2 = 9 and (2 - 2)^2 = 0 -> [1, 0]; teacher 1 and 1 -> [1, 1]
    loss = IRGLoss(lambda_vertex=0.0, lambda_edge=0.0, lambda_transformation=1.0)
    assert loss(student, teacher).item() == pytest.approx(0.5, rel=1e-6)


def test_edge_gradient_treats_the_largest_distance_as_a_constant():
    # the hand example above: student 0, 1, 3 (largest distance 9, pair 0-2); teacher 0, 2, 3
    student = torch.tensor([0.0, 1.0, 3.0], requires_grad=True)
    teacher = torch.tensor([0.0, 2.0, 3.0])
    loss = IRGLoss(
        lambda_vertex=0.0,
        lambda_edge=1.0,
        lambda_transformation=0.0,
        edge_stages=(0,),
        embedding_edge=False,
        transformation_stages=(0, 0),
    )
    loss([student.view(3, 1, 1, 1)], [teacher.view(3, 1, 1, 1)]).backward()
    # dL/dA_ij = 2 (A_s - A_t)_ij / 9: -2/27 for the pair 01, +2/27 for 12, 0 for 02; with the
    # maximum constant, dL/df_i = sum_j 2 dL/dA_ij * 2 (f_i - f_j) / 9. Differentiating the
    # maximum too would add 8/243 to f_0 and take it from f_2. (The authors' Caffe backward
    # gives half of this gradient: it only accumulates the f_i side of each pair.)
    expected = torch.tensor([8.0, -24.0, 16.0]) / 243
    torch.testing.assert_close(student.grad, expected)


def test_transformation_gradient_treats_the_largest_move_as_a_constant():
    # student moves 1, 2, 3 (squared 1, 4, 9 -> [1, 4, 9] / 9); teacher moves 1, 1, 1 -> [1, 1, 1]
    earlier = torch.zeros(3, 1, 1, 1)
    later = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    teacher = [torch.zeros(3, 1, 1, 1), torch.ones(3, 1, 1, 1)]
    loss = IRGLoss(
        lambda_vertex=0.0,
        lambda_edge=0.0,
        lambda_transformation=1.0,
        edge_stages=(),
        embedding_edge=False,
    )
    loss([earlier, later.view(3, 1, 1, 1)], teacher).backward()
    # dL/dLambda_n = 2/3 (Lambda_s - Lambda_t)_n = [-16, -10, 0] / 27, times 2 l_n / 9 with the
    # maximum constant; differentiating the maximum too would add 336/2187 to the last one
    expected = torch.tensor([-32.0, -40.0, 0.0]) / 243
    torch.testing.assert_close(later.grad, expected)


def test_rejects_bad_arguments(inputs):
    student, teacher, _, _ = inputs
    with pytest.raises(ValueError, match="logits"):
        IRGLoss()(student, teacher)
    with pytest.raises(ValueError, match="non-negative"):
        IRGLoss(lambda_edge=-1.0)
    with pytest.raises(ValueError, match="out of range"):
        IRGLoss(lambda_vertex=0.0, edge_stages=(5,))(student, teacher)


@torch.no_grad()
def held_out_irg(student, teacher, x) -> float:
    student.eval()
    s, t = student(x), teacher(x)
    return IRGLoss()(s.features, t.features, s.logits, t.logits).item()


def test_training_moves_student_toward_teacher():
    data, teacher, student, baseline = digits_student_pair()
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), data, **kwargs)
    train(OfflineDistiller(student, teacher, IRGLoss()), data, **kwargs)
    distilled = held_out_irg(student, teacher, data.x_test)
    assert distilled < 0.6 * held_out_irg(baseline, teacher, data.x_test)


@pytest.mark.parametrize("scale", [1.0, 1e15, 1e-15])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_edge_matrix_scales_the_product_not_the_features_bit_for_bit(scale, dtype):
    """``2 * (a @ a.T)`` replaced ``(2 * a) @ a.T`` (a [B, D] pass less each way): a power
    of two commutes with rounding, so values and gradients are unchanged, also at large
    and small magnitudes."""
    from reference_impls.sources.similarity.irg import edge_matrix

    def two_scaled_features(features: torch.Tensor) -> torch.Tensor:
        flat = features.flatten(1)
        squared = flat.pow(2).sum(dim=1)
        distances = squared.unsqueeze(0) + squared.unsqueeze(1) - 2 * flat @ flat.t()
        off_diagonal = 1.0 - torch.eye(len(flat), dtype=flat.dtype)
        distances = distances.clamp_min(0.0) * off_diagonal
        return distances / distances.max().detach().clamp_min(1e-12)

    features = scale * torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    weights = torch.rand(6, 6, generator=torch.Generator().manual_seed(1), dtype=dtype)
    ours = features.to(dtype).requires_grad_()
    reference = features.to(dtype).requires_grad_()
    value, expected = edge_matrix(ours), two_scaled_features(reference)
    (value * weights).sum().backward(), (expected * weights).sum().backward()
    assert torch.equal(value, expected)
    assert torch.equal(ours.grad, reference.grad)
