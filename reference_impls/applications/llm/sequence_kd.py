r"""Sequence-level knowledge distillation: train the student on the teacher's decoded outputs.

Citation: ``kim2016sequence`` (Kim and Rush, EMNLP 2016), Section 3.2. Word-level KD
matches the teacher's distribution at each position of the *data*; sequence-level KD
matches its distribution over whole sequences, $\mathcal{L} = -\sum_{y} p(y|x)\log q(y|x)$,
approximated by its mode: the teacher's beam-search output $\hat y$ replaces the
reference, and the student is trained on it with the ordinary negative log-likelihood,

$$
\mathcal{L}_{\text{SEQ-KD}} \approx -\log q_\theta(\hat y \mid x), \qquad
\hat y = \operatorname*{arg\,max}_{y} p(y \mid x) \ \text{(beam search)} .
$$

For a language model the "source" $x$ is a prompt (the first ``prompt_length`` tokens of
a sequence) and $\hat y$ the teacher's continuation of ``new_tokens`` tokens; the loss is
the mean cross-entropy over the continuation's tokens (the prompt is given).

Authors' code: https://github.com/harvardnlp/seq2seq-attn (Lua Torch; the teacher's
beam-search outputs are written to a file, ``beam.lua``, and the student trained on them
with the usual ``train.lua``): a pipeline, not a function to compare; written from the
paper.

Deviations: (1) greedy decoding (a beam of 1) instead of the paper's beam of 5: it is the
approximation the paper also reports (its "greedy" rows), and it is deterministic, so
decoding the training set once (:meth:`SequenceLevelKD.decode`, what the notebook does,
as the paper decodes its data set once) equals decoding each batch (``forward``).
(2) Kim and Rush's best models add word-level KD on the teacher's outputs (Seq-Inter,
Seq-KD + Word-KD); these combine :class:`~reference_impls.applications.llm.word_level.WordLevelKDLoss`
with this procedure and are not a separate class.
"""

from __future__ import annotations

import torch
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.language_models import generate, next_token_loss
from reference_impls.common.validation import at_least


class SequenceLevelKD(DistillationProcedure):
    """The student learns the teacher's greedy continuations of the data's prompts.

    ``forward(tokens, mask)`` takes right-padded sequences ``[B, T]`` whose first
    ``prompt_length`` tokens are real, decodes the teacher's continuation of each prompt
    and returns ``{"loss"}``, the student's next-token cross-entropy on the continuation.

    Args:
        student, teacher: causal LMs returning ``.logits`` ``[B, T, V]``.
        prompt_length: tokens of each sequence given as the prompt.
        new_tokens: tokens the teacher decodes after the prompt.
    """

    def __init__(
        self, student: nn.Module, teacher: nn.Module, prompt_length: int = 16, new_tokens: int = 32
    ) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher.eval()
        self.teacher.requires_grad_(False)
        self.prompt_length = at_least("prompt_length", prompt_length, 1)
        self.new_tokens = at_least("new_tokens", new_tokens, 1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's greedy continuations ``[B, prompt_length + new_tokens]`` and their mask."""
        if tokens.dim() != 2 or tokens.shape != mask.shape:
            raise ValueError(
                f"tokens and mask must have one shape [B, T], got {tuple(tokens.shape)} and "
                f"{tuple(mask.shape)}"
            )
        if tokens.shape[1] < self.prompt_length or not bool(mask[:, : self.prompt_length].all()):
            raise ValueError(
                f"the first prompt_length = {self.prompt_length} tokens of every sequence must "
                f"be real (the prompt); got shape {tuple(tokens.shape)}"
            )
        prompts = tokens[:, : self.prompt_length]
        sequences = generate(self.teacher, prompts, self.new_tokens, greedy=True)
        return sequences, torch.ones_like(sequences, dtype=torch.bool)

    def student_loss(self, sequences: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the student on the decoded continuations (the prompt masked)."""
        target_mask = mask.bool().clone()
        target_mask[:, : self.prompt_length] = False  # predicted tokens: the continuation
        # next_token_loss reads mask[:, 1:] as "the next token is kept"
        return next_token_loss(self.student(sequences).logits, sequences, target_mask)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        sequences, decoded_mask = self.decode(tokens, mask)
        return {"loss": self.student_loss(sequences, decoded_mask)}
