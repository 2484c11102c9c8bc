"""Argument checks shared by the implementations: one wording for every file.

Each helper returns the value it checked, so a constructor can read
``self.temperature = positive("temperature", temperature)``. Errors are
``ValueError`` naming the argument and the value received. The tensor checks
(:func:`logit_pair`, :func:`class_indices`) run at the top of every logit loss's
``forward``, so a wrong shape is reported in the loss's terms, not as a raw torch error.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence, Sized
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def positive(name: str, value: float) -> float:
    """``value > 0`` (temperatures, scales, epsilons)."""
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def non_negative(name: str, value: float) -> float:
    """``value >= 0`` (loss weights, warm-up lengths)."""
    if not value >= 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return value


def in_unit_interval(name: str, value: float) -> float:
    """``0 <= value <= 1`` (mixing coefficients, probabilities)."""
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def at_least(name: str, value: int, minimum: int) -> int:
    """An integer count of at least ``minimum`` (stages, branches, peers, generations)."""
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def one_of(name: str, value: T, choices: Collection[T]) -> T:
    """``value`` among ``choices`` (modes, reductions, optimiser names)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices, key=str)}, got {value!r}")
    return value


def loss_weights(**weights: float) -> dict[str, float]:
    """Non-negative weights of which at least one is positive (a loss that is not identically 0)."""
    for name, value in weights.items():
        non_negative(name, value)
    if weights and not any(value > 0 for value in weights.values()):
        names = " and ".join(weights)
        raise ValueError(f"{names} must not all be zero, got {weights}")
    return weights


def stage_index(name: str, stage: int, num_stages: int, *, negative_ok: bool = False) -> int:
    """One stage index in ``range(num_stages)`` (or, with ``negative_ok``, Python's negative form)."""
    low = -num_stages if negative_ok else 0
    if not low <= stage < num_stages:
        raise ValueError(f"{name}: stage {stage} out of range for {num_stages} stages")
    return stage


def stage_indices(
    name: str, stages: Sequence[int], num_stages: int | None = None, *, negative_ok: bool = False
) -> list[int]:
    """At least one stage index; each in range when ``num_stages`` is known.

    Losses that learn the number of stages only from their inputs pass ``num_stages``
    later, in ``forward``; ``negative_ok`` admits ``-1`` for "the last stage".
    """
    if len(stages) == 0:
        raise ValueError(f"{name} must name at least one stage")
    if num_stages is not None:
        for stage in stages:
            stage_index(name, stage, num_stages, negative_ok=negative_ok)
    return list(stages)


def same_stage_count(student: Sized, teacher: Sized, what: str = "stages") -> None:
    """Student and teacher give one entry per tapped stage each: channel lists, or feature maps."""
    if len(student) != len(teacher):
        raise ValueError(
            f"got {len(student)} student {what} but {len(teacher)} teacher {what}; "
            "give one for every tapped stage of both"
        )


def enough_feature_maps(
    name: str, stages: Sequence[int], student_feats: Sized, teacher_feats: Sized
) -> None:
    """Student and teacher both give a feature map for every (non-negative) stage index."""
    needed = max(stages) + 1
    if len(student_feats) < needed or len(teacher_feats) < needed:
        raise ValueError(
            f"{name} {tuple(stages)}: student and teacher need {needed} feature maps each, got "
            f"{len(student_feats)} (student) and {len(teacher_feats)} (teacher)"
        )


def logit_pair(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, tokens_ok: bool = False
) -> None:
    """Student and teacher logits of one shape ``[B, C]`` (``[..., C]`` with ``tokens_ok``)."""
    expected = "[..., C]" if tokens_ok else "[B, C]"
    for name, logits in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if logits.dim() < 2 or (logits.dim() != 2 and not tokens_ok):
            raise ValueError(
                f"{name} must have shape {expected} (a batch of class scores), got shape "
                f"{tuple(logits.shape)}" + ("; add the batch dimension" if logits.dim() < 2 else "")
            )
    student_shape, teacher_shape = tuple(student_logits.shape), tuple(teacher_logits.shape)
    if student_shape[-1] != teacher_shape[-1]:
        raise ValueError(
            f"student_logits has {student_shape[-1]} classes but teacher_logits has "
            f"{teacher_shape[-1]} (shapes {student_shape} and {teacher_shape}); "
            "student and teacher must predict the same classes"
        )
    if student_shape != teacher_shape:
        raise ValueError(
            f"student_logits and teacher_logits must have one shape, got {student_shape} "
            f"and {teacher_shape}"
        )


def class_indices(target: torch.Tensor, logits: torch.Tensor) -> None:
    """``target`` holds one integer class index per row of ``[B, C]`` logits: shape ``[B]``."""
    expected = (logits.shape[0],)
    if tuple(target.shape) != expected:
        hint = "; for one-hot targets pass target.argmax(dim=1)" if target.dim() == 2 else ""
        raise ValueError(
            f"target must be class indices of shape {expected} (one per row of the logits), "
            f"got shape {tuple(target.shape)}{hint}"
        )
    if target.dtype.is_floating_point or target.dtype.is_complex:
        raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")


def sample_indices(name: str, index: torch.Tensor, num_samples: int, shape: Sequence[int]) -> None:
    """Integer indices of shape ``shape`` into a set of ``num_samples`` samples (a memory bank's rows)."""
    import torch

    expected = tuple(shape)
    if tuple(index.shape) != expected:
        raise ValueError(f"{name} must have shape {expected}, got shape {tuple(index.shape)}")
    if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer sample indices, got dtype {index.dtype}")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_samples):
        raise ValueError(
            f"{name} must lie in [0, {num_samples}) (the {num_samples} samples of the memory "
            f"bank), got values from {int(index.min())} to {int(index.max())}"
        )


__all__ = [
    "at_least",
    "class_indices",
    "enough_feature_maps",
    "in_unit_interval",
    "logit_pair",
    "loss_weights",
    "non_negative",
    "one_of",
    "positive",
    "same_stage_count",
    "sample_indices",
    "stage_index",
    "stage_indices",
]
