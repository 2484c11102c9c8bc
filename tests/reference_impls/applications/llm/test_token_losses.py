"""Token-level KD losses: chunked and fused forms equal the naive loss, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reference_impls.applications.llm.token_losses import (
    DIVERGENCES,
    chunked_token_kd_loss,
    fused_linear_token_kd_loss,
    naive_token_kd_loss,
)

N, V, H = 23, 61, 12


def _logits(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = (3 * torch.randn(N, V, generator=generator)).to(dtype)
    teacher = (3 * torch.randn(N, V, generator=generator)).to(dtype)
    return student, teacher


def _masks() -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(N) % V
    labels[::3] = -100
    attention_mask = torch.ones(N, dtype=torch.long)
    attention_mask[-4:] = 0
    return labels, attention_mask


def _value_and_grad(loss_fn, student, teacher, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    student = student.clone().requires_grad_()
    loss = loss_fn(student, teacher, **kwargs)
    (grad,) = torch.autograd.grad(loss, student)
    return loss.detach(), grad


def _by_hand(student: torch.Tensor, teacher: torch.Tensor, divergence: str) -> torch.Tensor:
    """Per-token divergences from probabilities (not log space), averaged over all tokens."""
    p, q = teacher.double().softmax(-1), student.double().softmax(-1)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * (a / b).log()).sum(-1)

    per_token = {
        "forward_kl": kl(p, q),
        "reverse_kl": kl(q, p),
        "jsd": 0.5 * kl(p, (p + q) / 2) + 0.5 * kl(q, (p + q) / 2),
        "skew_kl": kl(p, 0.1 * p + 0.9 * q),
        "skew_reverse_kl": kl(q, 0.9 * p + 0.1 * q),
    }[divergence]
    return per_token.mean()


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_the_naive_loss_matches_the_divergence_computed_by_hand(divergence: str) -> None:
    student, teacher = _logits(torch.float64)
    loss = naive_token_kd_loss(student, teacher, divergence=divergence)
    assert loss.item() == pytest.approx(_by_hand(student, teacher, divergence).item(), rel=1e-10)


def test_jsd_at_beta_0_and_1_is_forward_and_reverse_kl_as_in_trl() -> None:
    student, teacher = _logits(torch.float64)
    for beta, divergence in ((0.0, "forward_kl"), (1.0, "reverse_kl")):
        jsd = naive_token_kd_loss(student, teacher, divergence="jsd", beta=beta)
        assert jsd == naive_token_kd_loss(student, teacher, divergence=divergence)
    # the mixture formula itself goes to 0 at the ends: the KLs are special cases
    near_zero = naive_token_kd_loss(student, teacher, divergence="jsd", beta=1e-6)
    assert near_zero < 1e-4 < naive_token_kd_loss(student, teacher, divergence="forward_kl")


def test_every_divergence_is_zero_when_the_student_equals_the_teacher() -> None:
    _, teacher = _logits(torch.float64)
    for divergence in DIVERGENCES:
        loss = chunked_token_kd_loss(teacher, teacher, divergence=divergence, chunk_size=5)
        assert abs(loss.item()) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_chunked_value_and_gradient_equal_the_naive_loss(
    divergence: str, dtype: torch.dtype
) -> None:
    student, teacher = _logits(dtype)
    labels, attention_mask = _masks()
    options = {
        "labels": labels,
        "attention_mask": attention_mask,
        "divergence": divergence,
        "beta": 0.3,
        "temperature": 2.0,
    }
    naive, naive_grad = _value_and_grad(naive_token_kd_loss, student, teacher, **options)
    chunked, chunked_grad = _value_and_grad(
        chunked_token_kd_loss, student, teacher, chunk_size=4, **options
    )
    assert naive.dtype == chunked.dtype == torch.float32
    assert chunked_grad.dtype == dtype
    torch.testing.assert_close(chunked, naive, rtol=1e-6, atol=1e-6)
    # bfloat16 gradients: one rounding of the same float32 value, at most one ulp apart
    grad_rtol = 1e-5 if dtype == torch.float32 else 8e-3
    torch.testing.assert_close(chunked_grad, naive_grad, rtol=grad_rtol, atol=1e-8)
    # masked tokens receive no gradient
    dropped = (labels == -100) | (attention_mask == 0)
    assert chunked_grad[dropped].abs().max() == 0
    assert chunked_grad[~dropped].abs().max() > 0


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_the_closed_form_gradient_equals_autograd_in_float64(divergence: str) -> None:
    student, teacher = _logits(torch.float64)
    labels, attention_mask = _masks()
    options = {"divergence": divergence, "temperature": 1.5, "beta": 0.7, "skew": 0.3}
    options |= {"labels": labels, "attention_mask": attention_mask}
    naive, naive_grad = _value_and_grad(naive_token_kd_loss, student, teacher, **options)
    chunked, chunked_grad = _value_and_grad(
        chunked_token_kd_loss, student, teacher, chunk_size=3, **options
    )
    torch.testing.assert_close(chunked, naive, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(chunked_grad, naive_grad, rtol=1e-10, atol=1e-15)


def test_a_second_backward_is_refused_and_a_scaled_one_is_exact() -> None:
    student, teacher = _logits(torch.float64)
    student.requires_grad_()
    loss = chunked_token_kd_loss(student, teacher, chunk_size=5)
    (3.0 * loss).backward(retain_graph=True)
    expected = naive_token_kd_loss(student, teacher)
    (reference,) = torch.autograd.grad(3.0 * expected, student)
    torch.testing.assert_close(student.grad, reference)
    with pytest.raises(RuntimeError, match="runs once"):
        loss.backward()


def test_sequence_shapes_and_ignore_labels_follow_hugging_face() -> None:
    student, teacher = _logits(torch.float32)
    labels, _ = _masks()
    loss = chunked_token_kd_loss(
        student[:20].view(4, 5, V), teacher[:20].view(4, 5, V), labels[:20].view(4, 5)
    )
    kept = labels[:20] != -100
    expected = naive_token_kd_loss(student[:20][kept], teacher[:20][kept])
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize(
    "loss_fn", [naive_token_kd_loss, chunked_token_kd_loss], ids=["naive", "chunked"]
)
def test_no_kept_token_gives_zero_and_a_zero_gradient_not_nan(loss_fn) -> None:
    student, teacher = _logits(torch.float32)
    labels = torch.full((N,), -100)
    loss, grad = _value_and_grad(loss_fn, student, teacher, labels=labels)
    assert loss.item() == 0.0
    assert torch.isfinite(grad).all() and grad.abs().max() == 0


def test_the_teacher_receives_no_gradient_and_no_grad_mode_skips_the_gradient() -> None:
    student, teacher = _logits(torch.float32)
    student.requires_grad_()
    teacher.requires_grad_()
    chunked_token_kd_loss(student, teacher, chunk_size=5).backward()
    assert teacher.grad is None and student.grad is not None
    with torch.no_grad():
        value = chunked_token_kd_loss(student, teacher, chunk_size=5)
    assert not value.requires_grad


def test_autocast_leaves_the_chunked_loss_in_float32() -> None:
    student, teacher = _logits(torch.float32)
    labels, _ = _masks()
    plain, plain_grad = _value_and_grad(chunked_token_kd_loss, student, teacher, labels=labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast, cast_grad = _value_and_grad(chunked_token_kd_loss, student, teacher, labels=labels)
    assert cast.dtype == torch.float32
    torch.testing.assert_close(cast, plain)
    torch.testing.assert_close(cast_grad, plain_grad)


def _heads(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    student_hidden = torch.randn(N, H, generator=generator).to(dtype)
    student_weight = torch.randn(V, H, generator=generator).to(dtype)
    teacher_hidden = torch.randn(N, 2 * H, generator=generator).to(dtype)
    teacher_weight = torch.randn(V, 2 * H, generator=generator).to(dtype)
    return student_hidden, student_weight, teacher_hidden, teacher_weight


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("divergence", ["forward_kl", "jsd", "skew_reverse_kl"])
def test_fused_linear_loss_equals_the_naive_loss_of_the_heads_logits(
    divergence: str, dtype: torch.dtype
) -> None:
    student_hidden, student_weight, teacher_hidden, teacher_weight = _heads(dtype)
    labels, attention_mask = _masks()
    options = {"labels": labels, "attention_mask": attention_mask, "divergence": divergence}
    hidden = student_hidden.clone().requires_grad_()
    weight = student_weight.clone().requires_grad_()
    naive = naive_token_kd_loss(hidden @ weight.T, teacher_hidden @ teacher_weight.T, **options)
    naive_grads = torch.autograd.grad(naive, (hidden, weight))
    hidden = student_hidden.clone().requires_grad_()
    weight = student_weight.clone().requires_grad_()
    fused = fused_linear_token_kd_loss(
        hidden, weight, teacher_hidden, teacher_weight, chunk_size=4, **options
    )
    fused_grads = torch.autograd.grad(fused, (hidden, weight))
    tolerance = (
        {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 1e-3}
    )
    torch.testing.assert_close(fused, naive, **tolerance)
    for ours, reference in zip(fused_grads, naive_grads, strict=True):
        assert ours.dtype == dtype
        torch.testing.assert_close(ours, reference, **tolerance)


def test_fused_linear_loss_accepts_sequences_and_a_frozen_student_head() -> None:
    student_hidden, student_weight, teacher_hidden, teacher_weight = _heads(torch.float32)
    hidden = student_hidden[:20].view(4, 5, H).clone().requires_grad_()
    loss = fused_linear_token_kd_loss(
        hidden, student_weight, teacher_hidden[:20].view(4, 5, 2 * H), teacher_weight
    )
    loss.backward()
    expected = F.linear(hidden.detach(), student_weight)
    reference = naive_token_kd_loss(
        expected, F.linear(teacher_hidden[:20].view(4, 5, 2 * H), teacher_weight)
    )
    torch.testing.assert_close(loss.detach(), reference)
    assert hidden.grad is not None and hidden.grad.shape == (4, 5, H)


def test_bad_inputs_are_reported_with_their_shapes() -> None:
    student, teacher = _logits(torch.float32)
    with pytest.raises(ValueError, match=r"one shape \[\.\.\., V\]"):
        chunked_token_kd_loss(student, teacher[:, :-1])
    with pytest.raises(ValueError, match="labels must be an integer or boolean tensor"):
        chunked_token_kd_loss(student, teacher, labels=torch.zeros(N - 1, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask must be"):
        naive_token_kd_loss(student, teacher, attention_mask=torch.ones(N))
    with pytest.raises(ValueError, match="divergence must be one of"):
        chunked_token_kd_loss(student, teacher, divergence="tv")
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\]"):
        chunked_token_kd_loss(student, teacher, divergence="jsd", beta=1.5)
    with pytest.raises(ValueError, match="temperature must be positive"):
        chunked_token_kd_loss(student, teacher, temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        chunked_token_kd_loss(student, teacher, chunk_size=0)
    hidden, weight, teacher_hidden, teacher_weight = _heads(torch.float32)
    with pytest.raises(ValueError, match="student_hidden must have shape"):
        fused_linear_token_kd_loss(hidden, weight.T, teacher_hidden, teacher_weight)
    with pytest.raises(ValueError, match="same vocabulary size V"):
        fused_linear_token_kd_loss(hidden, weight, teacher_hidden, teacher_weight[:-1])
    with pytest.raises(ValueError, match="same tokens"):
        fused_linear_token_kd_loss(hidden, weight, teacher_hidden[:-1], teacher_weight)


def test_the_fused_default_chunk_is_bounded_in_elements_and_at_least_64_tokens() -> None:
    from reference_impls.applications.llm.token_losses import (
        FUSED_CHUNK_ELEMENTS,
        FUSED_MIN_ROWS,
        _chunk_rows,
    )

    # the measured choice (module docstring): 131 tokens at V = 32,000, 64 at V = 128,256
    assert _chunk_rows(None, 32_000, FUSED_CHUNK_ELEMENTS, FUSED_MIN_ROWS) == 131
    assert _chunk_rows(None, 128_256, FUSED_CHUNK_ELEMENTS, FUSED_MIN_ROWS) == 64
    assert _chunk_rows(7, 128_256, FUSED_CHUNK_ELEMENTS, FUSED_MIN_ROWS) == 7  # as given
