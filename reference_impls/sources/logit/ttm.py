r"""Transformed teacher matching: a power-transformed teacher, a student without temperature.

Citation: ``zheng2024knowledge`` (Zheng and Yang, ICLR 2024).
Authors' code: https://github.com/zkxufo/TTM (RepDistiller-based; classes ``TTM`` and
``WTTM``; README example: ``--distill ttm --ttm_l 0.1 -r 1 -b 45 -a 0``).

KD applies the temperature to both models. The paper shows that the
temperature on the student acts as a regulariser that is better dropped: keep
the teacher's transform only. With $p^t = \mathrm{softmax}(z^t)$ and exponent
$\gamma = 1/T$, the transformed teacher is the power-normalised distribution

$$
\tilde p^{t}_i = \frac{(p^t_i)^{\gamma}}{\sum_j (p^t_j)^{\gamma}}
             = \mathrm{softmax}(z^t / T)_i ,
$$

and TTM matches the *untempered* student to it:

$$
\mathcal{L}_{\mathrm{TTM}} = \frac{1}{B}\sum_b \mathrm{KL}\!\left(\tilde p^{t}_b \,\middle\|\, p^{s}_b\right).
$$

Weighted TTM (WTTM) weights each sample by the normaliser
$U_\gamma(p^t) = \sum_j (p^t_j)^{\gamma}$, which is large when the teacher is
uncertain (it equals $C^{1-\gamma}$ for a uniform teacher over $C$ classes and
1 for a one-hot teacher), so ambiguous samples carry more weight:

$$
\mathcal{L}_{\mathrm{WTTM}} = \frac{1}{B}\sum_b U_\gamma(p^t_b)\,
  \mathrm{KL}\!\left(\tilde p^{t}_b \,\middle\|\, p^{s}_b\right).
$$

There is no $T^2$ factor: the student's logits are not divided by anything.

Defaults (authors' README, VGG13 → VGG8 on CIFAR-100): $\gamma = 0.1$, total loss
$1\cdot\mathrm{CE} + 45\cdot\mathcal{L}_{\mathrm{TTM}}$ (``OfflineDistiller(...,
ce_weight=1.0, kd_weight=45.0)``). The authors tune $\gamma$ and the weight per
teacher-student pair (their WTTM example uses $\gamma = 0.2$).

Deviation: the authors raise ``softmax`` to the power $\gamma$ and renormalise;
we compute $\log\tilde p^t = \mathrm{log\_softmax}(\gamma z^t)$ (the same
distribution: $\gamma \log p^t$ and $\gamma z^t$ differ by a per-row constant) and
$\log U_\gamma = \mathrm{logsumexp}(\gamma z^t) - \gamma\,\mathrm{logsumexp}(z^t)$
(only for WTTM) in at least float32, which gives the same values without underflow
of $(p^t_i)^\gamma$ for tiny $p^t_i$, in one pass over the classes.
The KL is the shared ``reference_impls.common.losses.kl_divergence``.

On small models: the weight of 45 is too strong at our learning rate. In the logit
notebook's set-up (``student_cnn`` on 100 labelled digits, 15 epochs, seeds 0, 1 and 2) a
scratch run with weight 45 measured 0.114, 0.272 and 0.648 test accuracy (0.344 ± 0.224)
against 0.886 ± 0.011 for cross-entropy alone; the notebook records a trial run (30 epochs,
batches of 32) that ended at 10% and 21%. The notebook therefore uses
``OfflineDistiller(..., ce_weight=1.0, kd_weight=10.0)`` with ``TTMLoss(gamma=0.1)``, which it
measured at 0.915 ± 0.009.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32, kl_divergence, softened_log_probs
from reference_impls.common.validation import logit_pair, positive


def transformed_teacher(teacher_logits: torch.Tensor, gamma: float) -> torch.Tensor:
    r"""Log of the power-transformed teacher distribution $p^\gamma / U_\gamma$.

    $\gamma \log \mathrm{softmax}(z) = \gamma z - \gamma \log\sum_j e^{z_j}$ differs from
    $\gamma z$ by a per-row constant, which the normalisation cancels: the transformed
    distribution is $\mathrm{softmax}(\gamma z)$, one pass over the classes (the
    authors' ``p_t.pow(gamma)`` then normalised, in log space).
    """
    return F.log_softmax(gamma * at_least_float32(teacher_logits.detach()), dim=1)


def log_normaliser(teacher_logits: torch.Tensor, gamma: float) -> torch.Tensor:
    r"""$\log U_\gamma = \log \sum_i (p^t_i)^\gamma$, per sample (WTTM's weight)."""
    teacher = at_least_float32(teacher_logits.detach())
    return (gamma * teacher).logsumexp(dim=1) - gamma * teacher.logsumexp(dim=1)


def ttm_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    gamma: float,
    weighted: bool = False,
) -> torch.Tensor:
    """KL(transformed teacher || student) per sample, optionally weighted by $U_\\gamma$; batch mean."""
    log_p_teacher = transformed_teacher(teacher_logits, gamma)
    kl = kl_divergence(softened_log_probs(student_logits), log_p_teacher, reduction="none")
    if weighted:
        kl = log_normaliser(teacher_logits, gamma).exp() * kl
    return kl.mean()


class TTMLoss(DistillationLoss):
    """TTM, or WTTM with ``weighted=True``.

    Args:
        gamma: exponent of the power transform, $\\gamma = 1/T$ (authors: 0.1).
        weighted: weight each sample by $U_\\gamma(p^t)$ (WTTM).
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = False

    def __init__(self, gamma: float = 0.1, weighted: bool = False) -> None:
        super().__init__()
        self.gamma = positive("gamma", gamma)
        self.weighted = weighted

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        logit_pair(student_logits, teacher_logits)
        return ttm_loss(student_logits, teacher_logits, self.gamma, self.weighted)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, weighted={self.weighted}"
