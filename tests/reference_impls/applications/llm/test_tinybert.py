"""TinyBERT (Jiao et al., 2019): the layer losses by hand, the layer mapping, masks, soft CE, training."""

from __future__ import annotations

import pytest
import torch

from reference_impls.applications.llm import TinyBERTLoss, TinyBERTPredictionLoss


def _internals(seed: int = 0, student_layers: int = 1, teacher_layers: int = 2):
    generator = torch.Generator().manual_seed(seed)
    student_hidden = [
        torch.randn(2, 4, 2, generator=generator, dtype=torch.float64)
        for _ in range(student_layers + 1)
    ]
    teacher_hidden = [
        torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)
        for _ in range(teacher_layers + 1)
    ]
    student_scores = [
        2 * torch.randn(2, 2, 4, 4, generator=generator, dtype=torch.float64)
        for _ in range(student_layers)
    ]
    teacher_scores = [
        3 * torch.randn(2, 2, 4, 4, generator=generator, dtype=torch.float64)
        for _ in range(teacher_layers)
    ]
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    return student_hidden, teacher_hidden, student_scores, teacher_scores, mask


def _loss(seed: int = 0) -> TinyBERTLoss:
    torch.manual_seed(seed)
    return TinyBERTLoss(2, 3).double()


def test_the_two_terms_by_hand_with_the_uniform_layer_mapping():
    student_hidden, teacher_hidden, student_scores, teacher_scores, mask = _internals()
    loss = _loss()
    terms = loss.terms(student_hidden, teacher_hidden, student_scores, teacher_scores, mask)
    # one student layer, two teacher layers: g(1) = 2, the teacher's last attention (index 1)
    attention, count = 0.0, 0
    hidden, tokens = 0.0, 0
    weight, bias = loss.projection.weight, loss.projection.bias
    for b in range(2):
        real = int(mask[b].sum())
        for head in range(2):
            for i in range(real):
                for j in range(real):
                    attention += (
                        student_scores[0][b, head, i, j] - teacher_scores[1][b, head, i, j]
                    ) ** 2
                    count += 1
        for t in range(real):
            for m, teacher_index in ((0, 0), (1, 2)):  # embeddings to embeddings, layer 1 to 2
                projected = student_hidden[m][b, t] @ weight.T + bias
                hidden += ((projected - teacher_hidden[teacher_index][b, t]) ** 2).sum() / 3
            tokens += 1
    torch.testing.assert_close(terms["attention"], attention / count)
    torch.testing.assert_close(terms["hidden"], hidden / tokens)
    total = loss(student_hidden, teacher_hidden, student_scores, teacher_scores, mask)
    torch.testing.assert_close(total, terms["attention"] + terms["hidden"])


def test_only_the_mapped_teacher_layers_are_read():
    """g(m) = m N / M: with 2 student and 4 teacher layers, attention 2 and 4 and hidden 0, 2, 4."""
    student_hidden, teacher_hidden, student_scores, teacher_scores, mask = _internals(1, 2, 4)
    loss = _loss()
    reference = loss(student_hidden, teacher_hidden, student_scores, teacher_scores, mask)
    changed_hidden = [h if i in (0, 2, 4) else 50 + h for i, h in enumerate(teacher_hidden)]
    changed_scores = [s if i in (1, 3) else 50 + s for i, s in enumerate(teacher_scores)]
    assert loss(student_hidden, changed_hidden, student_scores, changed_scores, mask) == reference
    moved = [s if i != 3 else s + 1 for i, s in enumerate(teacher_scores)]
    assert loss(student_hidden, teacher_hidden, student_scores, moved, mask) != reference


