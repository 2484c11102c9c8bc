r"""PointMCD: a multi-view image teacher distilled into a point-cloud student, view by view.

Citation: ``zhang2023pointmcd`` (Zhang, Hou and Qian, IEEE TMM 2023). Authors' code:
https://github.com/keeganhk/PointMCD at commit
``2edc8163020572bd223812f70b60b089e537ad77``: the student side is
``PointNet_Cls_Distiller.forward`` in ``cdbs/distillers.py`` (the ``mv_cdw_alignment``
layer, ``FC(1024, 512, True, 'relu')``), the loss and its weights the training loop of
``scripts/distiller_pn_c.py`` (``criterion = nn.L1Loss()``,
``loss = 0.1*loss_task + 0.001*loss_rglz + 1.0*loss_dist_cdw_mv``, ``loss_task =
smooth_cross_entropy(..., eps=0.2)`` of ``cdbs/miscs.py``); the teacher is
``Teacher_Cls`` in ``cdbs/modules.py``.

Among the multi-view papers of the leaf, PointMCD is the one for 3-D shape recognition
(its topic *3D Shape Recognition*), and the one whose two modalities our generated data
hold: several rendered views (the teacher's input) and the point cloud (the
student's). An MVCNN-style teacher (a shared CNN per view, a per-view descriptor,
max pooling over views) is trained on $V$ views of each shape; its per-view
descriptors $t_v \in \mathbb R^{D}$ are recorded once. The point student learns to
produce each of them from **the points that view sees** (visibility-aware feature
projection): with $m_{iv} \in \{0, 1\}$ whether point $i$ is visible in view $v$ and
$f_i \in \mathbb R^{C}$ the student's per-point feature,

$$
s_v = \phi\Big(\max_{i} \; m_{iv}\, f_i\Big), \qquad
\mathcal L = \lambda_{\mathrm{CE}}\,\mathrm{CE}_{\varepsilon}\big(y, S(x)\big)
  + \lambda\,\frac{1}{B V D}\sum_{b, v} \big\lVert s_{b,v} - t_{b,v} \big\rVert_1 ,
$$

where $\phi$ is a trainable alignment (linear without bias, batch norm, ReLU) shared
over views, and $\mathrm{CE}_\varepsilon$ the cross-entropy with label smoothing
$\varepsilon$ spread over the wrong classes. At test time the student reads the points
alone.

Defaults and where they come from:

* $\lambda = 1$ with $\lambda_{\mathrm{CE}} = 0.1$ and $\varepsilon = 0.2$
  (``distiller_pn_c.py``): ``PointMCDLoss(weight=1.0)`` and
  ``PointMCD(ce_weight=0.1, label_smoothing=0.2)``.
* The mask multiplies the features and the maximum runs over all points (``pwe_dup *
  mvv_dup`` then ``max(dim=2)``), as in the code: for non-negative (post-ReLU) features
  this is the maximum over the visible points, and 0 for a view that sees none.
* The L1 distance is averaged over batch, views and channels (``nn.L1Loss()``).
* The teacher's descriptors are recorded once, before the student is trained (the
  authors' ``ModelNet40_Joint_Loader`` reads them from files written by the teacher).

Deviations, declared:

* The authors' PointNet student has input and feature transforms and adds their
  regulariser (``0.001*loss_rglz``); our :class:`~reference_impls.common.point_clouds.PointNet`
  has none, so the term is absent.
* The authors' classifier reads the point student's aligned global codeword
  (``cdw_alignment`` on the max-pooled features, a layer trained only by the task
  loss); ours classifies the student's pooled embedding directly (its own ``fc``).
* Sizes: $D = 512$, 12 views and 1024 points there; here the teacher's descriptor
  width (64 in the notebook), 6 views and 128 points.
* Visibility comes from our z-buffer renders
  (:func:`reference_impls.common.point_clouds.render_depth`), the authors' from their
  own renderer.
* The L1 distance is computed in at least float32 (half precision upcast, float64 kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.connectors import same_dtype
from reference_impls.common.interfaces import DistillationLoss, DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import logits_of
from reference_impls.common.validation import (
    at_least,
    in_unit_interval,
    non_negative,
    point_features,
    stage_index,
)


def smoothed_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float
) -> torch.Tensor:
    """The code's ``smooth_cross_entropy``: ``1 - eps`` on the class, ``eps / (C - 1)`` on each other."""
    num_classes = logits.shape[1]
    one_hot = F.one_hot(target, num_classes).to(at_least_float32(logits).dtype)
    soft = one_hot * (1 - smoothing) + (1 - one_hot) * smoothing / (num_classes - 1)
    return -(soft * F.log_softmax(at_least_float32(logits), dim=1)).sum(dim=1).mean()


