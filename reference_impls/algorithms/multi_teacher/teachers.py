"""What the multi-teacher procedures share: a list of frozen teachers, run together.

Every procedure of this leaf owns its student and a list of trained teachers (any
classifiers: a ``TinyCNN`` returning a ``ModelOutput``, or a user's model returning
plain logits). :class:`MultiTeacherProcedure` freezes the teachers once, keeps them in
eval mode while the procedure trains, and runs them under ``torch.no_grad()``; the
loss terms themselves are functions of logits (and features), so precomputed teacher
outputs can be used without the procedure.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.models import ModelOutput
from reference_impls.common.training import freeze
from reference_impls.common.validation import at_least


class MultiTeacherProcedure(DistillationProcedure):
    """A student and ``teachers`` (frozen here: eval mode, no gradients), trained by ``forward``.

    Args:
        student: the model being trained.
        teachers: the trained teachers, at least ``min_teachers`` of them.
        min_teachers: how many the method needs (CA-MKD's weights need two).
    """

    def __init__(
        self, student: nn.Module, teachers: Sequence[nn.Module], min_teachers: int = 1
    ) -> None:
        super().__init__()
        if isinstance(teachers, nn.Module) and not isinstance(teachers, nn.ModuleList):
            raise TypeError(
                f"teachers must be a list of models, got one {type(teachers).__name__}; "
                "pass [teacher] for a single one"
            )
        at_least("number of teachers", len(teachers), min_teachers)
        self.student = student
        self.teachers = nn.ModuleList([freeze(teacher) for teacher in teachers])

    @property
    def num_teachers(self) -> int:
        return len(self.teachers)

    def train(self, mode: bool = True) -> MultiTeacherProcedure:
        super().train(mode)
        self.teachers.eval()  # the teachers' batch-norm statistics never move
        return self

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> list[ModelOutput | torch.Tensor]:
        """Every teacher's output for ``x`` (no gradient, eval mode)."""
        return [teacher(x) for teacher in self.teachers]
