r"""DFAD: data-free adversarial distillation, a generator that seeks the student's mistakes.

Citation: ``fang2019data`` (Fang, Song, Shen, Wang, Chen and Song, arXiv 2019).
Authors' code: https://github.com/VainF/Data-Free-Adversarial-Distillation,
``DFAD_cifar.py`` (``train``: the two players' steps) and ``network/gan.py``
(``GeneratorA``, which is :class:`DigitsGenerator` here).

No training images are used. A generator $G$ and the student $S$ play a min-max game
over the mean absolute difference of the teacher's and the student's logits on
generated images, the upper bound of the model discrepancy the paper derives:

$$
\min_S \max_G \; \mathbb{E}_{z \sim \mathcal{N}(0, I)}
  \Big[\tfrac{1}{C} \big\lVert T\big(G(z)\big) - S\big(G(z)\big) \big\rVert_1\Big].
$$

The **imitation** stage trains the student to agree with the teacher on generated
images (the generator detached); the **generation** stage trains the generator to
*maximise* the same L1 distance, so it keeps producing inputs on which the student is
still wrong (the student is not updated by that step). Each iteration of the authors'
loop is five student steps, then one generator step, each on fresh codes
(``schedule``).

:meth:`DFAD.forward` takes a ``phase``: ``"student"`` (the imitation loss, only the
student gets a gradient), ``"generator"`` (minus the L1, only the generator gets a
gradient: the student's parameters are frozen during that forward) or ``"both"``
(the two on one batch; one backward gives each player exactly its own gradient).

Defaults: the authors' CIFAR setting (``DFAD_cifar.py`` with ``--scheduler``, as
their README runs it): latent size 256, batch 256, 50 iterations per epoch, 500
epochs; the student with SGD (lr 0.1, momentum 0.9, weight decay 5e-4), the generator
with Adam (lr 1e-3); both rates divided by 10 at epochs 100 and 200.
The MNIST script (``DFAD_mnist.py``) uses latent size 100, batch 512, student lr 0.01
and weight decay 1e-4, 40 epochs.

Code and paper agree on the loss (the L1 on logits, mean over batch and classes, the
generator's sign flipped: the commented-out ``-log(L1 + 1)`` of the script is not
used). Deviations: the learning-rate steps at epochs 100 and 200 of 500 are scaled to
the length of :meth:`~DataFreeDistillation.fit`'s run (``lr_milestones``, 0.2 and 0.4);
the authors' images are made by the generator in train mode for the student too (so
are ours).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.algorithms.adversarial.data_free import (
    DataFreeDistillation,
    latent_codes,
    parameters_frozen,
)
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import logits_of
from reference_impls.common.validation import at_least, logit_pair, non_negative, positive


def logit_l1(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the logits over batch and classes (``F.l1_loss``)."""
    logit_pair(student_logits, teacher_logits)
    return F.l1_loss(at_least_float32(student_logits), at_least_float32(teacher_logits))


class DFAD(DataFreeDistillation):
    """Student and generator in a min-max game over the teacher-student L1 on generated images.

    Args:
        teacher: the frozen teacher.
        student: the network trained.
        generator: maps ``[B, latent_dim]`` codes to images (``generator.latent_dim``).
        student_steps: imitation steps per generation step (authors: 5).
        lr_student, lr_generator: learning rates (CIFAR: 0.1 and 1e-3).
        weight_decay: the student's SGD weight decay (CIFAR: 5e-4; MNIST: 1e-4).
        lr_milestones: fractions of the run after which both rates are divided by 10
            (authors' CIFAR run: epochs 100 and 200 of 500).
    """

    phases: ClassVar[tuple[str, ...]] = ("both", "student", "generator")

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        generator: nn.Module,
        student_steps: int = 5,
        lr_student: float = 0.1,
        lr_generator: float = 1e-3,
        weight_decay: float = 5e-4,
        lr_milestones: tuple[float, ...] = (0.2, 0.4),
    ) -> None:
        super().__init__(teacher, student, generator)
        self.student_steps = at_least("student_steps", student_steps, 1)
        self.lr_student = positive("lr_student", lr_student)
        self.lr_generator = positive("lr_generator", lr_generator)
        self.weight_decay = non_negative("weight_decay", weight_decay)
        for milestone in lr_milestones:
            if not 0 < milestone < 1:
                raise ValueError(f"lr_milestones must lie in (0, 1), got {tuple(lr_milestones)}")
        self.lr_milestones = tuple(lr_milestones)
        self._optimizers: list[torch.optim.Optimizer] = []
        self._base_lrs: list[float] = []

    @property
    def schedule(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("student",) * self.student_steps + ("generator",)

    def forward(self, z: torch.Tensor, phase: str = "both") -> dict[str, torch.Tensor]:
        self.check_phase(phase)
        latent_codes(z, self.latent_dim)
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=z.device)
        if phase in ("both", "student"):
            # imitation: the generator is detached, the student follows the teacher
            images = self.generator(z).detach()
            teacher_logits = logits_of(self.teacher(images)).detach()
            imitation = logit_l1(logits_of(self.student(images)), teacher_logits)
            total = total + imitation
            terms["student_l1"] = imitation.detach()
        if phase in ("both", "generator"):
            # generation: maximise the discrepancy; the student is not moved by this step
            images = self.generator(z)
            teacher_logits = logits_of(self.teacher(images))
            with parameters_frozen(self.student):
                student_logits = logits_of(self.student(images))
            discrepancy = logit_l1(student_logits, teacher_logits)
            total = total - discrepancy
            terms["generator_l1"] = discrepancy.detach()
        return {"loss": total, **terms}

    def configure_optimizers(self, lr: float | None = None) -> list[torch.optim.Optimizer]:
        """SGD for the student (``lr`` overriding its rate), Adam for the generator."""
        lr_student = self.lr_student if lr is None else lr
        student = torch.optim.SGD(
            self.student.parameters(),
            lr=lr_student,
            momentum=0.9,
            weight_decay=self.weight_decay,
        )
        generator = torch.optim.Adam(self.generator.parameters(), lr=self.lr_generator)
        self._optimizers, self._base_lrs = [student, generator], [lr_student, self.lr_generator]
        return self._optimizers

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Both rates divided by 10 after each milestone (the authors' ``MultiStepLR``)."""
        passed = sum(epoch >= m * epochs for m in self.lr_milestones)
        for optimizer, base in zip(self._optimizers, self._base_lrs, strict=True):
            for group in optimizer.param_groups:
                group["lr"] = base * 0.1**passed

    def extra_repr(self) -> str:
        return f"student_steps={self.student_steps}"
