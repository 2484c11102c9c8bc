r"""The averaged ensemble: one student distilled from the mean prediction of several teachers.

Citation: ``hinton2015distilling`` (Hinton, Vinyals and Dean, 2015): "when the
cumbersome model is a large ensemble of simpler models, we can use an arithmetic or
geometric mean of their individual predictive distributions as the soft targets"
(§2), which is how the paper distils its ensemble of ten speech models into one. It
is the baseline every multi-teacher method is measured against ("AVER-MKD" in
``zhang2022confidence``).

For $K$ teachers with logits $z^{t_k}$, softened predictions
$p^{t_k,\tau} = \mathrm{softmax}(z^{t_k}/\tau)$ and teacher weights $w_k$
($\sum_k w_k = 1$; uniform by default), the student minimises

$$
\mathcal{L} = \lambda_{\mathrm{CE}}\,\mathrm{CE}\big(y, p^{s}\big)
  + \lambda_{\mathrm{KD}}\,\tau^{2}\,
    \mathrm{KL}\!\Big(\textstyle\sum_k w_k\, p^{t_k,\tau} \,\Big\|\, p^{s,\tau}\Big),
$$

the KL summed over classes and averaged over the batch (``average="arithmetic"``,
the default). ``average="geometric"`` uses the normalised geometric mean
$\propto \prod_k (p^{t_k,\tau})^{w_k}$, which is the softmax of the weighted mean
logit $\sum_k w_k z^{t_k}/\tau$. ``average="losses"`` averages the KD losses
instead of the targets, $\tau^2 \sum_k w_k\,\mathrm{KL}(p^{t_k,\tau}\|p^{s,\tau})$,
as the averaged baseline of the CA-MKD authors' code does. The arithmetic target
and the averaged losses give the **same gradient** to the student: each KL is
$\sum_c p^{t_k}_c \log p^{t_k}_c - \sum_c p^{t_k}_c \log p^{s}_c$, so their weighted
mean differs from the KL to the mean target by a constant of the teachers (a
Jensen gap, $\ge 0$). Their values differ by that constant.

Authors' code: Hinton et al. released none. The averaged-losses form is compared with
the CA-MKD repository, https://github.com/Rorozhl/CA-MKD (``helper/loops.py``,
``train_distill_multi_teacher``, branch ``ensemble_method == "AVERAGE_LOSS"``, with
``DistillKL`` of ``distiller_zoo/KD.py``), whose CIFAR-100 run
(``scripts/run.sh``: ``--distill kd --ensemble_method AVERAGE_LOSS -r 1 -a 1 -b 0``,
``--kd_T 4`` by default) gives our defaults: $\tau = 4$, $\lambda_{\mathrm{CE}} = 1$,
$\lambda_{\mathrm{KD}} = 1$. Hinton et al. name no single temperature for the ensemble.

Deviation: none in the loss. The default target is Hinton's arithmetic mean rather
than the CA-MKD code's averaged losses; the two train identically (same gradients)
and ``average="losses"`` reproduces that code's value too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.algorithms.multi_teacher.teachers import MultiTeacherProcedure
from reference_impls.common.losses import kl_divergence, softened_kl, softened_log_probs
from reference_impls.common.training import logits_of
from reference_impls.common.validation import (
    loss_weights,
    non_negative,
    one_of,
    one_per_teacher,
    positive,
    teacher_logit_list,
)

AVERAGES: tuple[str, ...] = ("arithmetic", "geometric", "losses")


def normalised_teacher_weights(weights: Sequence[float] | None, num_teachers: int) -> list[float]:
    """Non-negative teacher weights scaled to sum to 1 (uniform when ``weights`` is ``None``)."""
    if weights is None:
        return [1.0 / num_teachers] * num_teachers
    one_per_teacher("weights", weights, num_teachers)
    loss_weights(**{f"weights[{k}]": float(w) for k, w in enumerate(weights)})
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def ensemble_log_probs(
    teacher_logits: Sequence[torch.Tensor],
    temperature: float,
    weights: Sequence[float],
    average: str = "arithmetic",
) -> torch.Tensor:
    """Log of the teachers' weighted mean softened distribution ``[B, C]`` (no gradient)."""
    one_of("average", average, ("arithmetic", "geometric"))
    log_probs = torch.stack([softened_log_probs(z.detach(), temperature) for z in teacher_logits])
    log_w = torch.tensor(weights, dtype=log_probs.dtype, device=log_probs.device)
    log_w = log_w.log().view(-1, 1, 1)  # a weight of 0 gives -inf: that teacher drops out
    if average == "arithmetic":
        return torch.logsumexp(log_probs + log_w, dim=0)
    weighted = (log_w.exp() * log_probs).sum(dim=0)
    return F.log_softmax(weighted, dim=-1)


