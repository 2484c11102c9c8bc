r"""Frame-level KD for CTC acoustic models: match the teacher's per-frame posteriors, blank included.

Citations: ``investigation2018knowledge`` (Takashima, Li and Kawai, ICASSP 2018) and
``improved2018knowledge`` (Kurata and Audhkhasi, IEEE SLT 2018). The taxonomy entry names
only the second: the bibliography has no authors for the first yet, and the site requires
them for an implemented paper.
Authors' code: none released for either paper; written from the papers' definitions of
frame-level KD (compared against that equation, computed by hand in the tests).

A CTC model emits, at each frame $t$ of an utterance, a distribution over the labels
and the blank, $p(k \mid x, t)$ for $k \in \{\varnothing, 1, \dots, K\}$ (here blank
and the ten digits). Frame-level KD trains the student's per-frame posteriors towards
the teacher's, as hybrid acoustic models were trained on senone posteriors: the
cross-entropy $-\sum_k p^t_{t,k} \log p^s_{t,k}$ at every frame, which has the gradient
of the KL divergence (the two differ by the teacher's entropy, a constant). Over a batch
of utterances $b$ with $T_b$ real frames (the mask $m_{b,t}$), at temperature $\tau$:

$$
\mathcal{L}_{\mathrm{frame}} = \frac{\tau^{2}}{\sum_{b,t} m_{b,t}}
  \sum_{b}\sum_{t} m_{b,t}\,
  \mathrm{KL}\!\left(p^{t,\tau}_{b,t} \,\middle\|\, p^{s,\tau}_{b,t}\right),
\qquad
p^{\tau}_{b,t,k} = \operatorname{softmax}_k\!\left(z_{b,t,k} / \tau\right),
$$

the sum over $k$ including the blank, the mean over real frames (padded frames are
removed before anything is computed: their values never matter). The student is trained
on $(1-\lambda)\,\mathcal{L}_{\mathrm{CTC}} + \lambda\,\mathcal{L}_{\mathrm{frame}}$
(``torch.nn.functional.ctc_loss`` on the transcripts; see the notebook).

What the two papers add. Takashima et al. report that this conventional frame-level KD
"did not work effectively" for their CTC acoustic models (in the words of their 2019
follow-up on the 2018 paper) and propose sequence-level KD on the teacher's N-best
hypotheses (lattices in the follow-up); Kurata and Audhkhasi point out that it assumes teacher
and student share their frame-wise alignment (where the CTC spikes fall), which fails from
a bidirectional teacher to a unidirectional student, and propose a distillation that
relaxes that assumption. This file implements the frame-level term both papers start from
and analyse; their remedies (N-best/lattice sequence KD, the relaxed alignment) are not
implemented. The notebook plots teacher's and students' alignments (per-frame argmax) to
show the spike timing the papers discuss.

Defaults: $\tau = 1$ (the posteriors themselves, as in both papers). The weight
$\lambda$ of the combination belongs to the training set-up (the notebook's choice is
stated there).

Deviations: none from the equation; the papers' sequence-level and alignment-relaxing
methods are not implemented (above). The KL is computed by the shared
``reference_impls.common.losses.softened_kl`` (half precision in float32).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import softened_kl
from reference_impls.common.validation import logit_pair, positive, sequence_mask


def frame_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """$\\tau^2\\,\\mathrm{KL}(p^t \\| p^s)$ per real frame ``[N_real]`` (padded frames dropped first)."""
    return softened_kl(student_logits[mask], teacher_logits[mask], temperature, reduction="none")


class CTCFrameKDLoss(DistillationLoss):
    """Frame-wise KL between teacher and student CTC posteriors (blank included), real frames only.

    Called as ``loss(student_logits [B, T, C], teacher_logits [B, T, C], mask [B, T])``
    with ``mask`` True at real frames (the models' output frames).

    Args:
        temperature: softening temperature $\\tau$ (1: the posteriors as they are).
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = False

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = positive("temperature", temperature)

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        logit_pair(student_logits, teacher_logits, tokens_ok=True)
        if student_logits.dim() != 3:
            raise ValueError(
                "student_logits must have shape [B, T, C] (per-frame scores of a batch of "
                f"utterances), got shape {tuple(student_logits.shape)}"
            )
        sequence_mask("mask", mask, student_logits.shape[:2])
        return frame_kl(student_logits, teacher_logits, mask, self.temperature).mean()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
