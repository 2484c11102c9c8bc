"""The text data, models, decoders and token NLL of reference_impls.common.text."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common.text import (
    ADJECTIVES,
    BOS,
    EOS,
    PAD,
    BiLSTMClassifier,
    Seq2SeqTransformer,
    TransformerClassifier,
    beam_search,
    corpus_bleu,
    greedy_decode,
    load_sentiment,
    load_transduction,
    sequence_nll,
    strip,
    translations,
)


@pytest.fixture(scope="module")
def data():
    return load_transduction(seed=0, num_train=300, num_test=50)


def test_transduction_is_deterministic_from_its_seed(data):
    again = load_transduction(seed=0, num_train=300, num_test=50)
    other = load_transduction(seed=1, num_train=300, num_test=50)
    assert torch.equal(data.src_train, again.src_train)
    assert torch.equal(data.tgt_train, again.tgt_train)
    assert not torch.equal(data.src_train, other.src_train)


def test_every_target_is_one_of_the_four_translations_and_test_sources_are_unseen(data):
    train = {tuple(r.tolist()) for r in data.src_train}
    assert not any(tuple(r.tolist()) in train for r in data.src_test)
    for src, tgt in zip(data.src_train, data.tgt_train, strict=True):
        source = [int(w) for w in src if w != PAD]
        assert tgt[0] == BOS and EOS in tgt.tolist()
        assert strip(tgt) in translations(source, len(data.src_vocab) - 1)
    assert data.valid(data.tgt_test[:, 1:]).all()
    assert data.words(data.tgt_train[0]).split()[0].rstrip("'").lower() in data.src_vocab


def test_the_four_modes_occur_with_their_probabilities():
    data = load_transduction(seed=3, num_train=4000, num_test=1)
    counts = [0, 0, 0, 0]
    for src, tgt in zip(data.src_train, data.tgt_train, strict=True):
        source = [int(w) for w in src if w != PAD]
        counts[translations(source, 20).index(strip(tgt))] += 1
    frequencies = torch.tensor(counts) / 4000
    # (kept, plain), (kept, primed), (reversed, plain), (reversed, primed)
    torch.testing.assert_close(
        frequencies, torch.tensor([0.36, 0.24, 0.24, 0.16]), atol=0.03, rtol=0
    )


def test_sentiment_labels_follow_the_grammar():
    data = load_sentiment(seed=0, num_train=200, num_test=10)
    for ids, label in zip(data.x_train, data.y_train, strict=True):
        words = data.words(ids).split()
        score, weight, value, negated, doubled = 0, 1, 0, False, False
        for word in [*words, "."]:
            if word in ("and", "but", "."):
                score += weight * value * (-1 if negated else 1) * (2 if doubled else 1)
                weight, negated, doubled = (2 if word == "but" else 1), False, False
            elif word in ("not", "never"):
                negated = True
            elif word in ("very", "really", "truly"):
                doubled = True
            elif word in ADJECTIVES:
                value = ADJECTIVES[word]
        assert score != 0 and int(score > 0) == int(label)
    assert 0.3 < data.y_train.float().mean() < 0.7


def test_corpus_bleu_with_several_references():
    references = [[(1, 2, 3, 4, 5), (5, 4, 3, 2, 1)]]
    assert corpus_bleu([(5, 4, 3, 2, 1)], references) == pytest.approx(1.0)
    assert corpus_bleu([(9, 9, 9, 9, 9)], references) == 0.0
    # hypothesis 1 2 3 4 9: precisions 4/5, 3/4, 2/3, 1/2, no brevity penalty
    expected = math.exp(sum(math.log(p) for p in (4 / 5, 3 / 4, 2 / 3, 1 / 2)) / 4)
    assert corpus_bleu([(1, 2, 3, 4, 9)], references) == pytest.approx(expected)


def test_sequence_nll_by_hand_and_padding_never_contributes():
    logits = torch.tensor([[[math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]]]).requires_grad_()
    target = torch.tensor([[0, 2]])  # position 0 holds padding (id 0): only position 1 counts
    assert sequence_nll(logits, target).item() == pytest.approx(math.log(3.0))
    garbage = logits.detach().clone()
    garbage[0, 0] = float("nan")
    garbage.requires_grad_()
    sequence_nll(garbage, target).backward()
    sequence_nll(logits, target).backward()
    assert torch.equal(garbage.grad, logits.grad) and (logits.grad[0, 0] == 0).all()
    labels = torch.tensor([[-100, 2]])
    assert sequence_nll(logits, labels).item() == pytest.approx(math.log(3.0))
    assert sequence_nll(logits, labels, normalise="tokens").item() == pytest.approx(math.log(3.0))


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"mask": torch.ones(2, 3, dtype=torch.bool)}, "mask must be a boolean mask of shape"),
        ({"mask": torch.ones(1, 2)}, "mask must be a boolean"),
        ({"target": torch.tensor([[5, 1]])}, "vocabulary of 3"),
        ({"target": torch.tensor([[0, -100]])}, "sequences are empty"),
        ({"target": torch.tensor([[1, 2, 1]])}, "same B and T"),
    ],
)
def test_sequence_nll_rejects_bad_input_naming_the_argument(arguments, match):
    call = {"logits": torch.zeros(1, 2, 3), "target": torch.tensor([[1, 2]]), **arguments}
    with pytest.raises(ValueError, match=match):
        sequence_nll(**call)


def _tiny_model(seed: int = 0) -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    model = Seq2SeqTransformer(6, 7, d_model=16, heads=2, encoder_layers=1, decoder_layers=1)
    with torch.no_grad():  # sharper than at initialisation, so that the search matters
        model.output.weight.mul_(8.0)
    return model.eval()


@torch.no_grad()
def test_beam_search_finds_the_exact_best_sequence_when_the_beam_holds_everything():
    model = _tiny_model()
    src = torch.tensor([[1, 2, 3]])
    words = range(2, 7)  # </s> and the four words
    best, best_score = None, -math.inf
    for length in (1, 2, 3):
        for sequence in itertools.product(words, repeat=length):
            if EOS in sequence[:-1]:
                continue
            logits = model(src, torch.tensor([[BOS, *sequence[:-1]]])).logits[0]
            log_probs = F.log_softmax(logits, -1)
            score = sum(float(log_probs[i, w]) for i, w in enumerate(sequence))
            if length < 3 and sequence[-1] != EOS:
                continue  # unfinished before the length limit: not a translation
            if score > best_score:
                best, best_score = sequence, score
    beams = beam_search(model, src, max_length=3, beam_size=125)
    found = tuple(int(t) for t in beams.best[0] if t != PAD)
    assert found == best
    assert beams.scores[0, 0].item() == pytest.approx(best_score, abs=1e-5)


@torch.no_grad()
def test_beam_of_one_is_greedy_and_a_wider_beam_scores_at_least_as_high():
    model = _tiny_model(1)
    src = torch.tensor([[1, 2, 3, 4], [5, 4, 0, 0], [2, 0, 0, 0]])
    greedy = greedy_decode(model, src, max_length=6)
    single = beam_search(model, src, max_length=6, beam_size=1).best
    assert torch.equal(single[:, : greedy.shape[1]], greedy)
    wide = beam_search(model, src, max_length=6, beam_size=4)
    narrow = beam_search(model, src, max_length=6, beam_size=1)
    assert (wide.scores[:, 0] >= narrow.scores[:, 0] - 1e-5).all()
    assert (wide.scores[:, :-1] >= wide.scores[:, 1:]).all()  # best first


def test_decoders_and_models_reject_empty_sequences():
    model = _tiny_model()
    with pytest.raises(ValueError, match=r"src has empty sequences .* rows \[1\]"):
        greedy_decode(model, torch.tensor([[1, 2], [0, 0]]), max_length=3)
    with pytest.raises(ValueError, match="src is empty"):
        beam_search(model, torch.zeros(2, 0, dtype=torch.int64), max_length=3)
    with pytest.raises(ValueError, match="ids must be integer token ids"):
        BiLSTMClassifier(10)(torch.rand(2, 3))


@pytest.mark.parametrize("make", [BiLSTMClassifier, TransformerClassifier])
def test_classifiers_ignore_padding(make):
    torch.manual_seed(0)
    model = make(12).eval()
    ids = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    longer = torch.cat([ids, torch.zeros(2, 3, dtype=torch.int64)], dim=1)
    torch.testing.assert_close(model(longer).logits, model(ids).logits)


def test_seq2seq_padding_of_the_source_does_not_change_the_logits():
    model = _tiny_model()
    src, tgt_in = torch.tensor([[1, 2, 3]]), torch.tensor([[BOS, 3, 4]])
    padded = torch.tensor([[1, 2, 3, 0, 0]])
    torch.testing.assert_close(model(padded, tgt_in).logits, model(src, tgt_in).logits)
