r"""Logit standardization: z-score each sample's logits before the temperature softmax.

Citation: ``sun2024logit`` (Sun, Ren, Li, Wang and Cao, CVPR 2024).
Authors' code: https://github.com/sunshangquan/logit-standardization-KD
(``mdistiller/distillers/KD.py`` and ``DKD.py``, flags ``--logit-stand --base-temp 2
--kd-weight 9`` in ``tools/train.py``).

Sharing one temperature forces the student to match the teacher's logit range
and variance, not only the relations between classes. The paper instead sets a
per-sample temperature proportional to the standard deviation of the logits,
which amounts to a z-score pre-process: with $\bar z$ and $\sigma(z)$ the mean
and standard deviation over classes of one sample,

$$
\mathcal{Z}(z) = \frac{z - \bar z}{\sigma(z)}, \qquad
q = \mathrm{softmax}\!\left(\mathcal{Z}(z) / \tau\right),
$$

applied to student and teacher alike, after which any logit loss runs
unchanged. For KD,

$$
\mathcal{L} = \tau^{2}\,\frac{1}{B}\sum_{b}
  \mathrm{KL}\!\left(\mathrm{softmax}(\mathcal{Z}(z^{t}_b)/\tau)\,\middle\|\,
                     \mathrm{softmax}(\mathcal{Z}(z^{s}_b)/\tau)\right).
$$

The loss is invariant to any per-sample shift and positive rescaling of either
model's logits: the student only has to get the teacher's logit *shape* right.

Defaults (authors' CIFAR-100 commands): base temperature $\tau = 2$. With
``base="kd"`` the authors weight the KD term by 9 and the cross-entropy by 0.1
(``OfflineDistiller(..., ce_weight=0.1, kd_weight=9.0)``). With ``base="dkd"`` they
multiply DKD's $\alpha = 1, \beta = 8$ by that weight, giving $\alpha = 9$,
$\beta = 72$, with cross-entropy weight 1 and DKD's 20-epoch warm-up
(``OfflineDistiller(..., ce_weight=1.0, kd_weight=1.0)``).

The KD and DKD formulas are not repeated here: this module standardises the
logits and calls ``reference_impls.sources.logit.kd.kd_loss`` or
``reference_impls.sources.logit.dkd.dkd_loss``. As in the authors' code, the
standard deviation is the unbiased one ($n - 1$) and $10^{-7}$ is added to it.
Deviation: the z-score is computed in at least float32 (the shared policy of
``reference_impls.common.losses``) so that bf16 autocast does not round the small
per-class differences away. ``needs_target`` is True for the
class as a whole (DKD needs the labels); with ``base="kd"`` the target may be
omitted and is ignored.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import (
    class_indices,
    logit_pair,
    non_negative,
    one_of,
    positive,
)
from reference_impls.sources.logit.dkd import dkd_loss
from reference_impls.sources.logit.kd import kd_loss

BASES = ("kd", "dkd")
STD_EPSILON = 1e-7


def standardize(logits: torch.Tensor, eps: float = STD_EPSILON) -> torch.Tensor:
    """Per-sample z-score over classes (unbiased std, as the authors), in at least float32."""
    logits = at_least_float32(logits)
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + eps)


class LogitStandardizationLoss(DistillationLoss):
    """KD or DKD on z-scored logits.

    Args:
        base: ``"kd"`` or ``"dkd"``, the logit loss run on the standardised logits.
        temperature: base temperature $\\tau$ applied after the z-score (authors: 2).
        alpha: DKD's TCKD weight (authors with ``base="dkd"``: 1 x 9 = 9); unused for KD.
        beta: DKD's NCKD weight (authors with ``base="dkd"``: 8 x 9 = 72); unused for KD.
        warmup_epochs: DKD's linear warm-up (authors: 20); unused for KD.
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = True

    def __init__(
        self,
        base: str = "kd",
        temperature: float = 2.0,
        alpha: float = 9.0,
        beta: float = 72.0,
        warmup_epochs: int = 20,
    ) -> None:
        super().__init__()
        self.base = one_of("base", base, BASES)
        self.temperature = positive("temperature", temperature)
        self.alpha = alpha
        self.beta = beta
        self.warmup_epochs = non_negative("warmup_epochs", warmup_epochs)
        self.warmup_factor = 1.0

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """DKD's linear warm-up (1-based epochs as in mdistiller); KD has none."""
        if self.base == "dkd" and self.warmup_epochs > 0:
            self.warmup_factor = min((epoch + 1) / self.warmup_epochs, 1.0)

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logit_pair(student_logits, teacher_logits)
        z_student = standardize(student_logits)
        z_teacher = standardize(teacher_logits.detach())
        if self.base == "kd":
            return kd_loss(z_student, z_teacher, self.temperature)
        if target is None:
            raise ValueError("base='dkd' needs the target labels")
        class_indices(target, student_logits)
        loss = dkd_loss(z_student, z_teacher, target, self.alpha, self.beta, self.temperature)
        return self.warmup_factor * loss

    def extra_repr(self) -> str:
        if self.base == "kd":
            return f"base='kd', temperature={self.temperature}"
        return (
            f"base='dkd', temperature={self.temperature}, alpha={self.alpha}, "
            f"beta={self.beta}, warmup_epochs={self.warmup_epochs}"
        )
