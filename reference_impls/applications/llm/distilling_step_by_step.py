r"""Distilling step-by-step: a student learns the label and the teacher's rationale as two tasks.

Citation: ``hsieh2023distilling`` (Hsieh et al., Findings of ACL 2023), Section 3.2. A large
model prompted with chain-of-thought writes a rationale $\hat r_i$ and a label $\hat y_i$
for each input $x_i$; the small model is trained on both as separate tasks, told apart by
a task prefix on the input ("[label]", "[rationale]"), and only the label task is run at
test time, so the rationale costs nothing at inference:

$$
\mathcal{L} = \alpha\,\mathcal{L}_{\text{label}} + (1-\alpha)\,\mathcal{L}_{\text{rationale}},
\qquad
\mathcal{L}_{\text{label}} = \frac{1}{N}\sum_i \ell\big(f([\text{label}]\,x_i), y_i\big),\quad
\mathcal{L}_{\text{rationale}} = \frac{1}{N}\sum_i \ell\big(f([\text{rationale}]\,x_i), \hat r_i\big),
$$

$\ell$ the token cross-entropy of the decoded sequence. $y_i$ is the data's label
(distilling step-by-step *with* human labels, the code's default) or the teacher's $\hat y_i$
(*without* them, the paper's "distillation" setting).

Authors' code: https://github.com/google-research/distilling-step-by-step (commit
``ef944263c9dd``), ``model_utils.py``: ``TaskPrefixDataCollator`` (one batch holds a
``pred`` and an ``expl`` sub-batch of the same examples) and ``TaskPrefixTrainer.compute_loss``
(lines 50-53: the model run on each sub-batch, ``loss = alpha * pred_outputs.loss +
(1. - alpha) * expl_outputs.loss``); ``run.py`` defaults ``--alpha 0.5``,
``--label_type gt``, ``--model_type task_prefix``, ``--max_input_length 1024``, targets
truncated to 256 tokens, ``--lr 5e-5`` AdamW, batch 64, 10,000 steps, T5-v1.1-base. Each
``outputs.loss`` is Hugging Face T5's: the cross-entropy averaged over the target tokens
that are not ``-100`` (the collator pads labels with ``-100``; the target ends with
``</s>``), so each task is averaged over its own tokens before the two are mixed.

Where the code differs from the paper (we follow the code): (1) the paper writes
$\mathcal{L}_{\text{label}} + \lambda\,\mathcal{L}_{\text{rationale}}$ (its Eq. 3); the
code's convex mix at $\alpha = 0.5$ is that loss at $\lambda = 1$, halved (the same
direction; with Adam the same steps up to its $\epsilon$). (2) The prefixes are the words
``"predict: "`` and ``"explain: "`` (the paper's "[label]" and "[rationale]"); here they
are one source token each, :data:`~reference_impls.common.reasoning.LABEL_PREFIX` and
``RATIONALE_PREFIX``. (3) The average over tokens is per task and per batch (the ``-100``
convention), not per sentence.

Deviations: the student is the tiny encoder-decoder
:func:`~reference_impls.common.reasoning.reasoning_student` (T5 in the paper), the teacher
a small chain-of-thought seq2seq model trained on generated word problems (PaLM 540B
prompted with few-shot chain-of-thought), and the training loop is
:func:`reference_impls.common.text.fit` (Adam, cosine schedule) instead of the Hugging
Face trainer; nothing in the loss changes.
"""

from __future__ import annotations

import torch
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.reasoning import LABEL_PREFIX, RATIONALE_PREFIX, with_prefix
from reference_impls.common.text import PAD, greedy_decode, sequence_nll, teacher_forcing
from reference_impls.common.validation import in_unit_interval, non_empty_sequences


