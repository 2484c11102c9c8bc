r"""Channel distillation (CD): transfer the teacher's channel-wise attention, guided KD, early decay.

Citation: ``zhou2020channel`` (Zhou, Zhuge, Guan and Liu, arXiv 2020).
Authors' code: https://github.com/zhouzaida/channel-distillation (commit ``2464d30``):
``losses/cd_loss.py`` (``CDLoss``), ``losses/kd_loss.py`` (``KDLossv2``, guided KD),
``models/channel_distillation.py`` (``conv1x1_bn`` connectors,
``ChannelDistillResNet50152``), ``utils/util.py`` (``adjust_loss_alpha``, early decay
teacher) and ``cifar_config.py`` (the CIFAR-100 weights) with ``cifar_train.py``.

Three pieces, each a term of the student's loss.

**Channel distillation.** A stage's channel attention is its global average pool,
$w_c = \frac{1}{HW}\sum_{h,w} A_{c,h,w}$: how strongly each channel (each "visual
pattern") fires. A connector $r_j$ (1x1 convolution, batch norm, ReLU) maps the student's
stage $j$ to the teacher's width; the loss is the mean squared difference of the pooled
vectors, summed over the stages:

$$
\mathcal{L}_{\mathrm{CD}} = \sum_{j} \frac{1}{B\,C_j} \sum_{b=1}^{B}
  \big\lVert \mathrm{GAP}\big(r_j(A^{s}_{j,b})\big) - \mathrm{GAP}\big(A^{t}_{j,b}\big) \big\rVert_2^{2}.
$$

**Guided KD (GKD).** KD only on the samples the teacher classifies correctly,
$\mathcal{C} = \{b : \arg\max_i z^{t}_{b,i} = y_b\}$, averaged over them:

$$
\mathcal{L}_{\mathrm{GKD}} = \frac{\tau^2}{|\mathcal{C}|} \sum_{b \in \mathcal{C}}
  \mathrm{KL}\!\left(p^{t,\tau}_b \,\middle\|\, p^{s,\tau}_b\right).
$$

**Early decay teacher (EDT).** The teacher's guidance fades: the CD weight is multiplied
by $\gamma$ at each milestone. The authors' code (``adjust_loss_alpha``, ``lrdv2``) also
switches the label terms off at first: until the first milestone the student learns from
the channel attention alone, then cross-entropy and GKD join at their full weights:

$$
\mathcal{L} = \mathbb{1}[e > m_1]\,\big(\lambda_{\mathrm{CE}}\,\mathrm{CE} +
  \lambda_{\mathrm{GKD}}\,\mathcal{L}_{\mathrm{GKD}}\big) +
  \lambda_{\mathrm{CD}}\,\gamma^{\#\{k\,:\,e \ge m_k\}}\,\mathcal{L}_{\mathrm{CD}}
$$

for the authors' 1-based epoch $e$ and milestone epochs $m_k$ (here $m_k E$, the
fractions ``milestones`` of a run of $E$ epochs).

Defaults, the authors' CIFAR-100 configuration (``cifar_config.py``, ResNet-152 teacher,
ResNet-50 student, 200 epochs):
$\lambda_{\mathrm{CE}} = 1$, $\lambda_{\mathrm{GKD}} = 0.1$ with $\tau = 1$,
$\lambda_{\mathrm{CD}} = 6$, $\gamma = 0.9$, milestones at epochs 60 and 160, i.e. at
0.3 and 0.8 of the run: ``milestones`` are fractions of the run here, so that a short
run keeps the shape of their schedule (epoch $e$ of $E$, counted from 0, is their
$e + 1$, compared with $m_k E$). Their ImageNet configuration differs: GKD weight 1, and
the CD weight decays by 0.9 every 30 of 100 epochs with the label terms off for the first
30. The connectors and stages: every residual stage of student and teacher (four for
their ResNets, three for our tiny CNNs), each student stage through its own ``conv1x1_bn``.
Note the overlap their comparisons leave at a milestone: at $e = m_1$ the label terms are
still off while the CD weight has already decayed once; we keep it.

``on_epoch_start(epoch, epochs)`` sets the weights (``reference_impls.common.train`` calls
it); a procedure used outside a training loop has every term on at its base weight.

Deliberate deviations:

* The teacher stays in eval mode. The authors' ``net.train()`` also puts their frozen
  teacher in training mode, so its batch norm normalises with batch statistics and
  moves its running statistics while teaching.
* GKD with no correctly classified sample in the batch is 0 (theirs divides by zero: NaN).
  Their masked ``kl_div`` sets every teacher probability that is exactly 0 to 1, which
  also rewrites underflowed probabilities of correctly classified rows into spurious
  $-\log p^s$ terms; we compute the KL in log space (``softened_log_probs``), where an
  underflowed probability contributes its limit, 0. The two agree whenever no teacher
  probability underflows.
* Pooling, distances and the KL are computed in at least float32 (half precision upcast,
  float64 kept), so the procedure works under ``torch.autocast``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.connectors import conv1x1_bn, same_dtype
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32, kl_divergence, softened_log_probs
from reference_impls.common.training import freeze, logits_of
from reference_impls.common.validation import (
    class_indices,
    in_unit_interval,
    logit_pair,
    non_negative,
    positive,
    same_stage_count,
)
from reference_impls.schemes.offline.distiller import select_inputs


def connector(in_channels: int, out_channels: int) -> nn.Sequential:
    """The authors' ``conv1x1_bn``: 1x1 convolution (no bias), batch norm, then a ReLU.

    The shared ``conv1x1_bn`` with the ReLU their connector ends with (so the connected
    student map is non-negative, like the teacher's post-ReLU stage outputs).
    """
    return nn.Sequential(*conv1x1_bn(in_channels, out_channels), nn.ReLU(inplace=True))


def channel_attention(features: torch.Tensor) -> torch.Tensor:
    """Global average pool of a ``[B, C, H, W]`` map: one weight per channel, ``[B, C]``."""
    if features.dim() != 4:
        raise ValueError(
            f"feature maps must have shape [B, C, H, W], got shape {tuple(features.shape)}"
        )
    return at_least_float32(features).mean(dim=(2, 3))


def channel_distillation_loss(
    student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]
) -> torch.Tensor:
    """$\\sum_j \\mathrm{mean}\\big((\\mathrm{GAP}(s_j) - \\mathrm{GAP}(t_j))^2\\big)$ (student maps already connected)."""
    same_stage_count(student_feats, teacher_feats, "feature maps")
    total = None
    for index, (student, teacher) in enumerate(zip(student_feats, teacher_feats, strict=True)):
        if student.shape[:2] != teacher.shape[:2]:
            raise ValueError(
                f"stage {index}: connected student map {tuple(student.shape)} and teacher map "
                f"{tuple(teacher.shape)} must agree in batch and channels"
            )
        term = (channel_attention(student) - channel_attention(teacher.detach())).pow(2).mean()
        total = term if total is None else total + term
    return total


def guided_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """$\\tau^2\\,\\mathrm{KL}(p^{t,\\tau} \\| p^{s,\\tau})$ averaged over the samples the teacher gets right (0 if none)."""
    logit_pair(student_logits, teacher_logits)
    class_indices(target, student_logits)
    teacher_logits = teacher_logits.detach()
    per_sample = kl_divergence(
        softened_log_probs(student_logits, temperature),
        softened_log_probs(teacher_logits, temperature),
        reduction="none",
    )
    correct = teacher_logits.argmax(dim=1) == target
    # a masked sum over a clamped count: 0 (with a zero gradient) when no sample is correct
    return (per_sample * correct).sum() / correct.sum().clamp(min=1) * temperature**2


class ChannelDistillation(DistillationProcedure):
    """Student + frozen teacher: channel attention transfer, guided KD, early decay teacher.

    Args:
        student: the model trained; returns a ``ModelOutput`` with one feature map per stage.
        teacher: a trained model returning the same; frozen here (eval mode, no gradients).
        student_channels, teacher_channels: width of each tapped stage (one connector each).
        ce_weight: weight of the cross-entropy on labels (authors: 1).
        gkd_weight: weight of guided KD (authors' CIFAR-100: 0.1; ImageNet: 1).
        temperature: GKD temperature $\\tau$ (authors: 1).
        cd_weight: weight of channel distillation before any decay (authors: 6).
        decay: factor $\\gamma$ of the CD weight at each milestone (authors: 0.9).
        milestones: the milestones as fractions of the run (authors' CIFAR-100: epochs 60
            and 160 of 200, ``(0.3, 0.8)``); ``()`` turns the early decay teacher off
            (label terms always on, constant CD weight: their ``lrdv1`` on CIFAR).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        ce_weight: float = 1.0,
        gkd_weight: float = 0.1,
        temperature: float = 1.0,
        cd_weight: float = 6.0,
        decay: float = 0.9,
        milestones: Sequence[float] = (0.3, 0.8),
    ) -> None:
        super().__init__()
        if len(student_channels) == 0 or len(teacher_channels) == 0:
            raise ValueError("student_channels and teacher_channels must name at least one stage")
        same_stage_count(student_channels, teacher_channels, "channel sizes")
        for name, widths in (
            ("student_channels", student_channels),
            ("teacher_channels", teacher_channels),
        ):
            for width in widths:
                positive(name, width)
        self.ce_weight = non_negative("ce_weight", ce_weight)
        self.gkd_weight = non_negative("gkd_weight", gkd_weight)
        self.temperature = positive("temperature", temperature)
        self.cd_weight = positive("cd_weight", cd_weight)
        self.decay = in_unit_interval("decay", decay)
        self.milestones = tuple(float(in_unit_interval("milestones", m)) for m in milestones)
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {tuple(milestones)}")
        self.student = student
        self.teacher = freeze(teacher)
        self.connectors = nn.ModuleList(
            connector(s, t) for s, t in zip(student_channels, teacher_channels, strict=True)
        )
        # the current weights, set by on_epoch_start; outside a training loop: the base weights
        self.label_factor = 1.0
        self.cd_factor = 1.0

    def train(self, mode: bool = True) -> ChannelDistillation:
        super().train(mode)
        self.teacher.eval()  # batch-norm statistics of the teacher never move
        return self

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Early decay teacher: the authors' epoch ``epoch + 1`` against milestones ``m * epochs``."""
        if not self.milestones:
            return
        their_epoch = epoch + 1
        bounds = [m * epochs for m in self.milestones]
        self.label_factor = 0.0 if their_epoch <= bounds[0] else 1.0
        self.cd_factor = self.decay ** sum(their_epoch >= bound for bound in bounds)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        student_out = self.student(x)
        with torch.no_grad():
            teacher_out = self.teacher(x)
        name = type(self).__qualname__
        student_feats = select_inputs(student_out, "features", name, "student")
        teacher_feats = select_inputs(teacher_out, "features", name, "teacher")
        same_stage_count(self.connectors, student_feats, "stages (connectors and feature maps)")
        same_stage_count(student_feats, teacher_feats, "feature maps")
        connected = []
        for index, (block, feats) in enumerate(zip(self.connectors, student_feats, strict=True)):
            expected = block[0].in_channels
            if feats.dim() != 4 or feats.shape[1] != expected:
                raise ValueError(
                    f"student feature map {index} has shape {tuple(feats.shape)}, but "
                    f"student_channels[{index}] = {expected} (expected [B, {expected}, H, W])"
                )
            same_dtype(name, block, feats)
            connected.append(block(feats))
        student_logits, teacher_logits = logits_of(student_out), logits_of(teacher_out)
        cd = channel_distillation_loss(connected, teacher_feats)
        gkd = guided_kd_loss(student_logits, teacher_logits, y, self.temperature)
        ce = F.cross_entropy(at_least_float32(student_logits), y)
        total = self.label_factor * (self.ce_weight * ce + self.gkd_weight * gkd)
        total = total + self.cd_factor * self.cd_weight * cd
        return {"loss": total, "ce": ce.detach(), "gkd": gkd.detach(), "cd": cd.detach()}

    def extra_repr(self) -> str:
        return (
            f"ce_weight={self.ce_weight}, gkd_weight={self.gkd_weight}, "
            f"temperature={self.temperature}, cd_weight={self.cd_weight}, decay={self.decay}, "
            f"milestones={self.milestones}"
        )
