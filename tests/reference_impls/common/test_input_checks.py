"""Logit losses check their inputs with one shared wording (names, expected and given
shapes), and float64 stays float64 while half precision is computed in float32 (issue 18)."""

from __future__ import annotations

import pytest
import torch

from reference_impls.common.validation import class_indices, logit_pair
from reference_impls.sources.feature import ATLoss, FitNetsLoss
from reference_impls.sources.logit import (
    DKDLoss,
    KDLoss,
    LogitStandardizationLoss,
    NormKDLoss,
    TTMLoss,
)
from reference_impls.sources.similarity import DISTLoss

LOGIT_LOSSES = {
    "KD": KDLoss,
    "DKD": DKDLoss,
    "LS-KD": LogitStandardizationLoss,
    "LS-DKD": lambda: LogitStandardizationLoss(base="dkd"),
    "NormKD": NormKDLoss,
    "TTM": TTMLoss,
    "DIST": DISTLoss,
}
TARGET = torch.tensor([0, 1, 2, 3])


def call(loss, student, teacher, target=TARGET):
    return loss(student, teacher, target) if loss.needs_target else loss(student, teacher)


@pytest.fixture(params=list(LOGIT_LOSSES), ids=list(LOGIT_LOSSES))
def logit_loss(request):
    return LOGIT_LOSSES[request.param]()


def test_class_count_mismatch_names_both_arguments(logit_loss):
    with pytest.raises(
        ValueError,
        match=r"student_logits has 10 classes but teacher_logits has 5 \(shapes \(4, 10\) and "
        r"\(4, 5\)\)",
    ):
        call(logit_loss, torch.randn(4, 10), torch.randn(4, 5))


def test_one_dimensional_logits_are_refused(logit_loss):
    with pytest.raises(
        ValueError,
        match=r"student_logits must have shape \[(B|\.\.\.), C\].*got "
        r"shape \(10,\); add the batch dimension",
    ):
        call(logit_loss, torch.randn(10), torch.randn(10))


def test_batch_size_mismatch_is_refused(logit_loss):
    with pytest.raises(ValueError, match=r"must have one shape, got \(4, 10\) and \(3, 10\)"):
        call(logit_loss, torch.randn(4, 10), torch.randn(3, 10))


@pytest.mark.parametrize("make", [DKDLoss, lambda: LogitStandardizationLoss(base="dkd")])
def test_one_hot_targets_are_refused_with_the_fix(make):
    one_hot = torch.nn.functional.one_hot(TARGET, 10).float()
    with pytest.raises(
        ValueError,
        match=r"target must be class indices of shape \(4,\) .*got "
        r"shape \(4, 10\); for one-hot targets pass target\.argmax\(dim=1\)",
    ):
        make()(torch.randn(4, 10), torch.randn(4, 10), one_hot)
    with pytest.raises(
        ValueError, match=r"target must hold integer class indices, got dtype torch\.float32"
    ):
        make()(torch.randn(4, 10), torch.randn(4, 10), TARGET.float())


def test_kd_still_takes_token_logits():
    logit_pair(torch.randn(2, 3, 7), torch.randn(2, 3, 7), tokens_ok=True)
    assert KDLoss()(torch.randn(2, 3, 7), torch.randn(2, 3, 7)) >= 0
    with pytest.raises(ValueError, match=r"must have shape \[B, C\]"):
        logit_pair(torch.randn(2, 3, 7), torch.randn(2, 3, 7))
    class_indices(TARGET, torch.randn(4, 7))  # accepted


def test_float64_logits_give_float64_losses(logit_loss):
    student = torch.randn(4, 10, dtype=torch.float64)
    assert call(logit_loss, student, torch.randn(4, 10, dtype=torch.float64)).dtype == torch.float64


def test_half_precision_logits_are_computed_in_float32(logit_loss):
    student = torch.randn(4, 10).bfloat16()
    assert call(logit_loss, student, torch.randn(4, 10).bfloat16()).dtype == torch.float32


def feature_maps(channels, dtype):
    return [torch.randn(4, c, 4, 4, dtype=dtype) for c in channels]


def test_at_keeps_float64_and_upcasts_half_precision():
    student, teacher = (
        feature_maps((2, 4, 8), torch.float64),
        feature_maps((4, 8, 16), torch.float64),
    )
    assert ATLoss()(student, teacher).dtype == torch.float64
    half = ATLoss()([f.bfloat16() for f in student], [f.bfloat16() for f in teacher])
    assert half.dtype == torch.float32


def test_fitnets_connector_refuses_another_dtype_and_says_what_to_do():
    student, teacher = (
        feature_maps((2, 4, 8), torch.float64),
        feature_maps((4, 8, 16), torch.float64),
    )
    loss = FitNetsLoss((2, 4, 8), (4, 8, 16))
    with pytest.raises(
        TypeError,
        match=r"FitNetsLoss's connector is float32 but the student "
        r"features are float64; .*loss\.double\(\)",
    ):
        loss(student, teacher)
    assert loss.double()(student, teacher).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts for itself
        value = FitNetsLoss((2, 4, 8), (4, 8, 16))(
            [f.float() for f in student], [f.float() for f in teacher]
        )
    assert value.dtype == torch.float32
