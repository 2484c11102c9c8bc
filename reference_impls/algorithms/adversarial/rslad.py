r"""RSLAD: robust soft labels of the teacher in every term, for the attack as for the training.

Citation: ``zi2021revisiting`` (Zi, Zhao, Ma and Jiang, ICCV 2021).
Authors' code: https://github.com/zibojia/RSLAD (``rslad_loss.py``: ``rslad_inner_loss``;
the loss in ``resnet18_rslad_cifar10.py`` / ``mobilenet_v2_rslad_cifar10.py``).

Where ARD (``reference_impls.algorithms.adversarial.ard``) attacks the student's
cross-entropy on the hard labels and adds a natural cross-entropy, RSLAD replaces every
label by the robust teacher's soft label $p(T(x))$ on the clean input (temperature 1). The
attack maximises the KL divergence from those soft labels,
$\delta^\star \approx \arg\max_{\lVert\delta\rVert_\infty \le \epsilon}
\mathrm{KL}\big(p(T(x)) \,\|\, p(S(x + \delta))\big)$
(:func:`~reference_impls.common.attacks.pgd` from $x + 0.001\,\mathcal{N}(0, I)$), and the
student minimises

$$
\mathcal{L}_{\mathrm{RSLAD}} = \kappa\,\frac{1}{B}\sum_{b=1}^{B}\Big[
  \tfrac{5}{6}\, \mathrm{KL}\big(p(T(x_b)) \,\|\, p(S(x_b + \delta^\star_b))\big)
  + \tfrac{1}{6}\, \mathrm{KL}\big(p(T(x_b)) \,\|\, p(S(x_b))\big)\Big].
$$

Defaults, from the authors' CIFAR-10 scripts (the paper's main setting):

* weights $5/6$ (adversarial) and $1/6$ (natural), ``loss = 5/6.0*kl_Loss1 + 1/6.0*kl_Loss2``;
  no temperature; no cross-entropy on the labels (the labels are not used at all).
* The attack of ``rslad_inner_loss``, called with ``step_size=2/255.0``,
  ``epsilon=8/255.0``, ``perturb_steps=10``: start $x + 0.001\,\mathcal{N}(0, I)$ (pixel
  units), KL summed over the batch (only its sign matters), projection onto the ball and
  $[0, 1]$. On standardised inputs pass ``scale``: the radii stay in pixel units.
* $\kappa = 1/10$ (``kl_scale``), folded in from the authors' reduction: their ``kl_loss``
  is averaged with ``torch.mean`` over the $B \times C$ entries, i.e. the batch-mean KL
  divided by CIFAR-10's 10 classes; for CIFAR-100 they multiply that mean by 10 "to keep
  consistent with CIFAR-10" (README), which is again the batch-mean KL divided by 10.
* The student is attacked in eval mode (``model.eval()`` in ``rslad_inner_loss``) and put
  back in the mode it was in (the authors: ``model.train()``) for the passes on the
  perturbed and then the clean batch, in that order. The teacher is frozen, in eval mode.

Deviation: the authors' ``kl_loss(a, b) = -a*b + torch.log(b+1e-5)*b`` puts $10^{-5}$ inside
the logarithm of the teacher's probabilities; we compute the exact KL with the shared
``softened_kl`` (log space). The gradient is the same; the value differs by
$\kappa\sum_i p_i \log(1 + 10^{-5}/p_i) \le \kappa\, C \cdot 10^{-5}$ per sample. Measured against
their ``rslad_inner_loss`` and loss (commit ``c40e04f``) on one step of a CIFAR-shaped batch
(64 x 3 x 32 x 32, ``student_cnn``/``teacher_cnn``, 10 classes, seed-matched start): the
values differ by $1.0 \cdot 10^{-5}$ (that offset; with it added back, $3 \cdot 10^{-15}$ in
float64 and 0 in float32), parameter gradients by $3 \cdot 10^{-14}$ (float64) and
$2 \cdot 10^{-9}$ (float32), batch-norm running statistics identical. Their CIFAR-100 scripts take
``torch.log(F.softmax(...))`` of the student instead of ``log_softmax``: the same in exact
arithmetic. The start noise is drawn with ``torch.randn`` in the default dtype, as theirs.
"""

from __future__ import annotations

