r"""PointDistiller: local distillation of point features through a dynamic graph convolution.

Citation: ``zhang2023pointdistiller`` (Zhang, Dong, Tai and Ma, CVPR 2023). Authors' code:
https://github.com/RunpeiDong/PointDistiller at commit
``a5dc465baea597404843e021394b073cf424c881``: the raw-points path is the nested function
``get_knn_point_backbone`` of ``PointRCNN.forward_train`` in
``mmdet3d/models/detectors/point_rcnn.py`` (helpers ``knn_feature``, ``index_feature``,
``pool_features1d`` in ``mmdet3d/utils/kd_utils.py``), called with
``num_points=6000, kneighbours=128, reweight=True, sample_mode='top', pool_mode='max',
fuse_mode='idendity'``; the graph layers are ``teacher_gcn_adapt`` and
``student_gcn_adapt`` built in ``PointRCNN.__init__``.

A point cloud network's per-point features $F \in \mathbb{R}^{N \times C}$ describe
local geometry; PointDistiller transfers it neighbourhood by neighbourhood. The
teacher's **saliency** of point $i$ is its largest activation, $s_i = \max_c F^t_{ic}$;
the $Q$ most salient points are the queries $\mathcal Q$ (the paper's reweighting by
importance: the student learns on the points that matter to the teacher). Around each
query $i$ its $K$ nearest neighbours $\mathcal N(i)$ are found **in the teacher's
feature space** (a dynamic graph, as in DGCNN, not in 3-D space), and the same
neighbourhoods are read from the student. An EdgeConv-like layer
$h$ (1×1 convolution, batch norm, ReLU; one for the teacher, $h^t$, one for the
student, $h^s$, both trained by this loss and mapping to the student's width) embeds
each edge as the neighbour's feature concatenated with the centre's, and max pooling
over the neighbourhood gives one local feature per query:

$$
g_i = \max_{j \in \mathcal N(i)} h\big([F_j \,\|\, F_i]\big), \qquad
\mathcal L_{\mathrm{PD}} = \lambda\,\frac{1}{B\,Q\,C'}\sum_{b}\sum_{i \in \mathcal Q_b}
  \big\lVert g^s_{b,i} - g^t_{b,i} \big\rVert_2^2 .
$$

Defaults and where they come from:

* $\lambda = 2$: the code's ``dist += _dist.mean() * 2`` (the mean squared error over
  batch, queries and channels, times 2), folded in as ``weight``; the detector's own
  losses keep weight 1, so ``OfflineDistiller(..., ce_weight=1.0, kd_weight=1.0)``.
* Queries by the teacher's channel maximum (``point_saliency = pool_features1d(teacher)``,
  ``sample_mode='top'``), neighbours by squared Euclidean distance of teacher features
  (``knn_feature``; the centre is its own nearest neighbour), edges as ``[neighbour,
  centre]`` (``fuse_mode='idendity'``), max pooling over neighbours (``pool_mode='max'``).
* The graph layers: ``ConvModule`` 1×1 Conv2d (no bias, as ``bias='auto'`` gives with
  a norm), BN2d, ReLU, from $2C_t$ (teacher) and $2C_s$ (student) channels to the
  student's width $C_s$.
* **Reweighting in the code.** With ``reweight=True`` the raw-points path computes
  ``F.softmax(saliency / 1e-3, dim=-1) * B`` over a last axis of size 1 (so every weight
  equals the batch size) and then does not multiply the error by it: at the authors'
  settings the points are weighted only through the choice of the most salient queries.
  We follow the code: ``reweight=False`` by default. The voxel path (``get_voxel_knn``
  in ``voxelnet.py``) does weight each query's error by a softmax over the queries,
  $w_i = Q\,\mathrm{softmax}_i(n_i / T)$ with $n_i$ the points in voxel $i$ and
  $T = 10^{-2}$; ``reweight=True`` applies that form with the teacher saliency $s_i$
  in place of $n_i$ and ``temperature`` $T$ (default $10^{-3}$, the raw-points path's).

Deviations, declared:

* **Sizes.** The authors distil PointRCNN's 16,384 backbone points with $Q = 6000$
  queries and $K = 128$ neighbours. Our clouds have 128 points: the defaults are
  ``num_queries=48`` (the same 37 % of the points) and ``neighbours=16`` (DGCNN's $k =
  20$ scale; 128 neighbours would be every point). A cloud with fewer points than
  ``neighbours`` or ``num_queries`` is refused with an error naming the argument.
* **Which features.** The authors tap the detector's last feature-propagation layer
  (``fp_features``, ``[B, 128, N]``); ours reads the per-point maps of a tapped stage of
  the two point networks (``stage``, default the last: ``features[-1]``).
* The distance is computed in at least float32 (half precision upcast, float64 kept);
  the k-NN distances with autocast off, since they are differences of close terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.connectors import same_dtype
from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import (
    at_least,
    enough_points,
    non_negative,
    point_features,
    positive,
    same_points,
    stage_index,
)


def edge_layer(in_channels: int, out_channels: int) -> nn.Sequential:
    """The code's ``ConvModule``: 1×1 Conv2d without bias, BN2d, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def gather_points(features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of ``features`` ``[B, N, C]`` at ``index`` ``[B, ...]`` → ``[B, ..., C]``."""
    batch = torch.arange(features.shape[0], device=features.device)
    batch = batch.view(-1, *([1] * (index.dim() - 1)))
    return features[batch, index]


