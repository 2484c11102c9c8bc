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


def one_per_teacher(name: str, values: Sized, num_teachers: int) -> None:
    """``values`` (weights, label sets, heads) gives exactly one entry per teacher."""
    if len(values) != num_teachers:
        raise ValueError(
            f"{name} must give one entry per teacher: got {len(values)} for {num_teachers} teachers"
        )


def teacher_logit_list(
    student_logits: torch.Tensor,
    teacher_logits: object,
    classes_per_teacher: Sequence[int] | None = None,
) -> None:
    """One ``[B, C_k]`` logits tensor per teacher, in a list, for the student's ``[B, C]``.

    ``C_k`` is the student's ``C`` unless ``classes_per_teacher`` gives each teacher's
    own number of classes (teachers trained on label subsets).
    """
    if student_logits.dim() != 2:
        raise ValueError(
            "student_logits must have shape [B, C] (a batch of class scores), got shape "
            f"{tuple(student_logits.shape)}"
        )
    if not isinstance(teacher_logits, list | tuple):
        shape = getattr(teacher_logits, "shape", None)
        got = f"a {type(teacher_logits).__name__}" + (f" of shape {tuple(shape)}" if shape else "")
        raise ValueError(
            f"teacher_logits must be a list with one [B, C] tensor per teacher, got {got}; "
            "for a single teacher pass [teacher_logits]"
        )
    if not teacher_logits:
        raise ValueError("teacher_logits must hold at least one teacher's logits, got []")
    if classes_per_teacher is not None:
        one_per_teacher("teacher_logits", teacher_logits, len(classes_per_teacher))
    batch, classes = student_logits.shape
    for k, logits in enumerate(teacher_logits):
        expected = (batch, classes if classes_per_teacher is None else classes_per_teacher[k])
        if tuple(logits.shape) != expected:
            raise ValueError(
                f"teacher_logits[{k}] must have shape {expected} to go with student_logits of "
                f"shape {tuple(student_logits.shape)}, got shape {tuple(logits.shape)}"
            )


def labelled_batch(inputs: torch.Tensor, target: torch.Tensor) -> None:
    """A floating batch of inputs ``[B, ...]`` and one integer class index per input (``[B]``).

    For procedures that use the labels before any logits exist (an attack on the inputs).
    """
    if inputs.dim() < 2 or not inputs.dtype.is_floating_point:
        raise ValueError(
            f"inputs must be a floating-point batch [B, ...], got shape {tuple(inputs.shape)} "
            f"and dtype {inputs.dtype}"
        )
    expected = (inputs.shape[0],)
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target must be class indices of shape {expected} (one per input), got shape "
            f"{tuple(target.shape)} for inputs of shape {tuple(inputs.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype.is_complex:
        raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")


def node_pairs(name: str, edge_index: torch.Tensor, num_nodes: int) -> None:
    """A PyG-style ``edge_index``: integer ``[2, E]``, each entry a node index in ``[0, num_nodes)``."""
    shape = tuple(edge_index.shape)
    if edge_index.dim() != 2 or shape[0] != 2:
        hint = "; transpose a list of [E, 2] pairs" if len(shape) == 2 and shape[1] == 2 else ""
        raise ValueError(
            f"{name} must have shape [2, E] (row 0 the source, row 1 the target node of each "
            f"edge), got shape {shape}{hint}"
        )
    dtype = edge_index.dtype
    if dtype.is_floating_point or dtype.is_complex or str(dtype) == "torch.bool":
        raise ValueError(f"{name} must hold integer node indices, got dtype {dtype}")
    if edge_index.numel() > 0:
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0 or high >= num_nodes:
            raise ValueError(
                f"{name} holds node indices from {low} to {high}, outside [0, {num_nodes}) "
                f"for a graph of {num_nodes} nodes"
            )


def node_rows(name: str, tensor: torch.Tensor, num_nodes: int | None = None) -> int:
    """One row per node, ``[N, D]`` (``N = num_nodes`` when given); returns ``N``."""
    expected = f"[{num_nodes if num_nodes is not None else 'N'}, D]"
    if tensor.dim() != 2 or (num_nodes is not None and tensor.shape[0] != num_nodes):
        raise ValueError(
            f"{name} must have shape {expected} (one row per node), got shape {tuple(tensor.shape)}"
        )
    return tensor.shape[0]


