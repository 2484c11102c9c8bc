r"""Token-level distillation losses at LLM vocabulary sizes, in bounded memory.

Token-level KD compares, at every kept token $n$ of a sequence batch (the
``[B, T, V]`` logits flattened to ``[N, V]``), the teacher's next-token
distribution $p_n = \mathrm{softmax}(z^t_n/\tau)$ with the student's
$q_n = \mathrm{softmax}(z^s_n/\tau)$, and averages a divergence over the kept
tokens $\mathcal{K}$ (Hugging Face labels $\neq -100$, and/or attention mask 1):

$$
\mathcal{L} = \frac{1}{\max(|\mathcal{K}|, 1)} \sum_{n \in \mathcal{K}} D(p_n, q_n),
$$

with $D$ one of

$$
\begin{aligned}
\text{forward KL} &: \mathrm{KL}(p \| q), \qquad
\text{reverse KL} : \mathrm{KL}(q \| p), \\
\text{generalized JSD}_\beta &: \beta\,\mathrm{KL}(p \| m) + (1-\beta)\,\mathrm{KL}(q \| m),
  \quad m = \beta p + (1-\beta) q, \\
\text{skew KL}_\alpha &: \mathrm{KL}(p \| \alpha p + (1-\alpha) q), \qquad
\text{skew reverse KL}_\alpha : \mathrm{KL}(q \| (1-\alpha) p + \alpha q).
\end{aligned}
$$

Sources. Generalized JSD: GKD (``agarwal2024policy``, Eq. 1) as released in TRL,
https://github.com/huggingface/trl, ``trl/experimental/gkd/gkd_trainer.py``,
``GKDTrainer.generalized_jsd_loss`` (defaults ``beta=0.5``, ``temperature=1.0``; per-token
mean over labels $\neq -100$, ``clamp_min(1)`` when none is kept). Its convention, which
we follow: $\beta = 0$ is the forward KL $\mathrm{KL}(p\|q)$ and $\beta = 1$ the reverse KL
$\mathrm{KL}(q\|p)$, both special-cased; the mixture formula itself tends to 0 at
either end, it does not reach the KLs continuously. Skew KL and skew reverse KL:
DistiLLM (``ko2024distillm``, Ko et al., ICML 2024, arXiv:2402.03898),
https://github.com/jongwooko/distillm, ``distillm/losses.py``, ``skewed_forward_kl`` and
``skewed_reverse_kl`` (``lam=0.1``); forward and reverse KL there as ``forward_kl`` and
``reverse_kl``. Temperature: TRL's ``generalized_jsd_loss`` divides both logits by it
(no $\tau^2$ factor; ``GKDTrainer.compute_loss`` leaves it at 1); DistiLLM has none. We
divide by $\tau$ for every divergence (default 1, where all agree).

Deviations. (1) DistiLLM's ``forward_kl`` and ``skewed_forward_kl`` return the
cross-entropy $-\sum_v p_v \log q_v$ (resp. $\log$ of the mixture), which is the KL plus
the teacher's entropy $H(p)$: a constant for the student, so the gradients are the same;
we return the divergence (0 when the student equals the teacher). Their reverse and skew
reverse KL are the divergences, as ours. (2) DistiLLM zeroes terms where a logit is
$\pm\infty$ (masked vocabulary entries); we require finite logits. (3) Nothing is shifted:
logits at position $t$ are compared as given with the label at $t$ (TRL shifts before
calling). (4) No bias in the fused LM head (LLM heads have none).

Three forms with equal values and gradients (tests at small sizes):

* :func:`naive_token_kd_loss`: the textbook form with autograd; it holds several
  float32 ``[N, V]`` tensors (log-probabilities, probabilities, their gradients).
* :func:`chunked_token_kd_loss`: the same on ``[N, V]`` logits, processed ``chunk_size``
  tokens at a time by a custom :class:`torch.autograd.Function` that computes the exact
  gradient of each chunk in closed form while the chunk is in memory; it never holds
  more than one chunk's ``[n, V]`` probabilities. The gradient itself, ``[N, V]`` in the
  logits' dtype, is its only full-size tensor (autograd must return it).
* :func:`fused_linear_token_kd_loss`: the chunked loss fused with the LM heads: it takes
  hidden states ``[N, H]`` and output weights ``[V, H]`` of student and teacher, forms
  each chunk's logits, and accumulates the gradients of the student's hidden states and
  weight; the ``[N, V]`` logits of either model never exist.

Chunk sizes. By default a chunk of the chunked loss holds about ``2**20`` elements
(``2**20 // V`` tokens); a chunk of the fused loss ``2**22 // V`` tokens but at least 64
(131 at $V = 32{,}000$, 64 at $V = 128{,}256$): its memory grows with the chunk's elements,
its cost per chunk with the rows, since every chunk adds a rank-$n$ product to the
$[V, H]$ weight gradient. Chosen from these measurements (``benchmarks/bench_llm_kd.py``:
float32, $H = 256$, forward KL, one thread, median CPU time of 3 forward + backward calls,
peak extra resident memory; a shared 2-core machine at load average 7-8), each against
the LM heads applied in full followed by the naive loss:

* $N = 1{,}024$, $V = 128{,}256$ (naive: 7.92 s, 3,507 MiB): 32 tokens, the former
  default, before the in-place weight-gradient update below, 10.56 s (1.33x), 442 MiB
  (0.13); with it, 65 tokens 5.42 s (0.68x), 479 MiB (0.14); 130 tokens 5.93 s (0.75x),
  511 MiB (0.15); 261 tokens 5.16 s (0.65x) but 896 MiB (0.26, above a quarter).
* $N = 2{,}048$, $V = 32{,}000$ (naive: 4.34 s, 1,750 MiB): 131 tokens 2.31 s (0.53x),
  191 MiB (0.11); 262 tokens 2.30 s (0.53x), 287 MiB (0.16); before the in-place update,
  524 tokens took 2.89 s at 477 MiB (0.27) and 1,048 tokens 2.60 s at 640 MiB (0.37).
  At $N = 1{,}024$, 262 tokens held 319 MiB, 0.36 of the naive 875 MiB.

Beyond about 64 rows the time no longer falls beyond this machine's spread while the
memory grows (past a quarter of the naive peak at the smaller $N$). Most of the former
1.33x was the weight gradient's update, once per chunk: ``weight_grad += logit_grad.T @
hidden`` formed a $[V, H]$ product and added it (4.4 s of CPU time for the 32 chunks of 32
tokens at $V = 128{,}256$, $H = 256$, in a separate measurement; 1.4 s in place with
``addmm_``, 0.7 s for the 7 chunks of 130). The update is now ``addmm_`` where the logits'
gradient has the accumulator's dtype (float32, float64); half-precision inputs keep the
cast product, so their rounding is unchanged.

Gradient in closed form. With $u_v = \partial D / \partial q_v$ (up to a constant in $v$),
$\partial D/\partial z^s_v = q_v (u_v - \sum_w q_w u_w)/\tau$, where $u = -p/q$
(forward KL: the gradient is $(q - p)/\tau$), $\log q - \log p$ (reverse),
$(1-\beta)(\log q - \log m)$ (JSD), $-(1-\alpha)\,p/m$ (skew KL),
$\log q - \log m - \alpha q/m$ (skew reverse KL). Computation is in float32 for half
precision inputs (float64 kept), in log space; the teacher is detached.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import (
    at_least,
    in_unit_interval,
    one_of,
    per_token,
    positive,
    token_logit_pair,
)

Divergence = Literal["forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl"]
DIVERGENCES: tuple[str, ...] = ("forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl")


def _check_options(divergence: str, beta: float, skew: float, temperature: float) -> None:
    one_of("divergence", divergence, DIVERGENCES)
    in_unit_interval("beta", beta)
    in_unit_interval("skew", skew)
    positive("temperature", temperature)


def kept_tokens(
    num_tokens: int,
    labels: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    ignore_index: int,
    device: torch.device,
) -> torch.Tensor:
    """Boolean ``[N]``: labels $\\neq$ ``ignore_index`` and attention mask non-zero."""
    kept = torch.ones(num_tokens, dtype=torch.bool, device=device)
    for name, tensor in (("labels", labels), ("attention_mask", attention_mask)):
        if tensor is None:
            continue
        if tensor.numel() != num_tokens or tensor.is_floating_point():
            raise ValueError(
                f"{name} must be an integer or boolean tensor with one entry per token "
                f"({num_tokens} tokens, the logits' leading dimensions), got shape "
                f"{tuple(tensor.shape)} and dtype {tensor.dtype}"
            )
        flat = tensor.reshape(-1).to(device)
        kept &= flat != ignore_index if name == "labels" else flat != 0
    return kept


def _flat_logit_pair(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    if student_logits.dim() < 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "student_logits and teacher_logits must have one shape [..., V] (e.g. [B, T, V] "
            f"or [N, V]), got {tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    vocab = student_logits.shape[-1]
    return student_logits.reshape(-1, vocab), teacher_logits.reshape(-1, vocab)


def token_divergence(
    student_log_probs: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    skew: float = 0.1,
) -> torch.Tensor:
    """$D(p_n, q_n)$ per row from log-probabilities ``[n, V]``: shape ``[n]``, with autograd."""
    log_q, log_p = student_log_probs, teacher_log_probs
    if divergence == "jsd" and beta in (0.0, 1.0):
        divergence = "forward_kl" if beta == 0.0 else "reverse_kl"
    if divergence == "forward_kl":
        return (log_p.exp() * (log_p - log_q)).sum(-1)
    if divergence == "reverse_kl":
        return (log_q.exp() * (log_q - log_p)).sum(-1)
    if divergence == "jsd":
        log_m = torch.logaddexp(log_p + math.log(beta), log_q + math.log1p(-beta))
        kl_p = (log_p.exp() * (log_p - log_m)).sum(-1)
        kl_q = (log_q.exp() * (log_q - log_m)).sum(-1)
        return beta * kl_p + (1 - beta) * kl_q
    if divergence == "skew_kl":
        log_m = _log_mixture(log_p, log_q, skew)
        return (log_p.exp() * (log_p - log_m)).sum(-1)
    log_m = _log_mixture(log_q, log_p, skew)  # skew_reverse_kl: (1 - a) p + a q
    return (log_q.exp() * (log_q - log_m)).sum(-1)


def _log_mixture(log_a: torch.Tensor, log_b: torch.Tensor, weight_a: float) -> torch.Tensor:
    """$\\log(w\\,a + (1-w)\\,b)$ in log space, a new tensor; ``w`` may be 0 or 1."""
    if weight_a == 0.0:
        return log_b.clone()
    if weight_a == 1.0:
        return log_a.clone()
    mixture = log_a + math.log(weight_a)
    other = log_b + math.log1p(-weight_a)
    if mixture.requires_grad or other.requires_grad:  # the naive loss, under autograd
        return torch.logaddexp(mixture, other)
    return torch.logaddexp(mixture, other, out=mixture)


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """$\\sum_v a_{nv} b_{nv}$ without an ``[n, V]`` product in memory."""
    return torch.einsum("nv,nv->n", a, b)


def _divergence_and_gradient(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    divergence: str,
    beta: float,
    skew: float,
    temperature: float,
    with_gradient: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row divergence ``[n]`` and its gradient w.r.t. the student logits ``[n, V]``.

    The same values as :func:`token_divergence`, with the gradient in closed form (module
    docstring); written in place where it can, so a chunk holds few ``[n, V]`` tensors.
    """
    # autocast would run the row dot products (einsum -> bmm) in half precision
    with torch.autocast(student_logits.device.type, enabled=False):
        return _divergence_and_gradient_float(
            student_logits, teacher_logits, divergence, beta, skew, temperature, with_gradient
        )


