"""The embedding-matching base of :class:`EmbeddingMSELoss` and :class:`EmbeddingCosineLoss`.

Shape checks and sentence-transformers' optional ``projection_dim`` (a learnt
``nn.Linear(student_dim, teacher_dim)`` applied to the student's embeddings), built when
the widths differ.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import at_least, embedding_batch, non_negative


class EmbeddingMatching(DistillationLoss, abstract=True):
    """Shared by the MSE and cosine forms: shape checks and the optional projection."""

    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = False

    def __init__(self, student_dim: int, teacher_dim: int, weight: float = 1.0) -> None:
        super().__init__()
        self.student_dim = at_least("student_dim", student_dim, 1)
        self.teacher_dim = at_least("teacher_dim", teacher_dim, 1)
        self.weight = non_negative("weight", weight)
        # the library's projection_dim: a learnt map from the student's width to the teacher's
        self.projection: nn.Module = (
            nn.Linear(student_dim, teacher_dim) if student_dim != teacher_dim else nn.Identity()
        )

    def _pair(
        self, student: torch.Tensor, teacher: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows, _ = embedding_batch("student", student, width=self.student_dim)
        embedding_batch("teacher", teacher, rows=rows, width=self.teacher_dim)
        projected = at_least_float32(self.projection(student))
        return projected, at_least_float32(teacher.detach()).to(projected.dtype)

    def extra_repr(self) -> str:
        return (
            f"student_dim={self.student_dim}, teacher_dim={self.teacher_dim}, weight={self.weight}"
        )
