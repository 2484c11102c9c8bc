r"""Be Your Own Teacher (BYOT): the deepest classifier of a network teaches shallow exits on its own stages.

Citation: ``zhang2019your`` (Zhang, Song, Gao, Chen, Bao and Ma, ICCV 2019).
Authors' code: https://github.com/ArchipLab-LinfengZhang/pytorch-self-distillation-final
(a later, journal version of the recipe); the ICCV losses with their defaults are
in the widely used re-implementation https://github.com/luanyunteng/pytorch-be-your-own-teacher
(``train.py``: ``--temperature 3 --alpha 0.1 --beta 1e-6``), which we follow.

The network is cut into $C$ stages. After each shallow stage $i < C$ an exit
(a bottleneck that brings the map to the last stage's width and resolution,
global pooling and a linear classifier) gives features $F_i$ and class
probabilities $q^i$; the network's own classifier is the deepest exit $C$.
With $q^{i,\tau}$ the probabilities at temperature $\tau$, every exit minimises

$$
\mathcal{L} = \sum_{i=1}^{C} \Big[ (1-\alpha)\,\mathrm{CE}\big(q^i, y\big)
  + \alpha\,\tau^2\,\mathrm{KL}\big(q^{C,\tau} \,\big\|\, q^{i,\tau}\big)
  + \lambda\,\big\lVert F_i - F_C \big\rVert_2^2 \Big],
$$

where the last two terms vanish for $i = C$; $q^C$ and $F_C$ are targets
(no gradient flows back through them). Defaults: $\tau = 3$, $\alpha = 0.1$,
$\lambda = 10^{-6}$ (``beta`` in the code above, the name kept here).

Choices and deviations:

* The exits wrap the stages of any :class:`~reference_impls.common.models.TinyCNN`:
  stage $i$'s map goes through $1{\times}1$ conv to a quarter of the last width,
  a $k{\times}k$ conv with stride $k = 2^{C-1-i}$ (the authors use 8, 4, 2 for
  ResNet's four stages), and a $1{\times}1$ conv to the last width, each
  followed by BN and ReLU, as in the authors' ``branchBottleNeck``.
* $F_i$ are the pooled exit features and $F_C$ the network's pooled embedding,
  as in the code (the paper speaks of feature maps).
* The KD term is a KL divergence; the code uses the cross-entropy with the
  deep soft targets, which differs by the targets' entropy: same gradients,
  but ours is zero when an exit agrees with the deepest classifier.
* As in the code the KD term is a batch mean (the shared
  ``reference_impls.common.losses.softened_kl``), but the hint is summed over
  batch and feature dimensions (hence the tiny $\lambda$); both CE terms are batch means.

On small models: the self-distillation notebook (``student_cnn`` on 100 labelled digits, 15
epochs, seeds 0, 1 and 2) keeps these defaults, ``BYOT(student_cnn())``, and measured
0.892 ± 0.009 test accuracy against 0.886 ± 0.011 for plain training: level, within the
spread over seeds. The shallow exits reached 0.81 and 0.84 and their ensemble with the
deepest exit was no better than the deepest exit. Our network has three stages (two shallow
exits) where the authors' ResNets have four.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32, softened_kl
from reference_impls.common.models import TinyCNN
from reference_impls.common.validation import in_unit_interval, non_negative, positive


class ExitBranch(nn.Module):
    """A shallow exit: bottleneck to the last stage's shape, global pooling, linear classifier."""

    def __init__(
        self, in_channels: int, out_channels: int, downsample: int, num_classes: int
    ) -> None:
        super().__init__()
        middle = max(out_channels // 4, 1)
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels, middle, 1),
            nn.BatchNorm2d(middle),
            nn.ReLU(),
            nn.Conv2d(middle, middle, downsample, stride=downsample),
            nn.BatchNorm2d(middle),
            nn.ReLU(),
            nn.Conv2d(middle, out_channels, 1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )
        self.fc = nn.Linear(out_channels, num_classes)

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = torch.flatten(F.adaptive_avg_pool2d(self.bottleneck(feature_map), 1), 1)
        return self.fc(embedding), embedding


def byot_loss(
    exit_logits: Sequence[torch.Tensor],
    exit_features: Sequence[torch.Tensor],
    target: torch.Tensor,
    temperature: float,
    alpha: float,
    beta: float,
) -> dict[str, torch.Tensor]:
    """BYOT's total loss; the last entry of each list is the deepest classifier (the teacher).

    Returns the named terms: ``ce`` (summed over exits), ``kd`` and ``hint``
    (summed over shallow exits) and the weighted total under ``loss``.
    """
    deep_logits = exit_logits[-1].detach()
    deep_features = at_least_float32(exit_features[-1].detach())
    ce = sum(F.cross_entropy(at_least_float32(logits), target) for logits in exit_logits)
    kd = at_least_float32(deep_logits.new_zeros(()))
    hint = at_least_float32(deep_logits.new_zeros(()))
    for logits, features in zip(exit_logits[:-1], exit_features[:-1], strict=True):
        kd = kd + softened_kl(logits, deep_logits, temperature)
        hint = hint + (at_least_float32(features) - deep_features).pow(2).sum()
    total = (1 - alpha) * ce + alpha * kd + beta * hint
    return {"loss": total, "ce": ce.detach(), "kd": kd.detach(), "hint": hint.detach()}


class BYOT(DistillationProcedure):
    """A ``TinyCNN`` with an exit on every shallow stage, trained by self-distillation.

    Args:
        model: the network; its classifier is the deepest exit and the teacher.
            Train with ``reference_impls.common.train``; the test accuracy it
            logs is that of ``model`` (the deepest exit), the one deployed.
        temperature: softening temperature $\\tau$ of the KD term (authors: 3).
        alpha: weight of KD against cross-entropy (authors: 0.1).
        beta: weight $\\lambda$ of the feature hint (authors: 1e-6).
    """

    def __init__(
        self,
        model: TinyCNN,
        temperature: float = 3.0,
        alpha: float = 0.1,
        beta: float = 1e-6,
    ) -> None:
        super().__init__()
        if not isinstance(model, TinyCNN):
            raise TypeError(f"BYOT wraps the stages of a TinyCNN, got {type(model).__name__}")
        if len(model.channels) < 2:
            raise ValueError("BYOT needs at least two stages (one shallow exit)")
        positive("temperature", temperature)
        in_unit_interval("alpha", alpha)
        non_negative("beta", beta)
        self.model = model
        last = len(model.channels) - 1
        # each stage after the first halves the resolution: stride 2^(last - i) meets the last map
        self.exits = nn.ModuleList(
            ExitBranch(width, model.channels[-1], 2 ** (last - index), model.num_classes)
            for index, width in enumerate(model.channels[:-1])
        )
        self.temperature = temperature
        self.alpha = alpha
        self.beta = beta

    def exit_outputs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Logits and pooled features of every exit, shallow first, the deepest last."""
        output = self.model(x)
        logits, features = [], []
        for branch, feature_map in zip(self.exits, output.features[:-1], strict=True):
            exit_logits, exit_features = branch(feature_map)
            logits.append(exit_logits)
            features.append(exit_features)
        logits.append(output.logits)
        features.append(output.embedding)
        return logits, features

    @torch.no_grad()
    def ensemble_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of all exits' logits (the paper's ensemble), in eval mode."""
        was_training = self.training
        self.eval()
        logits, _ = self.exit_outputs(x)
        self.train(was_training)
        return torch.stack(logits).mean(dim=0)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, features = self.exit_outputs(x)
        return byot_loss(logits, features, y, self.temperature, self.alpha, self.beta)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}, beta={self.beta}"
