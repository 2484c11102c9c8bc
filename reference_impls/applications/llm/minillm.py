r"""MiniLLM's token-level reverse KL: the student's distribution is pulled to the teacher's modes.

Citation: ``gu2024minillm`` (Gu, Dong, Wei and Huang, ICLR 2024). MiniLLM minimises the
sequence-level reverse KL $\mathrm{KL}(q_\theta \| p) = \mathbb{E}_{y \sim q_\theta}
\log \frac{q_\theta(y|x)}{p(y|x)}$ by policy gradient on student-generated responses. Its
gradient splits (Eq. 5) into a long-term part, estimated from sampled rewards, and a
single-step part that is computed exactly from the two next-token distributions at each
generated position $t$ — the token-level reverse KL, averaged over the response tokens:

$$
\mathcal{L}_{\text{single}} = \frac{1}{|\mathcal{K}|}\sum_{t\in\mathcal{K}}
\mathrm{KL}\big(q_\theta(\cdot \mid y_{<t}, x) \,\big\|\, p(\cdot \mid y_{<t}, x)\big)
= \frac{1}{|\mathcal{K}|}\sum_{t\in\mathcal{K}} \sum_{v} q_t(v)\,\big(\log q_t(v) - \log p_t(v)\big).
$$

This file is that term, :class:`MiniLLMReverseKLLoss`. Authors' code:
https://github.com/microsoft/LMOps, ``minillm/minillm/losses.py``, ``Loss._reg_loss``
(cross-entropy ``get_x_entropy(logits, t_logits)`` minus entropy ``get_entropy(logits)``
from ``minillm/minillm/utils.py``, summed over the vocabulary, masked, divided by
``mask.sum()``), added to the policy-gradient loss under ``--single-step-reg`` (on in
every ``scripts/*/minillm/train_*.sh``), with ``--temperature 1.0`` dividing the
student's logits. It is the same divergence as training on any sequences with
``reverse_kl``: on student samples (MiniLLM's setting, as in
:class:`~reference_impls.applications.llm.on_policy.GKD` with ``lmbda=1`` and ``beta=1``) or,
as a cheap off-policy variant, on the data.

Deviations: (1) only the token-level term; the sequence-level policy gradient with its
length-normalised rewards, importance weights (teacher-mixed sampling, ``w``), PPO clipping
and the pre-training language-modelling loss are not implemented (the notebook trains
this term on the data and on student samples). (2) Their ``inf_mask`` zeroes entries where
a logit is $\pm\infty$ (masked vocabulary); we require finite logits. (3) Their softmaxes
run in float32 whatever the input (``dtype=torch.float32``); we compute half precision in
float32 and keep float64 in float64. (4) With no kept token their ``mask.sum()`` division
gives NaN; ours gives 0.
"""

from __future__ import annotations

from typing import ClassVar

from reference_impls.applications.llm.token_losses import TokenKDLoss


class MiniLLMReverseKLLoss(TokenKDLoss):
    """Reverse KL $\\mathrm{KL}(q_t \\| p_t)$ per kept token, averaged (MiniLLM's single-step term).

    Args:
        temperature: divides both logits (MiniLLM: 1).
        ignore_index: the label of tokens to leave out (Hugging Face's -100).
        chunk_size: tokens per chunk (default: about 1M logits per chunk).
    """

    divergence: ClassVar[str] = "reverse_kl"

    def __init__(
        self, temperature: float = 1.0, ignore_index: int = -100, chunk_size: int | None = None
    ) -> None:
        super().__init__(temperature=temperature, ignore_index=ignore_index, chunk_size=chunk_size)
