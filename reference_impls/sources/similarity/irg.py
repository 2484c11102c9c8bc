r"""IRG: match the teacher's instance relationship graphs and how they change across layers.

Citation: ``liu2019knowledge`` (Liu et al., CVPR 2019).
Authors' code: https://github.com/yufanLIU/IRG (Caffe layers
``batch_euclidean_map_layer.cpp`` and ``batch_euclidean_vector_layer.cpp``, and
``IRG.prototxt``). Weights follow the PyTorch port in Knowledge-Distillation-Zoo
(https://github.com/AberHu/Knowledge-Distillation-Zoo, ``kd_losses/irg.py`` and the
``--w_irg_*`` defaults of its ``train_kd.py``).

At a layer $l$, the instance relationship graph of a batch has the examples'
features as vertices and their squared Euclidean distances, divided by the
largest one in the batch, as edges:

$$
A^{l}_{ij} = \frac{\lVert f^l_i - f^l_j \rVert_2^2}{\max_{p,q} \lVert f^l_p - f^l_q \rVert_2^2} .
$$

The IRG transformation between two layers $l_1 \to l_2$ of one network measures,
per example, how far its feature moves (after pooling $f^{l_1}$ to the spatial
size of $f^{l_2}$ and averaging groups of channels of the wider one):

$$
\Lambda_{i} = \frac{\lVert f^{l_1}_i - f^{l_2}_i \rVert_2^2}{\max_p \lVert f^{l_1}_p - f^{l_2}_p \rVert_2^2} .
$$

The loss matches the vertices of the logit layer, the edges of the chosen
layers and the transformation:

$$
\mathcal{L}_{\mathrm{IRG}} = \lambda_1 \operatorname{MSE}(z^s, z^t)
  + \frac{\lambda_2}{|\mathcal{E}|} \sum_{l \in \mathcal{E}} \operatorname{MSE}(A^{l}_s, A^{l}_t)
  + \lambda_3 \operatorname{MSE}(\Lambda_s, \Lambda_t) .
$$

Interface: ``IRGLoss`` declares ``inputs = ("features", "logits")``: it takes the
stage maps, plus the logits for the vertex term,
``loss(student_feats, teacher_feats, student_logits, teacher_logits)``, which is
how the generic ``OfflineDistiller`` calls it. With ``lambda_vertex=0`` the
logits may be left out (edge and transformation terms alone). The pooled
embedding's graph is built from the last stage map (global average pooling,
which is how our models form their embedding).

Defaults: $\lambda_1 = 0.1$, $\lambda_2 = 5$, $\lambda_3 = 5$ (the Zoo's
``w_irg_vert``, ``w_irg_edge``, ``w_irg_tran``); edges on the last two stage
maps and the pooled embedding, averaged; transformation between the last two
stages (the Zoo uses two intermediate maps and the pooled feature of its CIFAR
ResNets; here the last two of our three stages). The largest distance is a
constant in the backward pass, as in the authors' Caffe ``Backward_cpu``.
Deviation: for the edges, the authors' ``BatchEuclideanMapLayer::Backward_cpu``
(and ``Backward_gpu``) adds, for each entry $(n, m)$ of the graph, only the
derivative with respect to $f_n$, $2\,(f_n - f_m)/\max$, and never the equal and
opposite one with respect to $f_m$; as the incoming gradient of the symmetric
graph is symmetric, each example receives half of the true gradient of the edge
term (as if $\lambda_2$ were halved in the backward pass only). We keep autograd's
full gradient, the convention of the Zoo's PyTorch port whose weights we use.
(``BatchEuclideanVectorLayer``, the transformation, back-propagates to both of
its inputs in full.) Deviation: the authors' single-IRG CIFAR-10 example
(``IRG.prototxt``) trains only the embedding's edge term (loss weight 0.005, Caffe's half-sum Euclidean
loss); the full three-term loss here is the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import non_negative, same_stage_count, stage_index


def edge_matrix(features: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` squared Euclidean distances between examples, divided by their maximum."""
    flat = features.flatten(1)
    squared_norms = flat.pow(2).sum(dim=1)
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b avoids a [B, B, D] tensor; clamp rounding below zero
    # 2 * (a @ b.T), not (2 * a) @ b.T: scale the [B, B] product, not the [B, D] features
    distances = squared_norms.unsqueeze(0) + squared_norms.unsqueeze(1) - 2 * (flat @ flat.t())
    off_diagonal = 1.0 - torch.eye(len(flat), device=flat.device, dtype=flat.dtype)
    distances = distances.clamp_min(0.0) * off_diagonal
    # the authors' Caffe layer treats the maximum as a constant when back-propagating
    return distances / distances.max().detach().clamp_min(1e-12)


