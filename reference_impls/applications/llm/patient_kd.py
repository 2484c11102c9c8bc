r"""Patient knowledge distillation (PKD-Skip, PKD-Last) for BERT compression.

Citation: ``sun2019patient`` (Sun, Cheng, Gan and Liu, EMNLP 2019). Besides the soft
targets and the labels, the student learns "patiently" from the teacher's intermediate
layers: the L2-normalised [CLS] hidden states $\mathbf{h}$ of its layers $1..M-1$ are
matched to those of chosen teacher layers $I_{pt}$ (the last layer is left to the
soft targets):

$$
\mathcal{L} = (1 - \alpha)\,\mathcal{L}_{CE}
  + \alpha\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(z^T/T)\,\|\,\mathrm{softmax}(z^S/T)\big)
  + \beta \sum_{j=1}^{M-1} \Big\| \frac{\mathbf{h}^S_j}{\|\mathbf{h}^S_j\|_2}
  - \frac{\mathbf{h}^T_{I_{pt}(j)}}{\|\mathbf{h}^T_{I_{pt}(j)}\|_2} \Big\|_2^2 .
$$

PKD-Skip takes every $k$-th teacher layer, $I_{pt}(j) = jk$ with $k = N/M$ (12 to 6
layers: teacher layers 2, 4, 6, 8, 10); PKD-Last the $M-1$ layers before the last,
$I_{pt}(j) = N - M + j$ (7 to 11). :func:`patient_layers` gives them.

Authors' code: https://github.com/intersun/PKD-for-BERT-Model-Compression,
``src/KD_loss.py``, ``distillation_loss`` (soft targets and CE) and ``patience_loss``;
their use in ``NLI_KD_training.py`` (lines 268-275: ``loss_dl + beta * patience_loss``);
the student's patience vectors are its [CLS] states of every layer but the last
(``torch.stack(full_output[:-1])``), the teacher's those of ``--fc_layer_idx`` (stored
with the teacher's predictions). Defaults: the PKD command of ``src/utils.py``'s
``get_predefine_argv`` (``kd.cls``): ``--alpha 0.7 --T 10 --beta 500
--normalize_patience True --fc_layer_idx 1,3,5,7,9`` (PKD-Skip).

Where their code differs from the paper, we follow the code: (1) ``patience_loss`` is
``F.mse_loss`` of the stacked ``[B, M-1, D]`` normalised states, a mean over the batch,
the layers AND the $D$ coordinates (the paper: a sum over layers of squared distances);
$\beta = 500$ is for that mean. (2) ``distillation_loss`` uses ``nn.KLDivLoss
(reduction="mean")``, a mean over the batch AND the classes (divided by $C$ with respect
to the paper's per-example KL), times $T^2$.

Deviations: (1) their ``patience_loss`` returns ``.half()`` (computed in float32, rounded
to float16); ours keeps the inputs' precision (at least float32). (2) Only [CLS] (position
0) is read, so no attention mask is needed: padded positions never contribute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import (
    bert_layer_mapping,
    class_indices,
    in_unit_interval,
    logit_pair,
    non_negative,
    one_of,
    positive,
)


def patient_layers(student_layers: int, teacher_layers: int, strategy: str = "skip") -> list[int]:
    """The teacher layers (1-based; 0 would be the embeddings) that teach the student's
    layers $1..M-1$: ``"skip"`` every $N/M$-th, ``"last"`` the $M-1$ before the last."""
    one_of("strategy", strategy, ("skip", "last"))
    step = bert_layer_mapping(student_layers, teacher_layers)
    if strategy == "skip":
        return [j * step for j in range(1, student_layers)]
    return [teacher_layers - student_layers + j for j in range(1, student_layers)]


class PatientKDLoss(DistillationLoss):
    """$(1-\\alpha)$ CE + $\\alpha T^2$ KL + $\\beta$ patient loss on normalised [CLS] states.

    ``forward(student_logits, teacher_logits, student_hidden, teacher_hidden, target)``:
    ``[B, C]`` logits; the hidden states as a BERT returns them with
    ``output_hidden_states`` ($M + 1$ and $N + 1$ tensors ``[B, T, D]``, the embeddings
    first, one width $D$ for both; [CLS] at position 0); class labels ``[B]``.

    Args:
        alpha: the soft targets' weight, $1 - \\alpha$ the labels' (theirs: 0.7).
        temperature: $T$ (theirs: 10).
        beta: the patient loss's weight (theirs: 500, for a mean over coordinates).
        strategy: ``"skip"`` (PKD-Skip, theirs) or ``"last"`` (PKD-Last).
        normalize: L2-normalise the [CLS] states first (theirs: True).
    """

    inputs: ClassVar[tuple[str, ...]] = ("logits", "features")
    needs_target: ClassVar[bool] = True

    def __init__(
        self,
        alpha: float = 0.7,
        temperature: float = 10.0,
        beta: float = 500.0,
        strategy: str = "skip",
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.alpha = in_unit_interval("alpha", alpha)
        self.temperature = positive("temperature", temperature)
        self.beta = non_negative("beta", beta)
        self.strategy = one_of("strategy", strategy, ("skip", "last"))
        self.normalize = bool(normalize)

    def patience(
        self, student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """The patient loss: MSE of the (normalised) [CLS] states of the paired layers."""
        for side, hidden in (("student", student_hidden), ("teacher", teacher_hidden)):
            if len(hidden) < 2 or any(h.dim() != 3 for h in hidden):
                raise ValueError(
                    f"{side}_hidden must be the embedding output and one [B, T, D] tensor per "
                    f"layer, got {[list(h.shape) for h in hidden]}"
                )
        if student_hidden[0].shape[0] != teacher_hidden[0].shape[0] or (
            student_hidden[0].shape[-1] != teacher_hidden[0].shape[-1]
        ):
            raise ValueError(
                "student_hidden and teacher_hidden must have one batch size and one width D "
                f"(Patient KD compares [CLS] states directly), got {list(student_hidden[0].shape)} "
                f"and {list(teacher_hidden[0].shape)}"
            )
        student_layers, teacher_layers = len(student_hidden) - 1, len(teacher_hidden) - 1
        chosen = patient_layers(student_layers, teacher_layers, self.strategy)
        if not chosen:  # a one-layer student has no intermediate layer to teach
            return at_least_float32(student_hidden[0]).new_zeros(())
        student = torch.stack(
            [at_least_float32(student_hidden[j][:, 0]) for j in range(1, student_layers)], 1
        )
        teacher = torch.stack(
            [at_least_float32(teacher_hidden[i][:, 0].detach()) for i in chosen], 1
        )
        if self.normalize:
            student, teacher = F.normalize(student, p=2, dim=2), F.normalize(teacher, p=2, dim=2)
        return (student - teacher.to(student.dtype)).pow(2).mean()

    def terms(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        student_hidden: Sequence[torch.Tensor],
        teacher_hidden: Sequence[torch.Tensor],
        target: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The unweighted terms ``{"ce", "kd", "patience"}``."""
        logit_pair(student_logits, teacher_logits)
        class_indices(target, student_logits)
        student = at_least_float32(student_logits)
        log_q = F.log_softmax(student / self.temperature, dim=1)
        log_p = F.log_softmax(at_least_float32(teacher_logits.detach()) / self.temperature, dim=1)
        kd = (log_p.exp() * (log_p - log_q)).mean() * self.temperature**2
        ce = F.cross_entropy(student, target)
        return {"ce": ce, "kd": kd, "patience": self.patience(student_hidden, teacher_hidden)}

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        student_hidden: Sequence[torch.Tensor],
        teacher_hidden: Sequence[torch.Tensor],
        target: torch.Tensor,
    ) -> torch.Tensor:
        terms = self.terms(student_logits, teacher_logits, student_hidden, teacher_hidden, target)
        return (
            (1 - self.alpha) * terms["ce"]
            + self.alpha * terms["kd"]
            + self.beta * terms["patience"]
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, temperature={self.temperature}, beta={self.beta}, "
            f"strategy={self.strategy!r}, normalize={self.normalize}"
        )
