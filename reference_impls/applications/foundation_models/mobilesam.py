r"""MobileSAM's decoupled distillation: train the small image encoder alone, on the teacher's embeddings.

Citation: ``zhang2023faster`` (Zhang et al., Faster Segment Anything: Towards Lightweight
SAM for Mobile Applications, arXiv 2023).

SAM is a heavy image encoder $E_t$ (ViT-H) followed by a light prompt-guided mask
decoder $G$. Training a small encoder $E_s$ and the decoder together from scratch
("coupled distillation") is hard; MobileSAM decouples the two: the student encoder is
trained alone to reproduce the teacher encoder's image embedding, without masks, prompts
or the decoder,

$$
\mathcal{L} = \frac{1}{C H W}\,\big\lVert E_s(x) - E_t(x) \big\rVert_2^2
\qquad (\text{per image, averaged over the batch}),
$$

and is then plugged in front of the teacher's decoder $G$ unchanged, which works because
$E_s$ outputs embeddings of the teacher's shape in the teacher's space (the paper's
"semi-coupled" fine-tuning of $G$ afterwards is optional and not needed in their results).
The student therefore needs no projection: it must emit the teacher's shape, which is
checked. On the paper's setting this trained a TinyViT encoder on 1% of SA-1B in under a
day on one GPU.

Authors' code: https://github.com/ChaoningZhang/MobileSAM releases the model, weights and
inference code but no training or distillation code; written from the paper (Sec. 3.2
and 4.1: "the MSE loss between the image embeddings"). ``authors_code`` says so. The
mean over every element (PyTorch's ``F.mse_loss``) is the paper's MSE; weight 1.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import non_negative


class DecoupledEncoderLoss(DistillationLoss):
    """Mean squared error between the student's and the teacher's image embeddings.

    Args:
        weight: factor on the loss (1 in the paper).

    Called as ``loss(student_embedding, teacher_embedding)``, both ``[B, C, H, W]`` (or any
    equal shapes ``[B, ...]``): the student encoder must output the teacher's shape, since
    the teacher's decoder reads it afterwards.
    """

    inputs: ClassVar[str] = "features"
    needs_target: ClassVar[bool] = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = non_negative("weight", weight)

    def forward(
        self,
        student_embedding: torch.Tensor | list[torch.Tensor],
        teacher_embedding: torch.Tensor | list[torch.Tensor],
    ) -> torch.Tensor:
        # a list of tapped stages (the library's "features"): the last one is the embedding
        if isinstance(student_embedding, list | tuple):
            student_embedding = student_embedding[-1]
        if isinstance(teacher_embedding, list | tuple):
            teacher_embedding = teacher_embedding[-1]
        if student_embedding.shape != teacher_embedding.shape or student_embedding.dim() < 2:
            raise ValueError(
                "student_embedding and teacher_embedding must have the same shape [B, C, H, W] "
                "(the student encoder feeds the teacher's decoder, so no projection is learnt), "
                f"got {tuple(student_embedding.shape)} and {tuple(teacher_embedding.shape)}"
            )
        student = at_least_float32(student_embedding)
        teacher = at_least_float32(teacher_embedding.detach()).to(student.dtype)
        return self.weight * F.mse_loss(student, teacher)

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


__all__ = ["DecoupledEncoderLoss"]
