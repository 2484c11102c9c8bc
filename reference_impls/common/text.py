r"""Generated text data and tiny text models, for the text-distillation methods.

Nothing is downloaded: both data sets are drawn from a seed in under a second (0.75 s
for the translation task, 0.85 s for the sentiment task at the default sizes, measured on
a 2-core CPU shared with other jobs, load average about 5).

**A translation-like task with several valid outputs** (:func:`load_transduction`).
A source sentence is a sequence of 4 to 8 words drawn uniformly from 20 source
words. Its translation maps every word $w$ to a target word, with two choices made
once per sentence, at random, for every training pair:

* the **order**: kept ($w_1 \dots w_n$, probability ``p_kept`` = 0.6) or reversed
  ($w_n \dots w_1$);
* the **register**: every word in its plain form ``CAT`` (probability ``p_plain`` =
  0.6) or its primed synonym ``CAT'``.

So each source has four valid translations, with probabilities 0.36, 0.24, 0.24 and
0.16; the training set shows one of them per pair, drawn independently. A model
trained on these pairs by maximum likelihood has to spread itself over all four
modes: this is the multimodality that sequence-level KD (``kim2016sequence``)
removes, since a teacher's beam search gives one translation per source, nearly
always the most probable mode. Test sources are unseen in training; a translation
is *valid* when it equals one of the source's four translations
(:meth:`TranslationData.valid`), and :func:`corpus_bleu` scores against all four.
Source ids: 0 is padding. Target ids: 0 padding, 1 ``<s>``, 2 ``</s>``. A target
row is ``<s> y_1 ... y_n </s>`` then padding.

**A sentiment-like classification task** (:func:`load_sentiment`). Sentences from a
small grammar, one or two clauses ``DET NOUN VERB [NEG] [ADV] ADJ`` joined by
``and`` or ``but``. Each adjective has a valence ($\pm 1$ or $\pm 2$), an adverb
doubles it, a negation flips it; the sentence's score is the first clause's value
plus the second's (``and``) or twice the second's (``but``), and its label is
positive when the score is above 0 (sentences scoring exactly 0 are redrawn). A
model must compose words to classify, not only count them. The grammar's word
classes (:attr:`SentimentData.word_classes`, the stand-in for part-of-speech tags)
put positive and negative adjectives in one class, so that replacing a word by
another of its class (tang2019distilling's POS-guided replacement) may change the
label: the teacher labels such examples. Token 0 is padding, 1 ``[MASK]``.

**Models.** :class:`Seq2SeqTransformer` is ``torch.nn.Transformer`` (post-norm, ReLU,
dropout 0.1) with learned token and position embeddings and a linear output
layer: the teacher :func:`teacher_seq2seq` has width 64, 4 heads, 2 encoder and 2
decoder layers (177k parameters), the student :func:`student_seq2seq` width
32, 2 heads, one layer each (26k). :func:`greedy_decode` and
:func:`beam_search` (log-probability sums, no length normalisation, as
``harvardnlp/seq2seq-attn``'s ``s2sa/beam.lua``; beam 5 there) are written once here.
:class:`TransformerClassifier` (the teacher, a 2-layer encoder of width 64, mean
pooling over the real tokens) and :class:`BiLSTMClassifier` (one bidirectional
LSTM layer; its final forward and backward states, concatenated, go through a
ReLU layer and dropout to the logits, as ``BiRNNModel`` in ``castorini/d-bert``)
return a :class:`~reference_impls.common.models.ModelOutput`.

:func:`fit` is the one Adam training loop of the text models (the data sets are
tensors, the module returns ``{"loss": ...}`` as every procedure does), and
:func:`sequence_nll` the token cross-entropy with padding masked, normalised as
``seq2seq-attn``'s ``train.lua`` (summed over the real tokens, divided by the number
of sentences).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.data import DataSplit
from reference_impls.common.losses import at_least_float32
from reference_impls.common.models import ModelOutput
from reference_impls.common.training import set_seed
from reference_impls.common.validation import (
    at_least,
    in_unit_interval,
    non_empty_sequences,
    one_of,
    positive,
    token_mask,
)

PAD, BOS, EOS = 0, 1, 2
MASK = 1  # the classification vocabulary's [MASK] token (tang2019distilling's masking)

SOURCE_WORDS = (
    "cat", "dog", "bird", "fish", "red", "blue", "big", "small", "sees", "eats",
    "likes", "runs", "fast", "slow", "home", "tree", "river", "sun", "moon", "star",
)  # fmt: skip


# ----------------------------------------------------------------------------- translation


@dataclass(frozen=True)
class TranslationData:
    """Source/target pairs of the transduction task, train and test.

    Attributes:
        src_train, src_test: ``[N, S]`` int64 source ids, padded with 0.
        tgt_train, tgt_test: ``[N, T]`` int64 target ids ``<s> ... </s>`` then padding;
            each pair shows one of its source's valid translations, drawn at random.
        valid_test: for each test source, its valid translations (ids without
            ``<s>``/``</s>``), the most probable first.
        src_vocab, tgt_vocab: the words of each id.
    """

    src_train: torch.Tensor
    tgt_train: torch.Tensor
    src_test: torch.Tensor
    tgt_test: torch.Tensor
    valid_test: tuple[tuple[tuple[int, ...], ...], ...]
    src_vocab: tuple[str, ...]
    tgt_vocab: tuple[str, ...]

    @property
    def max_target_length(self) -> int:
        """Tokens a decoder must produce for the longest target (words and ``</s>``)."""
        return self.tgt_train.shape[1] - 1

    def valid(self, hypotheses: torch.Tensor) -> torch.Tensor:
        """``[N]`` bool: is each decoded test translation one of its source's valid ones?"""
        return torch.tensor(
            [strip(row) in set(refs) for row, refs in zip(hypotheses, self.valid_test, strict=True)]
        )

    def words(self, ids: torch.Tensor | Sequence[int], side: str = "target") -> str:
        """The sentence of a row of ids (special tokens and padding left out)."""
        vocab = self.tgt_vocab if side == "target" else self.src_vocab
        skip = {PAD, BOS, EOS} if side == "target" else {PAD}
        return " ".join(vocab[int(i)] for i in ids if int(i) not in skip)


