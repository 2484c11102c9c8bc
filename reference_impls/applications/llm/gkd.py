r"""GKD's loss: the generalized Jensen-Shannon divergence between teacher and student tokens.

Citation: ``agarwal2024policy`` (Agarwal, Vieillard, Zhou, Stanczyk, Ramos, Geist and
Bachem, ICLR 2024). The loss (Eq. 1), between the teacher's next-token distribution
$P = p_t$ and the student's $Q = q_t$ at each kept token, for $\beta \in (0, 1)$:

$$
D_{\text{JSD}(\beta)}(P \,\|\, Q) = \beta\,\mathrm{KL}\big(P \,\|\, M\big)
  + (1-\beta)\,\mathrm{KL}\big(Q \,\|\, M\big), \qquad M = \beta P + (1-\beta) Q .
$$

The on-policy procedure that samples the sequences it is trained on is
:class:`~reference_impls.applications.llm.on_policy.GKD`.

Authors' code: none released by the authors (Google DeepMind); the reference
implementation is TRL's, https://github.com/huggingface/trl,
``trl/experimental/gkd/gkd_trainer.py``: ``GKDTrainer.generalized_jsd_loss`` (defaults
``beta=0.5``, ``temperature=1.0``, ``reduction="batchmean"``: the mean over labels
$\neq -100$, ``clamp_min(1)``); ``compute_loss`` calls it on shifted logits (position $i$
predicts token $i+1$) with the prompt and the padding masked with -100.

**TRL's β convention, checked (commit in the taxonomy record).** Its mixture is
$M = \beta P_{\text{teacher}} + (1-\beta) Q_{\text{student}}$ and the loss
$\beta\,\mathrm{KL}(P\|M) + (1-\beta)\,\mathrm{KL}(Q\|M)$ — the paper's Eq. 1 with $P$ the
teacher, not swapped (before TRL's pull request #3043, March 2025, the mixture was
$\beta Q + (1-\beta) P$, i.e. swapped). At the ends the formula is 0 (M equals one of
the two), so TRL special-cases them: $\beta = 0$ returns the forward KL
$\mathrm{KL}(P\|Q)$ and $\beta = 1$ the reverse KL $\mathrm{KL}(Q\|P)$. The directions
agree with the formula's behaviour near the ends (to first order it is
$\beta\,\mathrm{KL}(P\|Q)$ for small $\beta$ and $(1-\beta)\,\mathrm{KL}(Q\|P)$ for
$\beta \to 1$, tested), but the loss is not continuous there: the special cases are
not its limits, which are 0. We follow TRL exactly (tested: $\beta=0$ and $\beta=1$ equal
:class:`~reference_impls.applications.llm.word_level.WordLevelKDLoss` and
:class:`~reference_impls.applications.llm.minillm.MiniLLMReverseKLLoss`).

Deviations: none at TRL's defaults (equal value and gradient, float64 to 1e-14). We
compute half precision in float32 (TRL: in the logits' dtype) and do not shift the logits
(TRL's ``compute_loss`` shifts before calling; so does our procedure).
"""

from __future__ import annotations

from typing import ClassVar

from reference_impls.applications.llm.token_losses import TokenKDLoss


class GKDLoss(TokenKDLoss):
    """Generalized JSD per kept token, averaged; $\\beta=0$: forward KL, $\\beta=1$: reverse KL.

    Args:
        beta: the teacher's weight in the mixture (TRL: 0.5), in [0, 1].
        temperature: divides both logits, no $\\tau^2$ (TRL: 1, what ``compute_loss`` uses).
        ignore_index: the label of tokens to leave out (Hugging Face's -100).
        chunk_size: tokens per chunk (default: about 1M logits per chunk).
    """

    divergence: ClassVar[str] = "jsd"

    def __init__(
        self,
        beta: float = 0.5,
        temperature: float = 1.0,
        ignore_index: int = -100,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            beta=beta, temperature=temperature, ignore_index=ignore_index, chunk_size=chunk_size
        )