def row_mask(name: str, mask: torch.Tensor, rows: int) -> None:
    """A boolean ``[rows]`` mask selecting rows (nodes, samples)."""
    if tuple(mask.shape) != (rows,) or str(mask.dtype) != "torch.bool":
        raise ValueError(
            f"{name} must be a boolean mask of shape [{rows}] (one entry per row), got "
            f"shape {tuple(mask.shape)} and dtype {mask.dtype}"
        )


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


# ----------------------------------------------------------------------------- token sequences


def non_empty_sequences(name: str, ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Integer token ids ``[B, T]``, padded on the right with ``pad_id``, no row empty.

    Returns each row's length (its non-padding tokens), ``[B]``.
    """
    import torch

    if ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype.is_complex:
        raise ValueError(
            f"{name} must be integer token ids of shape [B, T], got shape {tuple(ids.shape)} "
            f"and dtype {ids.dtype}"
        )
    if ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(ids.shape)}): give at least one token")
    lengths = (ids != pad_id).sum(dim=1)
    empty = (lengths == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"{name} has empty sequences (only padding {pad_id}) at rows {empty[:10]}"
            + (" ..." if len(empty) > 10 else "")
        )
    return lengths


def token_mask(
    name: str,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    vocab_size: int,
    pad_id: int | None = 0,
) -> torch.Tensor:
    """The boolean ``[B, T]`` mask of the real positions of a batch of target token ids.

    ``mask`` (named ``name``), when given, must be boolean of ``target``'s shape (True = a
    real position). Without it, positions whose target is ``-100`` (Hugging Face's
    ignore index) or ``pad_id`` are ignored. Target ids at real positions must lie in
    ``[0, vocab_size)``; at least one position must be real.
    """
    import torch

    if target.dim() != 2 or target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(
            f"target must be integer token ids of shape [B, T], got shape "
            f"{tuple(target.shape)} and dtype {target.dtype}"
        )
    if mask is not None:
        if tuple(mask.shape) != tuple(target.shape) or mask.dtype != torch.bool:
            raise ValueError(
                f"{name} must be a boolean mask of shape {tuple(target.shape)} (target's [B, T], "
                f"True at real positions), got shape {tuple(mask.shape)} and dtype {mask.dtype}"
            )
        keep = mask
    else:
        keep = target != -100
        if pad_id is not None:
            keep = keep & (target != pad_id)
    if not bool(keep.any()):
        raise ValueError(
            f"every position of target is padding or masked (shape {tuple(target.shape)}): "
            "the sequences are empty"
        )
    real = target[keep]
    low, high = int(real.min()), int(real.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"target holds token ids from {low} to {high} at real positions, outside the "
            f"vocabulary of {vocab_size} (the logits' last dimension)"
        )
    return keep


def sequence_logit_pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    """Student and teacher next-token logits of one shape ``[B, T, V]``, one vocabulary."""
    for name, logits in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if logits.dim() != 3:
            raise ValueError(
                f"{name} must have shape [B, T, V] (next-token scores at every position), got "
                f"shape {tuple(logits.shape)}"
            )
    student_shape, teacher_shape = tuple(student_logits.shape), tuple(teacher_logits.shape)
    if student_shape[-1] != teacher_shape[-1]:
        raise ValueError(
            f"student_logits has a vocabulary of {student_shape[-1]} but teacher_logits of "
            f"{teacher_shape[-1]} (shapes {student_shape} and {teacher_shape}); student and "
            "teacher must share the target vocabulary"
        )
    if student_shape != teacher_shape:
        raise ValueError(
            f"student_logits and teacher_logits must have one shape [B, T, V], got "
            f"{student_shape} and {teacher_shape}"
        )


__all__ = [
    "at_least",
    "class_indices",
    "enough_feature_maps",
    "in_unit_interval",
    "labelled_batch",
    "logit_pair",
    "loss_weights",
    "node_pairs",
    "node_rows",
    "non_empty_sequences",
    "non_negative",
    "one_of",
    "one_per_teacher",
    "per_token",
    "positive",
    "row_mask",
    "same_stage_count",
    "sample_indices",
    "sequence_logit_pair",
    "stage_index",
    "stage_indices",
    "teacher_logit_list",
    "token_logit_pair",
    "token_mask",
]


def dense_maps(
    student: torch.Tensor, teacher: torch.Tensor, names: tuple[str, str] = ("student", "teacher")
) -> None:
    """Student and teacher maps of one shape ``[B, C, H, W]`` (dense logits or features)."""
    for name, tensor in zip(names, (student, teacher), strict=True):
        if tensor.dim() != 4:
            raise ValueError(
                f"{name} must have shape [B, C, H, W] (a map per image), got shape "
                f"{tuple(tensor.shape)}"
            )
    if student.shape != teacher.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have one shape, got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}; resize or project one of them first"
        )


# ----------------------------------------------------------------------------- diffusion


def noise_levels(name: str, sigma: torch.Tensor, batch: int, low: float, high: float) -> None:
    """Noise levels (diffusion timesteps) ``[batch]``, finite and within ``[low, high]``.

    A relative slack of 1e-5 absorbs float32 rounding of a schedule's end points.
    """
    if tuple(sigma.shape) != (batch,):
        raise ValueError(
            f"{name} must be one noise level per sample, of shape ({batch},), got shape "
            f"{tuple(sigma.shape)}"
        )
    if not sigma.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating-point noise levels, got dtype {sigma.dtype}")
    if batch and (
        not bool(sigma.isfinite().all())
        or float(sigma.min()) < low * (1 - 1e-5)
        or float(sigma.max()) > high * (1 + 1e-5)
    ):
        raise ValueError(
            f"{name} must lie in [{low}, {high}] (the noise levels the denoiser is defined "
            f"for), got values from {float(sigma.min())} to {float(sigma.max())}"
        )


__all__ += ["noise_levels"]


def sequence_mask(
    name: str,
    mask: torch.Tensor,
    shape: Sequence[int | str],
    *,
    real: str = "position",
    group: str = "sequence",
) -> None:
    """A boolean padding mask ``[B, T]`` (True = a real position), at least one real per row.

    The one mask check of the sequence leaves (speech frames, video clips, tokens):
    ``shape`` gives the sizes the mask must have, a string (``"B"``) leaving that axis
    free; ``real`` and ``group`` name a position and a row in the errors (``"frame"`` and
    ``"clip"`` for video). Masks are prefixes in practice, but only the shape, the dtype
    and the non-empty rows are required here.
    """
    import torch

    expected = [size if isinstance(size, str) else int(size) for size in shape]
    if not _has_shape(mask, expected) or mask.dtype != torch.bool:
        raise ValueError(
            f"{name} must be a boolean mask of shape [{', '.join(map(str, expected))}] ([B, T], "
            f"True = a real {real}), got shape {tuple(mask.shape)} and dtype {mask.dtype}"
        )
    if mask.numel() == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(mask.shape)}): an empty sequence has nothing to "
            f"compare; give at least one {group} of one real {real}"
        )
    empty = (~mask.any(dim=-1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"{name} must mark at least one real {real} in every {group}; {group}s {empty} are "
            "empty (an empty sequence has nothing to compare)"
        )


__all__.append("sequence_mask")


def _has_shape(tensor: torch.Tensor, shape: Sequence[int | str]) -> bool:
    """Whether ``tensor`` has ``shape``, where a string entry (``"B"``) matches any size."""
    return tensor.dim() == len(shape) and all(
        isinstance(size, str) or got == size for got, size in zip(tensor.shape, shape, strict=True)
    )


def frame_mask(
    name: str, mask: torch.Tensor, batch: int | None = None, frames: int | None = None
) -> None:
    """A boolean frame mask ``[B, T]`` (True = a real frame), at least one real frame per clip.

    ``batch`` and ``frames``, when given, are the ``B`` and ``T`` it must have (those of
    the clips it goes with). :func:`sequence_mask` with the video leaf's wording for a
    wrong shape or dtype.
    """
    import torch

    shape = ("B" if batch is None else batch, "T" if frames is None else frames)
    if not _has_shape(mask, shape):
        raise ValueError(
            f"{name} must have shape [{shape[0]}, {shape[1]}] (one entry per frame of each "
            f"clip), got shape {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be boolean (True = a real frame), got dtype {mask.dtype}")
    sequence_mask(name, mask, shape, real="frame", group="clip")


__all__ += ["frame_mask"]


def token_logit_pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> int:
    """Student and teacher logits ``[..., V]`` over the same tokens and one vocabulary; returns V."""
    if student_logits.dim() < 2 or teacher_logits.shape[:-1] != student_logits.shape[:-1]:
        raise ValueError(
            "student_logits and teacher_logits must have shape [B, T, V] (or [N, V]) over the "
            f"same tokens, got {tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise ValueError(
            "student_logits and teacher_logits must share one vocabulary (the last dimension V), "
            f"got V = {student_logits.shape[-1]} (student) and V = {teacher_logits.shape[-1]} "
            "(teacher): token-level losses compare distributions over the same tokens; map the "
            "teacher's vocabulary onto the student's (or share the tokenizer) first"
        )
    return student_logits.shape[-1]


def per_token(name: str, tensor: torch.Tensor | None, logits: torch.Tensor) -> None:
    """``None``, or an integer/boolean tensor of shape ``logits.shape[:-1]`` (one entry per token)."""
    if tensor is None:
        return
    expected = tuple(logits.shape[:-1])
    if tuple(tensor.shape) != expected or tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(
            f"{name} must be an integer or boolean tensor of shape {list(expected)} (one entry "
            f"per token of the logits {list(logits.shape)}), got shape {list(tensor.shape)} and "
            f"dtype {tensor.dtype}"
        )


# ----------------------------------------------------------------------------- point clouds (3d, multi-view)


def point_features(name: str, features: torch.Tensor, channels: int | None = None) -> None:
    """Per-point features ``[B, C, N]`` (``C = channels`` when given), floating point."""
    expected = f"[B, {channels if channels is not None else 'C'}, N]"
    if (
        features.dim() != 3
        or not features.dtype.is_floating_point
        or (channels is not None and features.shape[1] != channels)
    ):
        raise ValueError(
            f"{name} must be per-point features of shape {expected} (channels before points), "
            f"got shape {tuple(features.shape)} and dtype {features.dtype}"
        )


def same_points(student: torch.Tensor, teacher: torch.Tensor) -> None:
    """Student and teacher features ``[B, C, N]`` of the same clouds: same ``B`` and ``N``."""
    if student.shape[0] != teacher.shape[0] or student.shape[2] != teacher.shape[2]:
        raise ValueError(
            "student and teacher point features must describe the same clouds (same batch and "
            f"number of points), got shapes {tuple(student.shape)} and {tuple(teacher.shape)}"
        )


def enough_points(name: str, value: int, num_points: int) -> None:
    """A count (neighbours, queries) that a cloud of ``num_points`` points can supply."""
    if value > num_points:
        raise ValueError(
            f"{name}={value} needs clouds of at least {value} points, got clouds of {num_points} "
            f"points; lower {name} or give more points"
        )


__all__ += ["enough_points", "point_features", "same_points"]


# ----------------------------------------------------------------------------- foundation models


def embedding_batch(
    name: str, embeddings: torch.Tensor, rows: int | None = None, width: int | None = None
) -> tuple[int, int]:
    """A floating batch of embeddings ``[B, D]`` (``B = rows``, ``D = width`` when given); returns ``(B, D)``."""
    expected = f"[{rows if rows is not None else 'B'}, {width if width is not None else 'D'}]"
    if (
        embeddings.dim() != 2
        or (rows is not None and embeddings.shape[0] != rows)
        or (width is not None and embeddings.shape[1] != width)
    ):
        raise ValueError(
            f"{name} must have shape {expected} (one embedding per sample), got shape "
            f"{tuple(embeddings.shape)}"
        )
    if not embeddings.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating point, got dtype {embeddings.dtype}")
    return embeddings.shape[0], embeddings.shape[1]


__all__ += ["embedding_batch"]


# ----------------------------------------------------------------------------- BERT internals


def attention_mask_2d(name: str, mask: torch.Tensor) -> tuple[int, int]:
    """An integer or boolean attention mask ``[B, T]`` (True or 1 at a real token); returns ``(B, T)``."""
    if mask.dim() != 2 or mask.is_floating_point() or mask.is_complex():
        raise ValueError(
            f"{name} must be an integer or boolean tensor of shape [B, T] (True or 1 at a real "
            f"token), got shape {list(mask.shape)} and dtype {mask.dtype}"
        )
    return mask.shape[0], mask.shape[1]


def bert_tensor(name: str, tensor: torch.Tensor, batch: int, length: int, what: str) -> None:
    """One floating tensor of a BERT: ``what`` is ``"hidden"`` (``[B, T, D]``), ``"scores"``
    (``[B, h, T, T]``) or ``"values"`` (``[B, h, T, d]``), for the mask's ``B`` and ``T``."""
    if what == "hidden":
        ok, expected = tensor.dim() == 3 and tensor.shape[:2] == (batch, length), "[B, T, D]"
    elif what == "scores":
        ok = tensor.dim() == 4 and tensor.shape[0] == batch and tensor.shape[2:] == (length, length)
        expected = "[B, h, T, T]"
    else:
        ok, expected = (
            tensor.dim() == 4 and (tensor.shape[0], tensor.shape[2]) == (batch, length),
            "[B, h, T, d]",
        )
    if not ok or not tensor.dtype.is_floating_point:
        raise ValueError(
            f"{name} must be a floating tensor of shape {expected} with B = {batch} and "
            f"T = {length} (those of attention_mask), got shape {list(tensor.shape)} and "
            f"dtype {tensor.dtype}"
        )


