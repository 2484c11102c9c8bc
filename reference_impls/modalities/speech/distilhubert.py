r"""DistilHuBERT: prediction heads on a shallow student predict several hidden layers of the teacher.

Citation: ``chang2022distilhubert`` (Chang, Yang and Lee, ICASSP 2022).
Authors' code: https://github.com/s3prl/s3prl (commit
``ec8064b5889f81ca460fbe2c094ce576a6f120b7``), ``s3prl/pretrain/distiller/pretrain_expert.py``,
``DistillerForPretrain.compute_loss`` (the loss), with the heads of
``s3prl/upstream/distiller/model.py`` (``DistillerModel.output_layer``: ``Linear``,
``GELU``, ``SplitLinear`` of ``s3prl/upstream/distiller/module.py``) and the settings of
``s3prl/pretrain/distiller/config_model.yaml``.

The student (HuBERT's CNN and the first two of its transformer layers, initialised from the
teacher) ends in $N$ prediction heads; head $n$ maps the student's last hidden state $h_t$
to $\hat y^{(n)}_t$, a prediction of teacher layer $l_n$'s hidden state $y^{(l_n)}_t$
($D$ features). The heads are one ``Linear`` $d \to N d_i$, a GELU, and $N$ separate
linear maps $d_i \to D$ (``SplitLinear``). Per head, an L1 distance and a cosine term,

$$
\mathcal{L}^{(n)} = \frac{1}{T}\sum_{t=1}^{T}\Big[\frac{1}{D}\big\lVert \hat y^{(n)}_t -
  y^{(l_n)}_t\big\rVert_1 - \lambda \log \sigma\big(\cos(\hat y^{(n)}_t, y^{(l_n)}_t)\big)\Big],
\qquad
\mathcal{L} = \frac{1}{N}\sum_{n=1}^{N} \mathcal{L}^{(n)}
$$

(mean over the batch too). The paper writes $\mathcal{L} = \sum_n \mathcal{L}^{(n)}$; the
code averages over the heads (``rec_loss.mean()`` over ``B x N x T x D``,
``sim_loss.mean()`` over ``B x N x T``): we follow the code, $1/N$ times the paper's sum.

Defaults (``config_model.yaml``): ``loss_type: l1``, ``cosine_loss: 1.0`` ($\lambda = 1$),
``feat_pen_loss: 0.0`` (the penalty on the CNN features' squares is off, and not
implemented here), ``out_layer_inter_dim: -1`` (the heads' inner width $d_i$ is the
student's width), ``final_dim: 768`` (the teacher's width). The paper's main model has
three heads predicting HuBERT Base layers 4, 8 and 12; the released
``config_model.yaml`` has two (``n_tasks: 2``, ``pred_layer_id: [4, 12]``); ``num_heads``
is 3 here (the paper's main setting; the loss code is the same for both).
``SplitLinear``'s initialisation (uniform in $\pm d_i^{-1/2}$ for weights and biases)
is kept.

Deviations: padded frames. The authors' loss averages over every frame of the padded
batch (their bucketing sampler batches utterances of similar length, cropped to
``sequence_length``); here a ``[B, T]`` mask removes padded frames before anything is
computed, so the means run over real frames only. With no padding (an all-True mask) the
value and gradients equal theirs (``scripts/official_adapters.py``). The student's
initialisation from the teacher's layers and the choice of the layers $l_n$ belong to the
training set-up (the notebook).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import at_least, non_negative, one_of, sequence_mask


def head_losses(
    prediction: torch.Tensor, target: torch.Tensor, loss_type: str = "l1"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head, mean over frames of the distance and of $-\\log\\sigma(\\cos)$: ``[N]`` twice.

    ``prediction`` and ``target`` are ``[M, N, D]`` (M real frames, N heads); the
    distance is the mean absolute (``"l1"``) or squared (``"l2"``) error over ``D``.
    """
    prediction, target = at_least_float32(prediction), at_least_float32(target.detach())
    if loss_type == "l1":
        distance = (prediction - target).abs().mean(-1)
    else:
        distance = (prediction - target).pow(2).mean(-1)
    cosine = -F.logsigmoid(F.cosine_similarity(prediction, target, dim=-1))
    return distance.mean(0), cosine.mean(0)


