"""MiniLM (Wang et al., 2020): the two KLs against the paper's equations, masks, training, errors."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.applications.llm import MiniLMLoss


def _last_layer(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    student_scores = 2 * torch.randn(2, 3, 5, 5, generator=generator, dtype=torch.float64)
    teacher_scores = 3 * torch.randn(2, 3, 5, 5, generator=generator, dtype=torch.float64)
    student_values = torch.randn(2, 3, 5, 2, generator=generator, dtype=torch.float64)
    teacher_values = torch.randn(2, 3, 5, 4, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return student_scores, teacher_scores, student_values, teacher_values, mask


def _kl_rows(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    p, q = teacher.softmax(-1), student.softmax(-1)
    return (p * (p / q).log()).sum(-1)


def test_both_terms_follow_the_paper_s_equations():
    ss, ts, sv, tv, mask = _last_layer()
    terms = MiniLMLoss().terms(ss, ts, sv, tv, mask)
    attention, value, rows = 0.0, 0.0, 0
    for b, length in enumerate((5, 3)):
        for a in range(3):
            attention += _kl_rows(ts[b, a, :length, :length], ss[b, a, :length, :length]).sum()
            vr_t = tv[b, a, :length] @ tv[b, a, :length].T / math.sqrt(4)  # each model's d_k
            vr_s = sv[b, a, :length] @ sv[b, a, :length].T / math.sqrt(2)
            value += _kl_rows(vr_t, vr_s).sum()
            rows += length
    torch.testing.assert_close(terms["attention"], attention / rows)
    torch.testing.assert_close(terms["value"], value / rows)
    weighted = MiniLMLoss(attention_weight=2.0, value_weight=0.5)(ss, ts, sv, tv, mask)
    torch.testing.assert_close(weighted, 2 * attention / rows + 0.5 * value / rows)


def test_zero_when_the_student_copies_the_teacher_and_padding_never_contributes():
    ss, ts, sv, tv, mask = _last_layer()
    loss = MiniLMLoss()
    # the same distributions: zero, even with another value width (relations, not values)
    assert (
        loss(ts + 5.0, ts, tv, tv, mask).abs() < 1e-12
    )  # a constant shift of scores: same softmax
    reference = loss(ss, ts, sv, tv, mask)
    changed = [t.clone() for t in (ss, ts, sv, tv)]
    for t in changed[:2]:
        t[1, :, 3:, :] = 50.0
        t[1, :, :, 3:] = -10000.0  # BERT's additive mask, or anything: dropped
    for t in changed[2:]:
        t[1, :, 3:] = 20.0
    torch.testing.assert_close(loss(*changed, mask), reference)
    empty = loss(ss.requires_grad_(), ts, sv, tv, torch.zeros_like(mask))
    assert empty == 0
    empty.backward()
    assert torch.isfinite(ss.grad).all()


def test_bad_inputs_are_clear_errors():
    ss, ts, sv, tv, mask = _last_layer()
    loss = MiniLMLoss()
    with pytest.raises(ValueError, match="one number of heads"):
        loss(ss[:, :2], ts, sv[:, :2], tv, mask)
    with pytest.raises(
        ValueError, match=r"student_values must be a floating tensor of shape \[B, h, T, d\]"
    ):
        loss(ss, ts, sv[:, :, :4], tv, mask)
    with pytest.raises(
        ValueError, match=r"teacher_scores must be a floating tensor of shape \[B, h, T, T\]"
    ):
        loss(ss, ts[..., :4], sv, tv, mask)
    with pytest.raises(ValueError, match="attention_mask"):
        loss(ss, ts, sv, tv, mask[0])
    with pytest.raises(ValueError, match="value_weight"):
        MiniLMLoss(value_weight=-1.0)


def test_distilling_the_last_layer_brings_the_student_s_attention_to_the_teacher_s():
    pytest.importorskip("transformers")
    from reference_impls.common.encoders import (
        attention_mask_of,
        bert_outputs,
        fit_bert,
        load_bert_sentiment,
        student_bert,
        teacher_bert,
    )

    data = load_bert_sentiment(0, num_train=192, num_test=64)
    torch.manual_seed(0)
    teacher = teacher_bert().eval().requires_grad_(False)
    for parameter in teacher.parameters():  # sharper attention than an untrained BERT's
        parameter.mul_(8) if parameter.dim() == 2 else None
    loss = MiniLMLoss()

    def last_layer(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor):
        outputs = bert_outputs(model, ids, mask)
        return outputs.scores[-1], outputs.values[-1]

    def distance(student: torch.nn.Module) -> float:
        mask = attention_mask_of(data.x_test)
        with torch.no_grad():
            (ss, sv), (ts, tv) = (
                last_layer(student, data.x_test, mask),
                last_layer(teacher, data.x_test, mask),
            )
            return float(loss(ss, ts, sv, tv, mask))

    torch.manual_seed(1)
    baseline = student_bert(dim=32)
    fit_bert(baseline, data, epochs=10)
    torch.manual_seed(1)
    student = student_bert(dim=32)

    def minilm(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ss, sv = last_layer(student, ids, mask)
        with torch.no_grad():
            ts, tv = last_layer(teacher, ids, mask)
        return loss(ss, ts, sv, tv, mask)

    fit_bert(student, data, minilm, epochs=10)
    assert distance(student) < 0.5 * distance(baseline)  # measured: 0.37
