r"""BYOL: an online network predicts a slowly moving target network's projection of another view.

Citation: ``grill2020bootstrap`` (Grill, Strub, Altché, Tallec, Richemond et al.,
NeurIPS 2020).
Authors' code: https://github.com/google-deepmind/deepmind-research (JAX), commit
``4822a45504cb05042841a358f070bba35c6fbc24``: ``byol/byol_experiment.py``
(``ByolExperiment._forward``, ``loss_fn``: the symmetric loss, and ``_update_fn``: the
target update), ``byol/utils/helpers.py`` ``regression_loss`` and ``l2_normalize``,
``byol/utils/schedules.py`` ``target_ema``, ``byol/utils/networks.py`` ``MLP``.

The online network (encoder, projector $g_\theta$, predictor $q_\theta$) sees view
$v$; the target network (encoder and projector $g_\xi$, no predictor) sees view
$v'$. The online prediction, l2-normalised, regresses the normalised target
projection, and the loss is symmetrised by swapping the views:

$$
\ell(v, v') = \Big\lVert \bar q_\theta(z_\theta(v)) - \bar z_\xi(v') \Big\rVert_2^2
  = 2 - 2\,\frac{\langle q_\theta(z_\theta(v)),\, z_\xi(v')\rangle}
  {\lVert q_\theta(z_\theta(v))\rVert\,\lVert z_\xi(v')\rVert},
\qquad
\mathcal{L} = \frac{1}{B}\sum_b \big[\ell(v_b, v'_b) + \ell(v'_b, v_b)\big],
$$

with gradients to $\theta$ only. After each step the target follows the online
network, $\xi \leftarrow \tau\xi + (1 - \tau)\theta$, with
$\tau = 1 - (1 - \tau_{\text{base}})(\cos(\pi k / K) + 1)/2$ over the $K$ training
steps (``target_ema``). ``l2_normalize`` divides by $\sqrt{\max(\lVert x\rVert^2,
10^{-12})}$, as here.

Defaults: $\tau_{\text{base}} = 0.996$ (the paper, and their 1000-epoch preset
``_EMA_PRESETS``; shorter presets use 0.99 or 0.97). Their projector and predictor
(``MLP``: linear 4096, batch norm, ReLU, linear 256) are scaled to 128 hidden and 64
output units for the digits. Their classifier on the stopped-gradient embedding
(an online evaluation) is not part of the method and is left out; the notebook probes
the embedding instead.

Distillation (``teacher=`` a frozen pre-trained network): the target is that teacher,
read as its pooled ``embedding`` by default, and the student's predictor maps to its
width; no EMA. This is BYOL's objective used as a distillation loss (a normalised
regression onto a frozen teacher's embedding); the BYOL paper itself only bootstraps
from its own moving average.

Deviations: their two networks start from different random initialisations (two
``rng`` keys; they report no difference with equal ones); our target starts as a copy
of the online network, as DINO's and most PyTorch ports. The target is updated at the
start of the next training forward (the training loop has no hook after the
optimiser step), so the update after the very last step is not made
(:meth:`BYOL.update_target` makes it). With ``total_steps`` the schedule is theirs
step by step; without, the steps are counted during the first epoch, in which $\tau$
stays at its base value.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from reference_impls.common.augmentations import ProjectionHead, ViewSettings, augment
from reference_impls.common.interfaces import DistillationLoss, DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.models import ModelOutput
from reference_impls.common.validation import at_least, in_unit_interval, one_of


def l2_normalize(x: torch.Tensor, epsilon: float = 1e-12) -> torch.Tensor:
    """$x / \\sqrt{\\max(\\lVert x\\rVert^2, \\epsilon)}$ over the last dimension (theirs)."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True).clamp(min=epsilon))


def regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row $\\lVert \\bar p - \\bar t\\rVert^2$, the target detached (their ``regression_loss``)."""
    prediction, target = at_least_float32(prediction), at_least_float32(target.detach())
    return ((l2_normalize(prediction) - l2_normalize(target)) ** 2).sum(-1)


def target_ema(step: int, base: float, total_steps: int) -> float:
    """$\\tau$ at training step ``step`` (their ``target_ema``, the step clipped to the total)."""
    step = min(step, total_steps)
    return 1 - (1 - base) * 0.5 * (1 + math.cos(math.pi * step / total_steps))


class BYOLLoss(DistillationLoss):
    """BYOL's normalised regression of a target embedding through a trainable predictor.

    Called ``loss(student_projection, teacher_projection)`` with ``[B, student_dim]`` and
    ``[B, teacher_dim]`` for one pair of views; the predictor ($q_\\theta$, BYOL's MLP)
    maps the student's projection to ``teacher_dim``. Returns the batch mean of
    $\\ell$; :class:`BYOL` adds both view orders, as their ``loss_fn``.

    Args:
        student_dim, teacher_dim: the widths of the projections.
        hidden_dim: the predictor's hidden width (theirs 4096; 128 for digits).
    """

    inputs = "embeddings"

    def __init__(self, student_dim: int, teacher_dim: int, hidden_dim: int = 128) -> None:
        super().__init__()
        self.student_dim = at_least("student_dim", student_dim, 1)
        self.teacher_dim = at_least("teacher_dim", teacher_dim, 1)
        self.predictor = ProjectionHead(
            student_dim, teacher_dim, at_least("hidden_dim", hidden_dim, 1)
        )

    def forward(
        self, student_projection: torch.Tensor, teacher_projection: torch.Tensor
    ) -> torch.Tensor:
        for name, value, width in (
            ("student_projection", student_projection, self.student_dim),
            ("teacher_projection", teacher_projection, self.teacher_dim),
        ):
            if value.dim() != 2 or value.shape[1] != width:
                raise ValueError(
                    f"{name} must have shape [B, {width}], got shape {tuple(value.shape)}"
                )
        if student_projection.shape[0] != teacher_projection.shape[0]:
            raise ValueError(
                f"student_projection and teacher_projection must have one row per image, got "
                f"{student_projection.shape[0]} and {teacher_projection.shape[0]} rows"
            )
        return regression_loss(self.predictor(student_projection), teacher_projection).mean()


def _read(output: ModelOutput | torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(output, ModelOutput):
        return output
    value = output.logits if what == "logits" else output.embedding
    if value is None:
        raise ValueError(f"the model's ModelOutput has no {what}")
    return value


class BYOL(DistillationProcedure):
    """BYOL training of ``student`` on two random views of each image; labels unused.

    Args:
        student: the online encoder and projector, returning a ``ModelOutput`` whose
            ``logits`` are the projection (``augmentations.byol_network``).
        teacher: ``None``: the target is the student's moving average (BYOL); else a
            pre-trained network, frozen here, read as ``teacher_output``.
        student_dim: the projection's width; default ``student.head.out_dim``.
        teacher_dim: the target's width; default: the student's (self-distillation).
        teacher_output: ``"embedding"`` (the pooled backbone feature, default for a
            pre-trained teacher) or ``"logits"`` (its head; always so for the EMA target).
        base_momentum: $\\tau_{\\text{base}}$ (0.996).
        total_steps: training steps of the run, for their per-step schedule; ``None``:
            counted during the first epoch.
        view: how each of the two views is drawn.
        hidden_dim: the predictor's hidden width.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None = None,
        student_dim: int | None = None,
        teacher_dim: int | None = None,
        teacher_output: str = "embedding",
        base_momentum: float = 0.996,
        total_steps: int | None = None,
        view: ViewSettings | None = None,
        hidden_dim: int = 128,
    ) -> None:
        super().__init__()
        self.student = student
        self.self_distillation = teacher is None
        self.teacher = copy.deepcopy(student) if teacher is None else teacher
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.teacher_output = (
            "logits"
            if teacher is None
            else one_of("teacher_output", teacher_output, ("embedding", "logits"))
        )
        if student_dim is None:
            student_dim = getattr(getattr(student, "head", None), "out_dim", None)
            if not isinstance(student_dim, int):
                raise ValueError("student_dim is needed: the student has no head.out_dim")
        if teacher_dim is None:
            if teacher is not None:
                raise ValueError(
                    "teacher_dim is needed with a pre-trained teacher (its output's width)"
                )
            teacher_dim = student_dim
        self.loss = BYOLLoss(student_dim, teacher_dim, hidden_dim)
        self.base_momentum = in_unit_interval("base_momentum", base_momentum)
        if total_steps is not None:
            at_least("total_steps", total_steps, 1)
        self.total_steps = total_steps
        self.view = view if view is not None else ViewSettings()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._steps_in_first_epoch = 0

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        if epoch == 1 and self.total_steps is None:
            self.total_steps = max(self._steps_in_first_epoch, 1) * epochs

    def momentum_at(self, step: int) -> float:
        if self.total_steps is None:
            return self.base_momentum
        return target_ema(step, self.base_momentum, self.total_steps)

    @torch.no_grad()
    def update_target(self) -> None:
        """$\\xi \\leftarrow \\tau\\xi + (1 - \\tau)\\theta$ with the last step's $\\tau$."""
        if not self.self_distillation or int(self.step) == 0:
            return
        tau = self.momentum_at(int(self.step) - 1)
        for online, target in zip(
            self.student.parameters(), self.teacher.parameters(), strict=True
        ):
            target.mul_(tau).add_(online.detach(), alpha=1 - tau)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.training:
            self.update_target()
            self.step += 1
            if self.total_steps is None:
                self._steps_in_first_epoch += 1
        first, second = augment(x, self.view), augment(x, self.view)
        self.teacher.train(self.training and self.self_distillation)
        # each view through the networks on its own (their apply_once_fn per view: the
        # batch norm statistics are per view)
        with torch.no_grad():
            target_1 = _read(self.teacher(first), self.teacher_output)
            target_2 = _read(self.teacher(second), self.teacher_output)
        online_1 = _read(self.student(first), "logits")
        online_2 = _read(self.student(second), "logits")
        loss = self.loss(online_1, target_2) + self.loss(online_2, target_1)
        return {"loss": loss, "byol": loss.detach()}
