r"""DIST: match the relations of the teacher's predictions, not their exact values.

Citation: ``huang2022knowledge`` (Huang, You, Wang, Qian and Xu, NeurIPS 2022).
Authors' code: https://github.com/hunto/DIST_KD, whose classification code
(``classification/lib/models/losses/dist_kd.py``, also in
https://github.com/hunto/image_classification_sota) defines the loss.

With a stronger teacher, matching its probabilities exactly (KL) is too strict;
DIST asks only that the student's predictions be *linearly correlated* with the
teacher's. With $Y^s, Y^t \in \mathbb{R}^{B \times C}$ the probabilities at
temperature $\tau$, $Y = \mathrm{softmax}(Z / \tau)$, and the Pearson correlation
$\rho_p(u, v) = \frac{\langle u - \bar{u}, v - \bar{v} \rangle}{\lVert u - \bar{u} \rVert_2 \lVert v - \bar{v} \rVert_2}$,

$$
\mathcal{L}_{\mathrm{inter}} = 1 - \frac{1}{B} \sum_{i=1}^{B} \rho_p\big(Y^s_{i,:}, Y^t_{i,:}\big),
\qquad
\mathcal{L}_{\mathrm{intra}} = 1 - \frac{1}{C} \sum_{j=1}^{C} \rho_p\big(Y^s_{:,j}, Y^t_{:,j}\big),
$$

the inter-class relation (each example's ranking of the classes) and the
intra-class relation (each class's ranking of the examples), and

$$
\mathcal{L}_{\mathrm{DIST}} = \tau^2 \left(\beta\, \mathcal{L}_{\mathrm{inter}} + \gamma\, \mathcal{L}_{\mathrm{intra}}\right).
$$

Since $\rho_p$ is invariant to positive affine maps, the loss is zero whenever
$Y^s = a Y^t + b$ with $a > 0$, e.g. a student that is a less confident copy of
the teacher.

Defaults: $\tau = 4$ and $\beta = \gamma = 2$, the paper's CIFAR-100 setting
(the authors' loss class defaults to $\beta = \gamma = \tau = 1$, their ImageNet
setting); the student trains on $\mathrm{CE} + \mathcal{L}_{\mathrm{DIST}}$. The
Pearson correlation is the cosine similarity of centred vectors with the
authors' $10^{-8}$ added to the denominator.

On small models: at the CIFAR-100 setting ($\tau^2 \beta = \tau^2 \gamma = 32$) the term
dominates. The similarity notebook (``student_cnn`` on 100 labelled digits, 16 epochs,
batches of 25, seeds 0 and 1) keeps it, ``DISTLoss()``, and measured 0.846 ± 0.022 test
accuracy against 0.886 ± 0.016 for cross-entropy alone; it records that in a trial run the
DIST term's first-epoch mean was about 56 against a cross-entropy of 2.4 to 3.4. In a scratch run of the similarity notebook's set-up (``student_cnn`` on 100 labelled digits, 16 epochs, batches of 25, seeds 0 and 1, only the loss changed),
the authors' ImageNet setting ``DISTLoss(beta=1.0, gamma=1.0, temperature=1.0)`` measured
0.899 ± 0.010.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import logit_pair, non_negative, positive


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def inter_class_relation(p_student: torch.Tensor, p_teacher: torch.Tensor) -> torch.Tensor:
    """$1 - $ mean Pearson correlation over examples (rows of ``[B, C]``)."""
    return 1.0 - pearson_rows(p_student, p_teacher).mean()


def intra_class_relation(p_student: torch.Tensor, p_teacher: torch.Tensor) -> torch.Tensor:
    """$1 - $ mean Pearson correlation over classes (columns of ``[B, C]``)."""
    return inter_class_relation(p_student.t(), p_teacher.t())


class DISTLoss(DistillationLoss):
    """Huang et al.'s inter- plus intra-class relation loss on logits.

    Args:
        beta: weight $\\beta$ of the inter-class term (CIFAR-100: 2).
        gamma: weight $\\gamma$ of the intra-class term (CIFAR-100: 2).
        temperature: softening temperature $\\tau$ (CIFAR-100: 4).
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = False

    def __init__(self, beta: float = 2.0, gamma: float = 2.0, temperature: float = 4.0) -> None:
        super().__init__()
        self.beta = non_negative("beta", beta)
        self.gamma = non_negative("gamma", gamma)
        self.temperature = positive("temperature", temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        logit_pair(student_logits, teacher_logits)
        # centred probabilities are small differences: at least float32 under autocast
        with torch.autocast(device_type=student_logits.device.type, enabled=False):
            p_student = (at_least_float32(student_logits) / self.temperature).softmax(dim=1)
            p_teacher = (at_least_float32(teacher_logits.detach()) / self.temperature).softmax(
                dim=1
            )
            inter = inter_class_relation(p_student, p_teacher)
            intra = intra_class_relation(p_student, p_teacher)
        return self.temperature**2 * (self.beta * inter + self.gamma * intra)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, gamma={self.gamma}, temperature={self.temperature}"
