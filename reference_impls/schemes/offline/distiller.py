r"""The standard offline distillation pipeline: a frozen teacher, any loss, plus cross-entropy.

Citation: ``hinton2015distilling`` (the teacher-student scheme); the interface
follows mdistiller's ``Distiller`` (https://github.com/megvii-research/mdistiller).

A pre-trained teacher $T$ is frozen; the student $S$ minimises

$$
\mathcal{L} = \lambda_{\mathrm{CE}}\, \mathrm{CE}\big(y, S(x)\big)
            + \lambda_{\mathrm{KD}}\, \mathcal{L}_{\mathrm{distill}}\big(S(x), T(x)\big).
$$

Every loss in ``reference_impls.sources`` plugs in: it declares what it reads
through its class attribute ``inputs`` (``"logits"``, ``"features"``,
``"preact_features"`` or ``"embeddings"``) and whether it also needs the
labels (``needs_target``). A loss that reads two kinds declares a tuple, e.g.
IRG's ``("features", "logits")``, and is called
``loss(student_features, teacher_features, student_logits, teacher_logits)``. The teacher runs under ``torch.no_grad()`` and is
kept in eval mode even when the distiller is put in training mode.

A loss that declares ``needs_index`` (CRD's memory bank: one entry per training
sample) gets each sample's index in the training split as its last argument: the
distiller then declares ``needs_index`` too, and ``reference_impls.common.train``
calls it ``distiller(x, y, index)``.

Models may return a ``ModelOutput`` or plain logits (any ``nn.Module`` classifier):
logit losses need nothing more; for a loss that reads features, wrap the model
with ``reference_impls.common.with_features(model, layers=[...])``, which taps
the named layers by forward hooks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import INPUT_KINDS, DistillationProcedure, loss_inputs
from reference_impls.common.models import ModelOutput
from reference_impls.common.training import freeze, logits_of


def select_inputs(
    output: ModelOutput | torch.Tensor, kind: str, loss_name: str = "the loss", model: str = "model"
):
    """Pick what a loss reads from a model's output (a ``ModelOutput``, or plain logits)."""
    if kind not in INPUT_KINDS:
        raise ValueError(f"unknown loss input kind {kind!r}; expected one of {INPUT_KINDS}")
    if kind == "logits":
        return logits_of(output)
    if not isinstance(output, ModelOutput):
        raise TypeError(
            f"{loss_name} reads {kind!r}, but the {model} returned a plain "
            f"{type(output).__name__} (logits only); wrap the model so that it returns a "
            "ModelOutput with features: reference_impls.common.with_features(model, "
            "layers=[names from model.named_modules()])"
        )
    selected = {
        "features": output.features,
        "preact_features": output.preact_features,
        "embeddings": output.embedding,
    }[kind]
    if selected is None or (isinstance(selected, list) and not selected):
        raise ValueError(f"{loss_name} reads {kind!r}, but the {model}'s ModelOutput has none")
    return selected


def distillation_arguments(
    loss: nn.Module,
    student_out: ModelOutput | torch.Tensor,
    teacher_out: ModelOutput | torch.Tensor,
    target: torch.Tensor,
    index: torch.Tensor | None = None,
) -> list[Any]:
    """What ``loss`` is called with: student and teacher of each kind it declares, then the labels.

    ``loss(s_1, t_1, s_2, t_2, ..., target, index)`` for ``inputs = (kind_1, kind_2, ...)``;
    ``target`` only when ``needs_target``, ``index`` (each sample's index in the
    training split) only when ``needs_index``. A missing or unknown declaration raises
    ``TypeError`` naming the loss's class (:func:`loss_inputs`), as does a loss that
    reads features from a model that returned plain logits.
    """
    arguments: list[Any] = []
    name = type(loss).__qualname__
    for kind in loss_inputs(loss):
        arguments += [
            select_inputs(student_out, kind, name, "student"),
            select_inputs(teacher_out, kind, name, "teacher"),
        ]
    if getattr(loss, "needs_target", False):
        arguments.append(target)
    if getattr(loss, "needs_index", False):
        if index is None:
            raise ValueError(
                f"{name} reads each sample's index in the training split (needs_index), but "
                "none was given: train with reference_impls.common.train, which passes it, or "
                "call distiller(x, y, index)"
            )
        arguments.append(index)
    return arguments


class OfflineDistiller(DistillationProcedure):
    """Student + frozen teacher + one distillation loss (+ weighted cross-entropy).

    Args:
        student: the model being trained; returns a ``ModelOutput`` or plain logits
            ``[B, C]`` (enough for logit losses; wrap it with ``with_features`` for
            feature losses).
        teacher: a trained model, returning the same; frozen here (eval mode, no gradients).
        loss: a distillation loss module, or ``None`` for the cross-entropy baseline.
            It must declare ``inputs`` (see ``reference_impls.common.DistillationLoss``);
            a missing or unknown declaration raises ``TypeError`` naming its class.
            Its trainable connectors are parameters of this distiller and are
            optimised with the student.
        ce_weight: weight of the cross-entropy on labels.
        kd_weight: weight of the distillation term.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        loss: nn.Module | None,
        ce_weight: float = 1.0,
        kd_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if loss is not None:
            loss_inputs(loss)  # a missing or unknown declaration fails here, not in a step
        self.student = student
        self.teacher = freeze(teacher)
        self.loss = loss
        self.ce_weight = ce_weight
        self.kd_weight = kd_weight

    def train(self, mode: bool = True) -> OfflineDistiller:
        super().train(mode)
        self.teacher.eval()  # batch-norm statistics of the teacher never move
        return self

    @property
    def needs_index(self) -> bool:  # type: ignore[override]
        """Whether the loss reads sample indices: the training loop then passes them."""
        return bool(getattr(self.loss, "needs_index", False))

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Pass the epoch to losses with a schedule (e.g. DKD's warm-up)."""
        if self.loss is not None and hasattr(self.loss, "on_epoch_start"):
            self.loss.on_epoch_start(epoch, epochs)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        student_out = self.student(x)
        ce = F.cross_entropy(logits_of(student_out), y)
        terms = {"ce": ce.detach()}
        total = self.ce_weight * ce
        if self.loss is not None:
            with torch.no_grad():
                teacher_out = self.teacher(x)
            arguments = distillation_arguments(self.loss, student_out, teacher_out, y, index)
            kd = self.loss(*arguments)
            terms["kd"] = kd.detach()
            total = total + self.kd_weight * kd
        terms["loss"] = total
        return terms
