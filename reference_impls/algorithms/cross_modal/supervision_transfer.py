r"""Supervision transfer: a teacher on a labelled modality trains a student's features on a paired one.

Citation: ``gupta2016cross`` (Gupta, Hoffman and Malik, CVPR 2016), "Cross Modal
Distillation for Supervision Transfer".

A network $\Phi$ trained with labels on a source modality $M_s$ (RGB images)
supervises a network $\Psi$ on a second modality $M_d$ (depth, optical flow) for
which no labels exist. The two see the same scenes: paired images
$(I_s, I_d) \in \mathcal{U}_{s,d}$. Only $\Psi$'s weights $W_d$ are learned, by
regressing its representation at a chosen layer $j^*$ onto the frozen teacher's
at layer $i^*$ (Eq. 1 of the paper):

$$
\min_{W_d} \sum_{(I_s, I_d) \in \mathcal{U}_{s,d}}
  f\Big(t\big(\phi^{i^*}(I_s)\big),\ \psi^{j^*}(I_d)\Big),
$$

with $f$ the (squared) L2 distance and $t$ the identity. The paper transfers at
pool5, the last convolutional map, and finds it better than the fully connected
layers; the student so trained is then fine-tuned with whatever few labels the
second modality has, or, with no labels at all, the teacher's layers above
$i^*$ are put on top of the student's $\psi^{j^*}$ (the paper's zero-shot
experiment: the RGB detector's top layers on depth features).

Authors' code: https://github.com/s-gupta/fast-rcnn (branch ``distillation``,
commit da935a1). It releases the transferred networks and the Fast R-CNN
fine-tuning on NYUD2, not the transfer training itself: there is no function to
compare against, so this file follows the paper's equation, and we checked it against
that equation (the tests compute it by hand). What the release does show:
``data/init_models/ST_vgg_to_alexnet_hha/test.prototxt``, the AlexNet depth (HHA)
student taught by VGG-16 on RGB, stops at ``pool5`` and pads ``conv1`` by 7 (AlexNet
pads by 0) so that its pool5 is 7x7 like VGG-16's: student and teacher maps agree in
size by construction. Their widths do not (256 channels against 512), so some
layer bridged them during transfer and was dropped afterwards; the release does not
include it.

Our choices, where the paper leaves them open:

* $f$ is Caffe's ``EuclideanLoss`` (the loss layer of the authors' Caffe code base),
  half the squared distance summed over the map, averaged over the batch:
  $\frac{1}{2B}\sum_b \lVert \psi^{j^*}(I_d^b) - \phi^{i^*}(I_s^b) \rVert_2^2$.
* The connector: the identity when the two maps have the same width (the paper's
  $t$ = identity, AlexNet to AlexNet); otherwise a trainable 1x1 convolution on the
  student's map (with bias, no normalisation), to be dropped after transfer like
  the authors' bridging layer. Spatial sizes must agree, as in the release; a
  mismatch is an error naming the shapes.
* Layers: ``stage`` taps the same stage index in both networks (post-activation,
  like pool5), the last one by default.

The procedure reads no labels: ``forward(frames, target=None)`` ignores ``target``.
A batch is a pair ``(teacher_input, student_input)`` or one tensor of stacked
modalities whose first ``teacher_input_channels`` channels are the teacher's
(``reference_impls.common.paired_views``), so that ``reference_impls.common.train``
runs it on paired frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.models import ModelOutput
from reference_impls.common.paired_views import split_modalities
from reference_impls.common.training import freeze
from reference_impls.common.validation import at_least, stage_index
from reference_impls.schemes.offline.distiller import select_inputs


def stage_width(model: nn.Module, stage: int, name: str, given: int | None) -> int:
    """The channel width of ``model``'s tapped stage: ``given``, else read from ``model.channels``."""
    if given is not None:
        return at_least(f"{name}_width", given, 1)
    channels = getattr(model, "channels", None)
    if not isinstance(channels, Sequence):
        raise ValueError(
            f"{name}_width is required: the {name} ({type(model).__name__}) has no `channels` "
            "attribute to read the width of the tapped stage from"
        )
    stage_index("stage", stage, len(channels), negative_ok=True)
    return int(channels[stage])


