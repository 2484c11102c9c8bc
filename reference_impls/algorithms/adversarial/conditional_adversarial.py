r"""Knowledge distillation with a conditional adversarial network: a discriminator on logits.

Citation: ``xu2017training`` (Xu, Hsu and Huang, arXiv 2017; "Training shallow and thin
networks for acceleration via knowledge distillation with conditional adversarial
networks"). Authors' code: none released, so this follows the paper.

Instead of fixing the distance between the student's and the teacher's outputs (KL,
L2), the distance is *learned*: a discriminator $D$ is trained to tell the teacher's
logits $t(x)$ ("real") from the student's $s(x)$ ("fake"), and the student, playing the
generator of a GAN whose input is the image, learns to make its logits
indistinguishable from the teacher's. The discriminator is *conditional*: it sees the
class label $y$ with the logits, so it judges whether a logit vector is a plausible
teacher output *for that class* (a conditional GAN, Mirza and Osindero 2014):

$$
\max_D \;\mathcal{L}_{D} = \mathbb{E}_x\big[\log D(t(x) \mid y)\big]
  + \mathbb{E}_x\big[\log\big(1 - D(s(x) \mid y)\big)\big],
$$
$$
\min_s \;\mathcal{L}_{s} = \lambda_{adv}\,\mathbb{E}_x\big[-\log D(s(x) \mid y)\big]
  + \lambda_{1}\,\big\lVert s(x) - t(x) \big\rVert_1 + \lambda_{ce}\,\mathrm{CE}\big(s(x), y\big),
$$

with the non-saturating generator loss $-\log D(s)$ of GAN practice, an L1 term that
anchors the logits to the teacher's (as in pix2pix's conditional adversarial
networks, which the method takes its loss from) and the usual cross-entropy on labels.

$D$ is a multilayer perceptron on the concatenation of the logits and the label's
one-hot code (hidden widths ``hidden``, LeakyReLU(0.2)). :meth:`forward` returns both
players' losses summed: the discriminator's on detached student logits, the student's
with $D$'s parameters frozen for that forward, so one backward gives each player the
gradient of its own objective; :meth:`configure_optimizers` gives the student the
training loop's SGD and the discriminator Adam (betas 0.5, 0.999), as GANs are trained.

**Flagged for review.** Without released code, the conditioning on the label, the L1
weight, the non-saturating form, the discriminator's widths and the optimiser are our
reading of the paper's description, not settings checked against the authors; the
defaults ($\lambda_{adv} = \lambda_1 = \lambda_{ce} = 1$) are ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.algorithms.adversarial.data_free import parameters_frozen
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import freeze, logits_of
from reference_impls.common.validation import (
    at_least,
    class_indices,
    logit_pair,
    loss_weights,
    positive,
)


class LogitDiscriminator(nn.Module):
    """$D(z \\mid y)$: an MLP on logits concatenated with the label's one-hot code; one logit out."""

    def __init__(self, num_classes: int, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.num_classes = at_least("num_classes", num_classes, 2)
        layers: list[nn.Module] = []
        previous = 2 * num_classes
        for width in hidden:
            layers += [nn.Linear(previous, at_least("hidden width", width, 1)), nn.LeakyReLU(0.2)]
            previous = width
        layers.append(nn.Linear(previous, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        condition = F.one_hot(target, self.num_classes).to(logits.dtype)
        return self.net(torch.cat([logits, condition], dim=1)).squeeze(1)


class ConditionalAdversarialKD(DistillationProcedure):
    """A student trained to fool a label-conditional discriminator of teacher vs student logits.

    Args:
        student, teacher: the classifiers (the teacher is frozen).
        num_classes: number of classes (the discriminator's input size).
        adversarial_weight, l1_weight, ce_weight: $\\lambda_{adv}$, $\\lambda_1$, $\\lambda_{ce}$.
        hidden: the discriminator's hidden widths.
        lr_discriminator: the discriminator's Adam learning rate (betas 0.5, 0.999).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        num_classes: int,
        adversarial_weight: float = 1.0,
        l1_weight: float = 1.0,
        ce_weight: float = 1.0,
        hidden: tuple[int, ...] = (64, 64),
        lr_discriminator: float = 1e-3,
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = freeze(teacher)
        self.discriminator = LogitDiscriminator(num_classes, hidden)
        self.weights = loss_weights(
            adversarial_weight=adversarial_weight, l1_weight=l1_weight, ce_weight=ce_weight
        )
        self.lr_discriminator = positive("lr_discriminator", lr_discriminator)

    def train(self, mode: bool = True) -> ConditionalAdversarialKD:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        student_logits = logits_of(self.student(x))
        with torch.no_grad():
            teacher_logits = logits_of(self.teacher(x))
        logit_pair(student_logits, teacher_logits)
        class_indices(y, student_logits)
        student_logits = at_least_float32(student_logits)
        teacher_logits = at_least_float32(teacher_logits)
        if student_logits.shape[1] != self.discriminator.num_classes:
            raise ValueError(
                f"the logits have {student_logits.shape[1]} classes but the discriminator was "
                f"built for num_classes={self.discriminator.num_classes}"
            )
        real = self.discriminator(teacher_logits, y)
        fake = self.discriminator(student_logits.detach(), y)
        discriminator_loss = F.binary_cross_entropy_with_logits(
            real, torch.ones_like(real)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        with parameters_frozen(self.discriminator):  # the student's loss does not train D
            judged = self.discriminator(student_logits, y)
        adversarial = F.binary_cross_entropy_with_logits(judged, torch.ones_like(judged))
        l1 = F.l1_loss(student_logits, teacher_logits)
        ce = F.cross_entropy(student_logits, y)
        student_loss = (
            self.weights["adversarial_weight"] * adversarial
            + self.weights["l1_weight"] * l1
            + self.weights["ce_weight"] * ce
        )
        return {
            "loss": student_loss + discriminator_loss,
            "adversarial": adversarial.detach(),
            "l1": l1.detach(),
            "ce": ce.detach(),
            "discriminator": discriminator_loss.detach(),
            "teacher_judged_real": torch.sigmoid(real).mean().detach(),
            "student_judged_real": torch.sigmoid(judged).mean().detach(),
        }

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """The student with the loop's SGD at ``lr``; the discriminator with Adam."""
        student = torch.optim.SGD(
            self.student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True
        )
        discriminator = torch.optim.Adam(
            self.discriminator.parameters(), lr=self.lr_discriminator, betas=(0.5, 0.999)
        )
        return [student, discriminator]

    def extra_repr(self) -> str:
        return f"weights={self.weights}"