def averaged_ensemble_kd(
    student_logits: torch.Tensor,
    teacher_logits: Sequence[torch.Tensor],
    temperature: float = 4.0,
    weights: Sequence[float] | None = None,
    average: str = "arithmetic",
) -> torch.Tensor:
    """$\\tau^2\\,\\mathrm{KL}(\\bar p^{t} \\| p^{s})$ to the teachers' mean, batch mean.

    ``teacher_logits``: a list of one ``[B, C]`` tensor per teacher (detached here);
    ``average="losses"`` returns the weighted mean of the per-teacher KD losses instead.
    """
    teacher_logit_list(student_logits, teacher_logits)
    one_of("average", average, AVERAGES)
    weights = normalised_teacher_weights(weights, len(teacher_logits))
    if average == "losses":
        losses = [softened_kl(student_logits, z, temperature) for z in teacher_logits]
        return sum(w * loss for w, loss in zip(weights, losses, strict=True))
    target = ensemble_log_probs(teacher_logits, temperature, weights, average)
    student = softened_log_probs(student_logits, temperature)
    return kl_divergence(student, target) * temperature**2


class AveragedEnsembleKD(MultiTeacherProcedure):
    """A student distilled from the (weighted) mean prediction of frozen teachers.

    Args:
        student: the model being trained (returns a ``ModelOutput`` or plain logits).
        teachers: one or more trained classifiers over the student's classes.
        temperature: softening temperature $\\tau$ (CA-MKD code's baseline: 4).
        average: ``"arithmetic"`` mean of the distributions (Hinton et al., default),
            ``"geometric"`` mean, or ``"losses"`` (the mean of the per-teacher KD losses,
            the CA-MKD code's AVERAGE_LOSS; same gradients as ``"arithmetic"``).
        weights: fixed non-negative weight per teacher, normalised to sum to 1;
            ``None``: uniform.
        ce_weight: weight of the cross-entropy on the labels (authors' ``-r``: 1).
        kd_weight: weight of the distillation term (authors' ``-a``: 1).
    """

    def __init__(
        self,
        student: nn.Module,
        teachers: Sequence[nn.Module],
        temperature: float = 4.0,
        average: str = "arithmetic",
        weights: Sequence[float] | None = None,
        ce_weight: float = 1.0,
        kd_weight: float = 1.0,
    ) -> None:
        super().__init__(student, teachers, min_teachers=1)
        self.temperature = positive("temperature", temperature)
        self.average = one_of("average", average, AVERAGES)
        self.weights = normalised_teacher_weights(weights, self.num_teachers)
        self.ce_weight = non_negative("ce_weight", ce_weight)
        self.kd_weight = non_negative("kd_weight", kd_weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        student_logits = logits_of(self.student(x))
        teacher_logits = [logits_of(out) for out in self.teacher_outputs(x)]
        ce = F.cross_entropy(student_logits, y)
        kd = averaged_ensemble_kd(
            student_logits, teacher_logits, self.temperature, self.weights, self.average
        )
        loss = self.ce_weight * ce + self.kd_weight * kd
        return {"loss": loss, "ce": ce.detach(), "kd": kd.detach()}

    def extra_repr(self) -> str:
        weights = ", ".join(f"{w:.3g}" for w in self.weights)
        return (
            f"temperature={self.temperature}, average={self.average!r}, weights=[{weights}], "
            f"ce_weight={self.ce_weight}, kd_weight={self.kd_weight}"
        )


__all__ = [
    "AVERAGES",
    "AveragedEnsembleKD",
    "averaged_ensemble_kd",
    "ensemble_log_probs",
    "normalised_teacher_weights",
]
