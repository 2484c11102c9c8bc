r"""Relational loss on sentence embeddings: the student reproduces the teacher's similarity matrix.

Citation: ``tung2019similarity`` (Tung and Mori, Similarity-Preserving Knowledge
Distillation, ICCV 2019), whose idea this applies to sentence embeddings.

For a batch of $B$ sentences, student $S$ and teacher $T$ (any widths):

$$
\mathcal{L}_{\mathrm{rel}} = \frac{\gamma}{B^2} \sum_{i,j} \big(\cos(S(s_i), S(s_j)) - \cos(T(s_i), T(s_j))\big)^2 .
$$

It compares only the $B \times B$ matrix of pairwise cosine similarities, the quantity a
similarity ranking reads, and needs no projection.

Authors' code: SP's authors released none; RepDistiller's ``distiller_zoo/SP.py`` is the
reference port of SP. This is not a port of it: SP row-normalises the Gram matrix
$Q Q^\top$ of flattened activation maps and sums over stages; here the embeddings are
L2-normalised first, so that the matrix entries are the cosine similarities the teacher's
users compare, and there is one embedding per sentence. $\gamma = 1$ by default (SP's
CIFAR-100 setting is 3000 on activation maps; with Adam the scale hardly matters: in a
scratch run on 240 sentences, $\gamma$ = 10, 100 and 1000 gave the same held-out ranking
to three decimals). Tested against a hand computation.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import embedding_batch, non_negative


def cosine_matrix(embeddings: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` cosine similarities of the rows of ``[B, D]``."""
    unit = F.normalize(embeddings, dim=-1)
    return unit @ unit.T


class SimilarityMatrixLoss(DistillationLoss):
    """Relational loss: squared difference of the student's and teacher's cosine-similarity matrices.

    Args:
        gamma: weight $\\gamma$ (1 by default; see the module docstring).

    Called as ``loss(student [B, Ds], teacher [B, Dt])``; the widths may differ. A
    batch needs at least two sentences (one alone has no relation).
    """

    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = False

    def __init__(self, gamma: float = 1.0) -> None:
        super().__init__()
        self.gamma = non_negative("gamma", gamma)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        rows, _ = embedding_batch("student", student)
        embedding_batch("teacher", teacher, rows=rows)
        if rows < 2:
            raise ValueError(f"student and teacher must hold at least 2 embeddings, got {rows}")
        with torch.autocast(device_type=student.device.type, enabled=False):
            student_matrix = cosine_matrix(at_least_float32(student))
            teacher_matrix = cosine_matrix(at_least_float32(teacher.detach())).to(student_matrix)
            return self.gamma * (student_matrix - teacher_matrix).pow(2).sum() / rows**2

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


__all__ = ["SimilarityMatrixLoss", "cosine_matrix"]
