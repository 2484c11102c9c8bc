"""DKD (Zhao et al., 2022): the KD decomposition, a hand value, warm-up, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common import kl_to_teacher, student_cnn, teacher_cnn, train
from reference_impls.common.testing import digits_setup
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.dkd import DKDLoss, tckd_nckd
from reference_impls.sources.logit.kd import KDLoss


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(16, 10, generator=generator)
    teacher = torch.randn(16, 10, generator=generator) * 3
    return student, teacher, torch.randint(0, 10, (16,), generator=generator)


@pytest.fixture
def cifar_sized_logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(256, 100, generator=generator) * 2
    teacher = torch.randn(256, 100, generator=generator) * 5
    return student, teacher, torch.randint(0, 100, (256,), generator=generator)


def test_zero_when_student_equals_teacher(logits):
    _, teacher, target = logits
    assert DKDLoss()(teacher.clone(), teacher, target).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_equals_tckd_plus_weighted_nckd(cifar_sized_logits):
    # Eq. (3) of the paper: KD = TCKD + (1 - p_t^T) NCKD, per sample
    student, teacher, target = cifar_sized_logits
    temperature = 4.0
    tckd, nckd = tckd_nckd(student, teacher, target, temperature)
    p_teacher_target = torch.softmax(teacher / temperature, dim=1).gather(1, target[:, None])[:, 0]
    decomposed = (tckd + (1 - p_teacher_target) * nckd).mean() * temperature**2
    kd = KDLoss(temperature)(student, teacher)
    torch.testing.assert_close(decomposed, kd, rtol=1e-5, atol=1e-6)


def test_alpha_beta_weight_the_two_terms(logits):
    only_tckd = DKDLoss(alpha=1.0, beta=0.0, warmup_epochs=0)(*logits)
    only_nckd = DKDLoss(alpha=0.0, beta=1.0, warmup_epochs=0)(*logits)
    both = DKDLoss(alpha=2.0, beta=3.0, warmup_epochs=0)(*logits)
    torch.testing.assert_close(both, 2 * only_tckd + 3 * only_nckd)


def test_hand_computed_value():
    # 3 classes, tau = 1, target 0; teacher logits [ln 2, 0, 0] -> p = [1/2, 1/4, 1/4];
    # student logits [0, 0, ln 2] -> p = [1/4, 1/4, 1/2]
    teacher = torch.tensor([[math.log(2.0), 0.0, 0.0]])
    student = torch.tensor([[0.0, 0.0, math.log(2.0)]])
    target = torch.tensor([0])
    # TCKD: KL([1/2, 1/2] || [1/4, 3/4])
    tckd = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    # NCKD: non-target teacher [1/2, 1/2], student [1/3, 2/3]
    nckd = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))
    loss = DKDLoss(alpha=1.0, beta=8.0, temperature=1.0, warmup_epochs=0)
    assert loss(student, teacher, target).item() == pytest.approx(tckd + 8 * nckd, rel=1e-6)


def test_linear_warmup_over_the_first_epochs(logits):
    loss = DKDLoss(warmup_epochs=20)
    full = loss(*logits)  # never scheduled: factor 1
    loss.on_epoch_start(0, 100)
    torch.testing.assert_close(loss(*logits), full / 20)
    loss.on_epoch_start(9, 100)
    torch.testing.assert_close(loss(*logits), full * 10 / 20)
    loss.on_epoch_start(50, 100)
    torch.testing.assert_close(loss(*logits), full)


def test_distiller_forwards_the_epoch_to_the_warmup():
    loss = DKDLoss(warmup_epochs=4)
    OfflineDistiller(student_cnn(), teacher_cnn(), loss).on_epoch_start(1, 10)
    assert loss.warmup_factor == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"alpha": -1.0}, "alpha"),
        ({"warmup_epochs": -1}, "warmup"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DKDLoss(**kwargs)


def test_training_moves_student_toward_teacher():
    data, teacher, student = digits_setup(seed=0)
    baseline_data, _, baseline = digits_setup(seed=0)
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(OfflineDistiller(baseline, teacher, None), baseline_data, **kwargs)
    # no warm-up in a 3-epoch run, else the loss would stay at 1/20 of its weight
    train(OfflineDistiller(student, teacher, DKDLoss(warmup_epochs=0)), data, **kwargs)
    distilled_gap = kl_to_teacher(student, teacher, data.x_test, temperature=4.0)
    baseline_gap = kl_to_teacher(baseline, teacher, data.x_test, temperature=4.0)
    assert distilled_gap < 0.8 * baseline_gap


def _log_space_reference(student, teacher, target, temperature):
    """Per-sample TCKD and NCKD the long way, in float64: full log-softmax, masked logsumexp."""
    mask = torch.nn.functional.one_hot(target, student.shape[1]).bool()

    def parts(logits):
        log_p = torch.log_softmax(logits.double() / temperature, dim=1)
        binary = torch.stack(
            [
                log_p.masked_fill(~mask, -math.inf).logsumexp(1),
                log_p.masked_fill(mask, -math.inf).logsumexp(1),
            ],
            dim=1,
        )
        rest = torch.log_softmax(logits.double().masked_fill(mask, -math.inf) / temperature, 1)
        return binary, rest

    (bt, rt), (bs, rs) = parts(teacher), parts(student)
    tckd = (bt.exp() * (bt - bs)).sum(1)
    nckd = (rt.exp() * (rt - rs).masked_fill(mask, 0.0)).sum(1)
    return tckd, nckd


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e5])
def test_extreme_logits_match_the_log_space_reference(scale):
    # at scale 1e5 the teacher's p_t rounds to 1 (or 0) in float32: still finite and exact
    generator = torch.Generator().manual_seed(3)
    student = (torch.randn(32, 50, generator=generator) * scale).requires_grad_()
    teacher = torch.randn(32, 50, generator=generator) * scale
    target = torch.randint(0, 50, (32,), generator=generator)
    tckd, nckd = tckd_nckd(student, teacher, target, 4.0)
    ref_tckd, ref_nckd = _log_space_reference(student.detach(), teacher, target, 4.0)
    torch.testing.assert_close(tckd.double(), ref_tckd, rtol=1e-4, atol=1e-4 * scale / 1e2)
    torch.testing.assert_close(nckd.double(), ref_nckd, rtol=1e-4, atol=1e-4 * scale / 1e2)
    (tckd.sum() + nckd.sum()).backward()
    assert torch.isfinite(student.grad).all()


def test_nckd_sends_no_gradient_to_the_target_logit(logits):
    student, teacher, target = logits
    student = student.clone().requires_grad_()
    DKDLoss(alpha=0.0, beta=1.0, warmup_epochs=0)(student, teacher, target).backward()
    assert student.grad.gather(1, target[:, None]).abs().max() == 0.0
    assert student.grad.abs().max() > 0.0


def test_bf16_autocast_computes_in_float32(cifar_sized_logits):
    student, teacher, target = (
        t.to(torch.bfloat16) if t.is_floating_point() else t for t in cifar_sized_logits
    )
    student = student.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = DKDLoss(warmup_epochs=0)(student, teacher, target)
    assert loss.dtype == torch.float32
    expected = DKDLoss(warmup_epochs=0)(student.detach().float(), teacher.float(), target)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert student.grad.dtype == torch.bfloat16 and torch.isfinite(student.grad).all()
