r"""Distilling a transformer classifier into a BiLSTM: logit regression on an augmented transfer set.

Citation: ``tang2019distilling`` (Tang, Lu, Liu, Mou, Vechtomova and Lin, 2019).
Authors' code: https://github.com/castorini/d-bert (commit
``7c590fb327ba3570771512719f256349bd37883b``): the loss in
``dbert/distill/run/distill_birnn.py`` (``main``, lines 125-130), the transfer set in
``dbert/distill/run/augment_data.py`` (``main``), the labels in
``dbert/distill/run/join_logits.py``, the student ``BiRNNModel`` in
``dbert/distill/model/bi_rnn.py``.

A fine-tuned BERT teaches a single-layer BiLSTM by **regressing its logits** $z^{(B)}$
(not its softened probabilities), together with a cross-entropy term:

$$
\mathcal{L} = \lambda_{\mathrm{CE}}\,\mathrm{CE}\big(y, \mathrm{softmax}(z^{(S)})\big)
  + \lambda_{\mathrm{distill}}\,\frac{1}{BC}\sum_{b=1}^{B}\big\|z^{(B)}_b - z^{(S)}_b\big\|_2^2 .
$$

The paper writes it as $\alpha\,\mathcal{L}_{\mathrm{CE}} + (1-\alpha)\,\|z^{(B)} - z^{(S)}\|_2^2$.
The code weighs the terms by ``ce_lambda`` and ``distill_lambda`` (1 and 1 in
``confs/base.json``, the same as $\alpha = 1/2$ up to a factor 2) and takes the squared
error as ``nn.MSELoss()``, the mean over the batch *and the classes* (the factor
$\frac{1}{BC}$ above; the paper's $\|\cdot\|_2^2$ sums over classes). We follow the code:
``DistilledBiLSTMLoss(distill_weight=1.0, ce_weight=1.0)``. The label $y$ of the
cross-entropy is the teacher's prediction ($\arg\max z^{(B)}$: ``join_logits.py``
overwrites every row's label with it), which is what the notebook passes; the loss
takes any labels.

**The transfer set** (§3.2 of the paper; :func:`augment_transfer_set`). A few labelled
sentences are too few for the teacher to show its function, so each training sentence
is perturbed $n_{\mathrm{iter}} = 20$ times: every word, by one uniform draw $X$, is
replaced by ``[MASK]`` if $X < p_{\mathrm{mask}}$, by a random word *of the same part of
speech* if $p_{\mathrm{mask}} \le X < p_{\mathrm{mask}} + p_{\mathrm{pos}}$, and kept
otherwise; then, with probability $p_{\mathrm{ng}}$, only an $n$-gram of the result is
kept, $n$ uniform in $\{1, \dots, 5\}$. A sample whose every word was replaced, or that
is already in the data, is dropped. The teacher labels the transfer set (its logits
are the regression targets). Here the "part of speech" is the word's class in the
generating grammar (``reference_impls.common.text.SentimentData.word_classes``).
Defaults: $p_{\mathrm{mask}} = p_{\mathrm{pos}} = 0.1$, $n_{\mathrm{iter}} = 20$ (paper
and ``augment_data.py``), $p_{\mathrm{ng}} = 0.25$ (paper).

Deviations. (1) ``augment_data.py`` defaults ``--window_prob`` (our $p_{\mathrm{ng}}$) to
0, and its released version cannot run as given (it reads ``args.bert_gen_prob`` and
``args.batch_size``, which its parser does not define); we take the paper's
$p_{\mathrm{ng}} = 0.25$. (2) The code draws the $n$-gram's start with
``random.randrange(len - n)``, which never picks the last window and, for a sentence
of at most $n$ words, stops perturbing that sentence altogether; we draw the start
uniformly from all $\mathrm{len} - n + 1$ windows and keep a sentence of at most $n$
words whole. (3) As the code, a replacement word is drawn from the words of that class
*as they occur* in the data (frequency-weighted), and the draw may return the word
itself. (4) Half-precision logits are compared in float32 (the shared policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.text import MASK, PAD
from reference_impls.common.validation import (
    at_least,
    class_indices,
    in_unit_interval,
    logit_pair,
    loss_weights,
    non_empty_sequences,
)


class DistilledBiLSTMLoss(DistillationLoss):
    """Tang et al.'s objective: mean squared error between the logits, plus cross-entropy.

    Args:
        distill_weight: weight of the logit MSE (``distill_lambda`` in d-bert: 1).
        ce_weight: weight of the cross-entropy on ``target`` (``ce_lambda``: 1).
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = True

    def __init__(self, distill_weight: float = 1.0, ce_weight: float = 1.0) -> None:
        super().__init__()
        loss_weights(distill_weight=distill_weight, ce_weight=ce_weight)
        self.distill_weight = distill_weight
        self.ce_weight = ce_weight

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        logit_pair(student_logits, teacher_logits)
        class_indices(target, student_logits)
        student = at_least_float32(student_logits)
        teacher = at_least_float32(teacher_logits.detach())
        loss = self.distill_weight * F.mse_loss(student, teacher)
        if self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(student, target)
        return loss

    def extra_repr(self) -> str:
        return f"distill_weight={self.distill_weight}, ce_weight={self.ce_weight}"


