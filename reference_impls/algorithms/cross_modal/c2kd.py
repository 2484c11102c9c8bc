r"""C²KD: a teacher and a student of two modalities distil into each other through proxies.

Citation: ``huo2024c2kd`` (Huo, Xu, Guo, Wang and Guo, CVPR 2024), "C2KD: Bridging the
Modality Gap for Cross-Modal Knowledge Distillation".

Authors' code: https://github.com/huofushuo/C2KD (commit f22bb52), one copy per data
set (``ave/``, ``cramed/``, ``vggsound/``) with the same loss:
``utils/helper.py``, ``train_network_distill`` and ``ntkl``; the proxies are
``utils/module.py``, ``Tea`` and ``Stu``; the command line ``main_overlap_tag.py``.

Teacher and student see different modalities of the same samples (audio and video
in the paper's main experiments) and both have the labels. Each network $N \in
\{t, s\}$ gives logits $z^N$ and carries a **proxy**, a small head on its
penultimate stage with logits $q^N$. Writing $\mathrm{KL}(a \to b)$ for the
batch-mean $\mathrm{KL}(\mathrm{softmax}(a) \,\|\, \mathrm{softmax}(b))$ with $a$
detached ("$b$ learns from $a$"), the loss of one batch is

$$
\begin{aligned}
\mathcal{L} ={}& \mathrm{CE}(z^t, y) + \mathrm{CE}(z^s, y)
  + \sum_{N \in \{t, s\}} \big[\mathrm{KL}(z^N \to q^N) + \mathrm{KL}(q^N \to z^N)\big] \\
  &+ \frac{1}{B} \sum_{b=1}^{B} m_b \big[\mathrm{KL}_b(\tilde q^t \to \tilde q^s)
     + \mathrm{KL}_b(\tilde q^s \to \tilde q^t)\big],
\qquad m_b = \mathbb{1}\big[\tau_K(q^t_b, q^s_b) > \kappa\big],
\end{aligned}
$$

where $\tilde q$ is $q$ with the target class's logit set to 0 (the cross-modal
knowledge is taken from the non-target classes) and $\tau_K$ is Kendall's rank
correlation of the two proxies' logits for sample $b$ (SciPy's ``kendalltau``,
$\tau_b$): the **on-the-fly selection** keeps only the samples on whose class
ranking the two proxies agree. Every term is **bidirectional**: the teacher is
trained too (the authors' optimiser holds its parameters), so it adapts to what
the student can take.

Defaults: the authors' for all three data sets: $\kappa$ = ``--krc 0.0``,
temperature 1 (``ntkl``'s default; no temperature anywhere else), every term with
weight 1 (``--weight`` is parsed but never used), the proxies on the map the authors
call ``f4``, which is the *input* of ResNet-18's last stage (``layer3``'s output:
``f4 = x`` is assigned before ``layer4`` runs), so ``stage=-2``; each proxy is
average pooling, a 1x1 convolution of the same width without bias, batch norm,
LeakyReLU(0.1) and a linear classifier (``conv_1x1_bn``; the convolution
Kaiming-initialised, fan-out). Their optimiser (SGD, lr 0.01, momentum 0.9, a poly
schedule over 100 epochs) is the training loop's business, not this module's.

Read from the code, where the abstract leaves it open (we had the abstract, not the
full text, so the code is the reference):

* $\tilde q$ zeroes the target logit, ``logits * (~gt_mask)``; the target class
  stays in the softmax (DKD's NCKD removes it instead).
* The selected term is averaged over the whole batch, not over the selected samples:
  ``(mask * kl).mean()``.
* The teacher runs in training mode, its batch-norm statistics move; the student's
  proxy learns from the student and the teacher's from the teacher, detached as above.

Deviations: Kendall's $\tau_b$ is computed in torch, batched, from the pairwise sign
agreements, $\tau_b = \sum_{i<j} \mathrm{sgn}(a_i - a_j)\,\mathrm{sgn}(b_i - b_j) /
\sqrt{n_a n_b}$ ($n_a$, $n_b$ the pairs not tied in $a$, $b$), instead of one SciPy
call per sample on the CPU; it is SciPy's $\tau_b$ (ties included), and a constant
row gives NaN there and here, which the selection drops. The teacher is copied
(``teacher_model``), so the caller's frozen teacher is left as it was.
``update_teacher=False`` freezes the copy instead (the one-directional ablation):
the terms that would only train the teacher are then left out.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.algorithms.cross_modal.supervision_transfer import stage_width
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32, kl_divergence, softened_log_probs
from reference_impls.common.paired_views import split_modalities
from reference_impls.common.training import freeze, logits_of
from reference_impls.common.validation import at_least, class_indices
from reference_impls.schemes.offline.distiller import select_inputs


class Proxy(nn.Module):
    """The authors' proxy head: pool, 1x1 conv + batch norm + LeakyReLU(0.1), linear classifier."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(width, width, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = F.leaky_relu(self.bn(self.conv(self.pool(features))), 0.1)
        return self.fc(torch.flatten(pooled, 1))


