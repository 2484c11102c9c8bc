r"""Unifying heterogeneous classifiers: teachers that know different label sets, one student for all.

Citation: ``vongkulbhisal2019unifying`` (Vongkulbhisal, Vinayavekhin and
Visentini-Scarzanella, "Unifying Heterogeneous Classifiers with Distillation", CVPR 2019).
Authors' code: none that we could find (the bibliography names none, and no public
repository of the authors implements it); this file follows the paper's equations.

Teacher $k$ was trained on a subset $\mathcal{L}_k$ of the classes, and its prediction
$p_k(c \mid x)$, $c \in \mathcal{L}_k$, is read as the probability of class $c$ *given
that the class is one of* $\mathcal{L}_k$. If the student's distribution over all
classes $\mathcal{L} = \bigcup_k \mathcal{L}_k$ is $q$, the same conditional is $q$
restricted to $\mathcal{L}_k$ and renormalised,

$$
\hat q_k(c \mid x) = \frac{q(c \mid x)}{\sum_{c' \in \mathcal{L}_k} q(c' \mid x)},
\qquad c \in \mathcal{L}_k ,
$$

which, for $q = \mathrm{softmax}(z^{s})$, is simply the softmax of the student's logits
of $\mathcal{L}_k$ alone. The paper's cross-entropy method trains the student (on
unlabelled data) to match every teacher on its own classes:

$$
\mathcal{L}_{\mathrm{UHC}} = -\frac{1}{N}\sum_{n}\sum_{k}\sum_{c \in \mathcal{L}_k}
  p_k(c \mid x_n)\,\log \hat q_k(c \mid x_n).
$$

We compute it as $\tau^2\sum_k \mathrm{KL}(p^{\tau}_k \| \hat q^{\tau}_k)$, batch mean, with
the shared softened KL on the selected logits: the cross-entropy minus the teachers'
entropies, a constant, so the gradient is the paper's and the value is 0 when every
teacher is matched. At $\tau = 1$ (default: the paper's probabilities are the
classifiers' outputs, with no temperature) and one teacher over all classes it is KD's
KL term. ``ce_weight > 0`` adds a cross-entropy on labels where some exist (the paper
uses none: ``ce_weight = 0``).

A property to know: the loss sees only the distributions *within* each label set. When
the sets are disjoint (no class shared, e.g. digits 0-4 and 5-9), moving probability
mass from one set to another leaves it unchanged, so unlabelled data cannot teach the
student which teacher's set a sample belongs to; overlapping sets tie the sets together,
labels (``ce_weight``) do too.

Deviations: the paper also estimates the full soft labels $q$ per sample (its
matrix-factorisation methods, and solving the cross-entropy for $q$ before training);
this file implements the variant that back-propagates the cross-entropy through the
student directly. ``temperature`` is our option (KD's softening, scaled by $\tau^2$).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.algorithms.multi_teacher.teachers import MultiTeacherProcedure
from reference_impls.common.losses import softened_kl
from reference_impls.common.training import logits_of
from reference_impls.common.validation import (
    at_least,
    loss_weights,
    one_per_teacher,
    positive,
    teacher_logit_list,
)


def check_label_sets(label_sets: Sequence[Sequence[int]], num_classes: int) -> list[list[int]]:
    """Each set: distinct class indices in ``range(num_classes)``; together they cover them all."""
    at_least("num_classes", num_classes, 2)
    checked = []
    for k, label_set in enumerate(label_sets):
        classes = [int(c) for c in label_set]
        if not classes:
            raise ValueError(f"label_sets[{k}] is empty; each teacher predicts at least one class")
        outside = [c for c in classes if not 0 <= c < num_classes]
        if outside:
            raise ValueError(
                f"label_sets[{k}] holds classes {outside} outside range({num_classes}) "
                f"(num_classes={num_classes})"
            )
        if len(set(classes)) != len(classes):
            raise ValueError(f"label_sets[{k}] repeats a class: {classes}")
        checked.append(classes)
    uncovered = sorted(set(range(num_classes)) - {c for s in checked for c in s})
    if uncovered:
        raise ValueError(
            f"label_sets do not cover the student's {num_classes} classes: classes {uncovered} "
            "belong to no teacher, so nothing would teach them"
        )
    return checked


def uhc_loss(
    student_logits: torch.Tensor,
    teacher_logits: Sequence[torch.Tensor],
    label_sets: Sequence[torch.Tensor | Sequence[int]],
    temperature: float = 1.0,
) -> torch.Tensor:
    """$\\tau^2\\sum_k \\mathrm{KL}(p_k \\| \\hat q_k)$, batch mean: each teacher on its own classes.

    ``teacher_logits[k]`` is ``[B, |label_sets[k]|]``, its column ``j`` the student's
    class ``label_sets[k][j]``; teachers are detached.
    """
    teacher_logit_list(student_logits, teacher_logits, [len(s) for s in label_sets])
    terms = []
    for classes, logits in zip(label_sets, teacher_logits, strict=True):
        index = torch.as_tensor(classes, dtype=torch.long, device=student_logits.device)
        # softmax of the selected logits = the student's distribution renormalised to the set
        terms.append(softened_kl(student_logits.index_select(1, index), logits, temperature))
    return torch.stack(terms).sum()


class UHC(MultiTeacherProcedure):
    """One student over all classes, distilled from teachers that each know a subset.

    Args:
        student: the model being trained, over ``num_classes`` classes.
        teachers: trained classifiers; teacher ``k`` outputs ``len(label_sets[k])`` logits.
        label_sets: for each teacher, the student's class index of each of its outputs,
            in its output order (e.g. ``[[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]``). Together
            they must cover ``range(num_classes)``; they may overlap.
        num_classes: the student's number of classes.
        temperature: softening temperature $\\tau$ (paper: none, i.e. 1).
        ce_weight: weight of a cross-entropy on labels (paper: 0, unlabelled data).
        kd_weight: weight of the UHC term.
    """

    def __init__(
        self,
        student: nn.Module,
        teachers: Sequence[nn.Module],
        label_sets: Sequence[Sequence[int]],
        num_classes: int,
        temperature: float = 1.0,
        ce_weight: float = 0.0,
        kd_weight: float = 1.0,
    ) -> None:
        super().__init__(student, teachers, min_teachers=1)
        one_per_teacher("label_sets", label_sets, self.num_teachers)
        self.num_classes = num_classes
        for k, classes in enumerate(check_label_sets(label_sets, num_classes)):
            # buffers: they follow .to(device) and are saved with the state_dict
            self.register_buffer(f"label_set_{k}", torch.tensor(classes, dtype=torch.long))
        self.temperature = positive("temperature", temperature)
        weights = loss_weights(ce_weight=ce_weight, kd_weight=kd_weight)
        self.ce_weight, self.kd_weight = weights["ce_weight"], weights["kd_weight"]

    @property
    def label_sets(self) -> list[torch.Tensor]:
        return [getattr(self, f"label_set_{k}") for k in range(self.num_teachers)]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        student_logits = logits_of(self.student(x))
        if student_logits.dim() != 2 or student_logits.shape[1] != self.num_classes:
            raise ValueError(
                f"student_logits must have shape [B, {self.num_classes}] (num_classes="
                f"{self.num_classes}), got shape {tuple(student_logits.shape)}"
            )
        teacher_logits = [logits_of(out) for out in self.teacher_outputs(x)]
        kd = uhc_loss(student_logits, teacher_logits, self.label_sets, self.temperature)
        loss = self.kd_weight * kd
        terms = {"kd": kd.detach()}
        if self.ce_weight > 0:
            ce = F.cross_entropy(student_logits, y)
            loss = loss + self.ce_weight * ce
            terms["ce"] = ce.detach()
        terms["loss"] = loss
        return terms

    def extra_repr(self) -> str:
        sets = [s.tolist() for s in self.label_sets]
        return (
            f"label_sets={sets}, num_classes={self.num_classes}, temperature={self.temperature}, "
            f"ce_weight={self.ce_weight}, kd_weight={self.kd_weight}"
        )


__all__ = ["UHC", "check_label_sets", "uhc_loss"]