class PredictionHeads(nn.Module):
    """``Linear(d, N d_i)``, GELU, then per head ``d_i -> D`` (s3prl's ``output_layer``).

    ``forward(hidden [..., d]) -> [..., N, D]``.
    """

    def __init__(self, student_dim: int, teacher_dim: int, num_heads: int, inter_dim: int) -> None:
        super().__init__()
        self.num_heads, self.inter_dim = num_heads, inter_dim
        self.expand = nn.Linear(student_dim, inter_dim * num_heads)
        bound = inter_dim**-0.5
        self.weight = nn.Parameter(torch.empty(num_heads, inter_dim, teacher_dim))
        self.bias = nn.Parameter(torch.empty(num_heads, teacher_dim))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        inner = F.gelu(self.expand(hidden))
        inner = inner.reshape(*hidden.shape[:-1], self.num_heads, self.inter_dim)
        return torch.einsum("...ni,nio->...no", inner, self.weight.to(inner.dtype)) + self.bias.to(
            inner.dtype
        )


class DistilHuBERTLoss(DistillationLoss):
    """L1 + $\\lambda$ (-log sigmoid cos) between each head's prediction and its teacher layer.

    Called as ``loss(student_hidden [B, T, d], teacher_hiddens, mask [B, T])`` where
    ``teacher_hiddens`` holds the ``num_heads`` predicted teacher layers, each
    ``[B, T, D]`` (a sequence, or one ``[B, N, T, D]`` tensor), and ``mask`` is True at
    real frames. The heads are trainable (they are dropped after distillation).

    Args:
        student_dim: width $d$ of the student's last hidden state.
        teacher_dim: width $D$ of the teacher's hidden states.
        num_heads: number of predicted teacher layers $N$ (the paper: 3).
        inter_dim: heads' inner width $d_i$ (their ``-1``, the default ``None``: $d$).
        cosine_weight: $\\lambda$ of the cosine term (theirs: 1).
        loss_type: ``"l1"`` (theirs) or ``"l2"`` (their other option, an MSE).
    """

    inputs: ClassVar[str] = "features"
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        num_heads: int = 3,
        inter_dim: int | None = None,
        cosine_weight: float = 1.0,
        loss_type: str = "l1",
    ) -> None:
        super().__init__()
        at_least("student_dim", student_dim, 1)
        at_least("teacher_dim", teacher_dim, 1)
        self.num_heads = at_least("num_heads", num_heads, 1)
        inter_dim = student_dim if inter_dim is None else at_least("inter_dim", inter_dim, 1)
        self.cosine_weight = non_negative("cosine_weight", cosine_weight)
        self.loss_type = one_of("loss_type", loss_type, ("l1", "l2"))
        self.teacher_dim = teacher_dim
        self.heads = PredictionHeads(student_dim, teacher_dim, num_heads, inter_dim)

    def _targets(
        self, teacher_hiddens: Sequence[torch.Tensor] | torch.Tensor, batch: int, frames: int
    ) -> torch.Tensor:
        if isinstance(teacher_hiddens, torch.Tensor):
            stacked = teacher_hiddens
        else:
            if len(teacher_hiddens) != self.num_heads:
                raise ValueError(
                    f"teacher_hiddens must hold num_heads={self.num_heads} teacher layers (one "
                    f"per head), got {len(teacher_hiddens)}"
                )
            stacked = torch.stack(list(teacher_hiddens), dim=1)
        expected = (batch, self.num_heads, frames, self.teacher_dim)
        if tuple(stacked.shape) != expected:
            raise ValueError(
                f"teacher_hiddens must be {self.num_heads} layers of shape "
                f"[{batch}, {frames}, {self.teacher_dim}] ([B, T, D] like student_hidden's "
                f"[B, T]), got {tuple(stacked.shape)} stacked as [B, N, T, D]"
            )
        return stacked.detach()

    def terms(
        self,
        student_hidden: torch.Tensor,
        teacher_hiddens: Sequence[torch.Tensor] | torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per head, the distance and the cosine term, each averaged over real frames: ``[N]`` twice."""
        if student_hidden.dim() != 3:
            raise ValueError(
                f"student_hidden must have shape [B, T, d], got {tuple(student_hidden.shape)}"
            )
        batch, frames = student_hidden.shape[:2]
        sequence_mask("mask", mask, (batch, frames))
        target = self._targets(teacher_hiddens, batch, frames).transpose(1, 2)[mask]  # [M, N, D]
        prediction = self.heads(student_hidden[mask])  # padded frames never enter: [M, N, D]
        return head_losses(prediction, target, self.loss_type)

    def forward(
        self,
        student_hidden: torch.Tensor,
        teacher_hiddens: Sequence[torch.Tensor] | torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        distance, cosine = self.terms(student_hidden, teacher_hiddens, mask)
        return distance.mean() + self.cosine_weight * cosine.mean()

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, cosine_weight={self.cosine_weight}, "
            f"loss_type={self.loss_type!r}"
        )
