r"""Activation Boundaries: the student learns which hidden neurons the teacher switches on.

Citation: ``heo2019knowledge`` (Heo, Lee, Yun and Choi, AAAI 2019). Authors' code:
https://github.com/bhheo/AB_distillation (``cifar10_AB_distillation.py``,
``models/distillation_module.py``).

A ReLU neuron's *activation boundary* separates the inputs where it is on from those
where it is off. AB transfers these boundaries rather than the response values: a
connector $r$ (1x1 convolution + batch norm) maps the student's pre-ReLU features to the
teacher's width, and with $\rho(x) = \max(x, 0)$, margin $\mu$ and
$\mathbb{1}[t > 0]$ the teacher neuron's state, the loss per element is a hinge-like
squared penalty:

$$
\ell(s, t) = \mathbb{1}[t > 0]\,\rho(\mu - s)^2 + \mathbb{1}[t \le 0]\,\rho(\mu + s)^2,
\qquad s = r(S)_{b,c,h,w},\; t = T_{b,c,h,w}.
$$

It is zero once the student's (connected) neuron is at least $\mu$ where the teacher's is
on and at most $-\mu$ where it is off, and depends on the teacher only through the sign
of its pre-activation. Summed over the elements of each stage, averaged over the batch,
weighted $2^{-(n-1-i)}$ for stage $i$ of $n$ (the deepest weighs 1):

$$
\mathcal{L}_{\mathrm{AB}} = \beta\,\frac{1}{B}\sum_{i=0}^{n-1} 2^{-(n-1-i)}
  \sum_{b,c,h,w} \ell\big(r_i(S_i), T_i\big)_{b,c,h,w}.
$$

The paper uses AB to *initialise* the student: first train the student and connectors
on $\mathcal{L}_{\mathrm{AB}}$ alone (``ABInitialisation`` here, trained with
``reference_impls.common.train``), then train the student for classification (cross-entropy,
or KD) from that start, the connectors discarded. ``ABLoss`` also plugs into
``OfflineDistiller`` for joint training, which the paper does not do.

Defaults and where they come from (the authors' CIFAR code, WRN 22-4 -> WRN 16-2):

* $\mu = 1$; connectors 1x1 convolution (no bias) + batch norm, convolution weights drawn
  from $\mathcal{N}(0, 2 / (k^2 C_{\mathrm{out}}))$, batch norm weight 1, bias 0; none
  when the widths already match.
* All three stages (the pre-ReLU outputs of the WRN groups), weights 1/4, 1/2, 1;
  ``stages=(0, 1, 2)`` on our models, whose ``preact_features`` are the stage outputs
  before their last ReLU.
* $\beta = 3/1000$: the authors' fixed scaling ``loss / 1000 * 3`` (RepDistiller keeps it).

Deviation: the authors put the teacher in training mode during the initialisation phase
(its batch norm then uses batch statistics and updates its running ones); our teacher
stays in eval mode, as everywhere in this package. The penalty is computed in at least float32
(half precision is upcast, float64 kept); the connectors are not cast on each call: features
of another dtype than the loss's parameters raise ``TypeError`` saying to move the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from reference_impls.common.connectors import same_dtype
from reference_impls.common.interfaces import DistillationLoss, DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import (
    enough_feature_maps,
    non_negative,
    positive,
    same_stage_count,
    stage_indices,
)

AUTHORS_SCALE = 3 / 1000  # the authors' CIFAR code: ``loss_alter / 1000 * 3``


def boundary_penalty(student: torch.Tensor, teacher: torch.Tensor, margin: float) -> torch.Tensor:
    """$\\sum \\ell(s, t)$ over all elements: squared hinge towards the teacher's on/off state."""
    student = at_least_float32(student)
    # -1 where the teacher is on, +1 where off: the shortfall is mu - s (on: student below
    # +mu) or mu + s (off: student above -mu), one pass instead of both branches and a select
    sign = torch.where(teacher.detach() > 0, -1.0, 1.0).to(student.dtype)
    shortfall = (student * sign).add_(margin)  # exact: s * (+/-1) rounds nothing
    return shortfall.relu_().square().sum()


def activation_agreement(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """Fraction of neurons whose on/off state matches the teacher's (the authors' 'similarity')."""
    return ((student > 0) == (teacher > 0)).float().mean().item()


def connector(student_channels: int, teacher_channels: int) -> nn.Module:
    """1x1 conv + BN with the authors' He-style initialisation; identity when widths match."""
    if student_channels == teacher_channels:
        return nn.Identity()
    conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)
    nn.init.normal_(conv.weight, 0.0, (2.0 / teacher_channels) ** 0.5)
    batch_norm = nn.BatchNorm2d(teacher_channels)
    nn.init.ones_(batch_norm.weight)
    nn.init.zeros_(batch_norm.bias)
    return nn.Sequential(conv, batch_norm)


class ABLoss(DistillationLoss):
    """Activation-boundary loss on pre-ReLU features, with one connector per compared stage.

    Args:
        student_channels: channels of every tapped student stage (e.g. ``(8, 16, 32)``).
        teacher_channels: channels of every tapped teacher stage (e.g. ``(32, 64, 128)``).
        margin: margin $\\mu$ (authors: 1).
        stages: indices of the stages compared (authors: all three), shallow to deep.
        beta: overall scale $\\beta$ (authors: 3/1000).
    """

    inputs: ClassVar[str] = "preact_features"
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        margin: float = 1.0,
        stages: Sequence[int] = (0, 1, 2),
        beta: float = AUTHORS_SCALE,
    ) -> None:
        super().__init__()
        same_stage_count(student_channels, teacher_channels)
        self.margin = positive("margin", margin)
        self.stages = tuple(stage_indices("stages", stages, len(student_channels)))
        self.beta = non_negative("beta", beta)
        count = len(self.stages)
        self.layer_weights = tuple(2.0 ** (i - count + 1) for i in range(count))
        self.connectors = nn.ModuleList(
            connector(student_channels[i], teacher_channels[i]) for i in self.stages
        )

    def connect(self, student_preacts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The student's compared stages mapped to the teacher's widths."""
        connected = []
        for conn, i in zip(self.connectors, self.stages, strict=True):
            same_dtype(type(self).__qualname__, conn, student_preacts[i])
            connected.append(conn(student_preacts[i]))
        return connected

    def forward(
        self, student_preacts: Sequence[torch.Tensor], teacher_preacts: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        enough_feature_maps("stages", self.stages, student_preacts, teacher_preacts)
        batch = student_preacts[self.stages[0]].shape[0]
        total = sum(
            weight * boundary_penalty(connected, teacher_preacts[i], self.margin)
            for weight, connected, i in zip(
                self.layer_weights, self.connect(student_preacts), self.stages, strict=True
            )
        )
        return self.beta * total / batch

    def extra_repr(self) -> str:
        return f"margin={self.margin}, stages={self.stages}, beta={self.beta}"


class ABInitialisation(DistillationProcedure):
    """The paper's initialisation phase: train student and connectors on the AB loss alone.

    A procedure for ``reference_impls.common.train``: ``forward(x, y)`` returns
    ``{"loss": ab}`` (labels unused). Train the student for classification afterwards.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, loss: ABLoss) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher.eval().requires_grad_(False)
        self.loss = loss

    def train(self, mode: bool = True) -> ABInitialisation:
        super().train(mode)
        self.teacher.eval()  # unlike the authors' code, the teacher's statistics never move
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            teacher_preacts = self.teacher(x).preact_features
        ab = self.loss(self.student(x).preact_features, teacher_preacts)
        return {"loss": ab, "ab": ab.detach()}