def strip(row: torch.Tensor | Sequence[int]) -> tuple[int, ...]:
    """The words of a decoded row: up to its first ``</s>``, without ``<s>`` and padding."""
    words = []
    for token in (int(t) for t in row):
        if token == EOS:
            break
        if token not in (PAD, BOS):
            words.append(token)
    return tuple(words)


def translations(source: Sequence[int], num_words: int) -> list[tuple[int, ...]]:
    """The four valid translations of a source (word ids from 1), most probable first:
    (kept, plain), (kept, primed), (reversed, plain), (reversed, primed)."""
    out = []
    for reverse in (False, True):
        for primed in (False, True):
            words = list(reversed(source)) if reverse else list(source)
            out.append(tuple(3 + (w - 1) + (num_words if primed else 0) for w in words))
    return out


def load_transduction(
    seed: int = 0,
    num_train: int = 2000,
    num_test: int = 200,
    min_length: int = 4,
    max_length: int = 8,
    p_kept: float = 0.6,
    p_plain: float = 0.6,
) -> TranslationData:
    """The generated translation task (module docstring), decided by ``seed``."""
    at_least("num_train", num_train, 1)
    at_least("num_test", num_test, 1)
    at_least("min_length", min_length, 1)
    at_least("max_length", max_length, min_length)
    in_unit_interval("p_kept", p_kept)
    in_unit_interval("p_plain", p_plain)
    rng = np.random.default_rng(seed)
    num_words = len(SOURCE_WORDS)
    seen: set[tuple[int, ...]] = set()
    sources: list[tuple[int, ...]] = []
    while len(sources) < num_train + num_test:
        length = int(rng.integers(min_length, max_length + 1))
        source = tuple(int(w) for w in rng.integers(1, num_words + 1, size=length))
        if source not in seen:  # test sources are unseen in training
            seen.add(source)
            sources.append(source)
    targets = []
    for source in sources:
        kept, plain = rng.random() < p_kept, rng.random() < p_plain
        targets.append(translations(source, num_words)[2 * (not kept) + (not plain)])

    def pad(rows: Sequence[Sequence[int]], width: int) -> torch.Tensor:
        out = torch.zeros(len(rows), width, dtype=torch.int64)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row)
        return out

    framed = [(BOS, *t, EOS) for t in targets]
    src = pad(sources, max_length)
    tgt = pad(framed, max_length + 2)
    tgt_vocab = ("<pad>", "<s>", "</s>", *(w.upper() for w in SOURCE_WORDS))
    tgt_vocab += tuple(f"{w.upper()}'" for w in SOURCE_WORDS)
    return TranslationData(
        src_train=src[:num_train],
        tgt_train=tgt[:num_train],
        src_test=src[num_train:],
        tgt_test=tgt[num_train:],
        valid_test=tuple(tuple(translations(s, num_words)) for s in sources[num_train:]),
        src_vocab=("<pad>", *SOURCE_WORDS),
        tgt_vocab=tgt_vocab,
    )


