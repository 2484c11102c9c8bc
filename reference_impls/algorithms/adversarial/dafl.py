r"""DAFL: data-free learning of a student, with a generator trained against the teacher.

Citation: ``chen2019data`` (Chen, Wang, Xu, Yang, Liu, Shi, Xu, Xu and Tian, ICCV 2019).
Authors' code: https://github.com/huawei-noah/Efficient-Computing,
``Data-Efficient-Model-Compression/DAFL/DAFL-train.py`` (the training loop, ``kdloss``
and the ``Generator`` class; the generator is :class:`DigitsGenerator` here).

No training images are used. The frozen teacher $\mathcal{N}_T$ plays the discriminator
of a GAN: a generator $G$ maps codes $z$ to images $x = G(z)$ on which the teacher
gives confident, varied, strongly activated outputs. With $y_T^i$ the teacher's logits
on $x^i$, $t^i = \arg\max_j y_T^{i,j}$ its predicted class, $f_T^i$ its penultimate
features and $\bar p = \frac1n \sum_i \mathrm{softmax}(y_T^i)$ the batch's mean
prediction, the generator minimises

$$
\mathcal{L}_G = \alpha_{oh}\,\frac1n \sum_i \mathrm{CE}\big(y_T^i, t^i\big)
  \;-\; \alpha_a\,\frac1n \sum_i \big\lVert f_T^i \big\rVert_1 / d
  \;+\; \alpha_{ie} \sum_j \bar p_j \log_{10} \bar p_j ,
$$

(one-hot loss: confident outputs; activation loss: large features, $d$ their size;
information-entropy loss: every class equally often), and the student $\mathcal{N}_S$
learns on the same images, detached, with Hinton's KL at temperature 1:

$$
\mathcal{L}_{KD} = \frac1n \sum_i \mathrm{KL}\Big(\mathrm{softmax}(y_T^i) \,\Big\|\,
  \mathrm{softmax}\big(\mathcal{N}_S(x^i)\big)\Big).
$$

As in the authors' loop, one backward of $\mathcal{L}_G + \mathcal{L}_{KD}$ per step
updates both (the student's term is computed on detached images, so it does not reach
$G$; the teacher is frozen): :meth:`DAFL.forward` returns that sum.

Defaults: the authors' CIFAR-100 command of their README (``--oh 0.5 --ie 20 --a 0.1
--lr_G 0.02 --lr_S 0.1 --latent_dim 1000 --batch_size 1024``, 120 iterations per epoch,
2000 epochs); the student trains with SGD (momentum 0.9, weight decay 5e-4, the
learning rate divided by 10 at epochs 800 and 1600 of 2000), the generator with Adam.
The script's own defaults are the MNIST setting (``oh`` 1, ``ie`` 5, ``a`` 0.1,
``lr_G`` 0.2, ``lr_S`` 2e-3 with Adam for the student, latent size 100, batch 512);
pass them to reproduce it (the notebook does, for digits).

Code and paper differ, and we follow the code:

* the information-entropy term uses $\log_{10}$ (the paper writes the entropy
  $H_{\text{info}}$ without a base; natural logs would scale it by $\ln 10$);
* the activation term is the *mean* absolute value of the features (the paper's
  $-\frac1n\sum_i \lVert f_T^i\rVert_1$ without the division by their size $d$);
* the KD term is at temperature 1 with no weight (the paper's Eq. 9 is the same).

Deviations: the teacher is frozen (the authors' loop back-propagates into it too but
never steps it, so nothing changes); the learning-rate steps at 40 % and 80 % of the
run are scaled to the length of :meth:`~DataFreeDistillation.fit`'s run
(``lr_milestones``), where the authors count epochs of a 2000-epoch run; the
generator is :class:`DigitsGenerator` with DFAD's batch-norm epsilon unless one passes
``DigitsGenerator(batchnorm_eps=0.8)``, DAFL's.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.algorithms.adversarial.data_free import DataFreeDistillation, latent_codes
from reference_impls.common.losses import at_least_float32, softened_kl
from reference_impls.common.models import ModelOutput
from reference_impls.common.training import logits_of
from reference_impls.common.validation import loss_weights, one_of, positive


def teacher_logits_and_features(output: ModelOutput | torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The teacher's logits and penultimate features (``ModelOutput.embedding``)."""
    if not isinstance(output, ModelOutput) or output.embedding is None:
        raise ValueError(
            "DAFL's activation loss reads the teacher's penultimate features: the teacher must "
            "return a ModelOutput with an `embedding` (wrap other models with "
            "reference_impls.common.with_features)"
        )
    return output.logits, output.embedding