class DistillingStepByStep(DistillationProcedure):
    """Multi-task training of a seq2seq student on labels and the teacher's rationales.

    ``forward(src, targets)`` takes source ids ``[B, S]`` (no prefix, 0 = padding) and
    ``targets`` ``[B, 2, T]``: for each example its label target ``targets[:, 0]`` and its
    rationale target ``targets[:, 1]``, each ``<s> ... </s>`` right-padded with 0 (the
    label and rationale may be padded to one width with :func:`stack_targets`). It returns
    ``{"loss", "label", "rationale"}``. ``alpha = 1`` is standard fine-tuning (or standard
    distillation, on the teacher's labels) on the label alone, ``alpha = 0`` rationale
    generation alone.

    Args:
        student: a :class:`~reference_impls.common.text.Seq2SeqTransformer` (or any module
            called ``student(src, tgt_in)`` returning ``.logits`` ``[B, T, V]``).
        alpha: the weight of the label task (the code's ``--alpha``, 0.5).
        label_prefix, rationale_prefix: the source ids of the two task prefixes.
    """

    def __init__(
        self,
        student: nn.Module,
        alpha: float = 0.5,
        label_prefix: int = LABEL_PREFIX,
        rationale_prefix: int = RATIONALE_PREFIX,
    ) -> None:
        super().__init__()
        self.student = student
        self.alpha = in_unit_interval("alpha", alpha)
        if label_prefix == rationale_prefix or PAD in (label_prefix, rationale_prefix):
            raise ValueError(
                f"label_prefix and rationale_prefix must be two different non-padding ids, "
                f"got {label_prefix} and {rationale_prefix}"
            )
        self.label_prefix, self.rationale_prefix = label_prefix, rationale_prefix

    def task_loss(self, src: torch.Tensor, target: torch.Tensor, prefix: int) -> torch.Tensor:
        """One task's loss: the student's cross-entropy per real target token (T5's ``.loss``)."""
        tgt_in, labels = teacher_forcing(target)
        logits = self.student(with_prefix(src, prefix), tgt_in).logits
        return sequence_nll(logits, labels, normalise="tokens")

    def combine(self, label_loss: torch.Tensor, rationale_loss: torch.Tensor) -> torch.Tensor:
        r"""$\alpha\,\mathcal{L}_{\text{label}} + (1-\alpha)\,\mathcal{L}_{\text{rationale}}$;
        a task of weight 0 is not computed by ``forward`` and adds nothing."""
        return self.alpha * label_loss + (1.0 - self.alpha) * rationale_loss

    def forward(self, src: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        non_empty_sequences("src", src, PAD)
        if targets.dim() != 3 or targets.shape[:2] != (src.shape[0], 2) or targets.shape[2] < 2:
            raise ValueError(
                f"targets must be [B, 2, T] (each example's label then rationale target, "
                f"T >= 2) with B = {src.shape[0]} as src, got shape {tuple(targets.shape)}"
            )
        zero = torch.zeros((), device=src.device)
        label = self.task_loss(src, targets[:, 0], self.label_prefix) if self.alpha > 0 else zero
        rationale = (
            self.task_loss(src, targets[:, 1], self.rationale_prefix) if self.alpha < 1 else zero
        )
        return {
            "loss": self.combine(label, rationale),
            "label": label.detach(),
            "rationale": rationale.detach(),
        }

    @torch.no_grad()
    def predict(
        self, src: torch.Tensor, max_length: int = 1, rationale: bool = False
    ) -> torch.Tensor:
        """The student's greedy output for the label task (``rationale=True``: the rationale's)."""
        prefix = self.rationale_prefix if rationale else self.label_prefix
        return greedy_decode(self.student, with_prefix(src, prefix), max_length)


def stack_targets(labels: torch.Tensor, rationales: torch.Tensor) -> torch.Tensor:
    """Label targets ``[B, T1]`` and rationale targets ``[B, T2]`` as ``[B, 2, max(T1, T2)]``,
    right-padded with 0: the ``targets`` of :class:`DistillingStepByStep`."""
    if labels.dim() != 2 or rationales.dim() != 2 or labels.shape[0] != rationales.shape[0]:
        raise ValueError(
            f"labels and rationales must be target ids [B, T] of one B, got shapes "
            f"{tuple(labels.shape)} and {tuple(rationales.shape)}"
        )
    width = max(labels.shape[1], rationales.shape[1])
    out = labels.new_zeros(labels.shape[0], 2, width)
    out[:, 0, : labels.shape[1]] = labels
    out[:, 1, : rationales.shape[1]] = rationales
    return out


__all__ = ["DistillingStepByStep", "stack_targets"]
