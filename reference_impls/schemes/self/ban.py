r"""Born-Again Networks (BAN): generations of identical networks, each distilled from the one before.

Citation: ``furlanello2018born`` (Furlanello, Lipton, Tschannen, Itti and Anandkumar, ICML 2018).
Authors' code: none released; the paper is the reference.

Generation 0 is trained on the labels. Generation $k \ge 1$ has the same
architecture, starts from a fresh initialisation and learns from the frozen
generation $k-1$ (the "teacher"), whose predictions are
$p^{(k-1)} = \mathrm{softmax}(z^{(k-1)} / \tau)$:

$$
\mathcal{L}^{(k)} = \lambda_{\mathrm{CE}}\,\mathrm{CE}\big(y, p^{(k)}\big)
  + \lambda_{\mathrm{KD}}\,\tau^2\,\frac{1}{B}\sum_{b=1}^{B}
    \mathrm{KL}\big(p^{(k-1),\tau}_b \,\big\|\, p^{(k),\tau}_b\big).
$$

Defaults, from our reading of the paper (there is no released code): the
teacher's plain softmax ($\tau = 1$) and the KD term alone
($\lambda_{\mathrm{CE}} = 0$, $\lambda_{\mathrm{KD}} = 1$), the objective its
gradient analysis and main BAN results use; its "BAN+L" variant adds the label
term ($\lambda_{\mathrm{CE}} = 1$). With
$\tau = 1$ the gradient of the KD term on the student's logit $i$ is
$(p^{(k)}_i - p^{(k-1)}_i)/B$, the form analysed in §3.2 of the paper: the
teacher's probability of the true class acts as a per-sample importance weight.
The Born-Again Network Ensemble (BANE) averages the predictions of the
generations,

$$
\hat{p}^{\,K}(x) = \frac{1}{K}\sum_{k} p^{(k)}(x),
$$

which :meth:`BornAgain.ensemble_probabilities` computes over any members
(default: every trained generation, generation 0 included).

The KD term is the shared ``reference_impls.common.losses.softened_kl``, as in
KD (half precision in float32, float64 kept). Deviations: the paper's CWTM and
DKPP variants are not implemented; the training schedule (optimiser, epochs) is
that of ``reference_impls.common.train``, the same for every generation, as in
the paper.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.data import DataSplit
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32, softened_kl
from reference_impls.common.training import History, freeze, logits_of, predict_logits, train
from reference_impls.common.validation import loss_weights, non_negative, positive


def born_again_kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """$\\tau^2\\,\\mathrm{KL}(p^{t,\\tau} \\| p^{s,\\tau})$, summed over classes, batch mean."""
    return softened_kl(student_logits, teacher_logits, temperature)


class BornAgain(DistillationProcedure):
    """Sequential self-distillation over generations of one architecture.

    Args:
        make_model: builds a fresh network (returns logits or a ``ModelOutput``);
            called once per generation.
        temperature: softening temperature $\\tau$ of the teacher (paper: 1).
        ce_weight: weight of the label cross-entropy for generations $k \\ge 1$
            (paper's BAN: 0; "BAN+L": 1). Generation 0 always trains on labels alone.
        kd_weight: weight of the distillation term.

    ``forward(x, y)`` trains the current ``student``, distilling from ``teacher``
    when there is one; :meth:`run` trains every generation with
    ``reference_impls.common.train`` and keeps them, frozen, in ``generations``.
    """

    def __init__(
        self,
        make_model: Callable[[], nn.Module],
        temperature: float = 1.0,
        ce_weight: float = 0.0,
        kd_weight: float = 1.0,
    ) -> None:
        super().__init__()
        loss_weights(ce_weight=ce_weight, kd_weight=kd_weight)
        self.make_model = make_model
        self.temperature = positive("temperature", temperature)
        self.ce_weight = ce_weight
        self.kd_weight = kd_weight
        self.student = make_model()
        self.teacher: nn.Module | None = None
        self.generations = nn.ModuleList()

    def train(self, mode: bool = True) -> BornAgain:
        super().train(mode)
        for model in self.generations:  # trained generations (the teacher among them) stay frozen
            model.eval()
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        student_logits = logits_of(self.student(x))
        ce = F.cross_entropy(at_least_float32(student_logits), y)
        if self.teacher is None:
            return {"loss": ce, "ce": ce.detach()}
        with torch.no_grad():
            teacher_logits = logits_of(self.teacher(x))
        kd = born_again_kd_loss(student_logits, teacher_logits, self.temperature)
        total = self.ce_weight * ce + self.kd_weight * kd
        return {"loss": total, "ce": ce.detach(), "kd": kd.detach()}

    def next_generation(self) -> None:
        """Freeze the current student as the next teacher and start a fresh student."""
        trained = freeze(copy.deepcopy(self.student))
        self.generations.append(trained)
        self.teacher = trained
        device = next(trained.parameters()).device
        self.student = self.make_model().to(device)

    def run(
        self,
        data: DataSplit,
        generations: int = 3,
        epochs: int = 10,
        lr: float = 0.05,
        batch_size: int = 64,
        seed: int = 0,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> list[History]:
        """Train generation 0 on labels, then ``generations`` born-again students.

        Generation $k$ is built and shuffled with seed ``seed + k`` (generation 0
        replaces the student built in ``__init__``). Returns
        one training history per generation; afterwards ``generations`` holds
        the ``generations + 1`` trained networks, frozen, and ``student`` the last.
        """
        non_negative("generations", generations)
        if len(self.generations) > 0:
            raise RuntimeError("run() starts from generation 0; build a new BornAgain to rerun")
        histories = []
        for generation in range(generations + 1):
            torch.manual_seed(seed + generation)  # a fresh, reproducible initialisation
            if generation == 0:
                self.student = self.make_model()
            else:
                self.next_generation()
            run_kwargs = {"lr": lr, "batch_size": batch_size, "device": device}
            histories.append(
                train(self, data, epochs, seed=seed + generation, progress=progress, **run_kwargs)
            )
        self.generations.append(freeze(copy.deepcopy(self.student)))
        return histories

    @torch.no_grad()
    def ensemble_probabilities(
        self, x: torch.Tensor, members: Sequence[int] | None = None
    ) -> torch.Tensor:
        """BANE: the mean of the members' softmax predictions (default: every trained generation)."""
        if len(self.generations) == 0:
            raise RuntimeError("no trained generation yet; call run() first")
        chosen = range(len(self.generations)) if members is None else members
        probabilities = [F.softmax(predict_logits(self.generations[i], x), dim=1) for i in chosen]
        if not probabilities:
            raise ValueError("members must name at least one generation")
        return torch.stack(probabilities).mean(dim=0)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, ce_weight={self.ce_weight}, "
            f"kd_weight={self.kd_weight}, trained_generations={len(self.generations)}"
        )
