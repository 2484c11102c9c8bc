r"""PS-KD: progressive self-knowledge distillation, the model's last-epoch predictions soften its targets.

Citation: ``kim2021self`` (Kim, Ji, Yoon and Hwang, ICCV 2021).
Authors' code: https://github.com/lgcnsai/PS-KD-Pytorch (``main.py``, ``loss/pskd_loss.py``).

At epoch $t$ of $T$ the model $P_t$ is trained on targets that mix the one-hot
label $y$ with its own predictions from the previous epoch,

$$
\tilde{y}_t(x) = (1 - \alpha_t)\, y + \alpha_t\, P_{t-1}(x), \qquad
\alpha_t = \alpha_T \frac{t}{T},
$$

$$
\mathcal{L}_t = -\frac{1}{B}\sum_{b=1}^{B}\sum_{c} \tilde{y}_{t,c}(x_b)\,\log P_{t,c}(x_b),
$$

a cross-entropy with soft targets (batch mean, sum over classes, no
temperature). The teacher is the past self, so the targets get softer as
training goes on, which the paper reads as hard-example mining and which
improves calibration. Defaults from the authors' code and the paper's CIFAR-100
setting: $\alpha_T = 0.8$, with $t$ the 1-based epoch, i.e. ``alpha_T * (epoch + 1) / epochs``
for a 0-based ``epoch``. In the first epoch there are no past predictions and
the targets are the labels (the authors fill their table with one-hot labels).

Deviation: the authors store, for every training index, the softmax the model
produced when it last saw that sample (in training mode, on that epoch's
augmented view). Our common training loop does not pass sample indices, so
:class:`PSKD` keeps a frozen copy of the model taken at the start of each
epoch (the model at the end of the previous one) and evaluates it, in eval
mode, on the current batch. Both give "the predictions of epoch $t-1$"; they
differ in which moment of that epoch the prediction comes from, and in the
augmentation and batch-norm mode it was made with. This needs the
``on_epoch_start(epoch, epochs)`` hook of ``reference_impls.common.train``.

On small models: the self-distillation notebook (``student_cnn`` on 100 labelled digits, 15
epochs, seeds 0, 1 and 2) keeps $\alpha_T = 0.8$, ``PSKD(student_cnn())``, and measured
0.883 ± 0.017 test accuracy against 0.886 ± 0.011 for plain training, with a mean confidence
of 0.697 and an expected calibration error of 0.188 ± 0.031 against 0.047 ± 0.010. PS-KD
is meant to curb over-confidence, but on this toy the plainly trained network is already
under-confident (mean confidence 0.846 at 0.886 accuracy), so softer targets push it further
the wrong way. Check your baseline's calibration before using it on a small model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import freeze, logits_of
from reference_impls.common.validation import in_unit_interval


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """$-\\sum_c \\tilde y_c \\log p_c$, batch mean, in at least float32."""
    log_probabilities = F.log_softmax(at_least_float32(logits), dim=1)
    return -(soft_targets.to(log_probabilities.dtype) * log_probabilities).sum(dim=1).mean()


def progressive_targets(
    target: torch.Tensor,
    num_classes: int,
    previous_probabilities: torch.Tensor | None,
    alpha_t: float,
) -> torch.Tensor:
    """$(1-\\alpha_t)\\,y + \\alpha_t P_{t-1}(x)$; the one-hot labels when there is no past yet."""
    one_hot = F.one_hot(target, num_classes).float()
    if previous_probabilities is None:
        return one_hot
    return (1 - alpha_t) * one_hot + alpha_t * at_least_float32(previous_probabilities.detach())


class PSKD(DistillationProcedure):
    """A model trained on targets softened by its own predictions of the previous epoch.

    Args:
        model: the network (returns logits or a ``ModelOutput``).
        alpha_T: the final mixing weight $\\alpha_T$ (authors, CIFAR-100: 0.8).

    ``train`` calls :meth:`on_epoch_start`, which sets $\\alpha_t$ and
    snapshots the model; ``previous_model`` is that frozen snapshot (``None``
    during the first epoch).
    """

    def __init__(self, model: nn.Module, alpha_T: float = 0.8) -> None:
        super().__init__()
        self.model = model
        self.alpha_T = in_unit_interval("alpha_T", alpha_T)
        self.alpha_t = 0.0
        self.previous_model: nn.Module | None = None

    def train(self, mode: bool = True) -> PSKD:
        super().train(mode)
        if self.previous_model is not None:
            self.previous_model.eval()  # the past self is a fixed teacher
        return self

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Set $\\alpha_t$ for this (0-based) epoch and keep a frozen copy of the model as it is now."""
        if epochs <= 0 or not 0 <= epoch < epochs:
            raise ValueError(f"expected 0 <= epoch < epochs, got epoch={epoch}, epochs={epochs}")
        self.alpha_t = self.alpha_T * (epoch + 1) / epochs
        self.previous_model = None if epoch == 0 else freeze(copy.deepcopy(self.model))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = logits_of(self.model(x))
        previous_probabilities = None
        if self.previous_model is not None:
            with torch.no_grad():
                previous_logits = logits_of(self.previous_model(x))
            previous_probabilities = F.softmax(at_least_float32(previous_logits), dim=1)
        targets = progressive_targets(y, logits.shape[1], previous_probabilities, self.alpha_t)
        loss = soft_cross_entropy(logits, targets)
        ce = F.cross_entropy(at_least_float32(logits), y)
        alpha_t = torch.tensor(self.alpha_t, device=logits.device, dtype=loss.dtype)
        return {"loss": loss, "ce": ce.detach(), "alpha_t": alpha_t}

    def extra_repr(self) -> str:
        return f"alpha_T={self.alpha_T}, alpha_t={self.alpha_t:.4f}"