def knn_in_feature_space(queries: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, Q, k]`` indices of the ``k`` rows of ``points`` ``[B, N, C]`` nearest each query ``[B, Q, C]``."""
    with torch.autocast(queries.device.type, enabled=False):
        queries, points = at_least_float32(queries), at_least_float32(points)
        squared = (
            -2 * queries @ points.transpose(1, 2)
            + queries.pow(2).sum(-1, keepdim=True)
            + points.pow(2).sum(-1).unsqueeze(1)
        )
    return squared.topk(k, dim=-1, largest=False).indices


@torch.no_grad()
def neighbourhood_overlap(
    student: torch.Tensor, teacher: torch.Tensor, num_queries: int = 48, neighbours: int = 16
) -> float:
    """How much local structure two point feature maps ``[B, C, N]`` share (a measure, not a loss).

    For the teacher's ``num_queries`` most salient points of each cloud, the fraction of
    each query's ``neighbours`` nearest points in the teacher's feature space that are
    also among its nearest in the student's: 1 when the two networks group the points
    alike, about ``neighbours / N`` for unrelated features.
    """
    enough_points("neighbours", neighbours, student.shape[2])
    enough_points("num_queries", num_queries, student.shape[2])
    queries = teacher.amax(dim=1).topk(num_queries, dim=-1).indices
    found = []
    for features in (teacher, student):
        points = features.transpose(1, 2)
        found.append(knn_in_feature_space(gather_points(points, queries), points, neighbours))
    shared = (found[0].unsqueeze(-1) == found[1].unsqueeze(-2)).any(dim=-1)
    return shared.float().mean().item()


class PointDistillerLoss(DistillationLoss):
    """Local distillation over k-NN graphs of the teacher's most salient points (module docstring).

    Args:
        student_channels, teacher_channels: the width of each tapped stage of the two
            point networks (one entry per stage).
        stage: which stage's per-point features ``[B, C, N]`` are distilled (default the last).
        num_queries: points distilled per cloud, the most salient to the teacher.
        neighbours: ``K``, the size of each query's neighbourhood (itself included).
        weight: $\\lambda$, the code's factor 2.
        reweight: weight each query's error by ``Q * softmax(saliency / temperature)``
            (the voxel path's form); off at the raw-points path's defaults.
        temperature: of that softmax.

    Called ``loss(student_features, teacher_features)`` with the two lists of per-point maps.
    """

    inputs: ClassVar[str] = "features"

    def __init__(
        self,
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        stage: int = -1,
        num_queries: int = 48,
        neighbours: int = 16,
        weight: float = 2.0,
        reweight: bool = False,
        temperature: float = 1e-3,
    ) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError(
                f"student_channels and teacher_channels must give one width per stage each, got "
                f"{len(student_channels)} and {len(teacher_channels)}"
            )
        self.stage = stage_index("stage", stage, len(student_channels), negative_ok=True)
        self.num_queries = at_least("num_queries", num_queries, 1)
        self.neighbours = at_least("neighbours", neighbours, 1)
        self.weight = non_negative("weight", weight)
        self.reweight = reweight
        self.temperature = positive("temperature", temperature)
        self.student_channels = student_channels[stage]
        self.teacher_channels = teacher_channels[stage]
        width = self.student_channels
        self.teacher_graph = edge_layer(2 * self.teacher_channels, width)
        self.student_graph = edge_layer(2 * self.student_channels, width)

    def local_features(
        self, features: torch.Tensor, queries: torch.Tensor, neighbourhoods: torch.Tensor, graph
    ) -> torch.Tensor:
        """``[B, C', Q]``: the edge layer on ``[neighbour, centre]`` pairs, max-pooled over neighbours."""
        points = features.transpose(1, 2)  # [B, N, C]
        centres = gather_points(points, queries)  # [B, Q, C]
        neighbours = gather_points(points, neighbourhoods)  # [B, Q, K, C]
        centres = centres.unsqueeze(2).expand_as(neighbours)
        edges = torch.cat([neighbours, centres], dim=-1).permute(0, 3, 1, 2)  # [B, 2C, Q, K]
        return graph(edges).amax(dim=-1)

    def forward(
        self, student_features: Sequence[torch.Tensor], teacher_features: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        stage_index("stage", self.stage, len(student_features), negative_ok=True)
        stage_index("stage", self.stage, len(teacher_features), negative_ok=True)
        student = student_features[self.stage]
        teacher = teacher_features[self.stage].detach()
        point_features("student_features[stage]", student, self.student_channels)
        point_features("teacher_features[stage]", teacher, self.teacher_channels)
        same_points(student, teacher)
        num_points = student.shape[2]
        enough_points("neighbours", self.neighbours, num_points)
        enough_points("num_queries", self.num_queries, num_points)
        same_dtype(type(self).__name__, self.student_graph, student)
        same_dtype(type(self).__name__, self.teacher_graph, teacher, "teacher features")

        saliency = teacher.amax(dim=1)  # [B, N]: the teacher's largest activation per point
        queries = saliency.topk(self.num_queries, dim=-1).indices  # [B, Q]
        teacher_points = teacher.transpose(1, 2)
        neighbourhoods = knn_in_feature_space(
            gather_points(teacher_points, queries), teacher_points, self.neighbours
        )
        local_teacher = self.local_features(teacher, queries, neighbourhoods, self.teacher_graph)
        local_student = self.local_features(student, queries, neighbourhoods, self.student_graph)
        squared = (at_least_float32(local_student) - at_least_float32(local_teacher)).pow(2)
        if self.reweight:
            query_saliency = at_least_float32(saliency.gather(1, queries))
            weights = F.softmax(query_saliency / self.temperature, dim=1) * self.num_queries
            squared = squared * weights.unsqueeze(1)
        return self.weight * squared.mean()


__all__ = [
    "PointDistillerLoss",
    "edge_layer",
    "gather_points",
    "knn_in_feature_space",
    "neighbourhood_overlap",
]
