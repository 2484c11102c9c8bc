r"""DistilBERT's triple loss: soft targets, masked language modelling and aligned hidden states.

Citation: ``sanh2019distilbert`` (Sanh, Debut, Chaumond and Wolf, 2019). A student with the
teacher's width and half its layers, initialised from every other teacher layer, is
trained on the teacher's pre-training task with a linear combination of three terms over
the real tokens $\mathcal{K}$ (attention mask 1) and the masked positions $\mathcal{M}$:

$$
\mathcal{L} = \alpha_{ce}\,\tau^2\,\frac{1}{|\mathcal{K}|}\sum_{t\in\mathcal{K}}
  \mathrm{KL}\big(p^{\tau}_t \,\|\, q^{\tau}_t\big)
  + \alpha_{mlm}\,\frac{1}{|\mathcal{M}|}\sum_{t\in\mathcal{M}} -\log q_t(x_t)
  + \alpha_{cos}\,\frac{1}{|\mathcal{K}|}\sum_{t\in\mathcal{K}}
  \big(1 - \cos(h^s_t, h^t_t)\big),
$$

with $p^{\tau}, q^{\tau}$ the teacher's and student's softmax at temperature $\tau$ and
$h^s, h^t$ their last hidden states.

Authors' code: https://github.com/huggingface/transformers-research-projects,
``distillation/distiller.py``, ``Distiller.step`` (the loss statements): ``KLDivLoss
(reduction="batchmean")`` on the selected tokens' ``log_softmax(s/T)`` and ``softmax(t/T)``
times $T^2$, ``CrossEntropyLoss(ignore_index=-100)`` on the MLM labels,
``CosineEmbeddingLoss(reduction="mean")`` with target 1 on the last hidden states of the
real tokens. Defaults: the README's command for ``distilbert-base-uncased``,
``--alpha_ce 5.0 --alpha_mlm 2.0 --alpha_cos 1.0 --alpha_clm 0.0 --mlm``, ``train.py``'s
``--temperature 2.0``; ``--restrict_ce_to_mask`` off (the soft-target term over every
real token). The corruption (``--mlm_mask_prop 0.15``, 80% ``<mask>``, 10% kept, 10%
random) is :func:`~reference_impls.common.language_models.mask_tokens`; the
initialisation from the teacher (``scripts/extract_distilbert.py``) is
:func:`initialise_from_teacher`.

Deviations: (1) ``train.py``'s ``--mlm_smoothing 0.7`` (masking rare tokens more often by
token counts) is not applied: characters are masked uniformly. (2) The MSE term on
logits (``--alpha_mse``, 0 in their command) and the causal-LM variant (``alpha_clm``)
are left out. (3) Computed in at least float32 (their code: in the logits' dtype).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import non_negative, per_token, positive, token_logit_pair


class DistilBERTLoss(DistillationLoss):
    """$\\alpha_{ce}$ soft targets + $\\alpha_{mlm}$ masked LM + $\\alpha_{cos}$ hidden-state cosine.

    ``forward(student_logits, teacher_logits, student_hidden, teacher_hidden, labels,
    attention_mask)``: logits ``[B, T, V]``, last hidden states ``[B, T, D]`` (the same
    width), MLM labels ``[B, T]`` (-100 where not masked) and the attention mask
    ``[B, T]``.

    Args:
        alpha_ce, alpha_mlm, alpha_cos: the weights (their README: 5, 2, 1).
        temperature: $\\tau$ of the soft targets (theirs: 2).
        restrict_ce_to_mask: soft targets at the masked positions only (theirs: off).
    """

    inputs: ClassVar[tuple[str, ...]] = ("logits", "features")

    def __init__(
        self,
        alpha_ce: float = 5.0,
        alpha_mlm: float = 2.0,
        alpha_cos: float = 1.0,
        temperature: float = 2.0,
        restrict_ce_to_mask: bool = False,
    ) -> None:
        super().__init__()
        self.alpha_ce = non_negative("alpha_ce", alpha_ce)
        self.alpha_mlm = non_negative("alpha_mlm", alpha_mlm)
        self.alpha_cos = non_negative("alpha_cos", alpha_cos)
        self.temperature = positive("temperature", temperature)
        self.restrict_ce_to_mask = bool(restrict_ce_to_mask)

    def terms(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        student_hidden: torch.Tensor,
        teacher_hidden: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The three terms, unweighted: ``{"ce", "mlm", "cos"}``."""
        token_logit_pair(student_logits, teacher_logits)
        per_token("labels", labels, student_logits)
        per_token("attention_mask", attention_mask, student_logits)
        if student_hidden.shape != teacher_hidden.shape or (
            student_hidden.shape[:-1] != student_logits.shape[:-1]
        ):
            raise ValueError(
                "student_hidden and teacher_hidden must have one shape [B, T, D] (DistilBERT "
                f"keeps the teacher's width), got {tuple(student_hidden.shape)} and "
                f"{tuple(teacher_hidden.shape)} for logits {tuple(student_logits.shape)}"
            )
        real = attention_mask.bool()
        masked = labels != -100
        selected = masked & real if self.restrict_ce_to_mask else real
        count = selected.sum().clamp_min(1)
        student = at_least_float32(student_logits[selected]) / self.temperature
        teacher = at_least_float32(teacher_logits.detach()[selected]) / self.temperature
        log_q, log_p = F.log_softmax(student, -1), F.log_softmax(teacher, -1)
        ce = (log_p.exp() * (log_p - log_q)).sum() / count * self.temperature**2
        logits = at_least_float32(student_logits)
        mlm = F.cross_entropy(logits[masked], labels[masked], reduction="sum")
        mlm = mlm / masked.sum().clamp_min(1)
        cosine = F.cosine_similarity(
            at_least_float32(student_hidden[real]),
            at_least_float32(teacher_hidden.detach()[real]),
            dim=-1,
        )
        cos = (1 - cosine).sum() / real.sum().clamp_min(1)
        return {"ce": ce, "mlm": mlm, "cos": cos}

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        student_hidden: torch.Tensor,
        teacher_hidden: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        terms = self.terms(
            student_logits, teacher_logits, student_hidden, teacher_hidden, labels, attention_mask
        )
        return (
            self.alpha_ce * terms["ce"]
            + self.alpha_mlm * terms["mlm"]
            + self.alpha_cos * terms["cos"]
        )

    def extra_repr(self) -> str:
        return (
            f"alpha_ce={self.alpha_ce}, alpha_mlm={self.alpha_mlm}, alpha_cos={self.alpha_cos}, "
            f"temperature={self.temperature}, restrict_ce_to_mask={self.restrict_ce_to_mask}"
        )


@torch.no_grad()
def initialise_from_teacher(student: nn.Module, teacher: nn.Module) -> nn.Module:
    """DistilBERT's initialisation: embeddings, final norm and head copied, and the student's
    block $i$ from the teacher's block $2i$ (one layer out of two). Returns ``student``."""
    blocks_s, blocks_t = student.blocks, teacher.blocks
    if len(blocks_t) < 2 * len(blocks_s) - 1:
        raise ValueError(
            f"the teacher has {len(blocks_t)} blocks, too few for one out of two of the "
            f"student's {len(blocks_s)}"
        )
    for name in ("token_embedding", "position_embedding", "norm", "head"):
        getattr(student, name).load_state_dict(getattr(teacher, name).state_dict())
    for index, block in enumerate(blocks_s):
        block.load_state_dict(blocks_t[2 * index].state_dict())
    return student
