r"""Teacher assistant knowledge distillation: bridge a large capacity gap in several KD steps.

Citation: ``mirzadeh2020improved`` (Mirzadeh, Farajtabar, Li, Levine, Matsukawa and
Ghasemzadeh, AAAI 2020).
Authors' code: https://github.com/imirzadeh/Teacher-Assistant-Knowledge-Distillation
(``train.py``, hyper-parameter grid in ``search_space.json``).

A student far smaller than its teacher learns less from it than from a
mid-sized network. TAKD inserts teacher assistants (TAs) between them and
distils along the chain $T \to A_1 \to \dots \to A_k \to S$: each network is
trained, from scratch, by plain KD from the previous, already trained and
then frozen one. For a learner $L$ with $C$ classes and teacher $P$ (its predecessor
in the chain), with $p^{\tau} = \mathrm{softmax}(z/\tau)$, the paper's step loss is

$$
\mathcal{L} = (1 - \lambda)\,\mathrm{CE}\big(y, z^{L}\big)
  + \lambda\,\tau^{2}\,\mathrm{KL}\!\left(p^{P,\tau} \,\middle\|\, p^{L,\tau}\right),
$$

and the authors' code computes the KL term with ``nn.KLDivLoss()`` (``train.py``,
``TrainManager.train``), whose default reduction then and now is the mean over the
batch *and the classes*: their KL term is the paper's divided by $C$,

$$
\mathcal{L}_{\text{code}} = (1 - \lambda)\,\mathrm{CE}\big(y, z^{L}\big)
  + \frac{\lambda\,\tau^{2}}{C}\,\mathrm{KL}\!\left(p^{P,\tau} \,\middle\|\, p^{L,\tau}\right).
$$

We follow their code: ``kd_reduction="mean"`` (the default) divides the batch-mean KL by
$C$, as their ``nn.KLDivLoss()``; ``kd_reduction="batchmean"`` gives the paper's
equation. Their $\lambda$ grid was searched with this reduction, so at $C = 100$
(CIFAR-100) the KD term weighs a hundredth of what the paper's equation suggests.

Each step is an ``OfflineDistiller`` with ``KDLoss(temperature)`` (divided by $C$
under ``"mean"``), ``ce_weight = 1 - lambda_`` and ``kd_weight = lambda_``; ``run``
trains the steps in order with ``reference_impls.common.train``, and ``forward(x, y)``
is the current step's distiller (``start_step`` selects it), so one step can also be
driven by any other loop. With no assistants the chain is one KD step, the authors'
baseline. The paper's best chains use one TA of intermediate size; deeper chains
("distillation paths") help further but with diminishing returns.

Defaults: the authors tune $\tau$ and $\lambda$ per run with NNI over
$\tau \in \{1, 2, 5, 10, 15, 20\}$ and $\lambda \in [0.05, 1]$ (``search_space.json``);
there is no single released value. We default to $\tau = 5$ and $\lambda = 0.5$,
a point of that grid.

Deviation: they keep the best-validation checkpoint of each TA; we use the TA as it is
at the end of its step.

On small models: the offline notebook (a ``teacher_cnn`` at about 0.99 test accuracy, an
assistant ``TinyCNN((16, 32, 64))``, ``student_cnn`` on 100 labelled digits, 16 epochs per
step, seeds 0, 1 and 2, tau = 5 and lambda = 0.5) measured the student at 0.880 +- 0.010 test
accuracy through the assistant (itself 0.905 +- 0.009) and 0.883 +- 0.015 with the same chain
and no assistant, against 0.889 +- 0.013 alone: at this lambda the authors' KD term (a tenth
of Hinton's on 10 classes) is too weak to matter. TAKD is meant for large capacity gaps;
our teacher is 15 times the student's size on a task both nearly solve, so the toy does
not test the regime it was made for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from reference_impls.common.data import DataSplit
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.training import History, freeze, train
from reference_impls.common.validation import in_unit_interval, one_of, positive
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.kd import KDLoss

KDReduction = Literal["mean", "batchmean"]


class ClassMeanKDLoss(KDLoss):
    """``KDLoss`` divided by the number of classes: ``nn.KLDivLoss()``'s ``"mean"`` over
    the batch and the classes, the KD term of the authors' ``train.py``."""

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return super().forward(student_logits, teacher_logits) / student_logits.shape[-1]