def _divergence_and_gradient_float(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    divergence: str,
    beta: float,
    skew: float,
    temperature: float,
    with_gradient: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    dtype = torch.promote_types(
        at_least_float32(student_logits).dtype, at_least_float32(teacher_logits).dtype
    )
    student_logits, teacher_logits = student_logits.to(dtype), teacher_logits.to(dtype)
    if temperature != 1.0:
        student_logits, teacher_logits = student_logits / temperature, teacher_logits / temperature
    log_q = F.log_softmax(student_logits, dim=-1)
    log_p = F.log_softmax(teacher_logits, dim=-1)
    del student_logits, teacher_logits
    if divergence == "jsd" and beta in (0.0, 1.0):
        divergence = "forward_kl" if beta == 0.0 else "reverse_kl"
    if divergence == "forward_kl":
        p = log_p.exp()
        value = _row_dot(p, log_p.sub_(log_q))
        if not with_gradient:
            return value, None
        gradient = log_q.exp_().sub_(p)  # (q - p)
        return value, gradient if temperature == 1.0 else gradient.div_(temperature)
    q = log_q.exp()
    if divergence == "reverse_kl":
        u = log_q.sub_(log_p)  # log q - log p
        value = _row_dot(q, u)
        centred = u.sub_(value[:, None])  # sum_w q_w u_w is the divergence itself
    elif divergence == "jsd":
        log_m = _log_mixture(log_p, log_q, beta)
        p = log_p.exp()
        kl_p = _row_dot(p, log_p.sub_(log_m))
        del p, log_p
        u = log_q.sub_(log_m)  # log q - log m
        kl_q = _row_dot(q, u)
        value = beta * kl_p + (1 - beta) * kl_q
        centred = u.sub_(kl_q[:, None]).mul_(1 - beta)
    elif divergence == "skew_kl":
        log_m = _log_mixture(log_p, log_q, skew)
        p = log_p.exp()
        log_ratio = log_p.sub_(log_m)  # log p - log m
        value = _row_dot(p, log_ratio)
        if not with_gradient:
            return value, None
        u = log_ratio.exp_().mul_(-(1 - skew))  # -(1 - a) p / m
        centred = u.sub_(_row_dot(q, u)[:, None])
    else:  # skew_reverse_kl
        log_m = _log_mixture(log_q, log_p, skew)
        log_ratio = log_q.sub_(log_m)  # log q - log m
        value = _row_dot(q, log_ratio)
        if not with_gradient:
            return value, None
        u = log_ratio.sub_(log_ratio.exp().mul_(skew))  # log q - log m - a q / m
        centred = u.sub_(_row_dot(q, u)[:, None])
    if not with_gradient:
        return value, None
    gradient = centred.mul_(q)
    return value, gradient if temperature == 1.0 else gradient.div_(temperature)


def naive_token_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    skew: float = 0.1,
    temperature: float = 1.0,
    ignore_index: int = -100,
) -> torch.Tensor:
    """The textbook token-level loss, every ``[N, V]`` tensor at once, autograd backward.

    Args:
        student_logits: ``[..., V]`` (``[B, T, V]`` or ``[N, V]``) logits being trained.
        teacher_logits: the teacher's logits of the same shape; detached here.
        labels: optional ``[...]`` token labels; tokens equal to ``ignore_index`` are left out.
        attention_mask: optional ``[...]`` mask; tokens where it is 0 are left out.
        divergence: one of :data:`DIVERGENCES`.
        beta: the generalized JSD's $\\beta$ (0: forward KL, 1: reverse KL, as in TRL).
        skew: the skew KLs' $\\alpha$ (DistiLLM's ``lam``, 0.1).
        temperature: both logits are divided by it (no $\\tau^2$ factor, as in TRL).
        ignore_index: the label of tokens to leave out (Hugging Face's -100).

    Returns:
        The mean divergence over kept tokens (0 when none is kept), at least float32.
    """
    _check_options(divergence, beta, skew, temperature)
    student, teacher = _flat_logit_pair(student_logits, teacher_logits.detach())
    kept = kept_tokens(student.shape[0], labels, attention_mask, ignore_index, student.device)
    dtype = torch.promote_types(at_least_float32(student).dtype, at_least_float32(teacher).dtype)
    per_token = token_divergence(
        F.log_softmax(student.to(dtype) / temperature, dim=-1),
        F.log_softmax(teacher.to(dtype) / temperature, dim=-1),
        divergence,
        beta,
        skew,
    )
    return per_token[kept].sum() / kept.sum().clamp_min(1)