import torch
from torch import nn

from reference_impls.common.attacks import Objective, PixelScale, pgd
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import kl_divergence, softened_kl, softened_log_probs
from reference_impls.common.training import freeze, logits_of
from reference_impls.common.validation import (
    at_least,
    labelled_batch,
    logit_pair,
    loss_weights,
    non_negative,
    positive,
)


def soft_label_objective(teacher_logits: torch.Tensor) -> Objective:
    """$\\sum_b \\mathrm{KL}(p(T(x_b)) \\| p(S(x'_b)))$: how far the student strays from the soft labels."""
    teacher_log_probs = softened_log_probs(teacher_logits.detach())

    def objective(student_logits: torch.Tensor) -> torch.Tensor:
        logit_pair(student_logits, teacher_logits)
        return kl_divergence(softened_log_probs(student_logits), teacher_log_probs, "sum")

    return objective


class RSLAD(DistillationProcedure):
    """A student trained on the robust teacher's soft labels, on natural and PGD inputs.

    Args:
        student: the model being trained (returns logits or a ``ModelOutput``).
        teacher: a trained (ideally adversarially robust) model; frozen here.
        adversarial_weight, natural_weight: the weights of the two KL terms (5/6, 1/6).
        kl_scale: $\\kappa$, the authors' mean over CIFAR-10's classes (1/10).
        epsilon, step_size, steps: the PGD attack, radii in pixel units (8/255, 2/255, 10).
        start_std: the attack's Gaussian start, pixel units (0.001).
        scale: how the inputs relate to $[0, 1]$ pixels (default: they are pixels).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        adversarial_weight: float = 5 / 6,
        natural_weight: float = 1 / 6,
        kl_scale: float = 0.1,
        epsilon: float = 8 / 255,
        step_size: float = 2 / 255,
        steps: int = 10,
        start_std: float = 0.001,
        scale: PixelScale = PixelScale(),
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = freeze(teacher)
        loss_weights(adversarial_weight=adversarial_weight, natural_weight=natural_weight)
        self.adversarial_weight, self.natural_weight = adversarial_weight, natural_weight
        self.kl_scale = positive("kl_scale", kl_scale)
        self.epsilon = non_negative("epsilon", epsilon)
        self.step_size = non_negative("step_size", step_size)
        self.steps = at_least("steps", steps, 0)
        self.start_std = non_negative("start_std", start_std)
        self.scale = scale

    def train(self, mode: bool = True) -> RSLAD:
        super().train(mode)
        self.teacher.eval()  # the teacher's batch-norm statistics never move
        return self

    def perturb(self, x: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """PGD examples that raise the KL from the teacher's soft labels; student in eval mode."""
        was_training = self.student.training
        self.student.eval()
        try:
            return pgd(
                self.student,
                x,
                soft_label_objective(teacher_logits),
                epsilon=self.epsilon,
                step_size=self.step_size,
                steps=self.steps,
                start="normal",
                start_std=self.start_std,
                scale=self.scale,
            )
        finally:
            self.student.train(was_training)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        labelled_batch(x, y)  # the labels are not used: checked so a wrong batch still fails
        with torch.no_grad():
            teacher_logits = logits_of(self.teacher(x))
        adversarial = self.perturb(x, teacher_logits)
        adversarial_logits = logits_of(self.student(adversarial))
        natural_logits = logits_of(self.student(x))
        logit_pair(adversarial_logits, teacher_logits)
        kl_adversarial = self.kl_scale * softened_kl(adversarial_logits, teacher_logits)
        kl_natural = self.kl_scale * softened_kl(natural_logits, teacher_logits)
        loss = self.adversarial_weight * kl_adversarial + self.natural_weight * kl_natural
        return {
            "loss": loss,
            "kl_adversarial": kl_adversarial.detach(),
            "kl_natural": kl_natural.detach(),
        }

    def extra_repr(self) -> str:
        return (
            f"adversarial_weight={self.adversarial_weight:.4g}, "
            f"natural_weight={self.natural_weight:.4g}, kl_scale={self.kl_scale}, "
            f"epsilon={self.epsilon:.4g}, step_size={self.step_size:.4g}, steps={self.steps}, "
            f"start_std={self.start_std}, scale={self.scale}"
        )
