r"""Local structure preserving (LSP): match how teacher and student GNNs embed each node's neighbourhood.

Citation: ``yang2020distilling`` (Yang, Qiu, Song, Tao and Wang, CVPR 2020).
Authors' code: https://github.com/ihollywhy/DistillGCN.PyTorch (commit ``0c4c9b8``):
``local_structure.py`` (``distanceNet``: the kernel and the softmax over each node's
edges), ``auxilary_loss.py`` (``graph_KLDiv``, ``gen_mi_loss``: the divergence) and
``main.py`` (``train_student``: its weight and schedule; DGL, PPI, GAT teacher and student).

For every node $i$, the *local structure* is a distribution over the edges
$j \to i$ that end at it, computed from node embeddings $z$ with a similarity kernel:

$$
\mathrm{SIM}(z_i, z_j) = \exp\!\left(-\frac{\lVert z_i - z_j \rVert_1}{b}\right), \qquad
\mathrm{LS}_{ij} = \frac{\exp \mathrm{SIM}(z_i, z_j)}
  {\sum_{k:\,k \to i} \exp \mathrm{SIM}(z_i, z_k)} .
$$

The teacher's $\mathrm{LS}^t$ (from its embeddings $z^t$) and the student's
$\mathrm{LS}^s$ (from $z^s$, of any width: each is computed in its own space) are
compared node by node, and averaged over the $N$ nodes:

$$
\mathcal L_{\mathrm{LSP}} = \frac{1}{N} \sum_{i=1}^{N} \sum_{j:\,j \to i}
  \mathrm{LS}^t_{ij} \log \frac{\mathrm{LS}^t_{ij}}{\mathrm{LS}^s_{ij}} .
$$

A node without incoming edges contributes 0 but is counted in $N$ (DGL's built-in sum
gives 0 to a node that receives no message, since dmlc/dgl#177); a node with one incoming edge contributes 0 (both distributions are
$[1]$). The loss is 0 whenever student and teacher have the same pairwise distances
along the edges, e.g. equal embeddings, or embeddings that differ by a translation.

Defaults (the authors' code): bandwidth $b = 100$ (``distanceNet``:
``torch.exp((-1.0/100) * torch.sum(torch.abs(e), dim=-1))``); weight 1
(``--loss-weight 1.0``, folded in: the loss is returned unweighted and added to the
student's label loss); the term is active for the first 30 epochs only
(``--tofull 30``: from epoch 30 of 500 on, ``train_student`` switches to ``mode =
'full'`` and trains on the labels alone); ``active_epochs`` keeps that schedule through
``on_epoch_start`` (a loss never scheduled is always active). The embeddings the authors
compare are pre-activation hidden features: the teacher GAT's last hidden layer
(``middle_feats_t[1]``, the second of two) and the student GAT's third of four
(``--target-layer 2``).

Paper versus code: the paper presents $\mathrm{SIM}$ as a kernel of the two embeddings
and compares linear, polynomial and RBF kernels; the released code uses
$\exp(-\lVert z_i - z_j\rVert_1 / 100)$, an L1 distance in place of the RBF's squared
Euclidean one. We follow the code. The divergence is the code's $\mathrm{KL}(\mathrm{LS}^t
\,\|\, \mathrm{LS}^s)$: ``graph_KLDiv(subgraph, dist_s, dist_t)`` sums
``dist_t * (log(dist_t) - log(dist_s))`` over the edges entering each node.

Deviations: none in the arithmetic. Edges follow PyG's ``edge_index`` convention (row 0
the source $j$, row 1 the target $i$), as DGL's ``edge_softmax`` normalises over the
edges entering each destination node. We compute the per-node softmax in log space (the
code takes ``torch.log`` of the softmax), in at least float32, without a max-shift
(every $\exp \mathrm{SIM}$ lies in $(1, e]$). In float32 the value then differs from the
code's by up to ~1e-4 relative (both round; the loss is a small difference of logs) and
the gradient by ~1e-5; in float64 they agree to 1e-13.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import at_least, node_pairs, node_rows, positive


def local_structure(
    embeddings: torch.Tensor, edge_index: torch.Tensor, bandwidth: float
) -> torch.Tensor:
    """$\\log \\mathrm{LS}_{ij}$ for every edge $j \\to i$ of ``edge_index``: ``[E]``, in at least float32.

    The log-softmax of $\\mathrm{SIM}$ over the edges that share a target node.
    """
    source, target = edge_index.long()
    embeddings = at_least_float32(embeddings)
    distance = (embeddings[target] - embeddings[source]).abs().sum(dim=-1)
    similarity = torch.exp(-distance / bandwidth)
    # SIM lies in (0, 1], so exp(SIM) in (1, e]: the sum over a node's edges cannot overflow
    # and needs no max-shift; a node without incoming edges gets log(1) (no NaN in backward)
    total = similarity.new_zeros(embeddings.shape[0]).index_add(0, target, torch.exp(similarity))
    log_normaliser = total.masked_fill(total == 0, 1.0).log()
    return similarity - log_normaliser[target]


class LSPLoss(DistillationLoss):
    """LSP: KL between the teacher's and the student's neighbourhood distributions.

    Called as ``loss(student_embeddings, teacher_embeddings, edge_index)``: ``[N, D_s]``
    and ``[N, D_t]`` node embeddings of the same ``N`` nodes (widths may differ) and the
    graph's ``[2, E]`` ``edge_index`` (PyG convention, row 1 the node whose
    neighbourhood an edge belongs to).

    Args:
        bandwidth: $b$ of the kernel $\\exp(-\\lVert z_i - z_j\\rVert_1 / b)$ (code: 100).
        active_epochs: the term is applied in the first ``active_epochs`` epochs of a
            scheduled run and is 0 afterwards (code: 30, of 500); ``None``: always.
    """

    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = False

    def __init__(self, bandwidth: float = 100.0, active_epochs: int | None = 30) -> None:
        super().__init__()
        self.bandwidth = positive("bandwidth", bandwidth)
        self.active_epochs = (
            None if active_epochs is None else at_least("active_epochs", active_epochs, 1)
        )
        self.active = True

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """The authors' ``--tofull``: active while ``epoch < active_epochs``."""
        self.active = self.active_epochs is None or epoch < self.active_epochs

    def forward(
        self,
        student_embeddings: torch.Tensor,
        teacher_embeddings: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> torch.Tensor:
        num_nodes = node_rows("student_embeddings", student_embeddings)
        node_rows("teacher_embeddings", teacher_embeddings, num_nodes)
        node_pairs("edge_index", edge_index, num_nodes)
        log_student = local_structure(student_embeddings, edge_index, self.bandwidth)
        log_teacher = local_structure(teacher_embeddings.detach(), edge_index, self.bandwidth)
        per_edge = log_teacher.exp() * (log_teacher - log_student)
        loss = per_edge.sum() / num_nodes
        return loss if self.active else loss * 0.0

    def extra_repr(self) -> str:
        return f"bandwidth={self.bandwidth}, active_epochs={self.active_epochs}"
