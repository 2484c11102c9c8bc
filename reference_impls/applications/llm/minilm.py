r"""MiniLM: deep self-attention distillation of the last layer (attention distributions and value relation).

Citation: ``wang2020minilm`` (Wang, Wei, Dong, Bao, Yang and Zhou, NeurIPS 2020). The
student mimics only the teacher's LAST Transformer layer's self-attention module: the
attention distributions $\mathbf{A}_a = \mathrm{softmax}(\mathbf{Q}_a\mathbf{K}_a^\top /
\sqrt{d_k})$ and the value relation $\mathrm{VR}_a = \mathrm{softmax}(\mathbf{V}_a
\mathbf{V}_a^\top / \sqrt{d_k})$ of every head $a$, through KL divergences averaged over
the $A_h$ heads and the $|x|$ positions (each row is a distribution over the keys):

$$
\mathcal{L} = \frac{1}{A_h |x|} \sum_{a=1}^{A_h} \sum_{t=1}^{|x|}
  \mathrm{KL}\big(\mathbf{A}^T_{L,a,t} \,\|\, \mathbf{A}^S_{M,a,t}\big)
  + \frac{1}{A_h |x|} \sum_{a=1}^{A_h} \sum_{t=1}^{|x|}
  \mathrm{KL}\big(\mathrm{VR}^T_{L,a,t} \,\|\, \mathrm{VR}^S_{M,a,t}\big).
$$

The student needs the teacher's number of heads (not its width: $d_k$ is each model's
own head width); MiniLMv2 lifts that restriction with relation heads (not implemented
here).

Authors' code: none released for the distillation. https://github.com/microsoft/unilm,
``minilm/`` (checked at commit 768a3c87, December 2025) holds the README, the released
checkpoints and a fine-tuning example (``examples/run_xnli.py``), not the distillation
code; so this is written from the paper's equations (its Eqs. 7-10) and tested against
them, term by term.

Deviations and choices: (1) Padded positions never contribute: softmaxes run over the
real keys only, and the KLs are averaged over the heads and the real query positions of
the whole batch (the paper averages within one sequence of $|x|$ tokens; with equal
lengths the two agree). (2) The inputs are the attention scores before the softmax and
the values, so both distributions are computed with ``log_softmax`` (no $\log 0$); a
BERT's additive mask may already be in the scores (masked keys are dropped either
way). (3) Computed in at least float32. (4) The paper's teacher assistant (distil a
large teacher into an intermediate-size one first) is a training recipe outside the loss.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import attention_mask_2d, bert_tensor, non_negative


def _masked_kl(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, real: torch.Tensor
) -> torch.Tensor:
    """Mean over heads and real query rows of KL(softmax(teacher) || softmax(student)), the
    softmaxes over the real keys. Logits ``[B, h, T, T]``, ``real`` ``[B, T]``."""
    keys = real[:, None, None, :]
    log_p = F.log_softmax(teacher_logits.masked_fill(~keys, float("-inf")), dim=-1)
    log_q = F.log_softmax(student_logits.masked_fill(~keys, float("-inf")), dim=-1)
    # masked keys (and the rows of a fully padded sequence) are -inf or NaN: set them to 0
    log_p, log_q = log_p.masked_fill(~keys, 0.0), log_q.masked_fill(~keys, 0.0)
    kl = (log_p.exp() * keys * (log_p - log_q)).sum(-1)  # [B, h, T]
    rows = real[:, None, :].expand_as(kl)
    return (kl * rows).sum() / rows.sum().clamp_min(1)


class MiniLMLoss(DistillationLoss):
    """MiniLM's last-layer self-attention distillation: attention KL + value-relation KL.

    ``forward(student_scores, teacher_scores, student_values, teacher_values,
    attention_mask)``: the LAST layer's attention scores before the softmax
    (``[B, h, T, T]``, $QK^\\top/\\sqrt{d_k}$, with or without the additive mask), its
    values ``[B, h, T, d_k]`` (each model's own $d_k$) and the attention mask ``[B, T]``.

    Args:
        attention_weight, value_weight: the two terms' weights (the paper: 1 and 1).
    """

    inputs: ClassVar[tuple[str, ...]] = ("features",)

    def __init__(self, attention_weight: float = 1.0, value_weight: float = 1.0) -> None:
        super().__init__()
        self.attention_weight = non_negative("attention_weight", attention_weight)
        self.value_weight = non_negative("value_weight", value_weight)

    @staticmethod
    def value_relation(values: torch.Tensor) -> torch.Tensor:
        """$\\mathbf{V}\\mathbf{V}^\\top/\\sqrt{d_k}$ ``[B, h, T, T]`` (before the softmax)."""
        values = at_least_float32(values)
        return values @ values.transpose(-2, -1) / math.sqrt(values.shape[-1])

    def terms(
        self,
        student_scores: torch.Tensor,
        teacher_scores: torch.Tensor,
        student_values: torch.Tensor,
        teacher_values: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The unweighted terms ``{"attention", "value"}``."""
        batch, length = attention_mask_2d("attention_mask", attention_mask)
        for name, tensor, what in (
            ("student_scores", student_scores, "scores"),
            ("teacher_scores", teacher_scores, "scores"),
            ("student_values", student_values, "values"),
            ("teacher_values", teacher_values, "values"),
        ):
            bert_tensor(name, tensor, batch, length, what)
        heads = {student_scores.shape[1], teacher_scores.shape[1], student_values.shape[1]}
        if len(heads | {teacher_values.shape[1]}) != 1:
            raise ValueError(
                "MiniLM compares the attention head by head: student and teacher scores and "
                "values must have one number of heads, got "
                f"{student_scores.shape[1]}, {teacher_scores.shape[1]}, "
                f"{student_values.shape[1]} and {teacher_values.shape[1]}"
            )
        real = attention_mask.bool()
        attention = _masked_kl(
            at_least_float32(teacher_scores.detach()), at_least_float32(student_scores), real
        )
        value = _masked_kl(
            self.value_relation(teacher_values.detach()), self.value_relation(student_values), real
        )
        return {"attention": attention, "value": value}

    def forward(
        self,
        student_scores: torch.Tensor,
        teacher_scores: torch.Tensor,
        student_values: torch.Tensor,
        teacher_values: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        terms = self.terms(
            student_scores, teacher_scores, student_values, teacher_values, attention_mask
        )
        return self.attention_weight * terms["attention"] + self.value_weight * terms["value"]

    def extra_repr(self) -> str:
        return f"attention_weight={self.attention_weight}, value_weight={self.value_weight}"