def _match_widths(earlier: torch.Tensor, later: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool the earlier map to the later one's size; average channel groups of the wider one."""
    if earlier.shape[2:] != later.shape[2:]:
        earlier = F.adaptive_avg_pool2d(earlier, later.shape[2:])
    narrow, wide = sorted((earlier.shape[1], later.shape[1]))
    if wide % narrow:
        raise ValueError(
            f"IRG transformation needs channel counts that divide, got {narrow}, {wide}"
        )
    group = wide // narrow

    def squeeze(m: torch.Tensor) -> torch.Tensor:
        if m.shape[1] == narrow:
            return m
        return m.reshape(m.shape[0], narrow, group, *m.shape[2:]).mean(dim=2)

    return squeeze(earlier), squeeze(later)


def transformation_vector(earlier: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
    """``[B]`` squared distance each example's feature moves between two layers, over its max."""
    earlier, later = _match_widths(earlier, later)
    distances = (earlier - later).flatten(1).pow(2).sum(dim=1)
    return distances / distances.max().detach().clamp_min(1e-12)


def _pooled(feature_map: torch.Tensor) -> torch.Tensor:
    return feature_map.mean(dim=(2, 3)) if feature_map.dim() == 4 else feature_map


class IRGLoss(DistillationLoss):
    """Liu et al.'s vertex + edge + transformation loss on stage maps (and logits).

    Args:
        lambda_vertex: weight $\\lambda_1$ of the logit (vertex) term (Zoo: 0.1).
        lambda_edge: weight $\\lambda_2$ of the mean edge term (Zoo: 5).
        lambda_transformation: weight $\\lambda_3$ of the transformation term (Zoo: 5).
        edge_stages: stages whose graphs are matched (default: the last two).
        embedding_edge: also match the graph of the pooled last stage (default: yes).
        transformation_stages: the ``(earlier, later)`` stages of the transformation.
    """

    inputs: ClassVar[tuple[str, str]] = ("features", "logits")
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        lambda_vertex: float = 0.1,
        lambda_edge: float = 5.0,
        lambda_transformation: float = 5.0,
        edge_stages: Sequence[int] = (-2, -1),
        embedding_edge: bool = True,
        transformation_stages: tuple[int, int] = (-2, -1),
    ) -> None:
        super().__init__()
        non_negative("lambda_vertex", lambda_vertex)
        non_negative("lambda_edge", lambda_edge)
        non_negative("lambda_transformation", lambda_transformation)
        if not edge_stages and not embedding_edge and lambda_edge > 0:
            raise ValueError("lambda_edge > 0 needs edge_stages or embedding_edge")
        if len(transformation_stages) != 2:
            raise ValueError(
                f"transformation_stages must be (earlier, later), got {transformation_stages}"
            )
        self.lambda_vertex = lambda_vertex
        self.lambda_edge = lambda_edge
        self.lambda_transformation = lambda_transformation
        self.edge_stages = tuple(edge_stages)
        self.embedding_edge = embedding_edge
        self.transformation_stages = tuple(transformation_stages)

    def forward(
        self,
        student_feats: Sequence[torch.Tensor],
        teacher_feats: Sequence[torch.Tensor],
        student_logits: torch.Tensor | None = None,
        teacher_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check_stages(student_feats, teacher_feats)
        device_type = student_feats[0].device.type
        # distances between examples lose too much precision in bf16
        with torch.autocast(device_type=device_type, enabled=False):
            student = [at_least_float32(f) for f in student_feats]
            teacher = [at_least_float32(f.detach()) for f in teacher_feats]
            total = self.lambda_edge * self._edge_loss(student, teacher)
            total = total + self.lambda_transformation * self._transformation_loss(student, teacher)
            if self.lambda_vertex > 0:
                if student_logits is None or teacher_logits is None:
                    raise ValueError(
                        "IRG's vertex term compares logits: pass student_logits and "
                        "teacher_logits (OfflineDistiller does), or set lambda_vertex=0"
                    )
                vertex = F.mse_loss(
                    at_least_float32(student_logits), at_least_float32(teacher_logits.detach())
                )
                total = total + self.lambda_vertex * vertex
        return total

    def _edge_loss(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        pairs = [(student[stage], teacher[stage]) for stage in self.edge_stages]
        if self.embedding_edge:
            pairs.append((_pooled(student[-1]), _pooled(teacher[-1])))
        if not pairs:
            return student[0].new_zeros(())
        losses = [F.mse_loss(edge_matrix(s), edge_matrix(t)) for s, t in pairs]
        return torch.stack(losses).mean()

    def _transformation_loss(
        self, student: list[torch.Tensor], teacher: list[torch.Tensor]
    ) -> torch.Tensor:
        earlier, later = self.transformation_stages
        student_moves = transformation_vector(student[earlier], student[later])
        teacher_moves = transformation_vector(teacher[earlier], teacher[later])
        return F.mse_loss(student_moves, teacher_moves)

    def _check_stages(
        self, student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]
    ) -> None:
        same_stage_count(student_feats, teacher_feats, "feature maps")
        for stage in (*self.edge_stages, *self.transformation_stages):
            stage_index("stages", stage, len(student_feats), negative_ok=True)

    def extra_repr(self) -> str:
        return (
            f"lambda_vertex={self.lambda_vertex}, lambda_edge={self.lambda_edge}, "
            f"lambda_transformation={self.lambda_transformation}, "
            f"edge_stages={self.edge_stages}, embedding_edge={self.embedding_edge}, "
            f"transformation_stages={self.transformation_stages}"
        )
