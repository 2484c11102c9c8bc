r"""CRD: contrastive representation distillation against a memory bank of every training sample.

Citation: ``tian2019contrastive`` (Tian, Krishnan and Isola, ICLR 2020). Authors' code:
https://github.com/HobbitLong/RepDistiller: ``crd/criterion.py`` (``CRDLoss``,
``ContrastLoss``, ``Embed``), ``crd/memory.py`` (``ContrastMemory``), the negatives drawn by
``dataset/cifar100.py: CIFAR100InstanceSample`` (``mode="exact"``), the options of
``train_student.py`` and the weight of ``scripts/run_cifar_distill.sh`` (``--distill crd -a 0 -b 0.8``).

CRD maximises a lower bound on the mutual information between the teacher's and the
student's representations of a sample: the pair (student, teacher) of the same sample is
the positive, pairs of different samples are negatives. Both networks' penultimate
embeddings go through a linear head and L2 normalisation,
$s_i = \mathrm{normalize}(W_s f^s_i + b_s)$ and $t_i = \mathrm{normalize}(W_t f^t_i + b_t)$
(both heads are trained). A memory bank keeps one entry per training sample and side,
$\bar s_j$ and $\bar t_j$, so that $K$ negatives (16384) do not need $K$ forward passes.
A pair is scored against NCE's uniform noise $P_n = 1/N$ over the $N$ training samples,

$$
h(u, v) = \frac{e^{u^\top v / \tau} / Z}{e^{u^\top v / \tau} / Z + K / N},
$$

and the loss is NCE (the paper's Eq. 18) with the student as anchor against the teacher's
memory, plus the teacher as anchor against the student's memory:

$$
\mathcal{L}_{\mathrm{CRD}} = -\frac{\beta}{B} \sum_{i=1}^{B} \Big[
    \log h(s_i, \bar t_i) + \sum_{k=1}^{K} \log\big(1 - h(s_i, \bar t_{j_{ik}})\big)
  + \log h(t_i, \bar s_i) + \sum_{k=1}^{K} \log\big(1 - h(t_i, \bar s_{j_{ik}})\big) \Big],
$$

where $j_{i1}, \dots, j_{iK}$ are the negatives of sample $i$. After each step the entries of
the batch move toward the new embeddings,
$\bar s_i \leftarrow \mathrm{normalize}\big(m\, \bar s_i + (1 - m)\, s_i\big)$, and likewise $\bar t_i$.

Defaults (the CIFAR-100 setting of the authors' code):

* ``feature_dim=128``, ``num_negatives=16384``, ``temperature=0.07``, ``momentum=0.5``
  (``--feat_dim``, ``--nce_k``, ``--nce_t``, ``--nce_m``); the embeddings are the pooled
  features before the classifier (``feat_s[-1]``, ``feat_t[-1]``).
* ``weight=0.8``: the authors' external weight $\beta$ (``-b 0.8``, with CE weight 1 and no
  KD term, ``-a 0``) folded in: use ``OfflineDistiller(student, teacher, CRDLoss(...))``
  with ``ce_weight=1, kd_weight=1``. Their "CRD+KD" adds a ``KDLoss`` (``-a 1``).
* $Z$: estimated on the first call as $N$ times the mean of $e^{u^\top v/\tau}$ over that batch
  and its $K + 1$ columns, one constant per side (their ``params[2]``, ``params[3]``), a
  constant afterwards (no gradient through it). It is the buffer ``normalizers``
  (0 = not estimated yet), saved in ``state_dict`` with the memory banks.
* Memory banks ``student_memory`` and ``teacher_memory``, ``[N, feature_dim]`` buffers,
  start uniform in $[-a, a]$, $a = 1 / \sqrt{d/3}$, not normalised (theirs).
* $\epsilon = 10^{-7}$ in the denominators of the NCE terms (theirs).
* Negatives: given ``labels`` (the training split's labels, ``[N]``), each sample's
  $K$ negatives are drawn without replacement among the samples of the *other* classes
  (with replacement when fewer than $K$ are available), as their training data set does
  (``CIFAR100InstanceSample``, ``mode="exact"``: that is how the paper's CIFAR-100 numbers
  were obtained). Without ``labels``, uniformly with replacement over the whole bank, as
  their ``ContrastMemory`` samples itself when no ``contrast_idx`` is given (``AliasMethod``
  with equal weights). ``contrast_index`` (their ``contrast_idx``, ``[B, K + 1]``, column 0
  the sample itself) passes them explicitly.

Sample indices: ``forward(student_embedding, teacher_embedding, index)`` takes each
sample's row in the training split; the class declares ``needs_index``, so
``OfflineDistiller`` declares it too and ``reference_impls.common.train`` passes the
indices of each batch.

Deliberate deviations:

* The negatives are drawn in the loss, on the inputs' device, from random keys (sorting
  ``torch.rand`` keys, in float64 so that no two tie), instead of by the data loader's
  workers with NumPy; the distribution is the same. Their ``mode="relax"`` (a random positive
  of the same class) is not implemented.
* L2 normalisation divides by $\max(\lVert x \rVert, 10^{-12})$ (``F.normalize``); theirs
  by $\lVert x \rVert$: the same for any non-zero vector, and no NaN for a zero one.
* The memory banks move only in training mode (theirs whenever the criterion is called,
  which their code does only in training), so evaluating the loss leaves them alone.
* A batch that holds a sample twice is refused (its memory update would be ambiguous;
  their data loader never produces one).
* Precision: the heads and the scores are computed in float32 under ``torch.autocast``
  (half-precision inputs are upcast; float64 is kept): the scores are exponentials of
  similarities divided by 0.07, which bf16 would round by several percent.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.connectors import same_dtype
from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import averaged_over_ranks, gathered_rows
from reference_impls.common.validation import (
    at_least,
    in_unit_interval,
    non_negative,
    positive,
    sample_indices,
)

NCE_EPS = 1e-7  # the authors' eps in the denominators of the NCE terms


class EmbeddingHead(nn.Module):
    """Linear map into the contrastive space, then L2 normalisation (the authors' ``Embed``)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), p=2, dim=1)


def draw_contrast_indices(
    index: torch.Tensor, num_negatives: int, num_samples: int, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """``[B, K + 1]`` rows of the memory bank: column 0 each sample itself, then ``K`` negatives.

    With ``labels`` (``[num_samples]``), the negatives are samples of other classes, without
    replacement where enough exist (the authors' ``CIFAR100InstanceSample``, mode "exact");
    without, uniform with replacement over the bank (their ``ContrastMemory`` sampler).
    """
    batch, device = index.shape[0], index.device
    if labels is None:
        drawn = torch.randint(0, num_samples, (batch, num_negatives + 1), device=device)
        drawn[:, 0] = index
        return drawn
    same_class = labels[index].unsqueeze(1) == labels.unsqueeze(0)  # [B, N]
    # random keys, own class last: sorting them shuffles the other classes' samples
    keys = torch.rand(batch, num_samples, device=device, dtype=torch.float64)
    shuffled = keys.masked_fill(same_class, -1.0).argsort(dim=1, descending=True)
    available = (~same_class).sum(dim=1, keepdim=True)  # [B, 1]
    positions = torch.arange(num_negatives, device=device).expand(batch, -1)
    short = available < num_negatives  # too few: draw with replacement, as the authors do
    if bool(short.any()):
        uniform = torch.rand(batch, num_negatives, device=device, dtype=torch.float64)
        with_replacement = (uniform * available).long().clamp_max(available - 1)
        positions = torch.where(short, with_replacement, positions)
    return torch.cat([index.unsqueeze(1), shuffled.gather(1, positions)], dim=1)


def nce_loss(scores: torch.Tensor, num_samples: int) -> torch.Tensor:
    """NCE of ``[R, K + 1]`` scores $e^{u^\\top v/\\tau}/Z$, the positive first (Eq. 18), mean over rows."""
    noise = (scores.shape[1] - 1) / num_samples  # K P_n: K noise samples from P_n = 1/N
    positive_term = torch.log(scores[:, 0] / (scores[:, 0] + noise + NCE_EPS))
    negative_terms = torch.log(noise / (scores[:, 1:] + noise + NCE_EPS))
    return -(positive_term.sum() + negative_terms.sum()) / scores.shape[0]


def _embeddings(name: str, tensor: torch.Tensor, dim: int) -> None:
    if tensor.dim() != 2 or tensor.shape[1] != dim:
        raise ValueError(
            f"{name} must have shape [B, {dim}] (a batch of embeddings of the width the loss "
            f"was built for), got shape {tuple(tensor.shape)}"
        )


class CRDLoss(DistillationLoss):
    """Tian et al.'s contrastive representation distillation, with both memory banks.

    Args:
        student_dim, teacher_dim: widths of the student's and teacher's embeddings.
        num_samples: $N$, the training split's size: one memory entry per sample.
        labels: the training split's labels ``[N]``: negatives from other classes (the
            authors' training pipeline); ``None``: uniform over the bank.
        feature_dim: width of the contrastive space (128).
        num_negatives: $K$ (16384); smaller than ``num_samples``.
        temperature: $\\tau$ (0.07).
        momentum: $m$ of the memory update (0.5).
        weight: $\\beta$, the authors' external weight (0.8), folded in.

    Called ``loss(student_embedding, teacher_embedding, index, contrast_index=None)`` with
    ``[B, D]`` embeddings and each sample's row in the training split ``[B]``.
    """

    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = False
    needs_index: ClassVar[bool] = True

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        num_samples: int,
        labels: torch.Tensor | None = None,
        feature_dim: int = 128,
        num_negatives: int = 16384,
        temperature: float = 0.07,
        momentum: float = 0.5,
        weight: float = 0.8,
    ) -> None:
        super().__init__()
        at_least("student_dim", student_dim, 1)
        at_least("teacher_dim", teacher_dim, 1)
        at_least("feature_dim", feature_dim, 1)
        at_least("num_negatives", num_negatives, 1)
        if num_samples <= num_negatives:
            raise ValueError(
                f"the memory bank (num_samples={num_samples}) must be larger than "
                f"num_negatives={num_negatives}: each sample is contrasted with the entries of "
                "num_negatives other samples; lower num_negatives for a small data set"
            )
        self.num_samples = num_samples
        self.num_negatives = num_negatives
        self.temperature = positive("temperature", temperature)
        self.momentum = in_unit_interval("momentum", momentum)
        self.weight = non_negative("weight", weight)
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.student_head = EmbeddingHead(student_dim, feature_dim)
        self.teacher_head = EmbeddingHead(teacher_dim, feature_dim)
        self.register_buffer("student_memory", self.initial_memory(num_samples, feature_dim))
        self.register_buffer("teacher_memory", self.initial_memory(num_samples, feature_dim))
        self.register_buffer("normalizers", torch.zeros(2))  # Z per side; 0: not estimated yet
        self.register_buffer("labels", None if labels is None else self._checked(labels))

    def _checked(self, labels: torch.Tensor) -> torch.Tensor:
        if tuple(labels.shape) != (self.num_samples,):
            raise ValueError(
                f"labels must have shape ({self.num_samples},) (one per training sample, "
                f"num_samples), got shape {tuple(labels.shape)}"
            )
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must hold integer class indices, got dtype {labels.dtype}")
        if labels.unique().numel() < 2:
            raise ValueError("labels hold a single class: there is no other class to draw from")
        return labels.detach().clone()

    @staticmethod
    def initial_memory(num_samples: int, feature_dim: int) -> torch.Tensor:
        """Uniform in $[-a, a]$, $a = 1/\\sqrt{d/3}$ (``ContrastMemory``: rows of about unit norm)."""
        bound = 1.0 / math.sqrt(feature_dim / 3)
        return torch.rand(num_samples, feature_dim).mul_(2 * bound).add_(-bound)

    def contrast_scores(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor,
        index: torch.Tensor,
        contrast_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """$e^{u^\\top v/\\tau}$, ``[B, K + 1]`` each: the student against the teacher's memory
        rows, and the teacher against the student's."""
        teacher_rows = self.teacher_memory[contrast_index].to(student.dtype)  # [B, K + 1, d]
        student_rows = self.student_memory[contrast_index].to(teacher.dtype)
        student_side = torch.bmm(teacher_rows, student.unsqueeze(2)).squeeze(2)
        teacher_side = torch.bmm(student_rows, teacher.unsqueeze(2)).squeeze(2)
        return (student_side / self.temperature).exp(), (teacher_side / self.temperature).exp()

    def forward(
        self,
        student_embedding: torch.Tensor,
        teacher_embedding: torch.Tensor,
        index: torch.Tensor,
        contrast_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _embeddings("student_embedding", student_embedding, self.student_dim)
        _embeddings("teacher_embedding", teacher_embedding, self.teacher_dim)
        batch = student_embedding.shape[0]
        if teacher_embedding.shape[0] != batch:
            raise ValueError(
                f"student_embedding and teacher_embedding must hold the same samples, got "
                f"batch sizes {batch} and {teacher_embedding.shape[0]}"
            )
        sample_indices("index", index, self.num_samples, (batch,))
        if index.unique().numel() != batch:
            raise ValueError("index holds a sample twice: each sample has one memory entry")
        if contrast_index is None:
            contrast_index = draw_contrast_indices(
                index, self.num_negatives, self.num_samples, self.labels
            )
        else:
            shape = (batch, self.num_negatives + 1)
            sample_indices("contrast_index", contrast_index, self.num_samples, shape)
        # similarities divided by a small temperature, then exponentiated: float32 at least
        with torch.autocast(student_embedding.device.type, enabled=False):
            student_in = at_least_float32(student_embedding)
            teacher_in = at_least_float32(teacher_embedding.detach())
            same_dtype(type(self).__qualname__, self.student_head, student_in)
            student = self.student_head(student_in)
            teacher = self.teacher_head(teacher_in)
            student_scores, teacher_scores = self.contrast_scores(
                student, teacher, index, contrast_index
            )
            if not bool(self.normalizers.all()):  # Z from the first batch, a constant after
                means = torch.stack([student_scores.mean(), teacher_scores.mean()]).detach()
                self.normalizers.copy_(averaged_over_ranks(means) * self.num_samples)
            z_student, z_teacher = self.normalizers.to(student.dtype)
            loss = nce_loss(student_scores / z_student, self.num_samples) + nce_loss(
                teacher_scores / z_teacher, self.num_samples
            )
            if self.training:
                self.update_memory(student, teacher, index)
        return self.weight * loss

    @torch.no_grad()
    def update_memory(self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor):
        """$\\bar v_i \\leftarrow \\mathrm{normalize}(m \\bar v_i + (1 - m) v_i)$ for the batch's rows.

        Under torchrun the rows of every rank's share of the batch are gathered first, so
        that each rank's banks hold the whole batch's update, as in one process.
        """
        student, teacher, index = (gathered_rows(t) for t in (student, teacher, index))
        for memory, new in ((self.student_memory, student), (self.teacher_memory, teacher)):
            mixed = memory[index] * self.momentum + new.detach().to(memory.dtype) * (
                1 - self.momentum
            )
            memory.index_copy_(0, index, F.normalize(mixed, p=2, dim=1))

    def extra_repr(self) -> str:
        return (
            f"num_samples={self.num_samples}, num_negatives={self.num_negatives}, "
            f"temperature={self.temperature}, momentum={self.momentum}, weight={self.weight}, "
            f"negatives={'other classes' if self.labels is not None else 'uniform'}"
        )
