r"""Sequence-level knowledge distillation: train the student on the teacher's beam-search outputs.

Citation: ``kim2016sequence`` (Kim and Rush, EMNLP 2016), §3.2 "Sequence-Level Knowledge
Distillation" and §3.3 "Sequence-Level Interpolation". Authors' code:
https://github.com/harvardnlp/seq2seq-attn (Lua/Torch7): ``s2sa/beam.lua`` decodes,
``train.lua`` trains.

Word-level KD matches the teacher one word at a time. Sequence-level KD matches its
distribution over whole sequences, $q(t \mid s)$, by its mode: the sequence cross-entropy
$-\sum_{t} q(t \mid s) \log p(t \mid s)$ is approximated by putting all of $q$'s mass on
the teacher's beam-search output $\hat y \approx \arg\max_t q(t \mid s)$:

$$
\mathcal{L}_{\mathrm{SEQ\text{-}KD}} \approx -\sum_{t} \mathbb{1}\{t = \hat y\} \log p(t \mid s)
  = -\log p(\hat y \mid s).
$$

So the procedure is: the teacher translates every training source once with beam
search (beam $K = 5$), and the student is trained by ordinary maximum likelihood on
the pairs $(s, \hat y)$ in place of the references. Where the references are
*multimodal* (several valid translations of one source, drawn at random), the
teacher's outputs pick one mode consistently, which is what a small student can fit.

Sequence-level interpolation (``interpolation=True``) keeps the reference in play: of
the teacher's $K$ beam hypotheses it trains on the one most similar to the reference
$y$,

$$
\tilde y = \arg\max_{t \in \mathcal{T}_K} \mathrm{sim}(t, y),
$$

with $\mathrm{sim}$ sentence-level BLEU, as in the paper.

Authors' code and defaults. The released ``seq2seq-attn`` (commit
``2d36b4348dad5a18571495feacddcf8c6620a678``) holds no distillation script: the recipe
is run by hand, ``beam.lua`` (default ``-beam 5``, scores summed log-probabilities with
no length normalisation, a hypothesis ending in ``</s>`` kept while the best
hypothesis is not finished) on the training sources, then ``train.lua`` on the result.
Its token NLL is summed over the real tokens and divided by the batch's sentences
(``ClassNLLCriterion`` with weight 0 on padding, ``sizeAverage = false``). We follow
all three: :func:`reference_impls.common.text.beam_search` and
:func:`reference_impls.common.text.sequence_nll`. Being Lua, none of it is run against
ours; the comparison is by reading.

Deviations. (1) The teacher decodes each distinct training source the first time a
batch holds it (no gradient), and keeps its beams in :attr:`SequenceKD.cache` (a dict
from the source's tokens to its beams, which procedures with the same teacher may share:
:func:`teacher_beams` fills one for a whole training set in large batches); the
paper decodes the training set once before training, which gives the same targets.
The cache is not in the ``state_dict`` (it is recomputed from the teacher's weights).
(2) ``sim`` of the interpolation is sentence-level BLEU-4 with add-one smoothing of the
n-gram counts for $n > 1$ (Lin and Och, 2004); the paper does not say which smoothing.
Ties go to the hypothesis the teacher scores higher. (3) ``max_length`` bounds the
teacher's outputs (``beam.lua``'s ``-max_sent_l``, 250 there); our default is the
longest the teacher's position table allows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import MutableMapping, Sequence

import torch

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.text import (
    PAD,
    Seq2SeqTransformer,
    beam_search,
    frame,
    sequence_nll,
    strip,
    teacher_forcing,
)
from reference_impls.common.training import freeze
from reference_impls.common.validation import at_least, non_empty_sequences

Beams = torch.Tensor  # [K, L] token ids of one source's beam hypotheses, best first
BeamCache = MutableMapping[tuple[int, ...], Beams]


def sentence_bleu(hypothesis: Sequence[int], reference: Sequence[int]) -> float:
    """Sentence BLEU-4 with add-one smoothing for $n > 1$ (Lin and Och, 2004)."""
    hypothesis, reference = tuple(hypothesis), tuple(reference)
    if not hypothesis:
        return 0.0
    log_precision = 0.0
    for n in range(1, 5):
        grams = Counter(hypothesis[i : i + n] for i in range(len(hypothesis) - n + 1))
        ref = Counter(reference[i : i + n] for i in range(len(reference) - n + 1))
        matched = sum(min(count, ref[gram]) for gram, count in grams.items())
        total = max(len(hypothesis) - n + 1, 0)
        smooth = 1 if n > 1 else 0
        if matched + smooth == 0:
            return 0.0
        log_precision += math.log((matched + smooth) / (total + smooth)) / 4
    brevity = min(0.0, 1 - len(reference) / len(hypothesis))
    return math.exp(log_precision + brevity)


def source_key(row: torch.Tensor) -> tuple[int, ...]:
    """A source's tokens without padding: the key of its beams in a cache."""
    return tuple(int(token) for token in row.tolist() if token != PAD)


