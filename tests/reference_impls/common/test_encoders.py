"""Tiny BERT encoders: the [CLS] data, the internals read by hooks, training and the cache."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from reference_impls.common.encoders import (
    CLS,
    VOCAB,
    attention_mask_of,
    attention_probabilities,
    bert_accuracy,
    bert_outputs,
    fit_bert,
    load_bert_sentiment,
    sentiment_bert_teacher,
    student_bert,
    teacher_bert,
)
from reference_impls.common.text import PAD, load_sentiment


def test_the_data_put_cls_before_each_sentence_of_the_sentiment_task():
    data, plain = load_bert_sentiment(0, 50, 20), load_sentiment(0, 50, 20)
    assert (data.x_train[:, 0] == CLS).all() and VOCAB[CLS] == "[CLS]"
    assert torch.equal(data.x_train[:, 1:], plain.x_train)
    assert torch.equal(data.y_test, plain.y_test)
    assert torch.equal(attention_mask_of(data.x_test), data.x_test != PAD)


def test_the_internals_are_what_the_bert_computes():
    data = load_bert_sentiment(0, 8, 8)
    torch.manual_seed(0)
    model = teacher_bert().eval()
    ids, mask = data.x_train, attention_mask_of(data.x_train)
    outputs = bert_outputs(model, ids, mask)
    projections = [
        getattr(layer.attention.self, name)
        for layer in model.bert.encoder.layer
        for name in ("query", "key", "value")
    ]
    assert not any(p._forward_hooks for p in projections)  # our hooks are removed
    assert len(outputs.hidden) == 5 and len(outputs.scores) == len(outputs.values) == 4
    assert outputs.scores[0].shape == (8, 4, ids.shape[1], ids.shape[1])
    assert outputs.values[0].shape == (8, 4, ids.shape[1], 16)
    model.config._attn_implementation = "eager"  # its own attention probabilities
    reference = model(input_ids=ids, attention_mask=mask.long(), output_attentions=True)
    torch.testing.assert_close(outputs.logits, reference.logits)
    for scores, probabilities in zip(outputs.scores, reference.attentions, strict=True):
        torch.testing.assert_close(attention_probabilities(scores, mask), probabilities)


def test_training_and_the_teacher_cache(tmp_path):
    data = load_bert_sentiment(0, 128, 64)
    torch.manual_seed(0)
    student = student_bert(dim=32)
    before = student.classifier.weight.detach().clone()
    losses = fit_bert(student, data, epochs=4)
    assert losses[-1] < losses[0]
    assert not torch.equal(student.classifier.weight, before)
    assert 0.0 <= bert_accuracy(student, data.x_test, data.y_test) <= 1.0
    first = sentiment_bert_teacher(data, epochs=1, cache_dir=str(tmp_path))
    second = sentiment_bert_teacher(data, epochs=1, cache_dir=str(tmp_path))
    assert not first[2] and second[2]
    assert first[1]["test_accuracy"] == second[1]["test_accuracy"]
    with pytest.raises(ValueError, match="epochs"):
        sentiment_bert_teacher(data, epochs=0, cache_dir=str(tmp_path))
