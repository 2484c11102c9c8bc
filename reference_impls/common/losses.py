r"""Loss terms that several methods share, written once.

The temperature-softened KL divergence of Hinton et al. (``hinton2015distilling``)
appears in KD, BAN, TAKD, DML, KDCL, ONE, BYOT, DDGSD and many later methods:

$$
\mathcal{L}_{\mathrm{soft}} = \tau^{2}\,
  \frac{1}{N}\sum_{n=1}^{N} \mathrm{KL}\!\left(p^{t,\tau}_n \,\middle\|\, p^{s,\tau}_n\right),
\qquad p^{\tau}_{n,i} = \frac{\exp(z_{n,i}/\tau)}{\sum_j \exp(z_{n,j}/\tau)},
$$

the sum of the KL over classes (the last dimension), averaged over the $N$ rows
(the batch, or every token of a ``[B, T, V]`` tensor). The factor $\tau^2$ keeps
the gradient's magnitude independent of $\tau$ (§2 of the paper).

Numerical policy, one place for all: probabilities are handled in log space
(``log_softmax``, ``kl_div(..., log_target=True)``, never ``log(softmax)``), and
half-precision logits (float16, bfloat16, e.g. under autocast) are computed in
float32; float32 and float64 inputs keep their precision. The target side is
detached: the teacher (or peer) receives no gradient through this term.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["batchmean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("batchmean", "sum", "none")


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors as float32; float32 and float64 unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def softened_log_probs(
    logits: torch.Tensor, temperature: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """$\\log \\mathrm{softmax}(z / \\tau)$ over the last dimension, at least in float32.

    ``temperature`` may be a tensor broadcastable to ``logits`` (a per-sample
    temperature of shape ``[B, 1]``, as NormKD uses).
    """
    return F.log_softmax(at_least_float32(logits) / temperature, dim=-1)


def kl_divergence(
    student_log_probs: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    reduction: Reduction = "batchmean",
) -> torch.Tensor:
    """$\\mathrm{KL}(p^t \\| p^s)$ from log-probabilities, summed over the last dimension.

    ``reduction``: ``"batchmean"`` averages over every other position (rows, or
    tokens), ``"sum"`` adds them up, ``"none"`` returns one value per row
    (shape ``log_probs.shape[:-1]``). The teacher side is detached.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    per_row = F.kl_div(
        student_log_probs, teacher_log_probs.detach(), reduction="none", log_target=True
    ).sum(dim=-1)
    if reduction == "none":
        return per_row
    return per_row.sum() if reduction == "sum" else per_row.mean()


def softened_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    reduction: Reduction = "batchmean",
) -> torch.Tensor:
    """$\\tau^2\\,\\mathrm{KL}(p^{t,\\tau} \\| p^{s,\\tau})$ (Hinton et al.), teacher detached.

    Args:
        student_logits: ``[..., C]`` logits of the model being trained.
        teacher_logits: logits of the same shape from the teacher (or a peer);
            detached here.
        temperature: softening temperature $\\tau > 0$; the result is scaled by $\\tau^2$.
        reduction: ``"batchmean"`` (sum over classes, mean over rows; the default of
            every method so far), ``"sum"`` or ``"none"`` (one value per row).
    """
    kl = kl_divergence(
        softened_log_probs(student_logits, temperature),
        softened_log_probs(teacher_logits.detach(), temperature),
        reduction,
    )
    return kl * temperature**2


__all__ = [
    "REDUCTIONS",
    "at_least_float32",
    "kl_divergence",
    "softened_kl",
    "softened_log_probs",
]
