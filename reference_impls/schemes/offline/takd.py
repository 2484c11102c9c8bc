r"""Teacher assistant knowledge distillation: bridge a large capacity gap in several KD steps.

Citation: ``mirzadeh2020improved`` (Mirzadeh, Farajtabar, Li, Levine, Matsukawa and
Ghasemzadeh, AAAI 2020).
Authors' code: https://github.com/imirzadeh/Teacher-Assistant-Knowledge-Distillation
(``train.py``, hyper-parameter grid in ``search_space.json``).

A student far smaller than its teacher learns less from it than from a
mid-sized network. TAKD inserts teacher assistants (TAs) between them and
distils along the chain $T \to A_1 \to \dots \to A_k \to S$: each network is
trained, from scratch, by plain KD from the previous, already trained and
then frozen one. For a learner $L$ with teacher $P$ (its predecessor in the
chain), with $p^{\tau} = \mathrm{softmax}(z/\tau)$:

$$
\mathcal{L} = (1 - \lambda)\,\mathrm{CE}\big(y, z^{L}\big)
  + \lambda\,\tau^{2}\,\mathrm{KL}\!\left(p^{P,\tau} \,\middle\|\, p^{L,\tau}\right).
$$

Each step is an ``OfflineDistiller`` with ``KDLoss(temperature)``,
``ce_weight = 1 - lambda_`` and ``kd_weight = lambda_``; ``run`` trains the steps in
order with ``reference_impls.common.train``, and ``forward(x, y)`` is the current
step's distiller (``start_step`` selects it), so one step can also be driven by
any other loop. The paper's best chains use one TA of intermediate size; deeper
chains ("distillation paths") help further but with diminishing returns.

Defaults: the authors tune $\tau$ and $\lambda$ per run with NNI over
$\tau \in \{1, 2, 5, 10, 15, 20\}$ and $\lambda \in [0.05, 1]$ (``search_space.json``);
there is no single released value. We default to $\tau = 5$ and $\lambda = 0.5$,
a point of that grid.

Deviations: the authors' KL term uses ``nn.KLDivLoss()`` with its old default
reduction, the mean over batch *and classes*, so their $\lambda$ acts on a KL
divided by the number of classes; we use the batch mean of the per-sample KL
(``KDLoss``), the reduction of the paper's equation, so a $\lambda$ tuned on their
code corresponds to a smaller one here. They also keep the best-validation
checkpoint of each TA; we use the TA as it is at the end of its step.

On small models: the offline notebook (a ``teacher_cnn`` at about 0.99 test accuracy, an
assistant ``TinyCNN((16, 32, 64))``, ``student_cnn`` on 100 labelled digits, 16 epochs per
step, seeds 0, 1 and 2) uses these defaults for both TAKD and plain KD, and measured the
student at 0.921 ± 0.005 test accuracy through the assistant (itself 0.936 ± 0.004) against
0.924 ± 0.005 with KD from the teacher directly: no gain. TAKD is meant for large capacity
gaps; our teacher is 15 times the student's size on a task both nearly solve, so the toy
does not test the regime it was made for.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from reference_impls.common.data import DataSplit
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.training import History, freeze, train
from reference_impls.common.validation import in_unit_interval, positive
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.kd import KDLoss


class TAKD(DistillationProcedure):
    """The chain teacher → assistants → student, distilled one step at a time.

    Args:
        teacher: a trained model; frozen here.
        assistants: the teacher assistants, in decreasing size (may be empty: plain KD).
        student: the final, smallest model.
        temperature: KD temperature $\\tau$ of every step.
        lambda_: weight $\\lambda$ of the KD term; the cross-entropy gets $1 - \\lambda$.
    """

    def __init__(
        self,
        teacher: nn.Module,
        assistants: Sequence[nn.Module],
        student: nn.Module,
        temperature: float = 5.0,
        lambda_: float = 0.5,
    ) -> None:
        super().__init__()
        self.chain = nn.ModuleList([teacher, *assistants, student])
        self.temperature = positive("temperature", temperature)
        self.lambda_ = in_unit_interval("lambda_", lambda_)
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
                KDLoss(self.temperature),
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
        return f"temperature={self.temperature}, lambda_={self.lambda_}, step={self.step}"
