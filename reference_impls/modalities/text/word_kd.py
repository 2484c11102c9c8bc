r"""Word-level knowledge distillation for sequence-to-sequence models.

Citation: ``kim2016sequence`` (Kim and Rush, EMNLP 2016), §3.1 "Word-Level Knowledge
Distillation". Authors' code: https://github.com/harvardnlp/seq2seq-attn (Lua/Torch7);
its released version has no word-level distillation term (see below).

A translation model predicts each target word given the source $s$ and the previous
target words. Word-level KD applies Hinton's distillation at every target position:
with teacher forcing on the reference $t = t_1 \dots t_J$, the student's next-word
distribution $p(\cdot \mid s, t_{<j})$ is pulled toward the teacher's
$q(\cdot \mid s, t_{<j})$, mixed with the usual word NLL:

$$
\mathcal{L}_{\mathrm{WORD\text{-}KD}} = -\sum_{j=1}^{J} \sum_{k=1}^{|\mathcal V|}
  q(t_j = k \mid s, t_{<j}) \log p(t_j = k \mid s, t_{<j}),
\qquad
\mathcal{L} = (1 - \alpha)\,\mathcal{L}_{\mathrm{NLL}} + \alpha\,\mathcal{L}_{\mathrm{WORD\text{-}KD}},
$$

$\mathcal{L}_{\mathrm{NLL}} = -\sum_j \log p(t_j \mid s, t_{<j})$. Only real target
positions count: padding is masked, by a boolean ``mask`` ``[B, T]`` (True = a real
position) or, without one, by the labels (``-100``, Hugging Face's ignore index, or the
padding id 0). Values at masked positions, even NaN, change neither the loss nor its gradient.

Defaults. $\alpha = 0.5$, equal weights: the released code has no such term to take a
default from, and the paper's text was not at hand when this was written (our
recollection is that it compared 0.5 and 0.9 for its Word-KD students and kept 0.5; to be
checked against §5 of the paper). No temperature ($\tau = 1$: the paper softens nothing). Normalisation as
the authors' token NLL in ``train.lua`` (``make_generator`` in ``s2sa/models.lua``:
``ClassNLLCriterion`` with weight 0 on the padding index and ``sizeAverage = false``,
the sum divided by ``batch_l``): summed over the real tokens of a sentence, averaged
over sentences (``normalise="sentences"``); ``"tokens"`` averages over real tokens instead.

Authors' code. The released ``harvardnlp/seq2seq-attn`` (commit
``2d36b4348dad5a18571495feacddcf8c6620a678``) trains with the NLL above and decodes with
``s2sa/beam.lua``; it contains no teacher distribution and no word-level KD term, so
there is nothing to run against. What we compared, by reading: the token NLL's
masking and normalisation (the paragraph above), which this loss's NLL term follows.

Deviations. (1) The distillation term is computed as the KL divergence
$\sum_j \mathrm{KL}(q_j \| p_j)$ (the shared ``softened_kl`` policy: log space, at least
float32) instead of the cross-entropy $\mathcal{L}_{\mathrm{WORD\text{-}KD}}$; they differ
by the teacher's entropy, which is constant for the student: same gradients, and 0 when
the student equals the teacher. (2) A temperature $\tau$ is available (default 1; with
$\tau \neq 1$ the term is scaled by $\tau^2$, as in Hinton et al.).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import kl_divergence, softened_log_probs
from reference_impls.common.text import PAD, sequence_nll
from reference_impls.common.validation import (
    in_unit_interval,
    one_of,
    positive,
    sequence_logit_pair,
    token_mask,
)

NORMALISATIONS = ("sentences", "tokens")


def word_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    keep: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """$\\tau^2\\,\\mathrm{KL}(q_j \\| p_j)$ at every position ``[B, T]``, 0 where ``keep`` is False.

    Masked positions are replaced before the softmax, so that whatever they hold
    (padding garbage, NaN) sends no value and no gradient.
    """
    real = keep.unsqueeze(-1)
    student = student_logits.masked_fill(~real, 0.0)
    teacher = teacher_logits.detach().masked_fill(~real, 0.0)
    kl = kl_divergence(
        softened_log_probs(student, temperature),
        softened_log_probs(teacher, temperature),
        reduction="none",
    )
    return torch.where(keep, kl, torch.zeros_like(kl)) * temperature**2


class WordKDLoss(DistillationLoss):
    """Word-level KD of Kim and Rush: per-token KL to the teacher, mixed with the word NLL.

    Called ``loss(student_logits, teacher_logits, target, mask=None)`` with next-token
    logits ``[B, T, V]`` of both models under teacher forcing on the same target, the
    target ids ``[B, T]`` (the labels: ``-100`` or 0 at padding) and optionally a
    boolean ``mask`` ``[B, T]`` (True = a real position), which then decides alone.

    Args:
        alpha: weight $\\alpha$ of the distillation term; $1 - \\alpha$ weighs the NLL
            (default 0.5: see the module docstring).
        temperature: softening of both distributions (paper: 1, none).
        normalise: ``"sentences"`` (sum over tokens, mean over sentences: the authors'
            ``train.lua``) or ``"tokens"`` (mean over real tokens).
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = True

    def __init__(
        self, alpha: float = 0.5, temperature: float = 1.0, normalise: str = "sentences"
    ) -> None:
        super().__init__()
        self.alpha = in_unit_interval("alpha", alpha)
        self.temperature = positive("temperature", temperature)
        self.normalise = one_of("normalise", normalise, NORMALISATIONS)

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        sequence_logit_pair(student_logits, teacher_logits)
        if tuple(target.shape) != tuple(student_logits.shape[:2]):
            raise ValueError(
                f"target must have shape {tuple(student_logits.shape[:2])} (the logits' [B, T]), "
                f"got shape {tuple(target.shape)}"
            )
        keep = token_mask("mask", target, mask, student_logits.shape[-1], pad_id=PAD)
        kl = word_kl(student_logits, teacher_logits, keep, self.temperature).sum()
        count = student_logits.shape[0] if self.normalise == "sentences" else keep.sum()
        distill = kl / count
        if self.alpha == 1.0:
            return distill
        nll = sequence_nll(student_logits, target, keep, self.normalise)
        return (1 - self.alpha) * nll + self.alpha * distill

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, temperature={self.temperature}, normalise={self.normalise!r}"
