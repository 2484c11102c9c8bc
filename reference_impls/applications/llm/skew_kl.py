r"""DistiLLM's skew KL: the forward KL against a mixture that keeps the ratio bounded.

Citation: ``ko2024distillm`` (Ko, Kim, Chen and Yun, ICML 2024). With the teacher's
next-token distribution $p_t$, the student's $q_t$ and the skew $\alpha \in [0, 1]$
(Eq. 2 and 3 of the paper):

$$
\text{SKL}^{(\alpha)}(p, q) = \mathrm{KL}\big(p \,\|\, \alpha p + (1-\alpha) q\big), \qquad
\text{SRKL}^{(\alpha)}(p, q) = \mathrm{KL}\big(q \,\|\, (1-\alpha) p + \alpha q\big),
$$

each averaged over the kept tokens. Mixing a little of the distribution being compared
into the reference bounds the log-ratio by $\log(1/\alpha)$: the gradient stays finite
where the student (for SKL) or the teacher (for SRKL) puts almost no mass, which the
paper shows stabilises and speeds up training (Theorem 1, Figure 3).

Authors' code: https://github.com/jongwooko/distillm, ``distillm/losses.py``,
``skewed_forward_kl`` and ``skewed_reverse_kl`` with ``lam=0.1`` (the paper's and the
training scripts' ``--skew-alpha 0.1``; the skew reverse KL, ``skewed_reverse_kl``, is
:mod:`reference_impls.applications.llm.skew_reverse_kl`): softmaxes in float32, the log of the mixture,
terms where a logit is $\pm\infty$ zeroed, the mean over tokens whose label is not -100.

Deviations: (1) their ``skewed_forward_kl`` returns the cross-entropy
$-\sum_v p_v \log m_v$, the skew KL plus the teacher's entropy $H(p)$ (constant in the
student: equal gradients); we return the divergence, 0 when the student equals the
teacher. Their ``skewed_reverse_kl`` is the divergence, as ours. (2) We compute in log
space (``logaddexp`` of the log-probabilities) and keep float64 in float64; theirs takes
``log`` of the float32 mixture. (3) DistiLLM's other parts — the adaptive off-policy
schedule that mixes student-generated outputs into training (SGO with a replay buffer)
and its learning-rate-dependent skew in later versions — are not implemented: these are
the losses alone. (4) With no kept token their division gives NaN; ours gives 0.
"""

from __future__ import annotations

from typing import ClassVar

from reference_impls.applications.llm.token_losses import TokenKDLoss


class SkewKLLoss(TokenKDLoss):
    """$\\mathrm{KL}(p_t \\| \\alpha p_t + (1-\\alpha) q_t)$ per kept token, averaged.

    Args:
        skew: $\\alpha$, the teacher's share of the mixture (DistiLLM: 0.1).
        temperature: divides both logits (DistiLLM: none, i.e. 1).
        ignore_index: the label of tokens to leave out (Hugging Face's -100).
        chunk_size: tokens per chunk (default: about 1M logits per chunk).
    """

    divergence: ClassVar[str] = "skew_kl"

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
