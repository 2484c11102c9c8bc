r"""DistiLLM's skew reverse KL: the reverse KL against a mixture that keeps the ratio bounded.

Citation: ``ko2024distillm`` (Ko, Kim, Chen and Yun, ICML 2024), Eq. 3: with the teacher's
next-token distribution $p_t$, the student's $q_t$ and the skew $\alpha \in [0, 1]$,

$$
\text{SRKL}^{(\alpha)}(p, q) = \mathrm{KL}\big(q \,\|\, (1-\alpha) p + \alpha q\big),
$$

averaged over the kept tokens: the reverse KL (MiniLLM's direction) with a share $\alpha$
of the student mixed into the reference, so $q / m \le 1/\alpha$ and the divergence stays
below $\log(1/\alpha)$ where the teacher puts almost no mass. The companion skew KL, the
paper's motivation and the parts of DistiLLM not implemented are in
:mod:`reference_impls.applications.llm.skew_kl`.

Authors' code: https://github.com/jongwooko/distillm, ``distillm/losses.py``,
``skewed_reverse_kl`` with ``lam=0.1`` (the paper's and the scripts' ``--skew-alpha 0.1``):
softmaxes in float32, the log of the mixture, terms where a logit is $\pm\infty$ zeroed,
the mean over tokens whose label is not -100. It returns the divergence, as ours.

Deviations: (1) we compute in log space (``logaddexp`` of the log-probabilities) and keep
float64 in float64; theirs takes ``log`` of the float32 mixture. (2) We require finite
logits. (3) With no kept token their division gives NaN; ours gives 0.
"""

from __future__ import annotations

from typing import ClassVar

from reference_impls.applications.llm.token_losses import TokenKDLoss


class SkewReverseKLLoss(TokenKDLoss):
    """$\\mathrm{KL}(q_t \\| (1-\\alpha) p_t + \\alpha q_t)$ per kept token, averaged.

    Args:
        skew: $\\alpha$, the student's share of the mixture (DistiLLM: 0.1).
        temperature: divides both logits (DistiLLM: none, i.e. 1).
        ignore_index: the label of tokens to leave out (Hugging Face's -100).
        chunk_size: tokens per chunk (default: about 1M logits per chunk).
    """

    divergence: ClassVar[str] = "skew_reverse_kl"

    def __init__(
        self,
        skew: float = 0.1,
        temperature: float = 1.0,
        ignore_index: int = -100,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            skew=skew, temperature=temperature, ignore_index=ignore_index, chunk_size=chunk_size
        )