def corpus_bleu(
    hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[Sequence[int]]]
) -> float:
    """Corpus BLEU-4 (Papineni et al.) with several references per sentence, in [0, 1].

    Clipped n-gram counts against the maximum count over a sentence's references,
    the brevity penalty against the reference length closest to each hypothesis
    (as ``multi-bleu.perl``); no smoothing.
    """
    matches, totals = [0] * 4, [0] * 4
    hyp_length = ref_length = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        hyp = tuple(hyp)
        hyp_length += len(hyp)
        ref_length += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        for n in range(1, 5):
            counts = Counter(hyp[i : i + n] for i in range(len(hyp) - n + 1))
            most: Counter = Counter()
            for ref in refs:
                ref = tuple(ref)
                for gram, count in Counter(ref[i : i + n] for i in range(len(ref) - n + 1)).items():
                    most[gram] = max(most[gram], count)
            matches[n - 1] += sum(min(c, most[g]) for g, c in counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_length == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / 4
    brevity = min(0.0, 1 - ref_length / hyp_length)
    return math.exp(log_precision + brevity)


def sequence_nll(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    normalise: str = "sentences",
) -> torch.Tensor:
    """Token cross-entropy of ``[B, T, V]`` logits against ``[B, T]`` ids, padding masked.

    ``mask`` (bool ``[B, T]``, True at real positions); without it, positions whose
    target is ``-100`` (Hugging Face's ignore index) or 0 (padding) are ignored.
    ``normalise="sentences"`` sums over the real tokens and divides by ``B``
    (``seq2seq-attn``'s ``train.lua``: ``ClassNLLCriterion`` with weight 0 on padding,
    ``sizeAverage = false``, divided by ``batch_l``); ``"tokens"`` averages over them.
    """
    one_of("normalise", normalise, ("sentences", "tokens"))
    if logits.dim() != 3 or tuple(target.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"logits must be [B, T, V] and target [B, T] of the same B and T, got shapes "
            f"{tuple(logits.shape)} and {tuple(target.shape)}"
        )
    keep = token_mask("mask", target, mask, logits.shape[-1], pad_id=PAD)
    # masked positions replaced before the softmax: whatever they hold (even NaN)
    # sends no value and no gradient
    logits = at_least_float32(logits).masked_fill(~keep.unsqueeze(-1), 0.0)
    log_probs = F.log_softmax(logits, dim=-1)
    safe = target.masked_fill(~keep, 0)  # padded positions may hold any value
    picked = log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    total = -torch.where(keep, picked, torch.zeros_like(picked)).sum()
    return total / (logits.shape[0] if normalise == "sentences" else keep.sum().clamp(min=1))


# ----------------------------------------------------------------------------- seq2seq models


class Seq2SeqTransformer(nn.Module):
    """``torch.nn.Transformer`` with learned token and position embeddings and an output layer.

    ``forward(src, tgt_in)`` takes source ids ``[B, S]`` (0 = padding) and the decoder's
    input ``[B, T]`` (``<s> y_1 ... y_{T-1}``, teacher forcing) and returns a
    ``ModelOutput`` with ``logits`` ``[B, T, V]`` (the next token at every position)
    and ``embedding`` the decoder's last hidden states ``[B, T, D]``.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int = 64,
        heads: int = 4,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        feedforward: int = 128,
        dropout: float = 0.1,
        max_length: int = 32,
    ) -> None:
        super().__init__()
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.max_length = max_length
        self.src_embedding = nn.Embedding(src_vocab_size, d_model, padding_idx=PAD)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, d_model, padding_idx=PAD)
        self.position = nn.Embedding(max_length, d_model)
        self.transformer = nn.Transformer(
            d_model,
            heads,
            encoder_layers,
            decoder_layers,
            feedforward,
            dropout,
            batch_first=True,
        )
        # the same (padded) path in training and evaluation, without the nested-tensor warning
        self.transformer.encoder.enable_nested_tensor = False
        self.transformer.encoder.use_nested_tensor = False
        self.output = nn.Linear(d_model, tgt_vocab_size)

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_length:
            raise ValueError(
                f"sequences of {ids.shape[1]} tokens exceed max_length={self.max_length}"
            )
        positions = torch.arange(ids.shape[1], device=ids.device)
        return embedding(ids) + self.position(positions)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's memory ``[B, S, D]`` and the source padding mask (True = padding)."""
        if src.dim() != 2 or src.shape[1] == 0:
            raise ValueError(f"src must be source ids [B, S] with S >= 1, got {tuple(src.shape)}")
        padding = src == PAD
        memory = self.transformer.encoder(
            self._embed(self.src_embedding, src), src_key_padding_mask=padding
        )
        return memory, padding

    def decode(
        self, memory: torch.Tensor, src_padding: torch.Tensor, tgt_in: torch.Tensor
    ) -> ModelOutput:
        length = tgt_in.shape[1]
        causal = torch.triu(
            torch.ones(length, length, dtype=torch.bool, device=tgt_in.device), diagonal=1
        )
        hidden = self.transformer.decoder(
            self._embed(self.tgt_embedding, tgt_in),
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=tgt_in == PAD,
            memory_key_padding_mask=src_padding,
            tgt_is_causal=True,
        )
        return ModelOutput(logits=self.output(hidden), embedding=hidden)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> ModelOutput:
        memory, src_padding = self.encode(src)
        return self.decode(memory, src_padding, tgt_in)


def teacher_seq2seq(src_vocab_size: int = 21, tgt_vocab_size: int = 43) -> Seq2SeqTransformer:
    """Width 64, 4 heads, 2 + 2 layers (the sizes of :func:`load_transduction`'s vocabularies)."""
    return Seq2SeqTransformer(src_vocab_size, tgt_vocab_size, 64, 4, 2, 2, 128)


def student_seq2seq(src_vocab_size: int = 21, tgt_vocab_size: int = 43) -> Seq2SeqTransformer:
    """Width 32, 2 heads, 1 + 1 layers."""
    return Seq2SeqTransformer(src_vocab_size, tgt_vocab_size, 32, 2, 1, 1, 64)


def teacher_forcing(tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A target batch ``<s> y_1 ... </s>`` split into the decoder's input and the labels.

    Returns ``(tgt[:, :-1], tgt[:, 1:])``: position $t$ reads ``<s> y_1 .. y_t`` and
    predicts ``y_{t+1}`` (padding in the labels is masked by :func:`sequence_nll`).
    """
    if tgt.dim() != 2 or tgt.shape[1] < 2:
        raise ValueError(
            f"tgt must be target ids [B, T] with T >= 2 (<s> and at least </s>), got shape "
            f"{tuple(tgt.shape)}"
        )
    return tgt[:, :-1], tgt[:, 1:]


def _next_log_probs(
    model: Seq2SeqTransformer, memory: torch.Tensor, padding: torch.Tensor, prefix: torch.Tensor
) -> torch.Tensor:
    logits = model.decode(memory, padding, prefix).logits[:, -1]
    log_probs = F.log_softmax(at_least_float32(logits), dim=-1)
    log_probs[:, PAD] = -math.inf  # a live hypothesis never emits padding or a second <s>
    log_probs[:, BOS] = -math.inf
    return log_probs


@torch.no_grad()
def greedy_decode(model: Seq2SeqTransformer, src: torch.Tensor, max_length: int) -> torch.Tensor:
    """The most probable next token at every step: ``[B, L]`` ids (``</s>``, then padding).

    ``L <= max_length``; a row that has not emitted ``</s>`` after ``max_length`` tokens stops there.
    """
    non_empty_sequences("src", src, PAD)
    at_least("max_length", max_length, 1)
    was_training = model.training
    model.eval()
    memory, padding = model.encode(src)
    prefix = torch.full((src.shape[0], 1), BOS, dtype=torch.int64, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_length):
        token = _next_log_probs(model, memory, padding, prefix).argmax(-1)
        token = token.masked_fill(done, PAD)
        prefix = torch.cat([prefix, token[:, None]], dim=1)
        done |= token == EOS
        if done.all():
            break
    model.train(was_training)
    return prefix[:, 1:]


@dataclass(frozen=True)
class Beams:
    """The result of :func:`beam_search`: ``tokens`` ``[B, K, L]`` and ``scores`` ``[B, K]``,
    best first (``scores`` are summed log-probabilities)."""

    tokens: torch.Tensor
    scores: torch.Tensor

    @property
    def best(self) -> torch.Tensor:
        return self.tokens[:, 0]


@torch.no_grad()
def beam_search(
    model: Seq2SeqTransformer, src: torch.Tensor, max_length: int, beam_size: int = 5
) -> Beams:
    r"""Beam search on summed log-probabilities, no length normalisation.

    As ``s2sa/beam.lua`` of ``harvardnlp/seq2seq-attn``: the ``beam_size`` best
    prefixes are kept; a hypothesis that emits ``</s>`` stays in the beam with its
    final score (it is extended by padding at no cost), and the search of a source
    ends once its best hypothesis has ended, since extending a prefix can only lower
    its score. Batched over the sources; at the first step only one hypothesis is
    live (the others start at $-\infty$), so the beams hold distinct prefixes.
    """
    non_empty_sequences("src", src, PAD)
    at_least("max_length", max_length, 1)
    at_least("beam_size", beam_size, 1)
    was_training = model.training
    model.eval()
    batch, k = src.shape[0], beam_size
    memory, padding = model.encode(src)
    memory = memory.repeat_interleave(k, dim=0)
    padding = padding.repeat_interleave(k, dim=0)
    prefix = torch.full((batch * k, 1), BOS, dtype=torch.int64, device=src.device)
    scores = torch.full((batch, k), -math.inf, device=src.device)
    scores[:, 0] = 0.0
    finished = torch.zeros(batch, k, dtype=torch.bool, device=src.device)
    for _ in range(max_length):
        log_probs = _next_log_probs(model, memory, padding, prefix).view(batch, k, -1)
        # an ended hypothesis continues with padding only, at no cost
        ended = torch.full_like(log_probs[0, 0], -math.inf)
        ended[PAD] = 0.0
        log_probs = torch.where(finished[..., None], ended, log_probs)
        candidates = (scores[..., None] + log_probs).view(batch, -1)
        scores, flat = candidates.topk(k, dim=1)
        parent, token = flat // log_probs.shape[-1], flat % log_probs.shape[-1]
        rows = (parent + torch.arange(batch, device=src.device)[:, None] * k).view(-1)
        prefix = torch.cat([prefix[rows], token.view(-1, 1)], dim=1)
        finished = finished.gather(1, parent) | (token == EOS)
        if finished[:, 0].all():
            break
    model.train(was_training)
    return Beams(prefix[:, 1:].view(batch, k, -1), scores)


def frame(rows: torch.Tensor) -> torch.Tensor:
    """Decoded rows ``[B, L]`` (``... </s>`` then padding) as targets ``<s> ... </s>``."""
    start = torch.full((rows.shape[0], 1), BOS, dtype=rows.dtype, device=rows.device)
    return torch.cat([start, rows], dim=1)


# ----------------------------------------------------------------------------- classification

DETERMINERS = ("the", "a", "this", "that")
NOUNS = ("film", "plot", "actor", "music", "story", "scene", "ending", "cast")
VERBS = ("is", "was", "seems", "feels")
NEGATIONS = ("not", "never")
ADVERBS = ("very", "really", "truly")
ADJECTIVES = {
    "superb": 2, "great": 2, "good": 1, "fine": 1, "nice": 1,
    "awful": -2, "terrible": -2, "bad": -1, "dull": -1, "weak": -1,
}  # fmt: skip
CONJUNCTIONS = ("and", "but")
WORD_CLASSES = {
    "DET": DETERMINERS,
    "NOUN": NOUNS,
    "VERB": VERBS,
    "NEG": NEGATIONS,
    "ADV": ADVERBS,
    "ADJ": tuple(ADJECTIVES),
    "CONJ": CONJUNCTIONS,
}


@dataclass(frozen=True)
class SentimentData:
    """Sentences of the grammar as padded ids, with labels (1 = positive).

    Attributes:
        x_train, x_test: ``[N, L]`` int64 word ids, padded with 0.
        y_train, y_test: ``[N]`` int64 labels.
        vocab: the word of each id (0 ``<pad>``, 1 ``[MASK]``).
        word_classes: ``[V]`` int64, the grammar class of each id (-1 for the two
            special tokens): what POS-guided replacement reads.
        class_names: the name of each class index.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    vocab: tuple[str, ...]
    word_classes: torch.Tensor
    class_names: tuple[str, ...]
    num_classes: int = 2

    def words(self, ids: torch.Tensor | Sequence[int]) -> str:
        return " ".join(self.vocab[int(i)] for i in ids if int(i) != PAD)

    def as_split(self) -> DataSplit:
        """The sentences as the ``DataSplit`` every classifier notebook reads."""
        return DataSplit(self.x_train, self.y_train, self.x_test, self.y_test, self.num_classes)

    def with_train_subset(self, n: int) -> SentimentData:
        """The first ``n`` training sentences (the few labelled ones) and the same test set."""
        at_least("n", n, 1)
        return SentimentData(
            self.x_train[:n],
            self.y_train[:n],
            self.x_test,
            self.y_test,
            self.vocab,
            self.word_classes,
            self.class_names,
        )


def _clause(rng: np.random.Generator) -> tuple[list[str], int]:
    words = [rng.choice(DETERMINERS), rng.choice(NOUNS), rng.choice(VERBS)]
    adjective = str(rng.choice(tuple(ADJECTIVES)))
    value = ADJECTIVES[adjective]
    if rng.random() < 0.3:
        words.append(rng.choice(NEGATIONS))
        value = -value
    if rng.random() < 0.3:
        words.append(rng.choice(ADVERBS))
        value *= 2
    return [*map(str, words), adjective], value


def load_sentiment(seed: int = 0, num_train: int = 2000, num_test: int = 500) -> SentimentData:
    """The generated sentiment task (module docstring), decided by ``seed``."""
    at_least("num_train", num_train, 1)
    at_least("num_test", num_test, 1)
    rng = np.random.default_rng(seed)
    vocab = ("<pad>", "[MASK]", *(w for words in WORD_CLASSES.values() for w in words))
    index = {w: i for i, w in enumerate(vocab)}
    class_names = tuple(WORD_CLASSES)
    classes = [-1, -1] + [c for c, words in enumerate(WORD_CLASSES.values()) for _ in words]
    sentences, labels = [], []
    while len(sentences) < num_train + num_test:
        words, score = _clause(rng)
        if rng.random() < 0.5:
            conjunction = str(rng.choice(CONJUNCTIONS))
            second, value = _clause(rng)
            words += [conjunction, *second]
            score += value if conjunction == "and" else 2 * value
        if score != 0:
            sentences.append([index[w] for w in words])
            labels.append(int(score > 0))
    width = max(map(len, sentences))
    x = torch.zeros(len(sentences), width, dtype=torch.int64)
    for i, sentence in enumerate(sentences):
        x[i, : len(sentence)] = torch.tensor(sentence)
    y = torch.tensor(labels)
    return SentimentData(
        x[:num_train],
        y[:num_train],
        x[num_train:],
        y[num_train:],
        vocab,
        torch.tensor(classes),
        class_names,
    )


class TransformerClassifier(nn.Module):
    """A transformer encoder over word ids, mean-pooled over the real tokens, then linear.

    The teacher of the classification task (a stand-in for a fine-tuned BERT).
    ``embedding`` is the pooled representation.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        feedforward: int = 128,
        dropout: float = 0.1,
        max_length: int = 32,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.position = nn.Embedding(max_length, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids: torch.Tensor) -> ModelOutput:
        non_empty_sequences("ids", ids, PAD)
        padding = ids == PAD
        positions = torch.arange(ids.shape[1], device=ids.device)
        hidden = self.encoder(
            self.embedding(ids) + self.position(positions), src_key_padding_mask=padding
        )
        real = (~padding).unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * real).sum(1) / real.sum(1)
        return ModelOutput(logits=self.head(pooled), embedding=pooled)


class BiLSTMClassifier(nn.Module):
    """One bidirectional LSTM layer; the last forward and backward states, concatenated,
    through a ReLU layer and dropout to the logits (``BiRNNModel`` of ``castorini/d-bert``,
    ``use_maxpool`` off). Padded positions are skipped (packed sequences)."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        embedding_dim: int = 32,
        hidden_size: int = 32,
        fc_size: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.fc1 = nn.Linear(2 * hidden_size, fc_size)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(fc_size, num_classes)

    def forward(self, ids: torch.Tensor) -> ModelOutput:
        lengths = non_empty_sequences("ids", ids, PAD)
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (hidden, _) = self.lstm(packed)
        final = torch.cat([hidden[0], hidden[1]], dim=1)  # forward, backward
        embedding = F.relu(self.fc1(final))
        return ModelOutput(logits=self.fc2(self.dropout(embedding)), embedding=embedding)


# ----------------------------------------------------------------------------- training


def fit(
    module: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    after_epoch: Callable[[int], None] | None = None,
) -> list[float]:
    """Adam on ``module(inputs[b], targets[b])["loss"]`` over shuffled mini-batches.

    The learning rate follows a cosine schedule to zero (as ``reference_impls.common.train``).
    The mean loss of each epoch is returned; the module is left in eval mode.
    ``after_epoch(epoch)`` may measure something after each epoch.
    """
    positive("lr", lr)
    at_least("epochs", epochs, 1)
    generator = set_seed(seed)
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(parameters, lr=lr)
    steps = epochs * math.ceil(len(inputs) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    curve = []
    for epoch in range(epochs):
        module.train()
        order = torch.randperm(len(inputs), generator=generator).to(inputs.device)
        total, batches = 0.0, 0
        for start in range(0, len(inputs), batch_size):
            rows = order[start : start + batch_size]
            loss = module(inputs[rows], targets[rows])["loss"]
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total, batches = total + float(loss.detach()), batches + 1
        curve.append(total / batches)
        module.eval()
        if after_epoch is not None:
            after_epoch(epoch)
    module.eval()
    return curve


class Seq2SeqSupervised(nn.Module):
    """Maximum likelihood on the given target sentences (teachers, baselines, Seq-KD's student)."""

    def __init__(self, model: Seq2SeqTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> dict[str, torch.Tensor]:
        tgt_in, labels = teacher_forcing(tgt)
        loss = sequence_nll(self.model(src, tgt_in).logits, labels)
        return {"loss": loss, "nll": loss.detach()}


class Classification(nn.Module):
    """Cross-entropy of a classifier (the classification teacher and baseline)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = F.cross_entropy(self.model(x).logits, y)
        return {"loss": loss, "ce": loss.detach()}


@torch.no_grad()
def classifier_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).logits.argmax(1) == y).float().mean().item()


__all__ = [
    "BOS",
    "EOS",
    "MASK",
    "PAD",
    "Beams",
    "BiLSTMClassifier",
    "Classification",
    "SentimentData",
    "Seq2SeqSupervised",
    "Seq2SeqTransformer",
    "TransformerClassifier",
    "TranslationData",
    "beam_search",
    "classifier_accuracy",
    "corpus_bleu",
    "fit",
    "frame",
    "greedy_decode",
    "load_sentiment",
    "load_transduction",
    "sequence_nll",
    "strip",
    "student_seq2seq",
    "teacher_forcing",
    "teacher_seq2seq",
    "translations",
]
