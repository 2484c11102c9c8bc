r"""Correlation congruence: match the kernel correlations between the examples of a batch.

Citation: ``peng2019correlation`` (Peng et al., ICCV 2019).
Authors' code: none public (RepDistiller's ``distiller_zoo/CC.py`` holds a
simplified version "emailed by the original author"). Defaults follow
torchdistill's ``CCKDLoss`` with ``Linear4CCKD`` connectors
(https://github.com/yoshitomo-matsubara/torchdistill) and the Knowledge-Distillation-Zoo
port (https://github.com/AberHu/Knowledge-Distillation-Zoo), the two that
implement the paper's Gaussian-kernel correlation.

Pooled embeddings of student and teacher are projected by linear connectors to
a common dimension and L2-normalised, $f_i = \phi(x_i) / \lVert \phi(x_i) \rVert$.
The correlation between examples is a Gaussian RBF kernel, computed through
its $P$-order Taylor expansion, which for unit vectors is exact in the limit
$P \to \infty$ since $\lVert f_i - f_j \rVert^2 = 2 - 2 f_i^\top f_j$:

$$
k(f_i, f_j) = e^{-\gamma \lVert f_i - f_j \rVert^2}
  \approx \sum_{p=0}^{P} e^{-2\gamma} \frac{(2\gamma)^p}{p!} \left(f_i^\top f_j\right)^p .
$$

With $\psi(F) = [k(f_i, f_j)]_{i,j} \in \mathbb{R}^{n \times n}$ for a batch of $n$,
the correlation congruence loss is

$$
\mathcal{L}_{\mathrm{CC}} = \frac{1}{n^2} \big\lVert \psi(F^t) - \psi(F^s) \big\rVert_F^2 .
$$

Defaults: $\gamma = 0.4$, $P = 2$ (torchdistill's and the Zoo's settings), a
128-dimensional embedding (RepDistiller's and torchdistill's ``feat_dim``). Both
connectors are trained with the student, as in RepDistiller and torchdistill
(the teacher's network stays frozen; only its connector learns). The paper
trains $\alpha\,\mathrm{CE} + (1-\alpha)\,\mathcal{L}_{\mathrm{KD}} + \beta\,\mathcal{L}_{\mathrm{CC}}$;
this module is the $\mathcal{L}_{\mathrm{CC}}$ term. RepDistiller's CIFAR-100
weight is $\beta = 0.02$ (``OfflineDistiller(..., kd_weight=0.02)``), torchdistill's
ImageNet one 0.003.

Deliberate deviations:

- the embeddings are L2-normalised before the kernel (as in the Zoo port),
  because the Taylor form above equals the Gaussian kernel only for unit
  vectors; torchdistill feeds the raw connector outputs;
- the squared Frobenius norm of the paper (the Zoo's ``mse_loss``); torchdistill
  divides the unsquared norm by $n^2$.

On small models: the similarity notebook (``student_cnn`` on 100 labelled digits, 16 epochs,
batches of 25, seeds 0 and 1) uses RepDistiller's weight,
``OfflineDistiller(..., kd_weight=0.02)`` with ``CCLoss(student_channels[-1],
teacher_channels[-1])``, and measured 0.883 ± 0.008 test accuracy against 0.886 ± 0.016 for
cross-entropy alone: no gain and no loss. The correlations are taken within a batch, and 25
digits of 10 classes give each class two or three members per batch, against batches of 64
or more in the authors' settings; we did not tune the weight.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.connectors import same_dtype
from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import non_negative, positive


def correlation_matrix(embeddings: torch.Tensor, gamma: float, p_order: int) -> torch.Tensor:
    """``[n, n]`` Taylor-expanded Gaussian-RBF correlations of L2-normalised embeddings."""
    unit = F.normalize(embeddings, p=2, dim=1)
    cosine = unit @ unit.t()
    correlation = torch.zeros_like(cosine)
    for p in range(p_order + 1):
        coefficient = math.exp(-2.0 * gamma) * (2.0 * gamma) ** p / math.factorial(p)
        correlation = correlation + coefficient * cosine.pow(p)
    return correlation


class CCLoss(DistillationLoss):
    """Peng et al.'s correlation congruence on ``[B, D]`` embeddings, through linear connectors.

    Args:
        student_dim: width of the student's embedding.
        teacher_dim: width of the teacher's embedding.
        embed_dim: width both are projected to (RepDistiller / torchdistill: 128).
        gamma: RBF kernel parameter $\\gamma$ (torchdistill: 0.4).
        p_order: order $P$ of the Taylor expansion (torchdistill: 2).
    """

    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        embed_dim: int = 128,
        gamma: float = 0.4,
        p_order: int = 2,
    ) -> None:
        super().__init__()
        if min(student_dim, teacher_dim, embed_dim) < 1:
            raise ValueError(
                f"dimensions must be positive, got student_dim={student_dim}, "
                f"teacher_dim={teacher_dim}, embed_dim={embed_dim}"
            )
        self.gamma = positive("gamma", gamma)
        self.p_order = non_negative("p_order", p_order)
        self.student_connector = nn.Linear(student_dim, embed_dim)
        self.teacher_connector = nn.Linear(teacher_dim, embed_dim)

    def forward(self, student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
        if student_emb.shape[0] != teacher_emb.shape[0]:
            raise ValueError(
                f"batch sizes differ: {student_emb.shape[0]} and {teacher_emb.shape[0]}"
            )
        owner = type(self).__qualname__
        same_dtype(owner, self.student_connector, student_emb, "student embeddings")
        same_dtype(owner, self.teacher_connector, teacher_emb, "teacher embeddings")
        student = self.student_connector(student_emb)
        # the teacher's network is frozen, but its connector learns (RepDistiller, torchdistill)
        teacher = self.teacher_connector(teacher_emb.detach())
        with torch.autocast(device_type=student.device.type, enabled=False):
            difference = correlation_matrix(
                at_least_float32(student), self.gamma, self.p_order
            ) - correlation_matrix(at_least_float32(teacher), self.gamma, self.p_order)
            return difference.pow(2).mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, p_order={self.p_order}"
