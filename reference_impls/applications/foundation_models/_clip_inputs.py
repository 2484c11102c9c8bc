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
