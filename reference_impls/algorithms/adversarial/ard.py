r"""Adversarially robust distillation: match the clean teacher on the student's own PGD examples.

Citation: ``goldblum2020adversarially`` (Goldblum, Fowl, Feizi and Goldstein, AAAI 2020).
Authors' code: https://github.com/goldblum/AdversariallyRobustDistillation (``main.py``:
class ``AttackPGD`` and the loss in ``train``), CIFAR-10 by default (its ``--dataset``).

ARD is adversarial training with the teacher in place of the labels. For each batch, PGD
perturbs the inputs to raise the *student's* cross-entropy on the labels,
$\delta^\star \approx \arg\max_{\lVert\delta\rVert_\infty \le \epsilon}
\mathrm{CE}\big(S(x + \delta), y\big)$ (:func:`~reference_impls.common.attacks.pgd`, uniform
start in the ball, $K$ signed steps of size $\alpha$, projection onto the ball and the pixel
range), and the student's softened prediction on the perturbed input is matched to the
teacher's on the *clean* input, mixed with the student's natural cross-entropy:

$$
\mathcal{L}_{\mathrm{ARD}} = \alpha\, \tau^{2}\, \kappa\,
  \frac{1}{B}\sum_{b=1}^{B} \mathrm{KL}\!\left(p^{\tau}\big(T(x_b)\big) \,\middle\|\,
  p^{\tau}\big(S(x_b + \delta^\star_b)\big)\right)
  + (1 - \alpha)\, \mathrm{CE}\big(S(x), y\big).
$$

Defaults, from the authors' ``main.py`` (CIFAR-10, their default and the paper's main table):

* $\tau = 30$ (``--temp``) and $\alpha = 1$ (``--alpha``): at the defaults the student never
  sees the labels except through the attack.
* The attack's ``config``: $\epsilon = 8/255$, $\alpha_{\mathrm{PGD}} = 2/255$, 10 steps,
  uniform random start, cross-entropy summed over the batch (``size_average=False``; only
  its sign matters), pixels in $[0, 1]$. On standardised inputs pass ``scale`` (a
  :class:`~reference_impls.common.attacks.PixelScale`): the radii stay in pixel units.
* $\kappa = 1/10$ (``kl_scale``), folded in from the authors' ``nn.KLDivLoss()``: its
  default reduction averages over the $B \times C$ entries, i.e. the batch-mean KL divided by
  CIFAR-10's 10 classes. Their CIFAR-100 runs divide by 100 instead (pass
  ``kl_scale=0.01`` to reproduce them); we keep the factor fixed rather than tied to the
  class count, so the loss's scale does not change with the dataset behind one's back.
* The student stays in the mode it is in for the attack, as in the authors' ``train``
  (``net.train()`` for the whole loop): batch norm uses the statistics of the perturbed
  batch at every attack step, and its running statistics are updated by the 10 attack
  passes, the pass on the final perturbed batch and the clean pass, in that order. The
  clean pass is made even at $\alpha = 1$, as in their code (its cross-entropy is logged
  under ``"ce"``). The teacher is frozen and in eval mode.

Deviations: none in the arithmetic. Measured against the authors' ``AttackPGD`` and loss
(commit ``779ade3``) on one step of a CIFAR-shaped batch (64 x 3 x 32 x 32, a ``student_cnn``
and ``teacher_cnn`` with 10 classes, seed-matched starts, $\alpha \in \{1, 0.9\}$): loss
within $4 \cdot 10^{-15}$ (float64) and $2 \cdot 10^{-7}$ (float32), parameter gradients within
$2 \cdot 10^{-17}$ and $8 \cdot 10^{-9}$, batch-norm running statistics identical. The KL is the shared
``softened_kl`` (log space, teacher detached) instead of ``KLDivLoss`` on
``log_softmax``/``softmax``; the uniform start is drawn with ``torch.rand`` (the same numbers
as their ``uniform_`` under one seed) so that a seed fixes it on every device; with
``steps=0`` the start is projected into the pixel range, which their loop only does after
a step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.attacks import PixelScale, cross_entropy_objective, pgd
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32, softened_kl
from reference_impls.common.training import freeze, logits_of
from reference_impls.common.validation import (
    at_least,
    in_unit_interval,
    labelled_batch,
    logit_pair,
    non_negative,
    positive,
)


class ARD(DistillationProcedure):
    """A student distilled from a frozen teacher on PGD examples crafted against the student.

    Args:
        student: the model being trained (returns logits or a ``ModelOutput``).
        teacher: a trained (ideally adversarially robust) model; frozen here.
        temperature: $\\tau$ of the KL term (authors: 30).
        alpha: weight of the adversarial KL term; $1 - \\alpha$ weighs the natural
            cross-entropy (authors: 1).
        kl_scale: $\\kappa$, the authors' ``KLDivLoss`` mean over CIFAR-10's classes (1/10).
        epsilon, step_size, steps: the PGD attack, radii in pixel units (8/255, 2/255, 10).
        scale: how the inputs relate to $[0, 1]$ pixels (default: they are pixels).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        temperature: float = 30.0,
        alpha: float = 1.0,
        kl_scale: float = 0.1,
        epsilon: float = 8 / 255,
        step_size: float = 2 / 255,
        steps: int = 10,
        scale: PixelScale = PixelScale(),
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = freeze(teacher)
        self.temperature = positive("temperature", temperature)
        self.alpha = in_unit_interval("alpha", alpha)
        self.kl_scale = positive("kl_scale", kl_scale)
        self.epsilon = non_negative("epsilon", epsilon)
        self.step_size = non_negative("step_size", step_size)
        self.steps = at_least("steps", steps, 0)
        self.scale = scale

    def train(self, mode: bool = True) -> ARD:
        super().train(mode)
        self.teacher.eval()  # the teacher's batch-norm statistics never move
        return self

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """PGD examples that raise the student's cross-entropy, in the student's current mode."""
        return pgd(
            self.student,
            x,
            cross_entropy_objective(y),
            epsilon=self.epsilon,
            step_size=self.step_size,
            steps=self.steps,
            start="uniform",
            scale=self.scale,
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        labelled_batch(x, y)
        adversarial = self.perturb(x, y)
        adversarial_logits = logits_of(self.student(adversarial))
        with torch.no_grad():
            teacher_logits = logits_of(self.teacher(x))
        natural_logits = logits_of(self.student(x))
        logit_pair(adversarial_logits, teacher_logits)
        kl = self.kl_scale * softened_kl(adversarial_logits, teacher_logits, self.temperature)
        ce = F.cross_entropy(at_least_float32(natural_logits), y)
        loss = self.alpha * kl + (1.0 - self.alpha) * ce
        return {"loss": loss, "kl": kl.detach(), "ce": ce.detach()}

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, alpha={self.alpha}, kl_scale={self.kl_scale}, "
            f"epsilon={self.epsilon:.4g}, step_size={self.step_size:.4g}, steps={self.steps}, "
            f"scale={self.scale}"
        )
