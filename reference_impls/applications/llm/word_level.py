r"""Word-level knowledge distillation: match the teacher's next-token distribution at every token.

Citation: ``kim2016sequence`` (Kim and Rush, EMNLP 2016), Section 3.1 "Word-Level
Knowledge Distillation", which applies ``hinton2015distilling`` to every position of a
sequence: with the teacher's next-token distribution $p_t = p(\cdot \mid y_{<t}, x)$
and the student's $q_t$ at every kept token $t$ of the data,

$$
\mathcal{L}_{\text{WORD-KD}} = -\frac{1}{|\mathcal{K}|}\sum_{t \in \mathcal{K}} \sum_{v \in V}
p_t(v) \log q_t(v)
\;\equiv\; \frac{1}{|\mathcal{K}|}\sum_{t \in \mathcal{K}} \mathrm{KL}(p_t \,\|\, q_t),
$$

the two equal up to the teacher's entropy, which does not depend on the student (the
gradients are the same). Kim and Rush interpolate it with the data's negative
log-likelihood, $(1-\alpha)\,\mathcal{L}_{\text{NLL}} + \alpha\,\mathcal{L}_{\text{WORD-KD}}$;
here that weight is :class:`~reference_impls.common.language_models.LMDistiller`'s
(``ce_weight``, ``kd_weight``), and this loss is the KD term alone.

Authors' code: https://github.com/harvardnlp/seq2seq-attn (Lua Torch, the NMT setting;
not runnable here). The same term in PyTorch as released for LLMs: jongwooko/distillm
``distillm/losses.py`` ``forward_kl`` (identical to MiniLLM's ``pt_loss`` distillation
term in microsoft/LMOps ``minillm/minillm/losses.py``): the cross-entropy form, averaged
over tokens whose label is not -100, softmax in float32 — what the taxonomy record
compares (the teacher's entropy added on our side, see the record's configuration).

Conventions (issue 11): ``[B, T, V]`` logits compared position by position (the caller
shifts: logits at $t$ predict the label at $t$), labels with -100 and/or an attention
mask select the kept tokens $\mathcal{K}$, the mean is per kept token; with no token
kept the loss is 0 with a zero gradient (never NaN); student and teacher must share the
vocabulary (a clear error otherwise). Computed chunk by chunk by
:func:`~reference_impls.applications.llm.token_losses.chunked_token_kd_loss`.

Deviations: (1) we return the KL, not the cross-entropy (the value is smaller by the
teacher's entropy; gradients equal). (2) ``temperature`` (default 1, as Kim and Rush and
DistiLLM) divides both logits, without a $\tau^2$ factor. (3) DistiLLM zeroes entries
where a student logit is $\pm\infty$; we require finite logits.
"""

from __future__ import annotations

from typing import ClassVar

from reference_impls.applications.llm.token_losses import TokenKDLoss


class WordLevelKDLoss(TokenKDLoss):
    """Forward KL $\\mathrm{KL}(p_t \\| q_t)$ per kept token, averaged (Kim and Rush, 2016).

    Args:
        temperature: divides both logits (1: the distributions as they are).
        ignore_index: the label of tokens to leave out (Hugging Face's -100).
        chunk_size: tokens per chunk (default: about 1M logits per chunk).
    """

    divergence: ClassVar[str] = "forward_kl"

    def __init__(
        self, temperature: float = 1.0, ignore_index: int = -100, chunk_size: int | None = None
    ) -> None:
        super().__init__(temperature=temperature, ignore_index=ignore_index, chunk_size=chunk_size)