def bert_layer_mapping(student_layers: int, teacher_layers: int) -> int:
    """$k = N / M$ of the uniform layer mapping $g(m) = m k$ ($N$ a multiple of $M \\ge 1$)."""
    if student_layers < 1 or teacher_layers % student_layers:
        raise ValueError(
            f"the teacher's {teacher_layers} layers must be a multiple of the student's "
            f"{student_layers} (the uniform layer mapping g(m) = m * N / M)"
        )
    return teacher_layers // student_layers


def bert_states(
    student_hidden: Sequence[torch.Tensor],
    teacher_hidden: Sequence[torch.Tensor],
    student_scores: Sequence[torch.Tensor],
    teacher_scores: Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """Hidden states (``L + 1`` tensors ``[B, T, D]``, embeddings first) and attention scores
    (``L`` tensors ``[B, h, T, T]``) of a student and a teacher BERT with the same heads;
    returns the mask as booleans."""
    batch, length = attention_mask_2d("attention_mask", attention_mask)
    for side, hidden, scores in (
        ("student", student_hidden, student_scores),
        ("teacher", teacher_hidden, teacher_scores),
    ):
        if len(scores) < 1 or len(hidden) != len(scores) + 1:
            raise ValueError(
                f"{side}_hidden must hold one more tensor than {side}_scores (the embedding "
                f"output, then one per layer), got {len(hidden)} and {len(scores)}"
            )
        for index, tensor in enumerate(hidden):
            bert_tensor(f"{side}_hidden[{index}]", tensor, batch, length, "hidden")
            if tensor.shape[-1] != hidden[0].shape[-1]:
                raise ValueError(f"{side}_hidden must share one width, got {list(tensor.shape)}")
        for index, tensor in enumerate(scores):
            bert_tensor(f"{side}_scores[{index}]", tensor, batch, length, "scores")
            if tensor.shape[1] != teacher_scores[0].shape[1]:
                raise ValueError(
                    f"{side}_scores[{index}] has {tensor.shape[1]} heads but the teacher's have "
                    f"{teacher_scores[0].shape[1]}: the attention maps are compared head by head"
                )
    return attention_mask.bool()


__all__ += ["attention_mask_2d", "bert_layer_mapping", "bert_states", "bert_tensor"]


# ----------------------------------------------------------------------------- detection


def detection_boxes(
    name: str, boxes: Sequence[torch.Tensor], batch: int, image_size: Sequence[int]
) -> None:
    """One ``[n, 4]`` tensor of boxes ``(x1, y1, x2, y2)`` per image, inside the image of
    ``image_size`` (height, width), with ``x1 <= x2`` and ``y1 <= y2``."""
    if len(image_size) != 2 or min(image_size) <= 0:
        raise ValueError(
            f"image_size must be (height, width), both positive, got {tuple(image_size)}"
        )
    if hasattr(boxes, "shape") or len(boxes) != batch:  # a padded tensor is refused too
        got = f"shape {tuple(boxes.shape)}" if hasattr(boxes, "shape") else f"{len(boxes)} entries"
        raise ValueError(
            f"{name} must be a sequence of {batch} tensors [n, 4] (one per image), got {got}"
        )
    height, width = image_size
    for index, image_boxes in enumerate(boxes):
        if image_boxes.dim() != 2 or image_boxes.shape[1] != 4:
            raise ValueError(
                f"{name}[{index}] must have shape [n, 4] (x1, y1, x2, y2), got {tuple(image_boxes.shape)}"
            )
        if not len(image_boxes):
            continue
        x1, y1, x2, y2 = image_boxes.unbind(1)
        if bool((x1 > x2).any() or (y1 > y2).any()):
            raise ValueError(
                f"{name}[{index}] has a box with x1 > x2 or y1 > y2: {image_boxes.tolist()}"
            )
        if bool((x1 < 0).any() or (y1 < 0).any() or (x2 > width).any() or (y2 > height).any()):
            raise ValueError(
                f"{name}[{index}] has a box outside the image (height {height}, width {width}): "
                f"{image_boxes.tolist()}"
            )