class TAKD(DistillationProcedure):
    """The chain teacher → assistants → student, distilled one step at a time.

    Args:
        teacher: a trained model; frozen here.
        assistants: the teacher assistants, in decreasing size (may be empty: plain KD).
        student: the final, smallest model.
        temperature: KD temperature $\\tau$ of every step.
        lambda_: weight $\\lambda$ of the KD term; the cross-entropy gets $1 - \\lambda$.
        kd_reduction: ``"mean"`` (the authors' code: the KL averaged over the batch and the
            classes) or ``"batchmean"`` (the paper's equation: summed over the classes).
    """

    def __init__(
        self,
        teacher: nn.Module,
        assistants: Sequence[nn.Module],
        student: nn.Module,
        temperature: float = 5.0,
        lambda_: float = 0.5,
        kd_reduction: KDReduction = "mean",
    ) -> None:
        super().__init__()
        self.chain = nn.ModuleList([teacher, *assistants, student])
        self.temperature = positive("temperature", temperature)
        self.lambda_ = in_unit_interval("lambda_", lambda_)
        self.kd_reduction = one_of("kd_reduction", kd_reduction, ("mean", "batchmean"))
        # a plain list: the distiller's models are already registered in ``chain``
        self._current: list[OfflineDistiller] = []
        self.start_step(0)

    @property
    def num_steps(self) -> int:
        return len(self.chain) - 1

    @property
    def student(self) -> nn.Module:
        """The model trained by the current step (what ``train`` evaluates)."""
        return self.chain[self.step + 1]

    @property
    def distiller(self) -> OfflineDistiller:
        return self._current[0]

    def start_step(self, step: int) -> None:
        """Freeze the chain up to ``step`` and distil ``chain[step]`` into ``chain[step + 1]``."""
        if not 0 <= step < self.num_steps:
            raise ValueError(f"step must lie in [0, {self.num_steps}), got {step}")
        self.step = step
        for model in self.chain[: step + 1]:
            freeze(model)
        learner, teacher = self.chain[step + 1], self.chain[step]
        self._current[:] = [
            OfflineDistiller(
                learner,
                teacher,
                (ClassMeanKDLoss if self.kd_reduction == "mean" else KDLoss)(self.temperature),
                ce_weight=1.0 - self.lambda_,
                kd_weight=self.lambda_,
            )
        ]

    def train(self, mode: bool = True) -> TAKD:
        super().train(mode)
        for model in self.chain[: self.step + 1]:
            model.eval()  # the current teacher and every earlier network stay frozen
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.distiller(x, y)

    def run(self, data: DataSplit, epochs: int | Sequence[int], **train_kwargs) -> list[History]:
        """Train every step in order (teacher → TA → ... → student); one ``History`` per step.

        ``epochs`` is one number for every step or one per step; ``train_kwargs`` go to
        ``reference_impls.common.train`` (``lr``, ``batch_size``, ``seed``, ``device``, ...).
        """
        per_step = [epochs] * self.num_steps if isinstance(epochs, int) else list(epochs)
        if len(per_step) != self.num_steps:
            raise ValueError(f"need {self.num_steps} epoch counts, got {len(per_step)}")
        histories = []
        for step, step_epochs in enumerate(per_step):
            self.start_step(step)
            histories.append(train(self, data, epochs=step_epochs, **train_kwargs))
        return histories

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, lambda_={self.lambda_}, "
            f"kd_reduction={self.kd_reduction!r}, step={self.step}"
        )
