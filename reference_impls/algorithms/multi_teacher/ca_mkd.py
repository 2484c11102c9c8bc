r"""CA-MKD: teachers weighted per sample by how well they predict its label.

Citation: ``zhang2022confidence`` (Zhang, Chen and Wang, "Confidence-Aware
Multi-Teacher Knowledge Distillation", ICASSP 2022).
Authors' code: https://github.com/Rorozhl/CA-MKD (``helper/loops.py``,
``train_distill_multi_teacher``, branch ``ensemble_method == "CAMKD"``;
``distiller_zoo/CAMKD.py``, class ``CAMKD``; ``models/util.py``, classes ``CalWeight``
and ``Embed``; ``distiller_zoo/KD.py``, ``DistillKL``).

Teacher $k$ of $K$ earns, on sample $n$, a weight that falls with its cross-entropy
$\mathcal{L}^{k}_{\mathrm{CE},n}$ on the true label $y_n$:

$$
w^{k}_{n} = \frac{1}{K-1}\left(1 - \frac{\exp \mathcal{L}^{k}_{\mathrm{CE},n}}
  {\sum_{j} \exp \mathcal{L}^{j}_{\mathrm{CE},n}}\right), \qquad \sum_k w^k_n = 1 .
$$

Two terms use such weights. The **logit term** weighs each teacher's KD loss by
$w^k_{\mathrm{KD}}$, computed from the teacher's own logits; the **intermediate term**
maps the student's last feature map $h^s$ through one connector $r_k$ per teacher to
that teacher's width and matches the teacher's feature map $h^{t_k}$, weighted by
$w^k_{\mathrm{inter}}$, computed from the cross-entropy of *teacher $k$'s own classifier
applied to $r_k(h^s)$*: a teacher whose head already reads the student's features well
asks less of them. With the authors' normalisation (mean over batch *and* teachers):

$$
\mathcal{L} = \gamma\,\mathrm{CE}(y, p^{s})
 + \frac{\alpha}{NK}\sum_{k,n} w^k_{\mathrm{KD},n}\,\tau^{2}\,
   \mathrm{KL}\big(p^{t_k,\tau}_n \,\|\, p^{s,\tau}_n\big)
 + \frac{\beta}{NK}\sum_{k,n} w^k_{\mathrm{inter},n}\,
   \mathrm{MSE}\big(r_k(h^s_n),\, h^{t_k}_n\big),
$$

MSE being the mean over the feature map's elements. $r_k$ is the authors' ``Embed``:
a 1x1 convolution (with bias), batch norm and ReLU, after the student map is resized
to the teacher's (adaptive average pooling when it is larger, bilinear interpolation
when smaller).

Defaults (authors' CIFAR-100 command, ``scripts/run.sh``: ``--distill inter
--ensemble_method CAMKD -r 1 -a 1 -b 50``, ``--kd_T 4``): $\gamma = 1$
(``ce_weight``), $\alpha = 1$ (``kd_weight``), $\beta = 50$ (``feature_weight``, the
authors' ``-b`` folded in), $\tau = 4$; features: the last stage's output of student
and teachers (``feat[-2]``, after ReLU, ``--preact`` off); the intermediate term is left
out in the first epoch (``if epoch == 1``), so ``feature_warmup_epochs = 1``. Used
outside a training loop (``on_epoch_start`` never called) both terms are active.

Where code and paper differ, we follow the code:

* the paper writes both terms as $\sum_k w^k \mathcal{L}^k$ with batch-mean losses;
  the code divides the weighted sums by $N K$, i.e. both terms are the paper's divided
  by the number of teachers $K$;
* the intermediate weights are not detached in the code: their gradient reaches the
  student (and the connectors) through the frozen teachers' classifiers, so the
  student is also pushed to make the weights of its best-read teachers larger;
* the first epoch without the intermediate term is the code's, not the paper's.

Deliberate deviations: the authors' ``CalWeight`` resizes the student map in place,
so with teachers of different spatial sizes teacher $k$ receives the map already
resized for teacher $k-1$; we resize the original map for each teacher (the same when,
as in the paper, the teachers share one architecture), and pool to the teacher's
height *and* width (the authors pool to a square of its height). Computations run in at
least float32 (the shared policy of ``reference_impls.common.losses``).

How the teachers are read: ``CAMKD`` owns the student and the list of frozen teachers.
Models return a ``ModelOutput`` (wrap others with
``reference_impls.common.with_features``). Each teacher's classifier head maps a feature
map to logits: by default global average pooling then the teacher's ``fc`` layer (our
``TinyCNN`` and torchvision's ResNets; the authors' ``distill_seq()[-1]``), otherwise
given as ``teacher_heads``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.algorithms.multi_teacher.teachers import MultiTeacherProcedure
from reference_impls.common.connectors import same_dtype
from reference_impls.common.losses import at_least_float32, softened_kl
from reference_impls.common.training import freeze, logits_of
from reference_impls.common.validation import (
    at_least,
    class_indices,
    non_negative,
    one_per_teacher,
    positive,
    teacher_logit_list,
)
from reference_impls.schemes.offline.distiller import select_inputs


def confidence_weights(teacher_ce: torch.Tensor) -> torch.Tensor:
    """$w^k_n = (1 - \\mathrm{softmax}_k(\\mathcal{L}^k_{\\mathrm{CE},n})) / (K - 1)$ from ``[K, N]`` losses."""
    num_teachers = teacher_ce.shape[0]
    at_least("number of teachers", num_teachers, 2)
    return (1.0 - F.softmax(teacher_ce, dim=0)) / (num_teachers - 1)


def per_sample_ce(logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """``[K, N]``: each teacher's (or head's) cross-entropy on every sample's label."""
    return torch.stack(
        [F.cross_entropy(at_least_float32(z), target, reduction="none") for z in logits]
    )


