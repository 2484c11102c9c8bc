r"""GKD's on-policy procedure: the student learns from the teacher on its own samples.

Citation: ``agarwal2024policy`` (Agarwal et al., ICLR 2024), Algorithm 1. With
probability $\lambda$ a batch's completions are sampled from the student (on-policy),
otherwise the data's (or, with ``seq_kd``, the teacher's) are used; the teacher scores
every position and the student minimises a token-level divergence $D$ (default the
generalized JSD, :class:`~reference_impls.applications.llm.gkd.GKDLoss`):

$$
L_{\text{GKD}}(\theta) = (1-\lambda)\,\mathbb{E}_{(x,y)\sim\mathcal{D}}\big[D(p\|q_\theta)(y|x)\big]
  + \lambda\,\mathbb{E}_{x\sim\mathcal{D}}\mathbb{E}_{y\sim q_\theta(\cdot|x)}\big[D(p\|q_\theta)(y|x)\big],
$$

with no gradient through the sampling (the paper's choice, as in TRL).

Authors' code: none released by the authors; compared by reading with TRL,
https://github.com/huggingface/trl, ``trl/experimental/gkd/gkd_trainer.py``:
``GKDTrainer.training_step`` (``random.random() <= lmbda``: student samples; else, with
``seq_kd``, teacher samples), ``generate_on_policy_outputs`` (the prompt and everything
after an end-of-sequence token masked with -100) and ``compute_loss`` (shifted logits,
position $i$ predicts token $i+1$), with ``GKDConfig`` defaults ``lmbda=0.5``,
``beta=0.5``, sampling ``temperature=0.9``, ``max_new_tokens=128``, ``seq_kd=False``.
With ``lmbda=1`` and the reverse KL (``GKDLoss(beta=1)``) it is MiniLLM's single-step
term trained on student samples.

Deviations: (1) the data are sequences without a prompt/completion split: the first
``prompt_length`` tokens of each sequence are the prompt (masked with -100 in both
branches, as TRL's collator masks prompts) and the rest the completion; on-policy
completions have ``max_new_tokens`` tokens, sampled at ``temperature`` 0.9 with
``torch.multinomial`` on the global generator (TRL: ``model.generate``), without an
end-of-sequence token (all sampled tokens are kept). (2) The coin is ``torch.rand`` (TRL:
Python's ``random``), so the procedure is reproducible under ``torch.manual_seed``.
(3) TRL's ``max_new_tokens=128`` does not fit our 48-character models: 32 by default.
"""

from __future__ import annotations

import torch
from torch import nn

from reference_impls.applications.llm.gkd import GKDLoss
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.language_models import generate
from reference_impls.common.validation import at_least, in_unit_interval, positive


class GKD(DistillationProcedure):
    """On-policy distillation: student completions with probability ``lmbda``, scored by the teacher.

    ``forward(tokens, mask)`` takes right-padded sequences ``[B, T]`` (the first
    ``prompt_length`` tokens of every row must be real) and returns
    ``{"loss", "on_policy"}``; ``on_policy`` is 1 where this batch's completions were
    sampled from the student.

    Args:
        student, teacher: causal LMs returning ``.logits`` ``[B, T, V]`` over one vocabulary.
        loss: the divergence (default :class:`GKDLoss` at TRL's ``beta=0.5``).
        lmbda: the probability of an on-policy batch (TRL: 0.5).
        prompt_length: tokens of each sequence taken as the prompt.
        max_new_tokens: tokens sampled after the prompt on-policy.
        temperature: the sampling temperature (TRL: 0.9).
        seq_kd: off-policy batches are the teacher's samples instead of the data (TRL: False).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        loss: nn.Module | None = None,
        lmbda: float = 0.5,
        prompt_length: int = 16,
        max_new_tokens: int = 32,
        temperature: float = 0.9,
        seq_kd: bool = False,
    ) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher.eval()
        self.teacher.requires_grad_(False)
        self.loss = loss if loss is not None else GKDLoss()
        self.lmbda = in_unit_interval("lmbda", lmbda)
        self.prompt_length = at_least("prompt_length", prompt_length, 1)
        self.max_new_tokens = at_least("max_new_tokens", max_new_tokens, 1)
        self.temperature = positive("temperature", temperature)
        self.seq_kd = bool(seq_kd)

    def completions(self, model: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Prompts of ``tokens`` continued by ``model``; all-True mask (no padding)."""
        sequences = generate(
            model,
            tokens[:, : self.prompt_length],
            self.max_new_tokens,
            temperature=self.temperature,
        )
        return sequences, torch.ones_like(sequences, dtype=torch.bool)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        if tokens.shape != mask.shape or tokens.dim() != 2:
            raise ValueError(
                f"tokens and mask must have one shape [B, T], got {tuple(tokens.shape)} and "
                f"{tuple(mask.shape)}"
            )
        if tokens.shape[1] <= self.prompt_length or not bool(mask[:, : self.prompt_length].all()):
            raise ValueError(
                f"every sequence must hold at least prompt_length + 1 = {self.prompt_length + 1} "
                f"tokens, its first {self.prompt_length} real (the prompt); got shape "
                f"{tuple(tokens.shape)}"
            )
        on_policy = bool(torch.rand(()) <= self.lmbda)
        if on_policy:
            tokens, mask = self.completions(self.student, tokens)
        elif self.seq_kd:
            tokens, mask = self.completions(self.teacher, tokens)
        mask = mask.bool()
        student_logits = self.student(tokens).logits[:, :-1]
        with torch.no_grad():
            teacher_logits = self.teacher(tokens).logits[:, :-1]
        labels = tokens[:, 1:].masked_fill(~mask[:, 1:], -100)
        labels[:, : self.prompt_length - 1] = -100  # the prompt is given, not predicted
        loss = self.loss(student_logits, teacher_logits, labels)
        return {"loss": loss, "on_policy": torch.tensor(float(on_policy))}