def visible_max_pool(point_feats: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
    """``[B, V, C]``: per view, the maximum over points of the visibility-masked features ``[B, C, N]``."""
    masked = point_feats.unsqueeze(1) * visibility.transpose(1, 2).unsqueeze(2).to(point_feats)
    return masked.amax(dim=-1)


class PointMCDLoss(DistillationLoss):
    """L1 between the teacher's per-view descriptors and the student's per-view pooled points.

    Args:
        student_channels: the width of each tapped stage of the point student.
        teacher_dim: $D$, the width of the teacher's per-view descriptors.
        stage: which stage's per-point features ``[B, C, N]`` are pooled (default the last).
        weight: $\\lambda$ (1.0 in the authors' runs).

    Called ``loss(student_features, teacher_view_descriptors, visibility)``: the student's
    list of per-point maps, the teacher's ``[B, V, D]`` descriptors, and ``visibility``
    ``[B, N, V]`` (bool or 0/1: point ``i`` seen in view ``v``).
    """

    inputs: ClassVar[str] = "features"

    def __init__(
        self,
        student_channels: Sequence[int],
        teacher_dim: int,
        stage: int = -1,
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.stage = stage_index("stage", stage, len(student_channels), negative_ok=True)
        self.student_channels = student_channels[stage]
        self.teacher_dim = at_least("teacher_dim", teacher_dim, 1)
        self.weight = non_negative("weight", weight)
        self.alignment = nn.Sequential(
            nn.Linear(self.student_channels, teacher_dim, bias=False),
            nn.BatchNorm1d(teacher_dim),
            nn.ReLU(inplace=True),
        )

    def student_view_descriptors(
        self, student_features: Sequence[torch.Tensor], visibility: torch.Tensor
    ) -> torch.Tensor:
        """$s_v$ ``[B, V, D]``: each view's visible points, max-pooled and aligned."""
        stage_index("stage", self.stage, len(student_features), negative_ok=True)
        points = student_features[self.stage]
        point_features("student_features[stage]", points, self.student_channels)
        batch, _, num_points = points.shape
        if visibility.dim() != 3 or tuple(visibility.shape[:2]) != (batch, num_points):
            raise ValueError(
                f"visibility must have shape [B, N, V] = [{batch}, {num_points}, V] (whether each "
                f"point is seen in each view), got shape {tuple(visibility.shape)}"
            )
        same_dtype(type(self).__name__, self.alignment, points)
        pooled = visible_max_pool(points, visibility)  # [B, V, C]
        views = pooled.shape[1]
        return self.alignment(pooled.reshape(batch * views, -1)).reshape(batch, views, -1)

    def forward(
        self,
        student_features: Sequence[torch.Tensor],
        teacher_view_descriptors: torch.Tensor,
        visibility: torch.Tensor,
    ) -> torch.Tensor:
        student = self.student_view_descriptors(student_features, visibility)
        teacher = teacher_view_descriptors.detach()
        if tuple(teacher.shape) != tuple(student.shape):
            raise ValueError(
                f"teacher_view_descriptors must have shape [B, V, D] = {tuple(student.shape)} "
                f"(one {self.teacher_dim}-wide descriptor per view of each sample), got shape "
                f"{tuple(teacher.shape)}"
            )
        distance = (at_least_float32(student) - at_least_float32(teacher)).abs().mean()
        return self.weight * distance


class PointMCD(DistillationProcedure):
    """A point student trained on labels and on a multi-view teacher's recorded descriptors.

    Args:
        student: a point network returning a ``ModelOutput`` (per-point ``features``, logits).
        teacher_view_descriptors: ``[S, V, D]`` the frozen teacher's descriptors of every
            training sample (``MultiViewCNN.view_descriptors`` of its views), recorded once.
        visibility: ``[S, N, V]`` which points of each training cloud each view sees.
        loss: the :class:`PointMCDLoss` (default: built from the student's ``channels``
            and ``D``).
        ce_weight: $\\lambda_{\\mathrm{CE}}$ (0.1). label_smoothing: $\\varepsilon$ (0.2).

    Called ``procedure(points, labels, index)`` by ``reference_impls.common.train`` (it
    declares ``needs_index``: ``index`` picks each cloud's recorded descriptors and
    visibility, as the authors' joint loader does).
    """

    needs_index: ClassVar[bool] = True

    def __init__(
        self,
        student: nn.Module,
        teacher_view_descriptors: torch.Tensor,
        visibility: torch.Tensor,
        loss: PointMCDLoss | None = None,
        ce_weight: float = 0.1,
        label_smoothing: float = 0.2,
    ) -> None:
        super().__init__()
        if teacher_view_descriptors.dim() != 3:
            raise ValueError(
                f"teacher_view_descriptors must have shape [S, V, D], got shape "
                f"{tuple(teacher_view_descriptors.shape)}"
            )
        samples, views, dim = teacher_view_descriptors.shape
        if visibility.dim() != 3 or (visibility.shape[0], visibility.shape[2]) != (samples, views):
            raise ValueError(
                f"visibility must have shape [S, N, V] with S = {samples} and V = {views} (as "
                f"teacher_view_descriptors), got shape {tuple(visibility.shape)}"
            )
        self.student = student
        self.loss = loss if loss is not None else PointMCDLoss(student.channels, dim)
        self.ce_weight = non_negative("ce_weight", ce_weight)
        self.label_smoothing = in_unit_interval("label_smoothing", label_smoothing)
        self.register_buffer("teacher_view_descriptors", teacher_view_descriptors.detach().clone())
        self.register_buffer("visibility", visibility.clone())

    def forward(
        self, points: torch.Tensor, labels: torch.Tensor, index: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if tuple(index.shape) != (points.shape[0],):
            raise ValueError(
                f"index must have shape {(points.shape[0],)} (one sample index per cloud), got "
                f"shape {tuple(index.shape)}"
            )
        out = self.student(points)
        task = smoothed_cross_entropy(logits_of(out), labels, self.label_smoothing)
        distill = self.loss(
            out.features, self.teacher_view_descriptors[index], self.visibility[index]
        )
        total = self.ce_weight * task + distill
        return {"loss": total, "ce": task.detach(), "kd": distill.detach()}


__all__ = ["PointMCD", "PointMCDLoss", "smoothed_cross_entropy", "visible_max_pool"]
