r"""TinyCLIP's affinity mimicking: the student's image-text affinities follow the teacher's.

Citation: ``wu2023tinyclip`` (Wu et al., TinyCLIP: CLIP Distillation via Affinity
Mimicking and Weight Inheritance, ICCV 2023).

For a batch of $B$ image-text pairs, a CLIP model's unit image embeddings $u_i$, text
embeddings $v_j$ and logit scale $s = e^{\log s}$ define the image-to-text and
text-to-image affinity distributions

$$
A^{I2T}_{ij} = \frac{\exp(s\, u_i^\top v_j)}{\sum_k \exp(s\, u_i^\top v_k)}, \qquad
A^{T2I}_{ij} = \frac{\exp(s\, v_i^\top u_j)}{\sum_k \exp(s\, v_i^\top u_k)} .
$$

Affinity mimicking trains the student to reproduce the teacher's, each model at its
own logit scale (the student's is learnt, the teacher's fixed), with a soft cross-entropy:

$$
\mathcal{L}_{\mathrm{distill}} = \frac{1}{2B} \sum_{i} \Big(
  \mathrm{CE}\big(A^{I2T}_{t,i}, A^{I2T}_{s,i}\big) + \mathrm{CE}\big(A^{T2I}_{t,i}, A^{T2I}_{s,i}\big)\Big),
\qquad \mathrm{CE}(p, q) = -\textstyle\sum_j p_j \log q_j .
$$

Authors' code: https://github.com/microsoft/Cream (commit
4a13c4091e78f9abd2160e7e01c02e48c1cf8fb9), ``TinyCLIP/src/open_clip/clip_soft_loss.py``,
``ClipSoftLoss.forward`` (``F.cross_entropy(logits, softmax(teacher_logits))`` per
direction), called in ``TinyCLIP/src/training/train.py`` (``loss_fn``) with
``average_two_losses=False`` and each direction multiplied by
``0.5 * distillation_alpha * distillation_weight``; ``--distillation-alpha`` and
``--distillation-weight`` default to 1 (the paper's setting: affinity mimicking alone, no
contrastive "hard" loss, which enters with weight ``1 - alpha = 0``). ``weight=1.0``
folds that in: each direction weighs one half. The features are the models' normalised
outputs (open_clip's ``encode_*(normalize=True)``); the loss does not normalise them,
and neither do we (pass unit vectors, as :class:`DualEncoder` returns).

Deviations. (1) Their loss gathers features over GPUs and compares each rank's rows with
all columns (``local_loss=True``); we compute one process's batch, which is the
one-GPU case. (2) The teacher's features and logit scale are detached here (their teacher
runs under ``torch.no_grad``). (3) Soft cross-entropy, not KL, as in their code: the value
exceeds the KL by the teacher's entropy, a constant for the student (same gradients).
TinyCLIP's other half, weight inheritance (initialising the student from pruned teacher
weights), is a model surgery, not a loss, and is not implemented.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from reference_impls.applications.foundation_models._clip_inputs import clip_inputs
from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32, softened_log_probs
from reference_impls.common.validation import non_negative


def affinities(
    image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-to-text and text-to-image logits ``s u_i^T v_j`` and ``s v_i^T u_j`` (``[B, B]`` each)."""
    image, text = at_least_float32(image), at_least_float32(text)
    return scale * image @ text.T, scale * text @ image.T


class AffinityMimickingLoss(DistillationLoss):
    """TinyCLIP's affinity mimicking (both directions, soft cross-entropy).

    Args:
        weight: factor on the sum of the two directions, each of which weighs one half
            (TinyCLIP's ``distillation_alpha * distillation_weight``, both 1).

    Called as ``loss(student_image, teacher_image, student_text, teacher_text,
    student_logit_scale, teacher_logit_scale)``: unit embeddings ``[B, Ds]`` / ``[B, Dt]``
    (the widths of student and teacher may differ), and each model's exponentiated logit
    scale (a positive scalar tensor or number).
    """

    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = non_negative("weight", weight)

    def directions(
        self,
        student_image: torch.Tensor,
        teacher_image: torch.Tensor,
        student_text: torch.Tensor,
        teacher_text: torch.Tensor,
        student_logit_scale: torch.Tensor | float,
        teacher_logit_scale: torch.Tensor | float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The image-to-text and text-to-image soft cross-entropies (unweighted, batch means)."""
        _, student_scale, teacher_scale = clip_inputs(
            student_image, teacher_image, student_text, teacher_text,
            student_logit_scale, teacher_logit_scale,
        )  # fmt: skip
        with torch.autocast(device_type=student_image.device.type, enabled=False):
            student_logits = affinities(
                student_image, student_text, at_least_float32(student_scale)
            )
            teacher_logits = affinities(
                teacher_image.detach(),
                teacher_text.detach(),
                at_least_float32(teacher_scale.detach()),
            )
            image_to_text, text_to_image = (
                -(softened_log_probs(teacher).exp().to(student) * softened_log_probs(student))
                .sum(-1)
                .mean()
                for student, teacher in zip(student_logits, teacher_logits, strict=True)
            )
        return image_to_text, text_to_image

    def forward(
        self,
        student_image: torch.Tensor,
        teacher_image: torch.Tensor,
        student_text: torch.Tensor,
        teacher_text: torch.Tensor,
        student_logit_scale: torch.Tensor | float,
        teacher_logit_scale: torch.Tensor | float,
    ) -> torch.Tensor:
        image_to_text, text_to_image = self.directions(
            student_image, teacher_image, student_text, teacher_text,
            student_logit_scale, teacher_logit_scale,
        )  # fmt: skip
        return self.weight * 0.5 * (image_to_text + text_to_image)

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


__all__ = ["AffinityMimickingLoss", "affinities"]
