r"""Fewer frames: a student that sees a few frames mimics a teacher that sees them all.

Citation: ``bhardwaj2019efficient`` (Bhardwaj, Srinivasan and Khapra, CVPR 2019),
"Efficient Video Classification Using Fewer Frames".

A video classifier is expensive mostly because it encodes every frame. The teacher
reads all $N$ frames of a clip; the student, often of the same architecture, reads
only $k \ll N$ of them (every $j$-th frame: the authors' "uniform" student). The
student is trained to reproduce the teacher's final video representation $E$ (the
state just before the classifier) and its predictions $P$, besides the labels:

$$
\mathcal{L} = \underbrace{2\,\frac{1}{B}\sum_b \big\lVert E^t_b - E^s_b \big\rVert_2^2}_{\mathcal{L}_{rep}}
  + \underbrace{\sum_b \mathrm{KL}\big(P^t_b \,\big\|\, P^s_b\big)}_{\mathcal{L}_{pred}}
  + \mathcal{L}_{CE}(y, P^s).
$$

Authors' code: https://github.com/shwetabhardwaj44/EfficientVideoClassification_Youtube8M
(TensorFlow 1.3, commit ``cd5ec8cfb5117a8636bd8cfebeb17504bc48dac6``),
``code_student_uniform/train.py``, the graph built in ``build_graph`` (lines 359-406):
``student_loss_state = reduce_mean(reduce_sum(square(teacher_state - student_state), 1))``,
``pred_loss = reduce_sum(KL_div(predictions, student_predictions))`` with ``KL_div``
the KL divergence of ``tf.distributions.Categorical(probs=...)`` (teacher first), and
``total_student_loss = student_loss_state + pred_loss + student_label_loss +
student_loss_state + ...``: the representation term is counted **twice**, the
prediction term is **summed** over the batch while the other two are batch means.
These are our defaults (``representation_weight=2``, ``prediction_reduction="sum"``);
the paper writes the terms without their weights.

How ours maps onto theirs, and what differs:

* Their predictions are YouTube-8M's multi-label mixture-of-experts outputs (a
  sigmoid per class); ``Categorical(probs=...)`` renormalises them to sum to one
  before the KL. Our tiny models are single-label classifiers, so $P$ is the
  softmax of the logits (already normalised): the same KL of normalised
  distributions, computed in log space by ``reference_impls.common.losses.kl_divergence``.
  Their ``student_label_loss`` is YouTube-8M's per-class binary cross-entropy; ours
  is the softmax cross-entropy of the single label.
* Their teacher and student are both a hierarchical LSTM of the same widths, so
  $E^t$ and $E^s$ have the same size; so are ours by default
  (``reference_impls.common.video.few_frame_student`` is the teacher's network reading
  fewer frames, and its representation is tanh-bounded like an LSTM's state). For a
  student of another width, a trainable linear connector maps its representation to
  the teacher's (``nn.Identity`` when the widths agree, the paper's setting).
* Their ``run_train.sh`` trains the teacher and the student **simultaneously**, the
  teacher on its own labels only (the student's loss reaches student variables
  alone, ``variables_to_train='model_student'``). We distil from a teacher trained
  beforehand and frozen, as every offline method of the atlas; the student's
  objective at each step is the same.
* Frame sampling: their student reads every ``every_n``-th of the 300 padded
  YouTube-8M frames (``every_n=10``: 30 frames) and its ``num_frames`` is scaled in
  proportion. Our few-frame student reads $k$ frames evenly spread over each clip's
  real frames (``reference_impls.common.video.evenly_spaced_frames``): the same
  uniform sampling, exact on clips of any length; padded frames are never read.
* L2 weight decay (``regularization_penalty * stud_reg_loss``) is left to the
  optimiser.

The procedure runs the teacher on the whole packed clip and the student on the
same clip (the student picks its frames itself); ``forward(clips, target)``
returns the total and the three terms.
"""