def kendall_tau_b(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kendall's $\\tau_b$ between the rows of ``a`` and ``b`` (``[B, C]``): ``[B]``, NaN for a constant row."""
    a, b = at_least_float32(a.detach()), at_least_float32(b.detach())
    sign_a = torch.sign(a[:, :, None] - a[:, None, :])
    sign_b = torch.sign(b[:, :, None] - b[:, None, :])
    # every pair counted twice (i<j and j<i) on both sides of the ratio
    concordance = (sign_a * sign_b).sum(dim=(1, 2))
    return concordance / torch.sqrt(sign_a.abs().sum(dim=(1, 2)) * sign_b.abs().sum(dim=(1, 2)))


def non_target_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    selected: torch.Tensor,
) -> torch.Tensor:
    """The authors' ``ntkl``: KL on logits with the target zeroed, on the selected rows, over B."""
    keep = torch.ones_like(student_logits).scatter_(1, target[:, None], 0.0)
    per_row = kl_divergence(
        softened_log_probs(student_logits * keep), softened_log_probs(teacher_logits * keep), "none"
    )
    return (selected * per_row).mean()


class C2KD(DistillationProcedure):
    """Bidirectional cross-modal distillation through proxies, with on-the-fly selection.

    Args:
        student: the network of the student's modality (returns a ``ModelOutput``
            with features, or wrap it with ``reference_impls.common.with_features``).
        teacher: trained on the other modality; copied, and the copy trains too.
        num_classes: classes of the proxies (read from ``student.num_classes`` when omitted).
        stage: the stage each proxy reads (default ``-2``: the input of the last stage).
        student_width, teacher_width: channels of that stage; read from ``channels``
            when omitted.
        kendall_threshold: $\\kappa$; samples whose proxies' rank correlation is not
            above it are not distilled (authors: 0).
        update_teacher: train the teacher copy too (authors); ``False`` freezes it.
        teacher_input_channels: in a stacked batch, how many leading channels are the
            teacher's modality.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        num_classes: int | None = None,
        stage: int = -2,
        student_width: int | None = None,
        teacher_width: int | None = None,
        kendall_threshold: float = 0.0,
        update_teacher: bool = True,
        teacher_input_channels: int = 1,
    ) -> None:
        super().__init__()
        num_classes = (
            num_classes if num_classes is not None else getattr(student, "num_classes", None)
        )
        if num_classes is None:
            raise ValueError(
                f"num_classes is required: the student ({type(student).__name__}) has no "
                "`num_classes` attribute"
            )
        at_least("num_classes", num_classes, 2)
        if not -1.0 <= kendall_threshold < 1.0:
            raise ValueError(
                f"kendall_threshold must lie in [-1, 1) (a rank correlation; 1 selects no "
                f"sample), got {kendall_threshold}"
            )
        self.student = student
        self.teacher_model = copy.deepcopy(teacher)
        self.update_teacher = update_teacher
        if update_teacher:
            self.teacher_model.requires_grad_(True)
        else:
            freeze(self.teacher_model)
        self.stage = stage
        self.kendall_threshold = kendall_threshold
        self.teacher_input_channels = at_least("teacher_input_channels", teacher_input_channels, 1)
        self.student_proxy = Proxy(
            stage_width(student, stage, "student", student_width), num_classes
        )
        self.teacher_proxy = Proxy(
            stage_width(teacher, stage, "teacher", teacher_width), num_classes
        )

    def train(self, mode: bool = True) -> C2KD:
        super().train(mode)
        if not self.update_teacher:
            self.teacher_model.eval()  # a frozen teacher keeps its statistics
        return self

    def _outputs(self, model: nn.Module, x: torch.Tensor, name: str) -> tuple[torch.Tensor, Any]:
        output = model(x)
        features = select_inputs(output, "features", type(self).__name__, name)
        return logits_of(output), features[self.stage]

    def forward(
        self, frames: torch.Tensor | tuple[torch.Tensor, torch.Tensor], target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        teacher_input, student_input = split_modalities(
            frames, self.teacher_input_channels, type(self).__name__
        )
        student_logits, student_map = self._outputs(self.student, student_input, "student")
        with torch.set_grad_enabled(self.update_teacher and torch.is_grad_enabled()):
            teacher_logits, teacher_map = self._outputs(
                self.teacher_model, teacher_input, "teacher"
            )
        class_indices(target, student_logits)
        student_proxy = self.student_proxy(student_map)
        teacher_proxy = self.teacher_proxy(teacher_map)

        def learns(learner: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
            return kl_divergence(softened_log_probs(learner), softened_log_probs(source.detach()))

        selected = (kendall_tau_b(teacher_proxy, student_proxy) > self.kendall_threshold).to(
            at_least_float32(student_proxy).dtype
        )
        ce_student = F.cross_entropy(at_least_float32(student_logits), target)
        student_side = (
            ce_student
            + learns(student_proxy, student_logits)
            + learns(student_logits, student_proxy)
            + non_target_kl(student_proxy, teacher_proxy.detach(), target, selected)
        )
        teacher_side = learns(teacher_proxy, teacher_logits) + non_target_kl(
            teacher_proxy, student_proxy.detach(), target, selected
        )
        terms = {"ce_student": ce_student.detach()}
        if self.update_teacher:
            ce_teacher = F.cross_entropy(at_least_float32(teacher_logits), target)
            teacher_side = teacher_side + ce_teacher + learns(teacher_logits, teacher_proxy)
            terms["ce_teacher"] = ce_teacher.detach()
        terms["selected"] = selected.mean().detach()
        terms["loss"] = student_side + teacher_side
        return terms

    def extra_repr(self) -> str:
        return (
            f"stage={self.stage}, kendall_threshold={self.kendall_threshold}, "
            f"update_teacher={self.update_teacher}"
        )
