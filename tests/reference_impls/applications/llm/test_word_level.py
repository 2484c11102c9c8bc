"""Word-level KD (Kim and Rush, 2016), and the conventions every token-level loss class shares."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.applications.llm import (
    GKDLoss,
    MiniLLMReverseKLLoss,
    SkewKLLoss,
    SkewReverseKLLoss,
    WordLevelKDLoss,
)

LOSSES = [WordLevelKDLoss, MiniLLMReverseKLLoss, GKDLoss, SkewKLLoss, SkewReverseKLLoss]


def _batch(seed: int = 0, vocab: int = 11) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    student = 2 * torch.randn(2, 5, vocab, generator=generator, dtype=torch.float64)
    teacher = 3 * torch.randn(2, 5, vocab, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, vocab, (2, 5), generator=generator)
    labels[0, 0] = -100
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    return student, teacher, labels, mask


def test_hand_value_is_the_mean_forward_kl_over_kept_tokens():
    # two kept tokens over 2 words: p = [1/2, 1/2] vs q = [1/4, 3/4], and p = q
    student = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0], [5.0, 1.0]]])
    teacher = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [0.0, 9.0]]])
    labels = torch.tensor([[0, 1, -100]])
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    value = WordLevelKDLoss()(student, teacher, labels)
    assert value.item() == pytest.approx((kl + 0.0) / 2, rel=1e-6)


def test_it_equals_the_cross_entropy_with_the_teachers_distribution_minus_its_entropy():
    # Kim and Rush's form: -sum_v p log q; the KL differs by H(p), a constant
    student, teacher, labels, mask = _batch()
    kept = (labels != -100) & mask
    p, log_q = teacher.softmax(-1), student.log_softmax(-1)
    cross_entropy = -(p * log_q).sum(-1)[kept].mean()
    entropy = -(p * p.log()).sum(-1)[kept].mean()
    value = WordLevelKDLoss()(student, teacher, labels, mask)
    assert value.item() == pytest.approx((cross_entropy - entropy).item(), rel=1e-10)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_padded_and_ignored_positions_never_contribute(loss_class):
    student, teacher, labels, mask = _batch()
    loss = loss_class()
    reference = loss(student, teacher, labels, mask)
    changed_student, changed_teacher = student.clone(), teacher.clone()
    dropped = (labels == -100) | ~mask
    changed_student[dropped] = 50 * torch.randn_like(changed_student[dropped])
    changed_teacher[dropped] = -30.0
    assert loss(changed_student, changed_teacher, labels, mask) == reference


@pytest.mark.parametrize("loss_class", LOSSES)
def test_all_tokens_masked_gives_zero_and_a_zero_gradient_not_nan(loss_class):
    student, teacher, labels, _ = _batch()
    student.requires_grad_()
    value = loss_class()(student, teacher, torch.full_like(labels, -100))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(value)
    assert student.grad is not None and student.grad.abs().max() == 0


@pytest.mark.parametrize("loss_class", LOSSES)
def test_bad_inputs_are_clear_errors_naming_the_argument(loss_class):
    student, teacher, labels, mask = _batch()
    loss = loss_class()
    with pytest.raises(ValueError, match=r"share one vocabulary.*V = 11.*V = 12"):
        loss(student, torch.randn(2, 5, 12, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"labels must be .* shape \[2, 5\]"):
        loss(student, teacher, labels[:, :4])
    with pytest.raises(ValueError, match=r"labels must be .*integer"):
        loss(student, teacher, labels.double())
    with pytest.raises(ValueError, match=r"attention_mask must be .* shape \[2, 5\]"):
        loss(student, teacher, labels, mask.T)
    with pytest.raises(ValueError, match="same tokens"):
        loss(student, teacher[:, :4])
    with pytest.raises(ValueError, match="temperature"):
        loss_class(temperature=0.0)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_half_precision_is_computed_in_float32_and_float64_kept(loss_class):
    student, teacher, labels, mask = _batch()
    exact = loss_class()(student, teacher, labels, mask)
    assert exact.dtype == torch.float64
    half = loss_class()(student.bfloat16(), teacher.bfloat16(), labels, mask)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(exact.item(), rel=0.05)


def test_a_distilled_student_moves_toward_the_teacher_more_than_one_trained_on_the_data(
    distillation_run,
):
    kls = distillation_run(WordLevelKDLoss)
    assert kls["distilled"] < 0.7 * kls["data alone"], kls