# default chunk sizes, in elements of one [n, V] chunk: small for the loss on given logits
# (its temporaries add to the [N, V] gradient it must return); larger for the fused loss,
# whose per-chunk matmuls and weight-gradient updates are inefficient on few rows
CHUNK_ELEMENTS = 2**20
FUSED_CHUNK_ELEMENTS = 2**22
FUSED_MIN_ROWS = 64  # chosen from measurements: module docstring


def _chunk_rows(
    chunk_size: int | None, vocab: int, elements: int = CHUNK_ELEMENTS, min_rows: int = 1
) -> int:
    """Tokens per chunk: as given, or so that one ``[n, V]`` chunk has ``elements`` elements
    (at least ``min_rows``)."""
    if chunk_size is None:
        return max(min_rows, elements // vocab)
    return at_least("chunk_size", chunk_size, 1)


def _scaled(gradient: torch.Tensor | None, grad_output: torch.Tensor) -> torch.Tensor | None:
    """The stored gradient times the incoming one; itself (no copy) when that is 1."""
    if gradient is None or bool(grad_output == 1):
        return gradient
    return gradient * grad_output.to(gradient.dtype)


def _hand_over_once(ctx: torch.autograd.function.FunctionCtx) -> None:
    """The gradient, formed in the forward pass, is handed to autograd once, not kept."""
    if getattr(ctx, "handed_over", False):
        raise RuntimeError(
            "backward through a chunked token-level KD loss runs once (its gradient is handed "
            "over, not kept); compute the loss again for a second backward"
        )
    ctx.handed_over = True


class _ChunkedTokenKD(torch.autograd.Function):
    """Loss and gradient chunk by chunk in the forward pass; backward scales the gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        student: torch.Tensor,
        teacher: torch.Tensor,
        kept: torch.Tensor,
        options: tuple[str, float, float, float],
        chunk_size: int,
        with_gradient: bool,
    ) -> torch.Tensor:
        divergence, beta, skew, temperature = options
        rows = kept.nonzero().squeeze(1)
        count = max(int(rows.numel()), 1)
        all_kept = rows.numel() == student.shape[0]
        total = torch.zeros((), dtype=torch.float64, device=student.device)
        gradient = torch.zeros_like(student) if with_gradient else None
        for start in range(0, rows.numel(), chunk_size):
            if all_kept:
                chunk = slice(start, min(start + chunk_size, rows.numel()))
                student_chunk, teacher_chunk = student[chunk], teacher[chunk]
            else:
                chunk = rows[start : start + chunk_size]
                student_chunk, teacher_chunk = student[chunk], teacher[chunk]
            value, chunk_gradient = _divergence_and_gradient(
                student_chunk, teacher_chunk, divergence, beta, skew, temperature, with_gradient
            )
            total += value.sum()
            if gradient is not None and chunk_gradient is not None:
                gradient[chunk] = chunk_gradient.div_(count).to(gradient.dtype)
        ctx.gradient = gradient  # an attribute, not saved: backward hands it over without a copy
        dtype = at_least_float32(torch.empty(0, dtype=student.dtype)).dtype
        dtype = torch.promote_types(dtype, at_least_float32(teacher[:0]).dtype)
        return (total / count).to(dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, None, None]:
        _hand_over_once(ctx)
        gradient, ctx.gradient = ctx.gradient, None
        return _scaled(gradient, grad_output), None, None, None, None, None


def chunked_token_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    skew: float = 0.1,
    temperature: float = 1.0,
    ignore_index: int = -100,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """:func:`naive_token_kd_loss` computed ``chunk_size`` kept tokens at a time.

    Same arguments and result; at most one chunk's ``[chunk_size, V]`` probabilities
    are held (``chunk_size`` default: ``2**20 // V`` tokens, about 1M elements), plus
    the ``[N, V]`` gradient in the logits' dtype when the student requires a gradient
    (computed during the forward pass, chunk by chunk, and handed to autograd without a
    copy: one backward per forward).
    """
    _check_options(divergence, beta, skew, temperature)
    student, teacher = _flat_logit_pair(student_logits, teacher_logits.detach())
    chunk_size = _chunk_rows(chunk_size, student.shape[-1])
    kept = kept_tokens(student.shape[0], labels, attention_mask, ignore_index, student.device)
    options = (divergence, float(beta), float(skew), float(temperature))
    # the gradient is formed during the forward pass, so only when it will be asked for
    with_gradient = torch.is_grad_enabled() and student.requires_grad
    return _ChunkedTokenKD.apply(student, teacher, kept, options, chunk_size, with_gradient)


class _FusedLinearTokenKD(torch.autograd.Function):
    """LM heads and loss chunk by chunk; gradients of hidden states and weight accumulated."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        student_hidden: torch.Tensor,
        student_weight: torch.Tensor,
        teacher_hidden: torch.Tensor,
        teacher_weight: torch.Tensor,
        kept: torch.Tensor,
        options: tuple[str, float, float, float],
        chunk_size: int,
        need_hidden: bool,
        need_weight: bool,
    ) -> torch.Tensor:
        divergence, beta, skew, temperature = options
        with_gradient = need_hidden or need_weight
        rows = kept.nonzero().squeeze(1)
        count = max(int(rows.numel()), 1)
        all_kept = rows.numel() == student_hidden.shape[0]
        total = torch.zeros((), dtype=torch.float64, device=student_hidden.device)
        hidden_gradient = torch.zeros_like(student_hidden) if need_hidden else None
        # the weight's gradient is summed over chunks: accumulate at least in float32
        weight_gradient = (
            torch.zeros_like(student_weight, dtype=at_least_float32(student_weight[:0]).dtype)
            if need_weight
            else None
        )
        for start in range(0, rows.numel(), chunk_size):
            if all_kept:
                chunk = slice(start, min(start + chunk_size, rows.numel()))
            else:
                chunk = rows[start : start + chunk_size]
            student_chunk = student_hidden[chunk]
            student_logits = student_chunk @ student_weight.T
            teacher_logits = teacher_hidden[chunk] @ teacher_weight.T
            value, logit_gradient = _divergence_and_gradient(
                student_logits, teacher_logits, divergence, beta, skew, temperature, with_gradient
            )
            del student_logits, teacher_logits
            total += value.sum()
            if logit_gradient is None:
                continue
            # the gradient w.r.t. the logits, cast to their dtype as autograd would
            logit_gradient = logit_gradient.div_(count).to(student_hidden.dtype)
            if hidden_gradient is not None:
                hidden_gradient[chunk] = logit_gradient @ student_weight
            if weight_gradient is not None:
                if weight_gradient.dtype == logit_gradient.dtype:
                    # in place (BLAS beta = 1): no [V, H] product is formed and added per chunk
                    weight_gradient.addmm_(logit_gradient.T, student_chunk)
                else:  # half precision: each chunk's product rounded as autograd would
                    weight_gradient += (logit_gradient.T @ student_chunk).to(weight_gradient.dtype)
        ctx.gradients = (
            hidden_gradient,
            weight_gradient.to(student_weight.dtype) if weight_gradient is not None else None,
        )
        dtype = torch.promote_types(
            at_least_float32(student_hidden[:0]).dtype, at_least_float32(teacher_hidden[:0]).dtype
        )
        return (total / count).to(dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        _hand_over_once(ctx)
        (hidden_gradient, weight_gradient), ctx.gradients = ctx.gradients, (None, None)
        return (
            _scaled(hidden_gradient, grad_output) if ctx.needs_input_grad[0] else None,
            _scaled(weight_gradient, grad_output) if ctx.needs_input_grad[1] else None,
            *(None,) * 7,
        )


def fused_linear_token_kd_loss(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    labels: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    skew: float = 0.1,
    temperature: float = 1.0,
    ignore_index: int = -100,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The token-level loss of the logits ``hidden @ weight.T`` without forming them.

    Args:
        student_hidden: ``[..., H_s]`` (``[B, T, H_s]`` or ``[N, H_s]``) final hidden states.
        student_weight: ``[V, H_s]`` the student's LM head (``nn.Linear.weight``, no bias).
        teacher_hidden: ``[..., H_t]`` with the same leading shape; detached.
        teacher_weight: ``[V, H_t]`` the teacher's LM head, same vocabulary; detached.
        labels, attention_mask, divergence, beta, skew, temperature, ignore_index: as in
            :func:`naive_token_kd_loss`.
        chunk_size: tokens per chunk; one chunk's ``[chunk_size, V]`` logits exist at a time
            (default ``2**22 // V``, at least 64).

    Returns:
        Equal (up to rounding) to ``naive_token_kd_loss(student_hidden @ student_weight.T,
        teacher_hidden @ teacher_weight.T, ...)``, with the same gradients w.r.t. the
        student's hidden states and weight.
    """
    _check_options(divergence, beta, skew, temperature)
    for name, hidden, weight in (
        ("student", student_hidden, student_weight),
        ("teacher", teacher_hidden, teacher_weight),
    ):
        if hidden.dim() < 2 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"{name}_hidden must have shape [..., H] and {name}_weight [V, H] with the same "
                f"H, got {tuple(hidden.shape)} and {tuple(weight.shape)}"
            )
    if student_hidden.shape[:-1] != teacher_hidden.shape[:-1]:
        raise ValueError(
            "student_hidden and teacher_hidden must have the same tokens (leading shape), got "
            f"{tuple(student_hidden.shape)} and {tuple(teacher_hidden.shape)}"
        )
    if student_weight.shape[0] != teacher_weight.shape[0]:
        raise ValueError(
            "student_weight and teacher_weight must have the same vocabulary size V, got "
            f"{tuple(student_weight.shape)} and {tuple(teacher_weight.shape)}"
        )
    chunk_size = _chunk_rows(
        chunk_size, student_weight.shape[0], FUSED_CHUNK_ELEMENTS, FUSED_MIN_ROWS
    )
    student = student_hidden.reshape(-1, student_hidden.shape[-1])
    teacher = teacher_hidden.detach().reshape(-1, teacher_hidden.shape[-1])
    kept = kept_tokens(student.shape[0], labels, attention_mask, ignore_index, student.device)
    options = (divergence, float(beta), float(skew), float(temperature))
    grad_enabled = torch.is_grad_enabled()
    return _FusedLinearTokenKD.apply(
        student,
        student_weight,
        teacher,
        teacher_weight.detach(),
        kept,
        options,
        chunk_size,
        grad_enabled and student.requires_grad,
        grad_enabled and student_weight.requires_grad,
    )


class TokenKDLoss(DistillationLoss, abstract=True):
    """A token-level loss as a module: the divergence and its options fixed at construction.

    ``forward(student_logits, teacher_logits, labels=None, attention_mask=None)`` takes
    ``[B, T, V]`` (or ``[N, V]``) logits compared position by position as given (shift
    them first: logits at $t$ predict the label at $t$), optional Hugging Face labels
    (``ignore_index`` left out) and an attention mask (0 or False left out), both of shape
    ``[B, T]``, and returns the mean divergence over the kept tokens (0, with a zero
    gradient, when none is kept). It runs :func:`chunked_token_kd_loss` (equal to
    :func:`naive_token_kd_loss`; one backward per forward).
    """

    inputs: ClassVar[str] = "logits"
    divergence: ClassVar[str]

    def __init__(
        self,
        *,
        beta: float = 0.5,
        skew: float = 0.1,
        temperature: float = 1.0,
        ignore_index: int = -100,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        _check_options(self.divergence, beta, skew, temperature)
        self.beta, self.skew, self.temperature = float(beta), float(skew), float(temperature)
        self.ignore_index = int(ignore_index)
        self.chunk_size = None if chunk_size is None else at_least("chunk_size", chunk_size, 1)

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        token_logit_pair(student_logits, teacher_logits)
        per_token("labels", labels, student_logits)
        per_token("attention_mask", attention_mask, student_logits)
        return chunked_token_kd_loss(
            student_logits,
            teacher_logits,
            labels,
            attention_mask,
            divergence=self.divergence,  # type: ignore[arg-type]
            beta=self.beta,
            skew=self.skew,
            temperature=self.temperature,
            ignore_index=self.ignore_index,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        options = {"forward_kl": "", "reverse_kl": "", "jsd": f", beta={self.beta}"}
        option = options.get(self.divergence, f", skew={self.skew}")
        return f"divergence={self.divergence}{option}, temperature={self.temperature}"


__all__ = [
    "DIVERGENCES",
    "Divergence",
    "TokenKDLoss",
    "chunked_token_kd_loss",
    "fused_linear_token_kd_loss",
    "kept_tokens",
    "naive_token_kd_loss",
    "token_divergence",
]