def euclidean_loss(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """Caffe's ``EuclideanLoss``: $\\frac{1}{2B}\\sum_b \\lVert s_b - t_b \\rVert^2$, teacher detached."""
    if student_map.shape != teacher_map.shape:
        raise ValueError(
            f"the student's mapped stage has shape {tuple(student_map.shape)} but the teacher's "
            f"{tuple(teacher_map.shape)}; spatial sizes must agree (the authors padded the "
            "student's conv1 so that its pool5 matches the teacher's)"
        )
    difference = at_least_float32(student_map) - at_least_float32(teacher_map.detach())
    return 0.5 * difference.pow(2).flatten(1).sum(dim=1).mean()


class SupervisionTransfer(DistillationProcedure):
    """Train a student on an unlabelled modality to reproduce a frozen teacher's features.

    Args:
        student: the network of the second modality; returns a ``ModelOutput`` with
            ``features`` (wrap other models with ``reference_impls.common.with_features``).
        teacher: trained on the first modality; frozen here (eval mode, no gradients).
        stage: the stage index tapped in both (default ``-1``: the last map, the
            paper's pool5).
        student_width, teacher_width: channels of the tapped maps; read from the
            models' ``channels`` when omitted (``TinyCNN``).
        teacher_input_channels: in a stacked batch, how many leading channels are
            the teacher's modality.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        stage: int = -1,
        student_width: int | None = None,
        teacher_width: int | None = None,
        teacher_input_channels: int = 1,
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = freeze(teacher)
        self.stage = stage
        self.teacher_input_channels = at_least("teacher_input_channels", teacher_input_channels, 1)
        student_width = stage_width(student, stage, "student", student_width)
        teacher_width = stage_width(teacher, stage, "teacher", teacher_width)
        # t = identity where the widths agree; else a 1x1 bridge, dropped after transfer
        self.connector: nn.Module = (
            nn.Identity()
            if student_width == teacher_width
            else nn.Conv2d(student_width, teacher_width, kernel_size=1)
        )

    def train(self, mode: bool = True) -> SupervisionTransfer:
        super().train(mode)
        self.teacher.eval()  # the teacher's batch-norm statistics never move
        return self

    def _stage(self, output: ModelOutput | torch.Tensor, model: str) -> torch.Tensor:
        features = select_inputs(output, "features", type(self).__name__, model)
        stage_index("stage", self.stage, len(features), negative_ok=True)
        return features[self.stage]

    def forward(
        self,
        frames: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        target: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The transfer loss on a paired batch; ``target`` (labels) is never read."""
        teacher_input, student_input = split_modalities(
            frames, self.teacher_input_channels, type(self).__name__
        )
        with torch.no_grad():
            teacher_map = self._stage(self.teacher(teacher_input), "teacher")
        student_map = self.connector(self._stage(self.student(student_input), "student"))
        l2 = euclidean_loss(student_map, teacher_map)
        return {"loss": l2, "l2": l2.detach()}

    def stitched(self) -> StitchedClassifier:
        """The zero-label classifier: student up to ``stage``, connector, the teacher's layers above."""
        return StitchedClassifier(self.student, self.connector, self.teacher, self.stage)

    def extra_repr(self) -> str:
        return f"stage={self.stage}, teacher_input_channels={self.teacher_input_channels}"


class StitchedClassifier(nn.Module):
    """A classifier for the student's modality that needs no label of it.

    The student's map at ``stage`` goes through the connector, then through the
    teacher's remaining stages, pooling and classifier (a ``TinyCNN`` teacher: its
    ``stages``, ``pool`` and ``fc``). It shares every parameter with the procedure.
    """

    def __init__(
        self, student: nn.Module, connector: nn.Module, teacher: nn.Module, stage: int
    ) -> None:
        super().__init__()
        missing = [name for name in ("stages", "pool", "fc") if not hasattr(teacher, name)]
        if missing:
            raise TypeError(
                f"stitching needs a teacher with `stages`, `pool` and `fc` (a TinyCNN); "
                f"{type(teacher).__name__} lacks {missing}"
            )
        self.student, self.connector, self.teacher = student, connector, teacher
        self.stage = stage
        self.first_teacher_stage = stage % len(teacher.stages) + 1
        self.training = student.training  # evaluating it leaves the student in its mode

    def train(self, mode: bool = True) -> StitchedClassifier:
        super().train(mode)
        self.teacher.eval()  # the frozen teacher's batch-norm statistics never move
        return self

    def forward(self, x: torch.Tensor) -> ModelOutput:
        out = self.connector(select_inputs(self.student(x), "features")[self.stage])
        for teacher_stage in self.teacher.stages[self.first_teacher_stage :]:
            out, _ = teacher_stage(out)
        embedding = torch.flatten(self.teacher.pool(out), 1)
        return ModelOutput(self.teacher.fc(embedding), embedding=embedding)