def test_padding_never_contributes_and_their_masked_scores_are_dropped():
    student_hidden, teacher_hidden, student_scores, teacher_scores, mask = _internals()
    loss = _loss()
    reference = loss(student_hidden, teacher_hidden, student_scores, teacher_scores, mask)
    pad = ~mask
    noisy_hidden = [h.clone() for h in student_hidden + teacher_hidden]
    for h in noisy_hidden:
        h[pad] = 40.0
    noisy_scores = [s.clone() for s in student_scores + teacher_scores]
    for s in noisy_scores:
        s[1, :, 3, :] = 40.0  # the padded query row
        s[1, :, :, 3] = -10000.0  # BERT's additive mask at the padded key
    value = loss(noisy_hidden[:2], noisy_hidden[2:], noisy_scores[:1], noisy_scores[1:], mask)
    torch.testing.assert_close(value, reference)
    # their rule: a score <= -100 counts as 0, also at a real position
    low = [s.clone() for s in student_scores]
    low[0][0, 0, 0, 0] = -150.0
    zero = [s.clone() for s in student_scores]
    zero[0][0, 0, 0, 0] = 0.0
    torch.testing.assert_close(
        loss(student_hidden, teacher_hidden, low, teacher_scores, mask),
        loss(student_hidden, teacher_hidden, zero, teacher_scores, mask),
    )
    nothing = loss(student_hidden, teacher_hidden, student_scores, teacher_scores, mask & False)
    assert nothing == 0


def test_the_prediction_loss_is_their_soft_cross_entropy():
    generator = torch.Generator().manual_seed(2)
    student = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    teacher = 2 * torch.randn(4, 3, generator=generator, dtype=torch.float64)
    for temperature in (1.0, 2.0):
        p = (teacher / temperature).softmax(-1)
        log_q = (student / temperature).log_softmax(-1)
        expected = -(p * log_q).sum() / 12  # averaged over the 4 examples AND the 3 classes
        value = TinyBERTPredictionLoss(temperature)(student, teacher)
        torch.testing.assert_close(value, expected)
    with pytest.raises(ValueError, match="temperature"):
        TinyBERTPredictionLoss(0.0)
    with pytest.raises(ValueError, match="same classes"):
        TinyBERTPredictionLoss()(student, teacher[:, :2])


def test_bad_inputs_are_clear_errors():
    student_hidden, teacher_hidden, student_scores, teacher_scores, mask = _internals(0, 2, 3)
    loss = _loss()
    with pytest.raises(
        ValueError, match=r"teacher's 3 layers must be a multiple of the student's 2"
    ):
        loss(student_hidden, teacher_hidden, student_scores, teacher_scores, mask)
    student_hidden, teacher_hidden, student_scores, teacher_scores, mask = _internals()
    with pytest.raises(ValueError, match="one more tensor"):
        loss(student_hidden[:1], teacher_hidden, student_scores, teacher_scores, mask)
    with pytest.raises(ValueError, match="heads"):
        loss(
            student_hidden, teacher_hidden, [s[:, :1] for s in student_scores], teacher_scores, mask
        )
    with pytest.raises(ValueError, match=r"attention_mask must be an integer or boolean"):
        loss(student_hidden, teacher_hidden, student_scores, teacher_scores, mask.double())
    with pytest.raises(ValueError, match=r"student_hidden\[0\] must be a floating tensor"):
        loss(
            [h[:, :3] for h in student_hidden], teacher_hidden, student_scores, teacher_scores, mask
        )
    with pytest.raises(ValueError, match="student_dim"):
        TinyBERTLoss(0, 3)


def test_intermediate_distillation_brings_a_narrow_bert_s_attention_to_its_teacher_s():
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
    teacher = teacher_bert().eval().requires_grad_(False)  # untrained: a fixed target to reach

    def distance(student: torch.nn.Module) -> float:
        with torch.no_grad():
            mask = attention_mask_of(data.x_test)
            s, t = (
                bert_outputs(student, data.x_test, mask),
                bert_outputs(teacher, data.x_test, mask),
            )
            return float(
                TinyBERTLoss(32, 64).terms(s.hidden, t.hidden, s.scores, t.scores, mask)[
                    "attention"
                ]
            )

    torch.manual_seed(1)
    baseline = student_bert(dim=32)
    fit_bert(baseline, data, epochs=3)
    torch.manual_seed(1)
    student = student_bert(dim=32)
    loss = TinyBERTLoss(32, 64)

    def intermediate(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        s = bert_outputs(student, ids, mask)
        with torch.no_grad():
            t = bert_outputs(teacher, ids, mask)
        return loss(s.hidden, t.hidden, s.scores, t.scores, mask)

    fit_bert(student, data, intermediate, epochs=3, extra=loss)
    assert distance(student) < 0.75 * distance(baseline)  # measured: 0.54
