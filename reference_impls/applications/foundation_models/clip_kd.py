r"""CLIP-KD: feature distillation, interactive contrastive learning and contrastive KD for CLIP.

Citation: ``yang2024clip`` (Yang et al., CLIP-KD: An Empirical Study of CLIP Model
Distillation, CVPR 2024).

Notation: a batch of $B$ pairs; the teacher's unit image and text embeddings
$u^t_i, v^t_i$ and logit scale $s_t$; the student's raw embeddings $a_i, b_i$, projected
to the teacher's width when the widths differ ($P_I, P_T$, learnt; identity otherwise)
and normalised, $\hat u_i = P_I a_i / \lVert P_I a_i\rVert$,
$\hat v_i = P_T b_i / \lVert P_T b_i\rVert$; and its unnormalised-then-normalised
embeddings $u^s_i, v^s_i$ with logit scale $s_s$ for its own affinities. Three terms:

$$
\mathcal{L}_{\mathrm{FD}} = \frac{1}{B D_t}\sum_i \lVert \hat u_i - u^t_i \rVert^2
  + \frac{1}{B D_t}\sum_i \lVert \hat v_i - v^t_i \rVert^2
\quad\text{(feature distillation)},
$$

$$
\mathcal{L}_{\mathrm{ICL}} = \frac{1}{2B}\sum_i \Big(
  -\log \frac{e^{\kappa\, \hat u_i^\top v^t_i}}{\sum_j e^{\kappa\, \hat u_i^\top v^t_j}}
  -\log \frac{e^{\kappa\, \hat v_i^\top u^t_i}}{\sum_j e^{\kappa\, \hat v_i^\top u^t_j}} \Big)
\quad\text{(interactive contrastive learning: student anchors, teacher contrasts)},
$$

$$
\mathcal{L}_{\mathrm{CKD}} = \tfrac12\Big(\mathrm{KL}\big(A^{I2T}_t \,\|\, A^{I2T}_s\big)
  + \mathrm{KL}\big(A^{T2I}_t \,\|\, A^{T2I}_s\big)\Big)
\quad\text{(contrastive relational KD, batch-mean KL at } T = 1\text{)},
$$

with $A$ the row-softmax of the affinities $s\,u_i^\top v_j$ as in TinyCLIP. The loss is
$\lambda_{\mathrm{FD}}\mathcal{L}_{\mathrm{FD}} + \lambda_{\mathrm{ICL}}\mathcal{L}_{\mathrm{ICL}}
+ \lambda_{\mathrm{CKD}}\mathcal{L}_{\mathrm{CKD}}$; the student's own CLIP loss (their
``task_loss``, weight 1) is added by the caller.

Authors' code: https://github.com/winycg/CLIP-KD (commit
f3ae18b9da8ac8570796c4e113cb8a9006dab18a), ``src/open_clip/loss.py``, ``KDClipLoss``
(``forward``: ``fd_loss``, ``icl_loss``, ``ckd_loss``). Defaults: the paper's best
combination, ``script/ViT_B_16_KD/ViT_T_16_kd.sh``: ``--alpha_fd_loss 2000``,
``--alpha_icl_loss 1``, ``--alpha_ckd_loss 1`` (cross-KD, GD and AFD at 0). The student
model is called with ``distill=True`` (raw features: the loss normalises them after the
projection); the teacher's are normalised (``distill=False``). The ICL scale $\kappa$
is ``cross_logit_scale``, an ``nn.Parameter`` initialised at $\log(1/0.07) \approx 2.659$
and used **as is, not exponentiated** (``self.cross_logit_scale * ...``), unlike the
models' ``logit_scale.exp()``; we follow the code (``icl_scale``, learnt, same
initial value). The projections are ``nn.Linear(s_embed_dim, t_embed_dim)`` with bias,
built only when the widths differ.

Deviations. (1) Their ``forward`` only runs with ``world_size > 1`` (the one-process
branch reads ``normalized_image_features`` before assigning it, and ``.cuda()`` is
hard-coded); we compute the one-process case, which equals their gathered computation on
one rank. (2) ICL's targets are the diagonal (``arange``), as theirs, even when a batch
holds repeated captions. (3) Teacher inputs and scale detached (theirs come from a frozen
model). (4) We return the weighted distillation terms only; ``terms(...)`` gives each.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.applications.foundation_models._clip_inputs import clip_inputs
from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32, softened_kl
from reference_impls.common.validation import at_least, loss_weights


class CLIPKDLoss(DistillationLoss):
    """CLIP-KD's FD + ICL + CKD terms (the paper's best combination).

    Args:
        student_dim, teacher_dim: embedding widths; projections of the student's image and
            text embeddings to the teacher's width are learnt when they differ.
        fd_weight, icl_weight, ckd_weight: $\\lambda$ of each term (2000, 1, 1).

    Called as ``loss(student_image, teacher_image, student_text, teacher_text,
    student_logit_scale, teacher_logit_scale)``: the student's raw ``[B, student_dim]``
    embeddings, the teacher's unit ``[B, teacher_dim]`` ones, and each model's
    exponentiated logit scale.
    """

    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = False

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        fd_weight: float = 2000.0,
        icl_weight: float = 1.0,
        ckd_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.student_dim = at_least("student_dim", student_dim, 1)
        self.teacher_dim = at_least("teacher_dim", teacher_dim, 1)
        weights = loss_weights(fd_weight=fd_weight, icl_weight=icl_weight, ckd_weight=ckd_weight)
        self.fd_weight, self.icl_weight, self.ckd_weight = weights.values()
        different = student_dim != teacher_dim
        self.image_projection: nn.Module = (
            nn.Linear(student_dim, teacher_dim) if different else nn.Identity()
        )
        self.text_projection: nn.Module = (
            nn.Linear(student_dim, teacher_dim) if different else nn.Identity()
        )
        # their cross_logit_scale: log(1/0.07), multiplied as is (never exponentiated)
        self.icl_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def terms(
        self,
        student_image: torch.Tensor,
        teacher_image: torch.Tensor,
        student_text: torch.Tensor,
        teacher_text: torch.Tensor,
        student_logit_scale: torch.Tensor | float,
        teacher_logit_scale: torch.Tensor | float,
    ) -> dict[str, torch.Tensor]:
        """The unweighted ``fd``, ``icl`` and ``ckd`` terms."""
        rows, student_scale, teacher_scale = clip_inputs(
            student_image, teacher_image, student_text, teacher_text,
            student_logit_scale, teacher_logit_scale, self.student_dim, self.teacher_dim,
        )  # fmt: skip
        projected_image = at_least_float32(self.image_projection(student_image))
        projected_text = at_least_float32(self.text_projection(student_text))
        with torch.autocast(device_type=student_image.device.type, enabled=False):
            dtype = projected_image.dtype
            teacher_image = at_least_float32(teacher_image.detach()).to(dtype)
            teacher_text = at_least_float32(teacher_text.detach()).to(dtype)
            image_unit = F.normalize(at_least_float32(student_image), dim=1)
            text_unit = F.normalize(at_least_float32(student_text), dim=1)
            image_hat = F.normalize(projected_image, dim=1)
            text_hat = F.normalize(projected_text, dim=1)

            fd = F.mse_loss(image_hat, teacher_image) + F.mse_loss(text_hat, teacher_text)

            labels = torch.arange(rows, device=student_image.device)
            icl_scale = self.icl_scale.to(dtype)
            icl = (
                F.cross_entropy(icl_scale * image_hat @ teacher_text.T, labels)
                + F.cross_entropy(icl_scale * text_hat @ teacher_image.T, labels)
            ) / 2

            student_logits = at_least_float32(student_scale) * image_unit @ text_unit.T
            teacher_logits = (
                at_least_float32(teacher_scale.detach()).to(dtype) * teacher_image @ teacher_text.T
            )
            ckd = (
                softened_kl(student_logits, teacher_logits)
                + softened_kl(student_logits.T, teacher_logits.T)
            ) / 2
        return {"fd": fd, "icl": icl, "ckd": ckd}

    def forward(
        self,
        student_image: torch.Tensor,
        teacher_image: torch.Tensor,
        student_text: torch.Tensor,
        teacher_text: torch.Tensor,
        student_logit_scale: torch.Tensor | float,
        teacher_logit_scale: torch.Tensor | float,
    ) -> torch.Tensor:
        terms = self.terms(
            student_image, teacher_image, student_text, teacher_text,
            student_logit_scale, teacher_logit_scale,
        )  # fmt: skip
        return (
            self.fd_weight * terms["fd"]
            + self.icl_weight * terms["icl"]
            + self.ckd_weight * terms["ckd"]
        )

    def extra_repr(self) -> str:
        return (
            f"student_dim={self.student_dim}, teacher_dim={self.teacher_dim}, "
            f"fd_weight={self.fd_weight}, icl_weight={self.icl_weight}, ckd_weight={self.ckd_weight}"
        )


__all__ = ["CLIPKDLoss"]
