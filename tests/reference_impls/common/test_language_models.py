"""The docstring corpus, the tiny causal LMs, generation and the cached teacher."""

from __future__ import annotations

import importlib
import threading

import pytest
import torch

from reference_impls.common import language_models
from reference_impls.common.language_models import (
    BOS,
    PAD,
    VOCAB_SIZE,
    TinyCausalLM,
    decode,
    encode,
    encode_batch,
    generate,
    language_model_teacher,
    load_docstrings,
    next_token_loss,
    shifted,
    student_lm,
    teacher_lm,
)


def test_the_corpus_is_deterministic_split_and_padded_on_the_right():
    first, again, other = load_docstrings(0), load_docstrings(0), load_docstrings(1)
    assert torch.equal(first.train_tokens, again.train_tokens) and first.digest == again.digest
    assert not torch.equal(first.train_tokens, other.train_tokens)
    assert first.train_tokens.shape[0] > 1500 and first.test_tokens.shape[0] > 150
    assert (first.train_tokens[:, 0] == BOS).all()
    assert torch.equal(first.train_mask, first.train_tokens != PAD)
    lengths = first.train_mask.sum(1)
    assert torch.equal(first.train_mask, torch.arange(48) < lengths[:, None])  # right padding
    assert (lengths >= 25).all()  # <bos> + at least 24 characters
    total = first.train_tokens.shape[0] + first.test_tokens.shape[0]
    assert first.train_tokens.shape[0] == int(0.9 * total)  # paragraphs split once, 90/10


def test_the_corpus_does_not_depend_on_what_the_process_imported(monkeypatch):
    import builtins

    before = language_models._paragraphs()
    # what a Jupyter kernel does (IPython's names in builtins, input replaced, more stdlib
    # submodules imported) and what pytest does to threading.excepthook
    monkeypatch.setattr(builtins, "display", pytest.approx, raising=False)
    monkeypatch.setattr(builtins, "input", pytest.approx)
    monkeypatch.setattr(threading, "excepthook", pytest.approx)
    importlib.import_module("json.tool")
    importlib.import_module("logging.handlers")
    language_models._docstrings.cache_clear()
    assert language_models._paragraphs() == before
    assert "Read a string from standard input. The trailing newline is stripped." in before


def test_the_docstrings_are_each_module_s_own():
    import json

    from reference_impls.common.stdlib_docstrings import documented

    own = documented(json)
    assert own[0] is json and json.dumps in own
    assert json.decoder not in own  # a submodule
    assert json.JSONDecoder not in own  # defined in json.decoder, re-exported
    assert language_models.MODULES[0] == "builtins" and len(language_models.MODULES) == 61


def test_encoding_round_trips_and_rejects_other_characters():
    assert decode(encode("Return x + 1.")) == "Return x + 1."
    tokens, mask = encode_batch(["ab", "abcd"], max_length=4)
    assert tokens.tolist() == [[BOS, *encode("ab"), PAD], [BOS, *encode("abc")]]
    assert mask.tolist() == [[True, True, True, False], [True] * 4]
    with pytest.raises(ValueError, match="printable ASCII"):
        encode("café")


def test_the_model_is_causal_and_padding_leaves_real_positions_alone():
    torch.manual_seed(0)
    model = student_lm().eval()
    tokens = torch.randint(2, VOCAB_SIZE, (2, 10))
    output = model(tokens)
    assert output.logits.shape == (2, 10, VOCAB_SIZE)
    assert len(output.features) == 2 and output.features[-1].shape == (2, 10, 32)
    changed = tokens.clone()
    changed[:, 6:] = PAD
    torch.testing.assert_close(model(changed).logits[:, :6], output.logits[:, :6])
    assert not torch.allclose(model(changed).logits[:, 6:], output.logits[:, 6:])
    with pytest.raises(ValueError, match="tokens must have shape"):
        model(torch.zeros(2, 49, dtype=torch.long))
    encoder = TinyCausalLM(dim=16, layers=1, heads=2, causal=False).eval()
    assert not torch.allclose(encoder(changed).logits[:, :6], encoder(tokens).logits[:, :6])


def test_next_token_loss_shifts_and_ignores_padding():
    logits = torch.randn(2, 5, VOCAB_SIZE)
    tokens = torch.randint(2, VOCAB_SIZE, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    predicted, labels = shifted(logits, tokens, mask)
    assert labels[1, 2:].eq(-100).all() and torch.equal(labels[0], tokens[0, 1:])
    by_hand = torch.nn.functional.cross_entropy(predicted[mask[:, 1:]], tokens[:, 1:][mask[:, 1:]])
    torch.testing.assert_close(next_token_loss(logits, tokens, mask), by_hand)


def test_generation_is_seeded_and_greedy_is_deterministic():
    torch.manual_seed(0)
    model = student_lm()
    prompts = torch.full((3, 4), BOS)
    first = generate(model, prompts, 6, generator=torch.Generator().manual_seed(5))
    second = generate(model, prompts, 6, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, second) and first.shape == (3, 10)
    assert (first[:, 4:] >= 2).all()  # characters only
    greedy = generate(model, prompts, 6, greedy=True)
    assert torch.equal(greedy[0], greedy[1])


def test_the_teacher_is_trained_once_and_read_back_from_the_cache(tmp_path):
    corpus = load_docstrings().train_subset(32)
    teacher, record, from_cache = language_model_teacher(corpus, steps=2, cache_dir=tmp_path)
    assert not from_cache and record["test_perplexity"] > 1
    again, record_again, hit = language_model_teacher(corpus, steps=2, cache_dir=tmp_path)
    assert hit and record_again == record
    torch.testing.assert_close(again.state_dict(), teacher.state_dict(), rtol=0, atol=0)
    assert not any(p.requires_grad for p in again.parameters())
    assert isinstance(teacher_lm(), TinyCausalLM)
