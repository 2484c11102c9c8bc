r"""TinyBERT: Transformer distillation of the embeddings, attention scores, hidden states and predictions.

Citation: ``jiao2019tinybert`` (Jiao, Yin, Shang, Jiang, Chen, Li, Wang and Liu, 2019/2020).
A student of $M$ layers learns from a teacher of $N$ layers through the uniform layer
mapping $g(m) = m \cdot N / M$ (student layer $m$ from teacher layer $g(m)$; layer 0 is
the embedding layer). The intermediate-layer loss (:class:`TinyBERTLoss`) sums, over the
student's layers, the mean squared errors of the attention scores (before the softmax)
and of the hidden states, the student's projected to the teacher's width by a learnable
$W_h$:

$$
\mathcal{L}_{\text{layer}} = \sum_{m=1}^{M} \frac{1}{h}\sum_{i=1}^{h}
  \mathrm{MSE}\big(A^S_{m,i}, A^T_{g(m),i}\big)
  + \sum_{m=0}^{M} \mathrm{MSE}\big(H^S_m W_h + b_h,\; H^T_{g(m)}\big),
$$

and the prediction-layer loss (:class:`TinyBERTPredictionLoss`) is the soft
cross-entropy $-\,\mathrm{softmax}(z^T/t) \cdot \log\mathrm{softmax}(z^S/t)$. Training
runs in two stages: the intermediate layers first, then the predictions (their
``--pred_distill``).

Authors' code: https://github.com/huawei-noah/Pretrained-Language-Model,
``TinyBERT/task_distill.py`` (the same loop in ``general_distill.py``): the att/rep loss
statements of ``main`` (lines 942-964) and the nested ``soft_cross_entropy`` (905-908);
the projection is ``fit_dense`` of ``TinyBertForSequenceClassification`` in
``transformer/modeling.py``. Their loop takes teacher attention
``teacher_atts[i * k + k - 1]`` for student layer ``i`` (0-based, $k = N/M$, asserted
integral) and teacher hidden states ``teacher_reps[i * k]`` for ``i = 0..M`` (index 0: the
embedding output): exactly $g(m) = m k$. The attentions they compare are the scores with
BERT's additive mask ($-10000$ at padded keys) added, and they set every entry
``<= -1e2`` to 0 in both before ``MSELoss()`` (mean over all ``B h T T`` entries);
``soft_cross_entropy`` is ``(-targets_prob * student_likelihood).mean()``. Defaults:
``--temperature 1.``.

Where their code differs from the paper, we follow the code: (1) one projection
``fit_dense`` (with a bias) maps every student hidden state, the embedding output
included, where the paper has a separate $W_e$ for the embeddings; (2) the layer losses
are summed over layers, not averaged; (3) the soft cross-entropy is averaged over the
batch AND the classes (``.mean()`` of the ``[B, C]`` products: the paper's per-example
cross-entropy divided by $C$); no $t^2$ factor; (4) scores $\le -100$ are set to 0 before
the MSE (this is how they drop masked keys; it would also zero a real score that low).

Deviations: (1) padded positions never contribute: the attention MSE is averaged over
the real (query, key) pairs and heads, the hidden-state MSE over the real tokens and the
teacher's width (their ``MSELoss`` averages over every entry, padded query rows included,
with the zeroed padded keys counted in the denominator). Without padding the two are
equal (the comparison's inputs, tests/official_runs/tinybert.json). (2) Computed in at
least float32. (3) The data augmentation of their ``data_augmentation.py`` and the
general (pre-training) distillation stage are out of scope: the losses are the same in
both stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import (
    at_least,
    bert_layer_mapping,
    bert_states,
    logit_pair,
    positive,
)

MASKED_SCORE = -1e2  # their threshold: scores at or below it are masked keys, set to 0


def _zero_masked(scores: torch.Tensor) -> torch.Tensor:
    scores = at_least_float32(scores)
    return torch.where(scores <= MASKED_SCORE, torch.zeros_like(scores), scores)


class TinyBERTLoss(DistillationLoss):
    """TinyBERT's intermediate-layer loss: attention-score MSE plus projected hidden-state MSE.

    ``forward(student_hidden, teacher_hidden, student_scores, teacher_scores, attention_mask)``:
    hidden states as a BERT returns them with ``output_hidden_states`` ($M + 1$ and $N + 1$
    tensors ``[B, T, D]``, the embedding output first), attention scores before the
    softmax ($M$ and $N$ tensors ``[B, h, T, T]``, with or without the additive mask) and
    the attention mask ``[B, T]`` (True or 1 at a real token).

    Args:
        student_dim, teacher_dim: the widths; $W_h$ (``projection``, with a bias, as their
            ``fit_dense``) maps the first to the second.
    """

    inputs: ClassVar[tuple[str, ...]] = ("features",)

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        at_least("student_dim", student_dim, 1)
        at_least("teacher_dim", teacher_dim, 1)
        self.projection = nn.Linear(student_dim, teacher_dim)

    def terms(
        self,
        student_hidden: Sequence[torch.Tensor],
        teacher_hidden: Sequence[torch.Tensor],
        student_scores: Sequence[torch.Tensor],
        teacher_scores: Sequence[torch.Tensor],
        attention_mask: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """``{"attention", "hidden"}``, each summed over the student's layers."""
        real = bert_states(
            student_hidden, teacher_hidden, student_scores, teacher_scores, attention_mask
        )
        step = bert_layer_mapping(len(student_scores), len(teacher_scores))
        pairs = real[:, None, :, None] & real[:, None, None, :]  # [B, 1, T, T]
        attention = student_scores[0].new_zeros((), dtype=torch.float32)
        for m, student in enumerate(student_scores, start=1):
            teacher = teacher_scores[m * step - 1].detach()
            squared = (_zero_masked(student) - _zero_masked(teacher)).pow(2)
            heads = student.shape[1]
            attention = attention + (squared * pairs).sum() / (pairs.sum() * heads).clamp_min(1)
        hidden = attention.new_zeros(())
        tokens = real.sum().clamp_min(1)
        for m, student in enumerate(student_hidden):
            teacher = at_least_float32(teacher_hidden[m * step].detach())
            projected = self.projection(at_least_float32(student))
            squared = (projected.to(teacher.dtype) - teacher).pow(2).sum(-1)
            hidden = hidden + (squared * real).sum() / (tokens * teacher.shape[-1])
        return {"attention": attention, "hidden": hidden}

    def forward(
        self,
        student_hidden: Sequence[torch.Tensor],
        teacher_hidden: Sequence[torch.Tensor],
        student_scores: Sequence[torch.Tensor],
        teacher_scores: Sequence[torch.Tensor],
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        terms = self.terms(
            student_hidden, teacher_hidden, student_scores, teacher_scores, attention_mask
        )
        return terms["attention"] + terms["hidden"]


class TinyBERTPredictionLoss(DistillationLoss):
    """TinyBERT's prediction-layer loss: soft cross-entropy at temperature $t$, as their code
    averages it (over the batch and the classes).

    ``forward(student_logits, teacher_logits)``: ``[B, C]`` logits.

    Args:
        temperature: $t$ (their ``--temperature``, default 1).
    """

    inputs: ClassVar[tuple[str, ...]] = ("logits",)

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = positive("temperature", temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        logit_pair(student_logits, teacher_logits)
        log_q = F.log_softmax(at_least_float32(student_logits) / self.temperature, dim=-1)
        p = F.softmax(at_least_float32(teacher_logits.detach()) / self.temperature, dim=-1)
        return (-p * log_q).mean()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
