r"""On-the-fly native ensemble: branches of one network and their gated ensemble teach each other.

Citation: ``lan2018knowledge`` (Lan, Zhu and Gong, NeurIPS 2018).
Authors' code: https://github.com/Lan1991Xu/ONE_NeurIPS2018
(``cifar_one.py``, ``loss/kl_loss.py``, ``models/cifar/resnet.py``).

One network shares its low-level layers and splits its last stage into $m$
branches, each with its own classifier (logits $z_i$). A gate, one linear layer
with batch norm, ReLU and softmax on the pooled shared features, gives
per-sample weights $g_i$ (summing to 1); the gated sum of the branch logits is
the ensemble teacher built on the fly:

$$
z_e = \sum_{i=1}^{m} g_i\, z_i .
$$

Every branch and the ensemble learn from the labels, and every branch also
mimics the ensemble at temperature $T$:

$$
\mathcal{L} = \sum_{i=1}^{m}\mathrm{CE}(y, z_i) + \mathrm{CE}(y, z_e)
  + w(e)\, T^{2}\sum_{i=1}^{m}
    \mathrm{KL}\!\left(\mathrm{softmax}(z_e/T)\,\middle\|\,\mathrm{softmax}(z_i/T)\right).
$$

The teacher distribution is detached in the KL, as in the authors' ``KLLoss``,
so the ensemble learns only from its cross-entropy. After training, one branch
(or the ensemble) is deployed.

Defaults (authors' code, CIFAR): $m = 3$ branches, $T = 3$, KL summed over
classes and averaged over the batch, and the KL weight $w(e)$ ramped up with a
sigmoid schedule $\exp(-5(1 - \min(e / 80, 1))^2)$ over the first 80 epochs
(``--consistency_rampup 80``; the paper does not mention the ramp).
``rampup_epochs=0`` gives $w = 1$ throughout, as the paper's equation.

Our network: ``ONENetwork`` reuses the tiny CNN of ``reference_impls.common``:
the stem and all stages but the last are shared, and each branch is a copy of
the last stage (``ConvStage``) with pooling and its own classifier; the gate
reads the pooled output of the shared part, as the authors' gate reads the
input of their branched stage. Deviation: the authors add $10^{-7}$ to the
teacher's probabilities before the log; we compute the KL from log-softmaxes
(the shared ``reference_impls.common.losses.softened_kl``).

On small models: the authors ramp the KL weight over 80 of 300 CIFAR epochs; the online
notebook (``student_cnn`` trunk and branches on 100 labelled digits, 15 epochs, seeds 0, 1
and 2) keeps that fraction, ``ONE(network, temperature=3.0, rampup_epochs=ONE_RAMPUP)`` with
``ONE_RAMPUP = round(15 * 80 / 300) = 4``, since with the default 80 the weight would stay
at 0.033 or less for the whole run (epochs 0 to 14). It measured a deployed branch at
0.886 ± 0.012 test accuracy, level with a network trained alone (0.886 ± 0.011), and the
gated ensemble at
0.896 ± 0.008, below two networks trained independently and averaged (0.914 ± 0.006).
In a scratch run of that set-up with the default ``rampup_epochs=80`` the deployed branch
measured 0.886 ± 0.008: the ramp made no difference here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import softened_kl
from reference_impls.common.models import ConvStage, ModelOutput, TinyCNN
from reference_impls.common.validation import at_least, non_negative, positive


class ONENetwork(nn.Module):
    """A tiny CNN whose last stage is split into gated branches.

    ``forward`` returns the gated ensemble as a ``ModelOutput`` (so the usual
    evaluation helpers see one classifier); ``forward_branches`` returns every
    branch's logits and the gate.
    """

    def __init__(
        self,
        channels: Sequence[int] = (8, 16, 32),
        num_branches: int = 3,
        num_classes: int = 10,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        at_least("num_branches", num_branches, 2)
        if len(channels) < 2:
            raise ValueError("ONE needs at least two stages: shared layers and a branched one")
        trunk = TinyCNN(tuple(channels[:-1]), num_classes, in_channels)
        self.stem = trunk.stem
        self.shared_stages = trunk.stages
        shared_width, branch_width = channels[-2], channels[-1]
        self.branches = nn.ModuleList(
            ConvStage(shared_width, branch_width, downsample=True) for _ in range(num_branches)
        )
        self.classifiers = nn.ModuleList(
            nn.Linear(branch_width, num_classes) for _ in range(num_branches)
        )
        self.gate = nn.Sequential(
            nn.Linear(shared_width, num_branches), nn.BatchNorm1d(num_branches), nn.ReLU()
        )
        self.num_branches = num_branches

    def forward_branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Branch logits ``[B, m, C]`` and gate weights ``[B, m]`` (rows sum to 1)."""
        out = self.stem(x)
        for stage in self.shared_stages:
            out, _ = stage(out)
        gate = torch.softmax(self.gate(out.mean(dim=(2, 3))), dim=1)
        logits = []
        for branch, classifier in zip(self.branches, self.classifiers, strict=True):
            branch_out, _ = branch(out)
            logits.append(classifier(branch_out.mean(dim=(2, 3))))
        return torch.stack(logits, dim=1), gate

    def forward(self, x: torch.Tensor) -> ModelOutput:
        branch_logits, gate = self.forward_branches(x)
        return ModelOutput(ensemble_logits(branch_logits, gate))