def augment_transfer_set(
    sentences: torch.Tensor,
    word_classes: torch.Tensor,
    *,
    p_mask: float = 0.1,
    p_pos: float = 0.1,
    p_ng: float = 0.25,
    ngram_lengths: Sequence[int] = (1, 2, 3, 4, 5),
    n_iter: int = 20,
    mask_id: int = MASK,
    pad_id: int = PAD,
    seed: int = 0,
) -> torch.Tensor:
    """New, unlabelled sentences perturbed from ``sentences`` ``[N, L]`` (module docstring).

    ``word_classes`` ``[V]`` gives each token id its class (its part of speech; a
    negative class is never replaced by another word). Returns ``[M, L]`` ids padded with
    ``pad_id``: only sentences that are new (neither in ``sentences`` nor generated
    before), in the order generated. Deterministic from ``seed``.
    """
    lengths = non_empty_sequences("sentences", sentences, pad_id)
    in_unit_interval("p_mask", p_mask)
    in_unit_interval("p_pos", p_pos)
    in_unit_interval("p_mask + p_pos", p_mask + p_pos)
    in_unit_interval("p_ng", p_ng)
    at_least("n_iter", n_iter, 1)
    if not ngram_lengths or min(ngram_lengths) < 1:
        raise ValueError(f"ngram_lengths must be positive lengths, got {tuple(ngram_lengths)}")
    if word_classes.dim() != 1 or int(sentences.max()) >= word_classes.shape[0]:
        raise ValueError(
            f"word_classes must give a class to each token id: shape [V] with V > "
            f"{int(sentences.max())} (the largest id in sentences), got shape "
            f"{tuple(word_classes.shape)}"
        )
    rng = np.random.default_rng(seed)
    rows = [row[:n].tolist() for row, n in zip(sentences, lengths.tolist(), strict=True)]
    classes = word_classes.tolist()
    # the words of each class as they occur in the data (frequency-weighted, as d-bert)
    occurrences: dict[int, list[int]] = {}
    for row in rows:
        for token in row:
            occurrences.setdefault(classes[token], []).append(token)
    seen = {tuple(row) for row in rows}
    generated: list[tuple[int, ...]] = []
    for row in rows:
        for _ in range(n_iter):
            words, all_replaced = [], True
            for token in row:
                roll = rng.random()
                if roll < p_mask:
                    token = mask_id
                elif roll < p_mask + p_pos and classes[token] >= 0:
                    pool = occurrences[classes[token]]
                    token = pool[int(rng.integers(len(pool)))]
                else:
                    all_replaced = False
                words.append(token)
            if rng.random() < p_ng:
                n = min(int(rng.choice(ngram_lengths)), len(words))
                start = int(rng.integers(len(words) - n + 1))
                words = words[start : start + n]
            sample = tuple(words)
            if not all_replaced and sample not in seen:
                seen.add(sample)
                generated.append(sample)
    out = torch.full((len(generated), sentences.shape[1]), pad_id, dtype=sentences.dtype)
    for i, sample in enumerate(generated):
        out[i, : len(sample)] = torch.tensor(sample, dtype=sentences.dtype)
    return out


__all__ = ["DistilledBiLSTMLoss", "augment_transfer_set"]