from __future__ import annotations

import torch
from torch import nn

from reference_impls.common.losses import at_least_float32, kl_divergence, softened_log_probs
from reference_impls.common.validation import logit_pair, one_of
from reference_impls.common.video import ClipDistillation, VideoOutput, model_width


def _representations(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.dim() != 2 or teacher.dim() != 2 or student.shape != teacher.shape:
        raise ValueError(
            f"student_representation and teacher_representation must both have shape [B, D] "
            f"(the same D: map the student's with a connector first), got shapes "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}"
        )


def representation_loss(
    student_representation: torch.Tensor, teacher_representation: torch.Tensor
) -> torch.Tensor:
    """$\\frac{1}{B}\\sum_b \\lVert E^t_b - E^s_b \\rVert^2$ (their ``student_loss_state``), teacher detached."""
    _representations(student_representation, teacher_representation)
    difference = at_least_float32(teacher_representation.detach()) - at_least_float32(
        student_representation
    )
    return difference.pow(2).sum(dim=1).mean()


def prediction_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, reduction: str = "sum"
) -> torch.Tensor:
    """$\\sum_b \\mathrm{KL}(P^t_b \\| P^s_b)$ of the softmax predictions (their ``pred_loss``).

    ``reduction="mean"`` averages over the batch instead of summing.
    """
    logit_pair(student_logits, teacher_logits)
    one_of("reduction", reduction, ("sum", "mean"))
    return kl_divergence(
        softened_log_probs(student_logits),
        softened_log_probs(teacher_logits),
        reduction="sum" if reduction == "sum" else "batchmean",
    )


class FewerFramesDistillation(ClipDistillation):
    """Train a few-frame student on the labels and on an all-frame teacher's representation and predictions.

    Args:
        student: reads packed clips and returns a ``ModelOutput`` with ``logits`` and
            ``embedding`` (the video representation); it chooses its own few frames
            (``reference_impls.common.video.few_frame_student``).
        teacher: the same kind of model reading every frame; frozen here.
        representation_weight: weight of $\\mathcal{L}_{rep}$ (authors' code: 2, the term
            added twice).
        prediction_weight: weight of $\\mathcal{L}_{pred}$ (1).
        label_weight: weight of the cross-entropy (1).
        prediction_reduction: ``"sum"`` over the batch (authors' code) or ``"mean"``.
        student_dim, teacher_dim: widths of the two representations; read from the
            models' ``embedding_dim`` when omitted. A linear connector maps the
            student's to the teacher's when they differ.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        representation_weight: float = 2.0,
        prediction_weight: float = 1.0,
        label_weight: float = 1.0,
        prediction_reduction: str = "sum",
        student_dim: int | None = None,
        teacher_dim: int | None = None,
    ) -> None:
        # the weights in the order the loss adds their terms (the same float rounding)
        super().__init__(
            student,
            teacher,
            representation_weight=representation_weight,
            prediction_weight=prediction_weight,
            label_weight=label_weight,
        )
        self.prediction_reduction = one_of(
            "prediction_reduction", prediction_reduction, ("sum", "mean")
        )
        student_dim = model_width(student, "student", student_dim)
        teacher_dim = model_width(teacher, "teacher", teacher_dim)
        self.connector: nn.Module = (
            nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)
        )

    def distillation_terms(
        self, student: VideoOutput, teacher: VideoOutput
    ) -> dict[str, torch.Tensor]:
        return {
            "representation": representation_loss(
                self.connector(student.embedding), teacher.embedding
            ),
            "prediction": prediction_loss(
                student.logits, teacher.logits, self.prediction_reduction
            ),
        }

    def extra_repr(self) -> str:
        return (
            f"representation_weight={self.representation_weight}, "
            f"prediction_weight={self.prediction_weight}, label_weight={self.label_weight}, "
            f"prediction_reduction={self.prediction_reduction!r}"
        )
