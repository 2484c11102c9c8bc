r"""Probabilistic knowledge transfer: match the teacher's neighbourhood probabilities in a batch.

Citation: ``passalis2018learning`` (Passalis and Tefas, ECCV 2018).
Authors' code: https://github.com/passalis/probabilistic_kt (``nn/pkt.py``); the
same function is RepDistiller's ``distiller_zoo/PKT.py``
(https://github.com/HobbitLong/RepDistiller), used for the CIFAR-100 benchmarks.

PKT models each network's embedding space by the conditional probability that
example $i$ picks example $j$ as its neighbour, estimated with a cosine-similarity
kernel that needs no bandwidth:

$$
K(a, b) = \frac{1}{2}\left(\frac{a^\top b}{\lVert a \rVert_2 \lVert b \rVert_2} + 1\right) \in [0, 1],
\qquad
p_{j|i} = \frac{K(t_i, t_j)}{\sum_{k} K(t_i, t_k)},
\quad
q_{j|i} = \frac{K(s_i, s_j)}{\sum_{k} K(s_i, s_k)},
$$

and the student minimises the divergence from the teacher's probabilities:

$$
\mathcal{L}_{\mathrm{PKT}} = \frac{1}{B^2} \sum_{i=1}^{B} \sum_{j=1}^{B}
  p_{j|i} \log \frac{p_{j|i} + \epsilon}{q_{j|i} + \epsilon} .
$$

Only similarities are compared, so student and teacher embeddings may have
different widths (no connector). As in the authors' code, the sums include
$j = i$ (the paper's SNE-style definition leaves it out), the reduction is the mean over
all $B^2$ entries, and $\epsilon = 10^{-7}$. RepDistiller's CIFAR-100 weight is
30000 with no KD term (``OfflineDistiller(..., ce_weight=1.0, kd_weight=30000.0)``).

Deviation: the authors normalise with ``x / (||x|| + eps)`` and then zero any
NaN in place; here each embedding is divided by ``max(||x||, eps)``
(``F.normalize``), which differs by a relative $10^{-7}$ for ordinary embeddings
and cannot produce a NaN.

On small models: at RepDistiller's weight of 30000 the term dominates. The similarity
notebook (``student_cnn`` on 100 labelled digits, 16 epochs, batches of 25, seeds 0 and 1)
keeps it, ``OfflineDistiller(..., kd_weight=30000.0)`` with ``PKTLoss()``, and measured
0.847 ± 0.006 test accuracy against 0.886 ± 0.016 for cross-entropy alone; it records that
in a trial run the weighted term's first-epoch mean was about 11 against a cross-entropy of
2.4 to 3.4. In a scratch run of the similarity notebook's set-up (``student_cnn`` on 100 labelled digits, 16 epochs, batches of 25, seeds 0 and 1, only the loss changed), ``kd_weight=3000.0`` measured 0.905 ± 0.014.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import positive


def neighbour_probabilities(embeddings: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``[B, B]`` row-stochastic matrix of cosine-kernel neighbour probabilities."""
    unit = F.normalize(embeddings, p=2, dim=1, eps=eps)
    kernel = (unit @ unit.t() + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)


class PKTLoss(DistillationLoss):
    """Passalis and Tefas's probabilistic knowledge transfer on ``[B, D]`` embeddings.

    Args:
        eps: the small constant of the authors' code, in the normalisation and the log.
    """

    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = False

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = positive("eps", eps)

    def forward(self, student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
        if student_emb.dim() != 2 or teacher_emb.dim() != 2:
            raise ValueError(
                f"expected [B, D] embeddings, got {tuple(student_emb.shape)} "
                f"and {tuple(teacher_emb.shape)}"
            )
        if student_emb.shape[0] != teacher_emb.shape[0]:
            raise ValueError(
                f"batch sizes differ: {student_emb.shape[0]} and {teacher_emb.shape[0]}"
            )
        # log-ratios of small probabilities: keep them in float32 under autocast
        with torch.autocast(device_type=student_emb.device.type, enabled=False):
            q = neighbour_probabilities(at_least_float32(student_emb), self.eps)
            p = neighbour_probabilities(at_least_float32(teacher_emb.detach()), self.eps)
            return (p * torch.log((p + self.eps) / (q + self.eps))).mean()

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
