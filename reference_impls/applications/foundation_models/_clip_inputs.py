"""Argument checks shared by the CLIP distillation losses (image and text embeddings, logit scales)."""

from __future__ import annotations

import torch

from reference_impls.common.validation import embedding_batch


def clip_pair(
    image: torch.Tensor, text: torch.Tensor, owner: str, width: int | None = None
) -> tuple[int, int]:
    """``image`` and ``text`` embeddings of one model: both ``[B, D]``, paired by row; returns ``(B, D)``."""
    rows, dim = embedding_batch(f"{owner}_image", image, width=width)
    embedding_batch(f"{owner}_text", text, rows=rows, width=dim)
    return rows, dim


def logit_scale(name: str, value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A positive scalar multiplier of the similarities (CLIP's ``logit_scale.exp()``), as a tensor."""
    scale = torch.as_tensor(value, device=like.device)
    if scale.numel() != 1:
        raise ValueError(f"{name} must be a scalar, got shape {tuple(scale.shape)}")
    if not bool((scale > 0).all()):
        raise ValueError(
            f"{name} must be positive (the exponentiated logit scale), got {float(scale)}"
        )
    return scale.reshape(())


def clip_inputs(
    student_image: torch.Tensor,
    teacher_image: torch.Tensor,
    student_text: torch.Tensor,
    teacher_text: torch.Tensor,
    student_logit_scale: torch.Tensor | float,
    teacher_logit_scale: torch.Tensor | float,
    student_dim: int | None = None,
    teacher_dim: int | None = None,
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """The six inputs of a CLIP distillation loss, checked; returns ``(B, student_scale, teacher_scale)``.

    Each model's image and text embeddings are paired by row (of width ``student_dim`` /
    ``teacher_dim`` when given), student and teacher pair the same ``B`` samples, and the
    logit scales are positive scalars (returned as tensors on the student's device).
    """
    rows, _ = clip_pair(student_image, student_text, "student", width=student_dim)
    teacher_rows, _ = clip_pair(teacher_image, teacher_text, "teacher", width=teacher_dim)
    if teacher_rows != rows:
        raise ValueError(
            f"student and teacher embeddings must pair the same {rows} samples, got "
            f"{rows} and {teacher_rows} rows"
        )
    student_scale = logit_scale("student_logit_scale", student_logit_scale, student_image)
    teacher_scale = logit_scale("teacher_logit_scale", teacher_logit_scale, student_image)
    return rows, student_scale, teacher_scale
