r"""CRCD: complementary relation contrastive distillation, contrasting relations to anchors.

Citation: ``zhu2021complementary`` (Zhu et al., CVPR 2021). Authors' code:
https://github.com/Lechatelia/CRCD: ``crcd/criterion.py`` (``CRCDLoss``, ``ContrastLoss``,
``Embed``), ``crcd/memory.py`` (``ContrastMemory``), ``train_student.py`` (options) and
``helper/loops.py`` (``train_distill``, ``adjust_mimic_loss_weight``). Its README says it is
not the official implementation (which relies on the company's internal library) but the
first author's re-implementation of the critical parts in PyTorch, on top of CRD's code
(``crd.py`` here), with a training script "not checked".

CRD contrasts a student embedding with the teacher's embedding of the same sample. CRCD
contrasts *relations*: the direction from an anchor to a sample. The anchors are the
memory entries of the batch's samples, $\bar t_a$ and $\bar s_a$; with the embeddings
$s_i, t_i$ and the memory banks $\bar s, \bar t$ of CRD (linear head, L2 normalisation,
momentum update), the student-to-teacher-anchor relation of sample $i$ and anchor $a$,
$r^{s}_{ia} = \mathrm{normalize}(s_i - \bar t_a + \delta)$, is scored against the teacher's own
relations $\bar r^{t}_{ja} = \mathrm{normalize}(\bar t_j - \bar t_a + \delta)$ of the sample
itself ($j = i$, the positive) and of its $K$ negatives, and symmetrically for the teacher's
relations to the student's anchors:

$$
h_{ia}(j) = \frac{e^{r^{s\top}_{ia} \bar r^{t}_{ja} / \tau} / Z}{e^{r^{s\top}_{ia} \bar r^{t}_{ja} / \tau} / Z + K / N},
\qquad
\mathcal{L}_{\mathrm{CRCD}} = -\frac{\beta}{B^2} \sum_{i, a = 1}^{B} \Big[
    \log h_{ia}(i) + \sum_{k=1}^{K} \log\big(1 - h_{ia}(j_{ik})\big) \Big] + (\text{teacher side}),
$$

the NCE of CRD over the $B^2$ (sample, anchor) pairs, with $\delta = 10^{-6}$ added to every
coordinate before normalising (the authors'; it keeps a sample's relation to itself defined).

Defaults (``train_student.py`` of the authors' code):

* ``feature_dim=128``, ``num_negatives=500``, ``temperature=0.05``, ``momentum=0.5``
  (``--feat_dim``, ``--nce_k``, ``--nce_t``, ``--nce_m``), linear heads (``--embed_type linear``),
  negatives from other classes (``--mode exact``: pass ``labels``, as for ``CRDLoss``).
* ``weight=1.0``: their ``-b`` (``--beta``) default, with CE weight 1 (``-r``).
* The memory banks start uniform and are then L2-normalised (their ``ContrastMemory`` of
  ``crcd/memory.py``; CRD's are not normalised). $Z$ is estimated on the first batch as in CRD.
* ``distill_fraction=0.96``: the distillation weight is 1 for the first 96% of training and
  0 afterwards (their ``adjust_mimic_loss_weight(..., adjust_loss_type="240")``: 240 of 250
  epochs, "very effective" by their README), read per epoch through ``on_epoch_start``; the
  term is still computed (and the memory updated) when switched off, as theirs.

Deliberate deviations and what is left out:

* The paper's second complementary relation, on the gradients of the cross-entropy with
  respect to the features, is not part of this loss. The authors' script computes it
  (``get_grad_loss``, double backward) but by default compares the gradients by a cosine
  (``--grad_kd_type mse``) and adds it as ``alpha * loss_div * loss_gm`` (a product with the
  KD term), which is not the paper's formulation; a second ``CRCDLoss`` applied to those
  gradients gives the paper's gradient term.
* Their script's defaults also add Hinton's KD with weight ``-a 0.9``; combine with
  ``KDLoss`` for that (the notebook shows CRCD alone).
* The schedule switches per epoch (theirs per iteration, at 96% of all iterations); equal
  when 96% of the epochs is a whole number (240 of 250).
* As for CRD (``crd.py``): negatives drawn in the loss, ``F.normalize`` where they divide by
  the norm (the relations already use ``F.normalize`` in theirs), the memory moves in
  training mode only, a batch may not hold a sample twice, float32 under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reference_impls.algorithms.contrastive.crd import CRDLoss
from reference_impls.common.validation import in_unit_interval

RELATION_DELTA = 1e-6  # the authors' constant added before normalising a relation


class CRCDLoss(CRDLoss):
    """Zhu et al.'s relation contrastive loss on CRD's memory banks.

    Args:
        student_dim, teacher_dim, num_samples, labels: as for ``CRDLoss``.
        feature_dim: width of the contrastive space (128).
        num_negatives: $K$ (500).
        temperature: $\\tau$ (0.05).
        momentum: $m$ of the memory update (0.5).
        weight: $\\beta$ (1.0).
        distill_fraction: the part of training (in epochs, from ``on_epoch_start``) with the
            weight on; 0 afterwards (0.96; 1.0 keeps it on throughout).

    Called like ``CRDLoss``: ``loss(student_embedding, teacher_embedding, index, contrast_index=None)``.
    The cost grows as $B^2 (K + 1)\\,d$ per side.
    """

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        num_samples: int,
        labels: torch.Tensor | None = None,
        feature_dim: int = 128,
        num_negatives: int = 500,
        temperature: float = 0.05,
        momentum: float = 0.5,
        weight: float = 1.0,
        distill_fraction: float = 0.96,
    ) -> None:
        super().__init__(
            student_dim,
            teacher_dim,
            num_samples,
            labels,
            feature_dim,
            num_negatives,
            temperature,
            momentum,
            weight,
        )
        self.distill_fraction = in_unit_interval("distill_fraction", distill_fraction)
        self.distilling = True

    @staticmethod
    def initial_memory(num_samples: int, feature_dim: int) -> torch.Tensor:
        """Uniform in $[-a, a]$, $a = 1/\\sqrt{d/3}$, then each row L2-normalised (theirs)."""
        bound = 1.0 / math.sqrt(feature_dim / 3)
        uniform = torch.rand(num_samples, feature_dim).mul_(2 * bound).add_(-bound)
        return uniform / uniform.norm(dim=1, keepdim=True)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Switch the term off once ``distill_fraction`` of the epochs have run (theirs: 240/250)."""
        self.distilling = epoch < self.distill_fraction * epochs

    def contrast_scores(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor,
        index: torch.Tensor,
        contrast_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """$e^{r^\\top \\bar r/\\tau}$, ``[B * B, K + 1]`` each, rows ordered (sample, anchor)."""
        teacher_memory = self.teacher_memory.to(student.dtype)
        student_memory = self.student_memory.to(teacher.dtype)
        student_side = self.relation_scores(
            student, teacher_memory[contrast_index], teacher_memory[index]
        )
        teacher_side = self.relation_scores(
            teacher, student_memory[contrast_index], student_memory[index]
        )
        return student_side, teacher_side

    def relation_scores(
        self, embedding: torch.Tensor, rows: torch.Tensor, anchors: torch.Tensor
    ) -> torch.Tensor:
        """Relations of ``embedding`` ``[B, d]`` and of the memory ``rows`` ``[B, K + 1, d]``
        to every anchor ``[A, d]``, compared: ``[B * A, K + 1]``."""
        query = F.normalize(embedding[:, None, :] - anchors[None, :, :] + RELATION_DELTA, dim=2)
        keys = F.normalize(rows[:, None, :, :] - anchors[None, :, None, :] + RELATION_DELTA, dim=3)
        similarity = torch.einsum("bakd,bad->bak", keys, query)  # [B, A, K + 1]
        return (similarity / self.temperature).exp().flatten(0, 1)

    def forward(
        self,
        student_embedding: torch.Tensor,
        teacher_embedding: torch.Tensor,
        index: torch.Tensor,
        contrast_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        loss = super().forward(student_embedding, teacher_embedding, index, contrast_index)
        return loss if self.distilling else 0.0 * loss

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, distill_fraction={self.distill_fraction}"
