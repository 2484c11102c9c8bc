r"""DINO: self-distillation with no labels, and distillation of a self-supervised teacher.

Citation: ``caron2021emerging`` (Caron, Touvron, Misra, Jégou, Mairal, Bojanowski and
Joulin, ICCV 2021).
Authors' code: https://github.com/facebookresearch/dino, commit
``7c446df5b9f45747937fb0d72314eb9f7b66930a``: ``main_dino.py``, class ``DINOLoss``
(lines 363-416) and the training loop ``train_one_epoch`` (lines 301-360: the EMA
teacher), ``utils.py`` ``cosine_scheduler`` (the momentum schedule) and
``utils.MultiCropWrapper`` (crops of one resolution through the network together).

A student $g_{\theta_s}$ and a teacher $g_{\theta_t}$ (backbone and ``DINOHead``) see
a multi-crop set $V$ of each image: two global views $x^g_1, x^g_2$ and local ones.
The teacher sees only the global views; its output is **centred** (a running mean
$c$ subtracted) and **sharpened** (a low temperature $\tau_t$); the student's, at
$\tau_s$, is pushed towards it by cross-entropy over every pair of different views:

$$
\mathcal{L} = \frac{1}{N_{\text{pairs}}}
  \sum_{x \in \{x^g_1, x^g_2\}} \; \sum_{x' \in V,\, x' \ne x}
  \frac{1}{B}\sum_{b} -\,P_t(x)_b^\top \log P_s(x')_b,
\qquad
P_t(x) = \mathrm{softmax}\!\Big(\frac{g_{\theta_t}(x) - c}{\tau_t}\Big),\;
P_s(x') = \mathrm{softmax}\!\Big(\frac{g_{\theta_s}(x')}{\tau_s}\Big),
$$

$N_{\text{pairs}} = 2(|V| - 1)$. After each step the centre follows the teacher's
batch mean over all processes, $c \leftarrow m\,c + (1 - m)\,\frac{1}{B'}\sum_i
g_{\theta_t}(x_i)$ ($B'$ the global batch of both global views, ``center_momentum``
$m = 0.9$), and in self-distillation the teacher is an exponential moving average
of the student, $\theta_t \leftarrow \lambda\,\theta_t + (1 - \lambda)\,\theta_s$,
$\lambda$ rising from 0.996 to 1 on a cosine over the training steps.

Defaults are the authors' code's (``get_args_parser``): ``student_temp`` 0.1,
``center_momentum`` 0.9, ``warmup_teacher_temp`` 0.04 → ``teacher_temp`` 0.04 over
``warmup_teacher_temp_epochs`` 0 (the help text says 30; the README's ViT-S runs
pass 0.04 → 0.07 over 30), ``momentum_teacher`` 0.996, ``global_crops_number`` 2 and
``local_crops_number`` 8. The teacher temperature of epoch $e$ is their
``np.linspace(warmup, final, W)[e]`` for $e < W$, then ``teacher_temp``.

Two uses, one class (:class:`DINO`):

* ``teacher=None``: the paper's self-distillation; the teacher is the EMA of the student
  (how the notebook pre-trains its self-supervised teacher, and the "alone" baseline);
* ``teacher=<a frozen pre-trained network>``: distillation of a self-supervised
  teacher into a smaller student with the same loss (the teacher's head must give as
  many prototypes as the student's); no EMA. The paper does not distil across
  architectures; this is the DINO objective used as a distillation loss (as DINOv2
  does to make its small models), declared here.

Deviations, each for a reason:

* **The centre under DDP.** Their ``update_center`` calls ``dist.all_reduce`` always
  (their script only runs distributed) and divides by ``len(teacher_output) *
  world_size``. Ours all-reduces the sum and the row count together when
  ``torch.distributed.is_initialized()`` and uses the local batch otherwise: equal to
  theirs for equal per-process batches (their ``drop_last=True``), exact for unequal
  ones, and usable on one process (tested with two gloo processes).
* **No update in eval mode.** The centre (and the EMA teacher) only move in training
  mode; theirs has no evaluation pass through the loss.
* **EMA timing.** The training loop here (``reference_impls.common.train``) has no
  hook after the optimiser step, so the teacher is updated at the start of the next
  training forward with the momentum of the step just taken, which is their order
  except that the update after the very last step is not made (call
  :meth:`DINO.update_teacher` to make it). With ``steps_per_epoch`` given the
  momentum follows their per-step cosine exactly; without it, the steps are counted
  during epoch 0 (whose momentum stays at the base value) and the cosine runs on from
  epoch 1.
* **Not implemented** (training-loop settings of theirs, not the method): freezing the
  head's last layer during epoch 0 (``freeze_last_layer``), gradient clipping, the
  weight-decay schedule, and mixed precision's loss scaler. Sizes are scaled to the
  8x8 digits (``reference_impls.common.augmentations``: 256 prototypes instead of
  65536, 4x4 local crops of 20-50 % of the image).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from reference_impls.common.augmentations import MultiCrop
from reference_impls.common.interfaces import DistillationLoss, DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import logits_of
from reference_impls.common.validation import at_least, in_unit_interval, non_negative, positive


def teacher_temperature_schedule(
    warmup_temperature: float, temperature: float, warmup_epochs: int, epochs: int
) -> np.ndarray:
    """The teacher temperature of every epoch: their ``DINOLoss.teacher_temp_schedule``."""
    return np.concatenate(
        (
            np.linspace(warmup_temperature, temperature, warmup_epochs),
            np.ones(max(epochs - warmup_epochs, 0)) * temperature,
        )
    )


def momentum_schedule(base: float, epochs: int, steps_per_epoch: int) -> np.ndarray:
    """The EMA momentum of every training step: their ``cosine_scheduler(base, 1, ...)``."""
    steps = np.arange(epochs * steps_per_epoch)
    return 1 + 0.5 * (base - 1) * (1 + np.cos(np.pi * steps / len(steps)))


def multi_crop_forward(model: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """``model``'s head outputs for every view, in view order; consecutive views of one
    resolution go through the network as one batch (their ``MultiCropWrapper``)."""
    outputs, start = [], 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
            end += 1
        outputs.append(logits_of(model(torch.cat(views[start:end]))))
        start = end
    return torch.cat(outputs)


class DINOLoss(DistillationLoss):
    """The student's cross-entropy to the teacher's centred, sharpened output (their ``DINOLoss``).

    Called ``loss(student_output, teacher_output)`` with the student's head outputs for
    all ``num_crops`` views stacked view after view, ``[num_crops * B, K]``, and the
    teacher's for the ``global_crops`` global views, ``[global_crops * B, K]`` (the
    order of their ``MultiCropWrapper``). The centre, a buffer, moves after the loss is
    computed, in training mode only.

    Args:
        out_dim: the number of prototypes $K$ (the heads' output width).
        num_crops: views per image the student sees (their ``ncrops``: 2 + 8 local).
        warmup_teacher_temperature, teacher_temperature, warmup_teacher_temperature_epochs:
            the teacher temperature's linear warm-up (their defaults 0.04, 0.04, 0).
        student_temperature: $\\tau_s$ (0.1).
        center_momentum: $m$ of the centre's moving average (0.9).
        global_crops: views the teacher sees (2, fixed in theirs).
    """

    inputs = "logits"

    def __init__(
        self,
        out_dim: int,
        num_crops: int = 10,
        warmup_teacher_temperature: float = 0.04,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature_epochs: int = 0,
        student_temperature: float = 0.1,
        center_momentum: float = 0.9,
        global_crops: int = 2,
    ) -> None:
        super().__init__()
        self.out_dim = at_least("out_dim", out_dim, 1)
        self.global_crops = at_least("global_crops", global_crops, 1)
        self.num_crops = at_least("num_crops", num_crops, global_crops)
        self.warmup_teacher_temperature = positive(
            "warmup_teacher_temperature", warmup_teacher_temperature
        )
        self.teacher_temperature = positive("teacher_temperature", teacher_temperature)
        self.warmup_teacher_temperature_epochs = int(
            non_negative("warmup_teacher_temperature_epochs", warmup_teacher_temperature_epochs)
        )
        self.student_temperature = positive("student_temperature", student_temperature)
        self.center_momentum = in_unit_interval("center_momentum", center_momentum)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.epoch = 0

    def teacher_temperature_at(self, epoch: int) -> float:
        """Their ``teacher_temp_schedule[epoch]``: linear over the warm-up epochs, then constant."""
        warmup = self.warmup_teacher_temperature_epochs
        if epoch >= warmup:
            return self.teacher_temperature
        schedule = np.linspace(self.warmup_teacher_temperature, self.teacher_temperature, warmup)
        return float(schedule[epoch])

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.epoch = epoch

    def _check(self, student_output: torch.Tensor, teacher_output: torch.Tensor) -> int:
        for name, output in (
            ("student_output", student_output),
            ("teacher_output", teacher_output),
        ):
            if output.dim() != 2 or output.shape[1] != self.out_dim:
                raise ValueError(
                    f"{name} must have shape [views * B, {self.out_dim}] (out_dim prototypes), "
                    f"got shape {tuple(output.shape)}"
                )
        rows = student_output.shape[0]
        if rows % self.num_crops:
            raise ValueError(
                f"student_output has {rows} rows, not a multiple of num_crops={self.num_crops} "
                f"(the views stacked view after view)"
            )
        batch = rows // self.num_crops
        if teacher_output.shape[0] != self.global_crops * batch:
            raise ValueError(
                f"teacher_output must hold the {self.global_crops} global views of the "
                f"{batch} images: {self.global_crops * batch} rows, got "
                f"{teacher_output.shape[0]} (student_output {tuple(student_output.shape)})"
            )
        return batch

    def forward(self, student_output: torch.Tensor, teacher_output: torch.Tensor) -> torch.Tensor:
        self._check(student_output, teacher_output)
        teacher_output = at_least_float32(teacher_output.detach())
        student_out = (at_least_float32(student_output) / self.student_temperature).chunk(
            self.num_crops
        )
        temperature = self.teacher_temperature_at(self.epoch)
        center = self.center.to(teacher_output.dtype)
        teacher_probs = F.softmax((teacher_output - center) / temperature, dim=-1)
        teacher_probs = teacher_probs.chunk(self.global_crops)
        total, pairs = student_output.new_zeros((), dtype=student_out[0].dtype), 0
        for teacher_view, q in enumerate(teacher_probs):
            for student_view, logits in enumerate(student_out):
                if student_view == teacher_view:  # the same view on both sides: skipped
                    continue
                total = total + torch.sum(-q * F.log_softmax(logits, dim=-1), dim=-1).mean()
                pairs += 1
        if self.training:
            self.update_center(teacher_output)
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """$c \\leftarrow m c + (1 - m)\\,\\bar g_t$, the batch mean taken over every process."""
        summed = torch.cat(
            [teacher_output.sum(0), teacher_output.new_full((1,), teacher_output.shape[0])]
        ).to(torch.float64 if teacher_output.dtype == torch.float64 else torch.float32)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(summed)  # the sum of every process's rows, and their count
        batch_center = (summed[:-1] / summed[-1]).to(self.center.dtype)
        self.center.mul_(self.center_momentum).add_(
            batch_center[None], alpha=1 - self.center_momentum
        )

    def extra_repr(self) -> str:
        return (
            f"out_dim={self.out_dim}, num_crops={self.num_crops}, "
            f"teacher_temperature={self.teacher_temperature}, "
            f"student_temperature={self.student_temperature}, "
            f"center_momentum={self.center_momentum}"
        )


def _out_dim(student: nn.Module) -> int:
    head = getattr(student, "head", None)
    out_dim = getattr(head, "out_dim", None)
    if not isinstance(out_dim, int):
        raise ValueError(
            "out_dim is needed: pass it, or give a student whose head has an `out_dim` "
            "(reference_impls.common.augmentations.dino_network)"
        )
    return out_dim


class DINO(DistillationProcedure):
    """DINO training of ``student`` on multi-crop views; the labels are never read.

    Args:
        student: a network returning a ``ModelOutput`` whose ``logits`` are its head's
            output (``augmentations.dino_network``).
        teacher: ``None`` for self-distillation (the teacher is the student's EMA), or a
            pre-trained network with a head of the same width, frozen here (distillation).
        out_dim: the heads' width; default: ``student.head.out_dim``.
        multi_crop: how the views are drawn (2 global + 8 local by default).
        momentum: the EMA momentum's base $\\lambda_0$ (0.996), rising to 1 on a cosine.
        steps_per_epoch: training steps per epoch, for their exact per-step momentum
            schedule; ``None``: counted during the first epoch.
        loss_options: passed to :class:`DINOLoss` (temperatures, warm-up, centre momentum).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None = None,
        out_dim: int | None = None,
        multi_crop: MultiCrop | None = None,
        momentum: float = 0.996,
        steps_per_epoch: int | None = None,
        **loss_options: float,
    ) -> None:
        super().__init__()
        self.student = student
        self.multi_crop = multi_crop if multi_crop is not None else MultiCrop()
        self.self_distillation = teacher is None
        self.teacher = copy.deepcopy(student) if teacher is None else teacher
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.momentum = in_unit_interval("momentum", momentum)
        if steps_per_epoch is not None:
            at_least("steps_per_epoch", steps_per_epoch, 1)
        self.steps_per_epoch = steps_per_epoch
        self.loss = DINOLoss(
            out_dim if out_dim is not None else _out_dim(student),
            num_crops=self.multi_crop.num_crops,
            global_crops=self.multi_crop.global_crops,
            **loss_options,
        )
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # training steps taken
        self.epoch, self.epochs, self._steps_in_epoch = 0, 1, 0

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        if epoch == 1 and self.steps_per_epoch is None:
            self.steps_per_epoch = max(self._steps_in_epoch, 1)
        self.epoch, self.epochs, self._steps_in_epoch = epoch, epochs, 0
        self.loss.on_epoch_start(epoch, epochs)

    def momentum_at(self, step: int) -> float:
        """$\\lambda$ after training step ``step`` (0-based), their ``momentum_schedule[step]``."""
        if self.steps_per_epoch is None:
            return self.momentum  # epoch 0 of a run whose steps per epoch are being counted
        total = self.epochs * self.steps_per_epoch
        return 1 + 0.5 * (self.momentum - 1) * (1 + math.cos(math.pi * min(step, total) / total))

    @torch.no_grad()
    def update_teacher(self) -> None:
        """$\\theta_t \\leftarrow \\lambda\\theta_t + (1-\\lambda)\\theta_s$ with the last step's $\\lambda$."""
        if not self.self_distillation or int(self.step) == 0:
            return
        m = self.momentum_at(int(self.step) - 1)
        for student_p, teacher_p in zip(
            self.student.parameters(), self.teacher.parameters(), strict=True
        ):
            teacher_p.mul_(m).add_(student_p.detach(), alpha=1 - m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.training:
            self.update_teacher()  # after the optimiser step of the previous call
            self.step += 1
            self._steps_in_epoch += 1
        views = self.multi_crop(x)
        # the self-distillation teacher runs as the student does (batch statistics in
        # training, as their teacher); a pre-trained teacher in eval mode
        self.teacher.train(self.training and self.self_distillation)
        with torch.no_grad():
            teacher_output = multi_crop_forward(self.teacher, views[: self.multi_crop.global_crops])
        student_output = multi_crop_forward(self.student, views)
        if teacher_output.shape[1] != student_output.shape[1]:
            raise ValueError(
                f"the teacher's head gives {teacher_output.shape[1]} outputs but the student's "
                f"{student_output.shape[1]}: DINO needs heads of one width"
            )
        loss = self.loss(student_output, teacher_output)
        return {"loss": loss, "dino": loss.detach()}

    def extra_repr(self) -> str:
        mode = "self-distillation (EMA teacher)" if self.self_distillation else "frozen teacher"
        return f"{mode}, momentum={self.momentum}, crops={self.multi_crop.num_crops}"
