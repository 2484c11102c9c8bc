"""NST (Huang and Wang, 2017): contract, paper properties, a hand value, training."""

from __future__ import annotations

import pytest
import torch

from reference_impls.common import train
from reference_impls.common.testing import check_loss_contract, digits_setup, random_feature_pair
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.feature.nst import NSTLoss, nst_stage_loss

ALL_STAGES = (0, 1, 2)


@pytest.fixture
def feats() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return random_feature_pair(batch=4)


def test_contract(feats):
    check_loss_contract(NSTLoss(stages=ALL_STAGES), *feats)


def test_default_uses_only_the_last_stage(feats):
    student, teacher = feats
    torch.testing.assert_close(
        NSTLoss()(student, teacher), 50.0 * nst_stage_loss(student[2], teacher[2])
    )


def test_zero_when_student_equals_teacher(feats):
    _, teacher = feats
    value = NSTLoss(stages=ALL_STAGES)([t.clone() for t in teacher], teacher)
    assert value.item() == pytest.approx(0.0, abs=1e-5)


def test_invariant_to_channel_order_scale_and_duplication(feats):
    # the patterns are a set of L2-normalised channels: order, per-channel scale and
    # duplication do not change the empirical distribution the MMD compares
    student, teacher = feats
    s, t = student[1], teacher[1]
    scales = torch.rand(1, s.shape[1], 1, 1) + 0.5
    expected = nst_stage_loss(s, t)
    torch.testing.assert_close(nst_stage_loss(s[:, torch.randperm(s.shape[1])], t), expected)
    torch.testing.assert_close(nst_stage_loss(s * scales, t), expected)
    torch.testing.assert_close(nst_stage_loss(torch.cat([s, s], dim=1), t), expected)


def test_quadratic_kernel_equals_gram_matrix_distance(feats):
    # with k(x, y) = (x.y)^2, MMD^2 = || mean_k f_k f_k^T (student) - (teacher) ||_F^2
    student, teacher = feats
    s, t = student[0], teacher[0]

    def mean_gram(x: torch.Tensor) -> torch.Tensor:
        patterns = x.flatten(2)
        patterns = patterns / patterns.norm(dim=2, keepdim=True)
        return torch.einsum("bkp,bkq->bpq", patterns, patterns) / x.shape[1]

    expected = (mean_gram(s) - mean_gram(t)).pow(2).sum(dim=(1, 2)).mean()
    torch.testing.assert_close(nst_stage_loss(s, t), expected, rtol=1e-4, atol=1e-6)


def test_hand_computed_value():
    # 1x2 maps. student: one channel [3, 4] -> [0.6, 0.8].
    # teacher: channels [1, 0] and [0, 2] -> [1, 0] and [0, 1].
    # k(x, y) = (x.y)^2: teacher term (1 + 0 + 0 + 1) / 4 = 0.5; student term 1;
    # cross term (0.6^2 + 0.8^2) / 2 = 0.5. MMD^2 = 0.5 + 1 - 2 * 0.5 = 0.5; lambda = 50.
    student = torch.tensor([[[[3.0, 4.0]]]])
    teacher = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])
    value = NSTLoss(stages=(0,))([student], [teacher])
    assert value.item() == pytest.approx(50 * 0.5, rel=1e-6)


def test_spatial_mismatch_is_refused():
    with pytest.raises(ValueError, match="same positions"):
        nst_stage_loss(torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lambda_": -1.0}, "lambda_"),
        ({"degree": 0}, "degree"),
        ({"degree": 1.5}, "degree"),
        ({"offset": -1.0}, "offset"),
        ({"stages": ()}, "stages"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NSTLoss(**kwargs)


def test_rejects_too_few_feature_maps(feats):
    student, teacher = feats
    with pytest.raises(ValueError, match="need 3 feature maps"):
        NSTLoss()(student[:2], teacher[:2])


@torch.no_grad()
def _last_stage_mmd(student, teacher, x) -> float:
    student.eval()
    return nst_stage_loss(student(x).features[2], teacher(x).features[2]).item()


def test_training_moves_student_patterns_toward_teacher():
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), baseline_data, **kwargs)
    train(OfflineDistiller(student, teacher, NSTLoss()), data, **kwargs)
    distilled_gap = _last_stage_mmd(student, teacher, data.x_test)
    baseline_gap = _last_stage_mmd(baseline, teacher, data.x_test)
    assert distilled_gap < 0.8 * baseline_gap


@pytest.mark.parametrize("channels, positions", [(32, 9), (6, 16)])
def test_kernel_mean_through_the_small_product_equals_the_gram_matrix(channels, positions):
    # (x.y)^2 summed over channel pairs = ||L^T R||_F^2: taken where H*W < C, in value and grad
    from reference_impls.sources.feature.nst import polynomial_kernel_mean

    left = torch.randn(3, channels, positions, dtype=torch.float64, requires_grad=True)
    right = torch.randn(3, channels, positions, dtype=torch.float64)
    ours = polynomial_kernel_mean(left, right, 2, 0.0)
    (grad,) = torch.autograd.grad(ours.sum(), left)
    leaf = left.detach().requires_grad_()
    expected = torch.bmm(leaf, right.transpose(1, 2)).pow(2).mean(dim=(1, 2))
    (expected_grad,) = torch.autograd.grad(expected.sum(), leaf)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(grad, expected_grad)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = polynomial_kernel_mean(left.detach().float(), right.float(), 2, 0.0)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.double(), expected.detach(), rtol=1e-5, atol=1e-6)
