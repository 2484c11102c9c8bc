r"""SimKD: knowledge distillation with the reused teacher classifier.

Citation: ``chen2022knowledge`` (Chen, Mei, Zhang, Wang, Wang and Feng, CVPR 2022).
Authors' code: https://github.com/DefangChen/SimKD
(``models/util.py:SimKD``, ``helper/loops.py``, ``scripts/run_distill.sh``).

The student keeps its backbone but drops its own classifier. A projector $P$
maps the student's last feature map $F_s$ to the teacher's width and is trained,
with the student, to reproduce the teacher's last feature map $F_t$; at test
time the *teacher's* frozen classifier $g_t$ (global average pooling + linear)
is applied to the projected student features:

$$
\mathcal{L}_{\mathrm{SimKD}} = \beta\, \frac{1}{B\,C_t H W}\,\big\lVert F_t - P(F_s) \big\rVert_2^2,
\qquad
\hat y = g_t\big(\mathrm{GAP}(P(F_s))\big).
$$

The projector is a bottleneck (the authors' design, factor 2):
1x1 conv $C_s \to C_t/2$, BN, ReLU, 3x3 conv $C_t/2 \to C_t/2$, BN, ReLU,
1x1 conv $C_t/2 \to C_t$, BN, ReLU (convs without bias); the final ReLU matches
the teacher's post-ReLU target.

Defaults (authors' CIFAR-100 script ``run_distill.sh``: ``-c 0 -d 0 -b 1``):
the feature MSE alone (mean over all elements, $\beta = 1$), no cross-entropy
and no KL term. ``ce_weight`` lets you add the student's own cross-entropy on
the reused head's predictions, off by default.

Usage: ``SimKD(student, teacher)`` is a procedure; ``forward(x, y)`` returns
``{"loss", "feature_mse", "ce"}``. Its ``student`` attribute is the deployable
classifier ``ReusedClassifierStudent`` (student backbone + projector +
teacher's ``fc``), so ``train()`` and ``accuracy()`` evaluate the right model.

Deviations: where the two last maps differ in size, the authors pool the larger
one down; our procedure pools the teacher's map to the student's size when the
teacher's is larger and raises a clear error when the student's is larger
(pooling the student would need the teacher's size at inference; our tiny
pairs always match). The MSE is computed in at least float32 (half precision is upcast,
float64 kept).

On small models: the feature notebook (``student_cnn`` on 100 labelled digits, 9 epochs,
seeds 0 and 1) trains the authors' way, ``SimKD(student_cnn(), teacher)`` (the feature loss
alone, no labels), and measured 0.814 ± 0.006 test accuracy against 0.866 ± 0.011 for a
student trained with cross-entropy alone, the lowest of the notebook; its curve was still
rising at the last epoch. In a scratch run of the feature notebook's set-up (``student_cnn`` on 100 labelled digits, 9 epochs, seeds 0 and 1, only the loss changed), adding the labels with
``SimKD(student, teacher, ce_weight=1.0)`` measured 0.901 ± 0.001. With few labelled images
and a short schedule, try ``ce_weight=1.0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.models import ModelOutput
from reference_impls.common.training import freeze, logits_of
from reference_impls.common.validation import loss_weights


def projector(student_channels: int, teacher_channels: int, factor: int = 2) -> nn.Sequential:
    """The authors' 1x1-3x3-1x1 bottleneck mapping student to teacher width."""
    mid = teacher_channels // factor
    if mid < 1:
        raise ValueError(f"factor {factor} leaves no channels for width {teacher_channels}")
    return nn.Sequential(
        nn.Conv2d(student_channels, mid, kernel_size=1, bias=False),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid, teacher_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(teacher_channels),
        nn.ReLU(inplace=True),
    )


class ReusedClassifierStudent(nn.Module):
    """The deployed SimKD student: its backbone, the projector, the teacher's classifier.

    Returns a ``ModelOutput`` whose logits come from the teacher's ``fc`` on the
    pooled projected features; ``features[-1]`` is the projected map.
    """

    def __init__(self, backbone: nn.Module, projector: nn.Module, teacher_head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.teacher_head = teacher_head

    def forward(self, x: torch.Tensor) -> ModelOutput:
        out = self.backbone(x)
        projected = self.projector(out.features[-1])
        embedding = torch.flatten(F.adaptive_avg_pool2d(projected, 1), 1)
        logits = self.teacher_head(embedding)
        features = [*out.features[:-1], projected]
        return ModelOutput(logits, features, list(out.preact_features), embedding)


class SimKD(DistillationProcedure):
    """Train the student backbone + projector to match the teacher's last feature map.

    Args:
        student: a model returning ``ModelOutput``; its own ``fc`` is not used.
        teacher: a trained model with a linear classifier ``fc`` on pooled features;
            frozen here, and its classifier is reused by the student.
        factor: bottleneck reduction of the projector (authors: 2).
        beta: weight of the feature MSE (authors: 1).
        ce_weight: weight of cross-entropy on the reused head's logits (authors: 0).
        student_channels: width of the student's last stage (default: ``student.channels[-1]``).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        factor: int = 2,
        beta: float = 1.0,
        ce_weight: float = 0.0,
        student_channels: int | None = None,
    ) -> None:
        super().__init__()
        head = getattr(teacher, "fc", None)
        if not isinstance(head, nn.Linear):
            raise TypeError("SimKD reuses the teacher's classifier: teacher.fc must be nn.Linear")
        if student_channels is None:
            channels = getattr(student, "channels", None)
            if channels is None:
                raise ValueError("pass student_channels: the student has no 'channels' attribute")
            student_channels = channels[-1]
        loss_weights(beta=beta, ce_weight=ce_weight)
        self.teacher = freeze(teacher)
        self.beta = beta
        self.ce_weight = ce_weight
        self.student = ReusedClassifierStudent(
            student, projector(student_channels, head.in_features, factor), head
        )

    def train(self, mode: bool = True) -> SimKD:
        super().train(mode)
        self.teacher.eval()
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the deployed student (backbone + projector + teacher classifier)."""
        return logits_of(self.student(x))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        student_out = self.student(x)
        projected = student_out.features[-1]
        with torch.no_grad():
            target = self.teacher(x).features[-1]
        if projected.shape[-1] > target.shape[-1]:
            raise ValueError(
                f"student map {tuple(projected.shape[-2:])} is larger than the teacher's "
                f"{tuple(target.shape[-2:])}; SimKD here needs student size <= teacher size"
            )
        if projected.shape[-2:] != target.shape[-2:]:
            target = F.adaptive_avg_pool2d(target, projected.shape[-2:])
        feature_mse = F.mse_loss(at_least_float32(projected), at_least_float32(target.detach()))
        ce = F.cross_entropy(at_least_float32(student_out.logits), y)
        total = self.beta * feature_mse
        if self.ce_weight > 0:
            total = total + self.ce_weight * ce
        return {"loss": total, "feature_mse": feature_mse.detach(), "ce": ce.detach()}

    def extra_repr(self) -> str:
        return f"beta={self.beta}, ce_weight={self.ce_weight}"
