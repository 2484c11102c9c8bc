r"""Early-stopped teacher (ESKD): a teacher stopped early can teach a small student better.

Citation: ``cho2019efficacy`` (Cho and Hariharan, ICCV 2019).
Authors' code: none released (the paper links none, and a search of public code found
none by the authors); the paper is the reference. A third-party mdistiller-style
``ESKD`` distiller in the public code index implements the other reading below (KD
weight until a ``STOP_EPOCH``, cross-entropy alone after it).

The paper finds that more accurate teachers are often not better teachers: a small
student cannot mimic a large, fully trained teacher. It mitigates this by stopping
something early, in two ways:

* **the early-stopped teacher**: the teacher's training is cut short, and the student
  learns from that less converged teacher;
* **early-stopped KD** (what the paper's ImageNet experiments call ESKD): the student is
  trained with the KD term for its first epochs only, then with the labels alone.

This procedure trains both stages itself (``RunsItsOwnTraining``). Stage 1 trains the
teacher $T$ with cross-entropy on a schedule of ``teacher_epochs`` epochs and keeps its
weights after ``stop_epoch`` epochs, $T_{\mathrm{ES}}$ (by default the end of that
schedule: a teacher on a short schedule). Stage 2 distils $T_{\mathrm{ES}}$, frozen, into
the student with Hinton's KD, the term switched off from epoch $E_{\mathrm{KD}}$ on when
``kd_epochs`` is given (epochs $e$ counted from 0):

$$
\mathcal{L}_e = \lambda_{\mathrm{CE}}\,\mathrm{CE}\big(y, z^{s}\big)
  + \mathbb{1}[e < E_{\mathrm{KD}}]\;\lambda_{\mathrm{KD}}\,\tau^{2}\,\frac{1}{B}\sum_{b}
  \mathrm{KL}\!\left(p^{T_{\mathrm{ES}},\tau}_b \,\middle\|\, p^{s,\tau}_b\right).
$$

When ``stop_epoch`` is before the end of the teacher's schedule, the teacher trains on to
the end and is kept, frozen, as ``full_teacher``: one teacher run gives the early-stopped
and the fully trained teacher, from the same initialisation and the same batches, so the
two can teach comparable students.

Defaults: Hinton's KD at $\tau = 4$ with $0.1\,\mathrm{CE} + 0.9\,\mathrm{KD}$ (the
CIFAR-100 setting of ``KDLoss``, as in mdistiller and RepDistiller; the paper's own
values could not be checked here), the KD term throughout (``kd_epochs=None``), the
teacher taken at the end of its own schedule. Where to stop is the method's one knob; it
depends on the data and the schedule and has no released default, so ``run`` takes it.
The paper's full text was not reachable from here; a published summary of it gives the
full CIFAR teachers 200 epochs (learning rate dropped at 60) and the early-stopped ones
shorter schedules ("15/50", "10/35").

Deviations: the training loop is ``reference_impls.common.train`` (SGD with Nesterov
momentum and a cosine learning rate per stage), not the paper's step schedules, so a
teacher stopped inside its schedule (``stop_epoch < teacher_epochs``) is taken at a
higher learning rate than one whose short schedule has run out.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.data import DataSplit
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32, softened_kl
from reference_impls.common.training import History, freeze, logits_of, train
from reference_impls.common.validation import at_least, loss_weights, positive

STAGES = ("teacher", "student")


class ESKD(DistillationProcedure):
    """Train a teacher, stop it early, distil it into the student (optionally stopping KD early).

    Args:
        teacher: the teacher network, untrained: ``run`` trains it (stage 1).
        student: the student network (stage 2).
        temperature: KD temperature $\\tau$ (4).
        ce_weight: weight of the student's cross-entropy (0.1).
        kd_weight: weight of the KD term (0.9).
        kd_epochs: the student learns from the teacher for this many epochs, then from the
            labels alone (the paper's early-stopped KD); ``None``: KD throughout.

    ``forward(x, y)`` is the current stage's step: the teacher's cross-entropy in stage
    ``"teacher"``, the student's CE + KD from the frozen early-stopped teacher in stage
    ``"student"`` (:meth:`start_distillation` switches).
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        temperature: float = 4.0,
        ce_weight: float = 0.1,
        kd_weight: float = 0.9,
        kd_epochs: int | None = None,
    ) -> None:
        super().__init__()
        loss_weights(ce_weight=ce_weight, kd_weight=kd_weight)
        self.temperature = positive("temperature", temperature)
        self.ce_weight = ce_weight
        self.kd_weight = kd_weight
        self.kd_epochs = None if kd_epochs is None else at_least("kd_epochs", kd_epochs, 1)
        self.teacher = teacher
        self.student = student
        self.full_teacher: nn.Module | None = None
        self.stage = STAGES[0]
        self.kd_active = True

    def start_distillation(self) -> None:
        """Freeze the teacher as it is now (the early-stopped teacher) and train the student."""
        freeze(self.teacher)
        self.stage = STAGES[1]
        self.kd_active = True

    def train(self, mode: bool = True) -> ESKD:
        super().train(mode)
        if self.stage == "student":
            self.teacher.eval()  # frozen: its batch-norm statistics never move
        if self.full_teacher is not None:
            self.full_teacher.eval()
        return self

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Early-stopped KD: the KD term only in the student's first ``kd_epochs`` epochs."""
        if self.stage == "student":
            self.kd_active = self.kd_epochs is None or epoch < self.kd_epochs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.stage == "teacher":
            ce = F.cross_entropy(at_least_float32(logits_of(self.teacher(x))), y)
            return {"loss": ce, "teacher_ce": ce.detach()}
        student_logits = logits_of(self.student(x))
        ce = F.cross_entropy(at_least_float32(student_logits), y)
        with torch.no_grad():
            teacher_logits = logits_of(self.teacher(x))
        kd = softened_kl(student_logits, teacher_logits, self.temperature)
        kd_weight = self.kd_weight if self.kd_active else 0.0
        total = self.ce_weight * ce + kd_weight * kd
        return {"loss": total, "ce": ce.detach(), "kd": kd.detach()}

    def run(
        self,
        data: DataSplit,
        epochs: int = 10,
        teacher_epochs: int | None = None,
        stop_epoch: int | None = None,
        teacher_data: DataSplit | None = None,
        lr: float = 0.05,
        batch_size: int = 64,
        teacher_lr: float | None = None,
        teacher_batch_size: int | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> list[History]:
        """Stage 1, the teacher on ``teacher_data`` (default ``data``); stage 2, the student on ``data``.

        ``teacher_epochs`` is the length of the teacher's schedule (default ``epochs``),
        ``stop_epoch`` the epoch after which it is taken (default: the end of its schedule);
        ``epochs`` is the student's schedule. ``lr`` and ``batch_size`` are the student's,
        and the teacher's unless ``teacher_lr`` or ``teacher_batch_size`` is given. Returns the two ``History`` objects; afterwards
        ``teacher`` is the early-stopped teacher, frozen, and ``full_teacher`` the teacher at
        the end of its schedule when it was stopped before.
        """
        if self.stage != "teacher":
            raise RuntimeError(
                "run() starts with the teacher's training; build a new ESKD to rerun"
            )
        at_least("epochs", epochs, 1)
        teacher_epochs = (
            epochs if teacher_epochs is None else at_least("teacher_epochs", teacher_epochs, 1)
        )
        stop_epoch = teacher_epochs if stop_epoch is None else at_least("stop_epoch", stop_epoch, 1)
        if stop_epoch > teacher_epochs:
            raise ValueError(
                f"stop_epoch must lie within the teacher's schedule of {teacher_epochs} epochs, "
                f"got {stop_epoch}"
            )
        kept: dict[str, torch.Tensor] = {}

        def keep_early_teacher(epoch: int, losses: dict[str, float]) -> None:
            if epoch + 1 == stop_epoch:
                kept.update({k: v.detach().clone() for k, v in self.teacher.state_dict().items()})

        teacher_history = train(
            self,
            teacher_data if teacher_data is not None else data,
            epochs=teacher_epochs,
            lr=lr if teacher_lr is None else teacher_lr,
            batch_size=batch_size if teacher_batch_size is None else teacher_batch_size,
            seed=seed,
            device=device,
            evaluate=self.teacher,
            progress=keep_early_teacher,
        )
        if stop_epoch < teacher_epochs:
            self.full_teacher = freeze(copy.deepcopy(self.teacher))
            self.teacher.load_state_dict(kept)
        self.start_distillation()
        student_history = train(
            self,
            data,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            device=device,
            evaluate=self.student,
            progress=progress,
        )
        return [teacher_history, student_history]

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, ce_weight={self.ce_weight}, "
            f"kd_weight={self.kd_weight}, kd_epochs={self.kd_epochs}, stage={self.stage!r}"
        )