@torch.no_grad()
def teacher_beams(
    teacher: Seq2SeqTransformer,
    sources: torch.Tensor,
    max_length: int,
    beam_size: int = 5,
    cache: BeamCache | None = None,
    batch_size: int = 500,
) -> BeamCache:
    """The teacher's beams for every source not yet in ``cache`` (decoded in batches)."""
    cache = {} if cache is None else cache
    missing: dict[tuple[int, ...], torch.Tensor] = {}
    for row in sources:
        key = source_key(row)
        if key not in cache and key not in missing:
            missing[key] = row
    rows = list(missing.values())
    for start in range(0, len(rows), batch_size):
        batch = torch.stack(rows[start : start + batch_size])
        found = beam_search(teacher, batch, max_length, beam_size).tokens
        for key, beams in zip(list(missing)[start : start + batch_size], found, strict=True):
            cache[key] = beams.cpu()
    return cache


class SequenceKD(DistillationProcedure):
    """Seq-KD (or Seq-Inter): the student's NLL on the teacher's beam-search translations.

    Called ``procedure(src, tgt)`` with source ids ``[B, S]`` and reference targets
    ``[B, T]`` (``<s> ... </s>`` then padding); the references are read only by the
    interpolation. Returns ``{"loss", "nll"}``.

    Args:
        student, teacher: :class:`~reference_impls.common.text.Seq2SeqTransformer` models
            over the same vocabularies; the teacher is frozen here.
        beam_size: the teacher's beam $K$ (``beam.lua``: 5).
        max_length: the most tokens the teacher may produce per translation; default:
            the longest its position table allows.
        interpolation: train on the beam hypothesis closest to the reference
            (sentence BLEU) instead of the best one (Seq-Inter).
        cache: a dict of beams to share between procedures with the same teacher
            (e.g. from :func:`teacher_beams`); default: a fresh one.
    """

    def __init__(
        self,
        student: Seq2SeqTransformer,
        teacher: Seq2SeqTransformer,
        beam_size: int = 5,
        max_length: int | None = None,
        interpolation: bool = False,
        cache: BeamCache | None = None,
    ) -> None:
        super().__init__()
        for name, vocab in (("src_vocab_size", "source"), ("tgt_vocab_size", "target")):
            if getattr(student, name) != getattr(teacher, name):
                raise ValueError(
                    f"student and teacher must share the {vocab} vocabulary: the student has "
                    f"{getattr(student, name)} {vocab} tokens, the teacher "
                    f"{getattr(teacher, name)}"
                )
        self.student = student
        self.teacher = freeze(teacher)
        self.beam_size = at_least("beam_size", beam_size, 1)
        self.max_length = at_least(
            "max_length", max_length if max_length is not None else teacher.max_length - 1, 1
        )
        self.interpolation = interpolation
        self.cache: BeamCache = {} if cache is None else cache

    def train(self, mode: bool = True) -> SequenceKD:
        super().train(mode)
        self.teacher.eval()  # the teacher decodes without dropout
        return self

    def targets(self, src: torch.Tensor, tgt: torch.Tensor | None = None) -> torch.Tensor:
        """The teacher's translations of ``src`` as targets ``<s> ... </s>`` ``[B, L + 1]``."""
        teacher_beams(self.teacher, src, self.max_length, self.beam_size, self.cache)
        chosen = []
        for i, row in enumerate(src):
            beams = self.cache[source_key(row)]
            pick = 0
            if self.interpolation and tgt is not None:
                reference = strip(tgt[i])
                similarity = [sentence_bleu(strip(b), reference) for b in beams]
                pick = max(range(len(beams)), key=lambda k: (similarity[k], -k))
            chosen.append(beams[pick])
        width = max(len(strip(b)) + 1 for b in chosen)  # the words and </s>
        rows = torch.full((len(chosen), width), PAD, dtype=torch.int64)
        for i, beam in enumerate(chosen):  # beams decoded in other batches differ in length
            rows[i, : min(width, len(beam))] = beam[:width]
        return frame(rows.to(src.device))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> dict[str, torch.Tensor]:
        non_empty_sequences("src", src, PAD)
        if self.interpolation:
            non_empty_sequences("tgt", tgt, PAD)
            if tgt.shape[0] != src.shape[0]:
                raise ValueError(
                    f"tgt must hold one reference per source: got {tgt.shape[0]} for "
                    f"{src.shape[0]} sources"
                )
        tgt_in, labels = teacher_forcing(self.targets(src, tgt))
        loss = sequence_nll(self.student(src, tgt_in).logits, labels)
        return {"loss": loss, "nll": loss.detach()}

    def extra_repr(self) -> str:
        return (
            f"beam_size={self.beam_size}, max_length={self.max_length}, "
            f"interpolation={self.interpolation}"
        )


__all__ = ["SequenceKD", "sentence_bleu", "source_key", "teacher_beams"]