def ca_mkd_logit_term(
    student_logits: torch.Tensor,
    teacher_logits: Sequence[torch.Tensor],
    target: torch.Tensor,
    temperature: float = 4.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The confidence-weighted KD term and its weights ``[K, N]`` (teachers detached)."""
    teacher_logit_list(student_logits, teacher_logits)
    class_indices(target, student_logits)
    teacher_logits = [z.detach() for z in teacher_logits]
    weights = confidence_weights(per_sample_ce(teacher_logits, target))
    kl = torch.stack(
        [softened_kl(student_logits, z, temperature, reduction="none") for z in teacher_logits]
    )
    return (weights * kl).sum() / kl.numel(), weights


def ca_mkd_feature_term(
    projected_student: Sequence[torch.Tensor],
    teacher_features: Sequence[torch.Tensor],
    head_logits: Sequence[torch.Tensor],
    target: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The confidence-weighted feature term and its weights ``[K, N]``.

    ``projected_student[k]`` is $r_k(h^s)$, shaped like ``teacher_features[k]``;
    ``head_logits[k]`` is teacher $k$'s classifier applied to it (not detached: the
    weights pass gradient back to the student, as in the authors' code).
    """
    one_per_teacher("projected_student", projected_student, len(teacher_features))
    one_per_teacher("head_logits", head_logits, len(teacher_features))
    for k, (student, teacher) in enumerate(zip(projected_student, teacher_features, strict=True)):
        if student.shape != teacher.shape:
            raise ValueError(
                f"projected_student[{k}] has shape {tuple(student.shape)} but teacher_features"
                f"[{k}] has shape {tuple(teacher.shape)}; the connector must map to the teacher's"
            )
    class_indices(target, head_logits[0])
    weights = confidence_weights(per_sample_ce(head_logits, target))
    mse = torch.stack(
        [
            (at_least_float32(s) - at_least_float32(t.detach())).pow(2).flatten(1).mean(dim=1)
            for s, t in zip(projected_student, teacher_features, strict=True)
        ]
    )
    return (weights.to(mse.dtype) * mse).sum() / mse.numel(), weights


def embed(student_channels: int, teacher_channels: int) -> nn.Sequential:
    """The authors' ``Embed`` (``convs=False``): 1x1 convolution with bias, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(student_channels, teacher_channels, kernel_size=1),
        nn.BatchNorm2d(teacher_channels),
        nn.ReLU(inplace=True),
    )


def resize_to(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average-pool a larger map, bilinearly interpolate a smaller one (``CalWeight``)."""
    if feature.shape[-2:] == size:
        return feature
    if feature.shape[-2] >= size[0]:
        return F.adaptive_avg_pool2d(feature, size)
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)


class PooledClassifier(nn.Module):
    """Global average pooling, then a teacher's linear classifier (the default teacher head)."""

    def __init__(self, fc: nn.Module) -> None:
        super().__init__()
        self.fc = fc

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(feature, 1), 1))


def _channels_at(model: nn.Module, stage: int, which: str) -> int:
    channels = getattr(model, "channels", None)
    if channels is None:
        raise ValueError(
            f"cannot read the {which}'s feature width (it has no `channels` attribute, as "
            f"TinyCNN has); pass {which}_channels"
        )
    return channels[stage]