def ensemble_logits(branch_logits: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """$z_e = \\sum_i g_i z_i$ for ``[B, m, C]`` logits and ``[B, m]`` gates."""
    return (gate.unsqueeze(2) * branch_logits).sum(dim=1)


def one_loss(
    branch_logits: torch.Tensor,
    gate: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
    kl_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """ONE's objective from branch logits and gate: CE of all + weighted KL to the ensemble."""
    ensemble = ensemble_logits(branch_logits, gate)
    num_branches = branch_logits.shape[1]
    branch_ce = sum(F.cross_entropy(branch_logits[:, i], target) for i in range(num_branches))
    ensemble_ce = F.cross_entropy(ensemble, target)
    # the ensemble is the (detached) teacher of every branch
    kl = sum(softened_kl(branch_logits[:, i], ensemble, temperature) for i in range(num_branches))
    return {
        "ce": branch_ce.detach(),
        "ce_ensemble": ensemble_ce.detach(),
        "kl": kl.detach(),
        "loss": branch_ce + ensemble_ce + kl_weight * kl,
    }


def sigmoid_rampup(epoch: int, rampup_epochs: int) -> float:
    """$\\exp(-5(1 - t)^2)$ with $t = \\min(e / E, 1)$; 1 when $E = 0$."""
    if rampup_epochs == 0:
        return 1.0
    progress = min(max(epoch, 0) / rampup_epochs, 1.0)
    return math.exp(-5.0 * (1.0 - progress) ** 2)


class ONE(DistillationProcedure):
    """The ONE training procedure around an ``ONENetwork``.

    Args:
        model: the multi-branch network (``ONENetwork``).
        temperature: $T$ of the branch-to-ensemble KL (authors: 3).
        rampup_epochs: epochs of the sigmoid ramp-up of the KL weight (authors: 80; 0: none).
    """

    def __init__(
        self, model: ONENetwork, temperature: float = 3.0, rampup_epochs: int = 80
    ) -> None:
        super().__init__()
        self.model = model
        self.temperature = positive("temperature", temperature)
        self.rampup_epochs = non_negative("rampup_epochs", rampup_epochs)
        self.kl_weight = sigmoid_rampup(0, rampup_epochs)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.kl_weight = sigmoid_rampup(epoch, self.rampup_epochs)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        branch_logits, gate = self.model.forward_branches(x)
        return one_loss(branch_logits, gate, y, self.temperature, self.kl_weight)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, rampup_epochs={self.rampup_epochs}"
