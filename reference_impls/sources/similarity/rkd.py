r"""Relational KD: match the distances and angles that the teacher's embeddings form in a batch.

Citation: ``park2019relational`` (Park, Kim, Lu and Cho, CVPR 2019).
Authors' code: https://github.com/lenscloth/RKD (``metric/loss.py`` for metric
learning, ``run_distill_classification.py`` and ``metric/loss_classification.py``
for CIFAR-100). Also RepDistiller's ``distiller_zoo/RKD.py``.

Instead of matching each embedding, RKD matches relations between examples.
With embeddings $t_i$ (teacher) and $s_i$ (student) of a batch, the
distance-wise potential is the pairwise distance divided by its mean over the
$\mathcal{X}^2$ pairs of distinct examples,

$$
\psi_D(t_i, t_j) = \frac{\lVert t_i - t_j \rVert_2}{\mu},
\qquad \mu = \frac{1}{|\mathcal{X}^2|} \sum_{(i,j) \in \mathcal{X}^2} \lVert t_i - t_j \rVert_2,
$$

the angle-wise potential is the cosine of the angle at vertex $t_j$,

$$
\psi_A(t_i, t_j, t_k) = \left\langle \frac{t_i - t_j}{\lVert t_i - t_j \rVert_2},
  \frac{t_k - t_j}{\lVert t_k - t_j \rVert_2} \right\rangle,
$$

and both are matched with the Huber loss $\ell_\delta$ ($\delta = 1$, PyTorch's smooth L1):

$$
\mathcal{L}_{\mathrm{RKD}} = \lambda_D \operatorname*{mean}_{i,j} \ell_\delta\big(\psi_D(t_i,t_j), \psi_D(s_i,s_j)\big)
  + \lambda_A \operatorname*{mean}_{i,j,k} \ell_\delta\big(\psi_A(t_i,t_j,t_k), \psi_A(s_i,s_j,s_k)\big).
$$

Both potentials ignore the scale, rotation and translation of the embedding
space, so student and teacher embeddings may have different dimensions and no
connector is needed.

Defaults (the authors' CIFAR-100 script): $\lambda_D = 25$, $\lambda_A = 50$,
applied to the pooled penultimate embeddings after L2-normalising each one
(``F.normalize`` in ``run_distill_classification.py``). The paper's metric-learning
experiments use $\lambda_D = 1$, $\lambda_A = 2$; RepDistiller keeps 25 and 50
but does not normalise (``normalize_embeddings=False`` reproduces it).

As in the authors' code, the means run over all $B^2$ pairs and $B^3$ triplets,
degenerate ones included (their potential is 0 for both networks), and the
student's distances are normalised by the student's own mean distance.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import non_negative


def distance_potential(embeddings: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``[B, B]`` pairwise Euclidean distances divided by their mean over distinct pairs."""
    batch = embeddings.shape[0]
    squared_norms = embeddings.pow(2).sum(dim=1)
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, as the authors compute it
    squared = (
        squared_norms.unsqueeze(0) + squared_norms.unsqueeze(1) - 2 * embeddings @ embeddings.t()
    )
    off_diagonal = 1.0 - torch.eye(batch, device=embeddings.device, dtype=embeddings.dtype)
    # the clamp keeps sqrt's gradient finite on the diagonal, which the mask then zeroes
    distances = squared.clamp_min(eps).sqrt() * off_diagonal
    mean_distance = distances.sum() / (batch * (batch - 1))
    return distances / mean_distance


def angle_potential(embeddings: torch.Tensor) -> torch.Tensor:
    """``[B, B, B]`` cosines: entry ``[j, i, k]`` is the angle at vertex j between i and k."""
    directions = F.normalize(embeddings.unsqueeze(0) - embeddings.unsqueeze(1), p=2, dim=2)
    return directions @ directions.transpose(1, 2)


class RKDLoss(DistillationLoss):
    """Park et al.'s distance-wise plus angle-wise relational loss on ``[B, D]`` embeddings.

    Args:
        lambda_distance: weight $\\lambda_D$ of the distance term (authors' CIFAR-100: 25).
        lambda_angle: weight $\\lambda_A$ of the angle term (authors' CIFAR-100: 50).
        normalize_embeddings: L2-normalise each embedding first (authors' CIFAR-100 code).
    """

    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        lambda_distance: float = 25.0,
        lambda_angle: float = 50.0,
        normalize_embeddings: bool = True,
    ) -> None:
        super().__init__()
        self.lambda_distance = non_negative("lambda_distance", lambda_distance)
        self.lambda_angle = non_negative("lambda_angle", lambda_angle)
        self.normalize_embeddings = normalize_embeddings

    def forward(self, student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
        if student_emb.dim() != 2 or teacher_emb.dim() != 2:
            raise ValueError(
                f"expected [B, D] embeddings, got {tuple(student_emb.shape)} "
                f"and {tuple(teacher_emb.shape)}"
            )
        if student_emb.shape[0] != teacher_emb.shape[0] or student_emb.shape[0] < 2:
            raise ValueError(
                "RKD needs the same batch of at least 2 examples for student and teacher, "
                f"got {student_emb.shape[0]} and {teacher_emb.shape[0]}"
            )
        # distances and angles lose too much precision in bf16
        with torch.autocast(device_type=student_emb.device.type, enabled=False):
            student = at_least_float32(student_emb)
            teacher = at_least_float32(teacher_emb.detach())
            if self.normalize_embeddings:
                student, teacher = F.normalize(student, dim=1), F.normalize(teacher, dim=1)
            loss_distance = F.smooth_l1_loss(
                distance_potential(student), distance_potential(teacher)
            )
            loss_angle = F.smooth_l1_loss(angle_potential(student), angle_potential(teacher))
        return self.lambda_distance * loss_distance + self.lambda_angle * loss_angle

    def extra_repr(self) -> str:
        return (
            f"lambda_distance={self.lambda_distance}, lambda_angle={self.lambda_angle}, "
            f"normalize_embeddings={self.normalize_embeddings}"
        )