class CAMKD(MultiTeacherProcedure):
    """Confidence-aware multi-teacher KD: per-sample teacher weights on logits and features.

    Args:
        student: the model being trained; returns a ``ModelOutput`` with features.
        teachers: at least two trained classifiers over the student's classes.
        temperature: KD temperature $\\tau$ (authors: 4).
        ce_weight: $\\gamma$, weight of the cross-entropy (authors' ``-r``: 1).
        kd_weight: $\\alpha$, weight of the weighted KD term (authors' ``-a``: 1).
        feature_weight: $\\beta$, weight of the weighted feature term (authors' ``-b``:
            50); 0 leaves the logit term alone (the paper's ablation).
        feature_warmup_epochs: epochs at the start without the feature term (authors: 1).
        student_stage, teacher_stage: which feature map of each model is matched
            (authors: the last stage, -1).
        student_channels, teacher_channels: their widths; default: read from the
            models' ``channels`` (``TinyCNN``).
        teacher_heads: one module per teacher mapping its feature map to its logits;
            default: global average pooling and the teacher's ``fc``.
    """

    def __init__(
        self,
        student: nn.Module,
        teachers: Sequence[nn.Module],
        temperature: float = 4.0,
        ce_weight: float = 1.0,
        kd_weight: float = 1.0,
        feature_weight: float = 50.0,
        feature_warmup_epochs: int = 1,
        student_stage: int = -1,
        teacher_stage: int = -1,
        student_channels: int | None = None,
        teacher_channels: Sequence[int] | None = None,
        teacher_heads: Sequence[nn.Module] | None = None,
    ) -> None:
        super().__init__(student, teachers, min_teachers=2)
        self.temperature = positive("temperature", temperature)
        self.ce_weight = non_negative("ce_weight", ce_weight)
        self.kd_weight = non_negative("kd_weight", kd_weight)
        self.feature_weight = non_negative("feature_weight", feature_weight)
        self.feature_warmup_epochs = int(
            non_negative("feature_warmup_epochs", feature_warmup_epochs)
        )
        self.student_stage, self.teacher_stage = student_stage, teacher_stage
        self.feature_active = True
        if student_channels is None:
            student_channels = _channels_at(student, student_stage, "student")
        if teacher_channels is None:
            teacher_channels = [_channels_at(t, teacher_stage, "teacher") for t in self.teachers]
        one_per_teacher("teacher_channels", teacher_channels, self.num_teachers)
        self.connectors = nn.ModuleList(embed(student_channels, c) for c in teacher_channels)
        self.teacher_heads: nn.ModuleList | None = None
        if teacher_heads is not None:
            one_per_teacher("teacher_heads", teacher_heads, self.num_teachers)
            self.teacher_heads = nn.ModuleList(freeze(head) for head in teacher_heads)
        elif self.feature_weight > 0:
            missing = [k for k, t in enumerate(self.teachers) if not hasattr(t, "fc")]
            if missing:
                raise ValueError(
                    f"teachers {missing} have no `fc` classifier to read projected features "
                    "with; pass teacher_heads (one module per teacher: feature map -> logits)"
                )

    def head(self, k: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """Teacher ``k``'s classifier, feature map -> logits (frozen; gradient passes through)."""
        if self.teacher_heads is not None:
            return self.teacher_heads[k]
        return PooledClassifier(self.teachers[k].fc)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """The feature term starts after ``feature_warmup_epochs`` (authors: from epoch 2)."""
        self.feature_active = epoch >= self.feature_warmup_epochs

    def feature_term(
        self,
        student_feature: torch.Tensor,
        teacher_features: Sequence[torch.Tensor],
        target: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Connect the student map to each teacher, read it with the teacher's head, weigh."""
        same_dtype("CAMKD", self.connectors, student_feature)
        projected, head_logits = [], []
        for k, teacher_feature in enumerate(teacher_features):
            resized = resize_to(student_feature, tuple(teacher_feature.shape[-2:]))
            projected.append(self.connectors[k](resized))
            head_logits.append(logits_of(self.head(k)(projected[-1])))
        return ca_mkd_feature_term(projected, teacher_features, head_logits, target)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        student_out = self.student(x)
        teacher_outs = self.teacher_outputs(x)
        student_logits = logits_of(student_out)
        ce = F.cross_entropy(student_logits, y)
        kd, kd_weights = ca_mkd_logit_term(
            student_logits, [logits_of(out) for out in teacher_outs], y, self.temperature
        )
        loss = self.ce_weight * ce + self.kd_weight * kd
        terms = {"ce": ce.detach(), "kd": kd.detach()}
        if self.feature_weight > 0 and self.feature_active:
            student_feature = select_inputs(student_out, "features", "CAMKD", "student")
            teacher_features = [
                select_inputs(out, "features", "CAMKD", "teacher")[self.teacher_stage]
                for out in teacher_outs
            ]
            feature, feature_weights = self.feature_term(
                student_feature[self.student_stage], teacher_features, y
            )
            loss = loss + self.feature_weight * feature
            terms["feature"] = feature.detach()
            for k, w in enumerate(feature_weights.detach().mean(dim=1)):
                terms[f"teacher{k}_feature_weight"] = w
        for k, w in enumerate(kd_weights.mean(dim=1)):
            terms[f"teacher{k}_kd_weight"] = w
        terms["loss"] = loss
        return terms

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, ce_weight={self.ce_weight}, "
            f"kd_weight={self.kd_weight}, feature_weight={self.feature_weight}, "
            f"feature_warmup_epochs={self.feature_warmup_epochs}"
        )


__all__ = [
    "CAMKD",
    "ca_mkd_feature_term",
    "ca_mkd_logit_term",
    "confidence_weights",
    "embed",
    "per_sample_ce",
    "resize_to",
]