def dafl_generator_terms(
    teacher_logits: torch.Tensor, teacher_features: torch.Tensor
) -> dict[str, torch.Tensor]:
    """DAFL's three generator terms, unweighted, as the authors' ``DAFL-train.py`` computes them."""
    logits = at_least_float32(teacher_logits)
    features = at_least_float32(teacher_features)
    pseudo_labels = logits.detach().argmax(dim=1)
    one_hot = F.cross_entropy(logits, pseudo_labels)
    activation = -features.abs().mean()
    mean_prediction = F.softmax(logits, dim=1).mean(dim=0)
    information_entropy = (mean_prediction * torch.log10(mean_prediction)).sum()
    return {
        "one_hot": one_hot,
        "activation": activation,
        "information_entropy": information_entropy,
    }


class DAFL(DataFreeDistillation):
    """A generator trained against the frozen teacher, and a student taught on its images.

    Args:
        teacher: the frozen teacher; returns a ``ModelOutput`` with ``embedding``.
        student: the network trained.
        generator: maps ``[B, latent_dim]`` codes to images (``generator.latent_dim``).
        one_hot_weight, activation_weight, information_entropy_weight: $\\alpha_{oh}$,
            $\\alpha_a$, $\\alpha_{ie}$ (authors' CIFAR-100: 0.5, 0.1, 20).
        lr_student, lr_generator: learning rates (CIFAR-100: 0.1 and 0.02).
        student_optimizer: ``"sgd"`` (CIFAR: momentum 0.9, weight decay 5e-4) or ``"adam"``
            (the authors' MNIST setting).
        lr_milestones: fractions of the run after which the student's learning rate is
            divided by 10 (authors, CIFAR: epochs 800 and 1600 of 2000; MNIST: none).
    """

    schedule: ClassVar[tuple[str, ...]] = ("joint",)
    phases: ClassVar[tuple[str, ...]] = ("joint",)

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        generator: nn.Module,
        one_hot_weight: float = 0.5,
        activation_weight: float = 0.1,
        information_entropy_weight: float = 20.0,
        lr_student: float = 0.1,
        lr_generator: float = 0.02,
        student_optimizer: str = "sgd",
        lr_milestones: tuple[float, ...] = (0.4, 0.8),
    ) -> None:
        super().__init__(teacher, student, generator)
        weights = loss_weights(
            one_hot_weight=one_hot_weight,
            activation_weight=activation_weight,
            information_entropy_weight=information_entropy_weight,
        )
        self.weights = {name.removesuffix("_weight"): value for name, value in weights.items()}
        self.lr_student = positive("lr_student", lr_student)
        self.lr_generator = positive("lr_generator", lr_generator)
        self.student_optimizer = one_of("student_optimizer", student_optimizer, ("sgd", "adam"))
        for milestone in lr_milestones:
            if not 0 < milestone < 1:
                raise ValueError(f"lr_milestones must lie in (0, 1), got {tuple(lr_milestones)}")
        self.lr_milestones = tuple(lr_milestones)
        self._optimizers: list[torch.optim.Optimizer] = []

    def forward(self, z: torch.Tensor, phase: str = "joint") -> dict[str, torch.Tensor]:
        self.check_phase(phase)
        latent_codes(z, self.latent_dim)
        images = self.generator(z)
        teacher_logits, teacher_features = teacher_logits_and_features(self.teacher(images))
        terms = dafl_generator_terms(teacher_logits, teacher_features)
        generator_loss = sum(self.weights[name] * terms[name] for name in self.weights)
        # the student learns on the same images, detached: its loss does not reach G
        student_logits = logits_of(self.student(images.detach()))
        kd = softened_kl(student_logits, teacher_logits.detach(), temperature=1.0)
        return {
            "loss": generator_loss + kd,
            "kd": kd.detach(),
            "generator": generator_loss.detach(),
            **{name: value.detach() for name, value in terms.items()},
        }

    def configure_optimizers(self, lr: float | None = None) -> list[torch.optim.Optimizer]:
        """Adam for the generator; SGD (or Adam) for the student, ``lr`` overriding its rate."""
        lr_student = self.lr_student if lr is None else lr
        generator = torch.optim.Adam(self.generator.parameters(), lr=self.lr_generator)
        if self.student_optimizer == "sgd":
            student = torch.optim.SGD(
                self.student.parameters(), lr=lr_student, momentum=0.9, weight_decay=5e-4
            )
        else:
            student = torch.optim.Adam(self.student.parameters(), lr=lr_student)
        self._optimizers = [student, generator]
        self._base_lr = lr_student
        return self._optimizers

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """The student's step schedule: the rate divided by 10 after each milestone."""
        if not self._optimizers:
            return
        passed = sum(epoch >= m * epochs for m in self.lr_milestones)
        for group in self._optimizers[0].param_groups:
            group["lr"] = self._base_lr * 0.1**passed

    def extra_repr(self) -> str:
        return f"weights={self.weights}, student_optimizer={self.student_optimizer!r}"
