"""Checks every implementation is held to (used by the test suite and by contributors).

The contract from the design page: a loss returns a finite scalar; gradients
reach the student and every trainable connector; none reach the teacher; the
same numbers come out on CPU and CUDA; a bf16 autocast run stays finite.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache

import torch
from torch import nn

from reference_impls.common.data import DataSplit, load_digits_split
from reference_impls.common.models import ModelOutput, student_cnn, teacher_cnn
from reference_impls.common.training import freeze, train_supervised

Tensors = torch.Tensor | Sequence[torch.Tensor]


def _flat(tensors: Tensors) -> list[torch.Tensor]:
    return [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)


def _leaf_copies(tensors: Tensors, device: torch.device | str | None = None) -> Tensors:
    def leaf(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().clone()
        t = t.to(device) if device is not None else t
        return t.requires_grad_(t.is_floating_point())

    if isinstance(tensors, torch.Tensor):
        return leaf(tensors)
    return [leaf(t) for t in tensors]


def check_loss_contract(
    loss_fn: nn.Module,
    student: Tensors,
    teacher: Tensors,
    *extra: torch.Tensor,
    used_stages: Sequence[int] | None = None,
) -> torch.Tensor:
    """Call ``loss_fn(student, teacher, *extra)`` on leaf copies and check the contract.

    Returns the loss value. Fails if the value is not a finite scalar, if a
    student input or a trainable parameter of the loss gets no finite gradient,
    or if any teacher input gets a non-zero gradient. ``used_stages`` names the
    student inputs a loss reads when it uses only some stages (default: all).
    """
    student = _leaf_copies(student)
    teacher = _leaf_copies(teacher)
    value = loss_fn(student, teacher, *extra)
    assert isinstance(value, torch.Tensor), f"loss returned {type(value).__name__}"
    assert value.dim() == 0, f"loss must be a scalar, got shape {tuple(value.shape)}"
    assert torch.isfinite(value), f"loss is not finite: {value}"
    value.backward()
    for index, tensor in enumerate(_flat(student)):
        if used_stages is not None and index not in used_stages:
            continue
        assert tensor.grad is not None, f"no gradient reached student input {index}"
        assert torch.isfinite(tensor.grad).all(), f"non-finite gradient on student input {index}"
        assert tensor.grad.abs().sum() > 0, f"zero gradient on student input {index}"
    for index, tensor in enumerate(_flat(teacher)):
        leaked = tensor.grad is not None and tensor.grad.abs().sum() > 0
        assert not leaked, f"gradient reached teacher input {index}: teacher must be detached"
    for name, parameter in loss_fn.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"no gradient reached connector parameter {name}"
            assert torch.isfinite(parameter.grad).all(), f"non-finite gradient on {name}"
    return value.detach()


@contextlib.contextmanager
def exact_cuda_matmuls() -> Iterator[None]:
    """Turn TF32 off for matmuls and convolutions (restored on exit).

    On Ampere and later GPUs TF32 rounds float32 products to a 10-bit mantissa,
    so conv connectors differ from the CPU by ~1e-2; agreement checks compare
    the arithmetic, not that rounding mode.
    """
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _grads(loss_fn: nn.Module, student: Tensors, teacher: Tensors, extra, device):
    module = copy.deepcopy(loss_fn).to(device)
    s = _leaf_copies(student, device)
    t = _leaf_copies(teacher, device)
    value = module(s, t, *[e.to(device) for e in extra])
    value.backward()
    grads = [g.grad.detach().cpu() for g in _flat(s)]
    params = [p.grad.detach().cpu() for p in module.parameters() if p.grad is not None]
    return value.detach().cpu(), grads, params


def check_cpu_cuda_agreement(
    loss_fn: nn.Module,
    student: Tensors,
    teacher: Tensors,
    *extra: torch.Tensor,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> None:
    """The same loss and gradients on CPU and CUDA (same parameters, same inputs, TF32 off)."""
    cpu = _grads(loss_fn, student, teacher, extra, "cpu")
    with exact_cuda_matmuls():
        cuda = _grads(loss_fn, student, teacher, extra, "cuda")
    torch.testing.assert_close(cuda[0], cpu[0], rtol=rtol, atol=atol)
    for got, want in zip(cuda[1] + cuda[2], cpu[1] + cpu[2], strict=True):
        torch.testing.assert_close(got, want, rtol=rtol * 10, atol=atol * 10)


def check_autocast_bf16(
    loss_fn: nn.Module, student: Tensors, teacher: Tensors, *extra: torch.Tensor
) -> torch.Tensor:
    """Run forward and backward under CUDA bf16 autocast; the loss and gradients stay finite."""
    module = copy.deepcopy(loss_fn).to("cuda")
    s = _leaf_copies(student, "cuda")
    t = _leaf_copies(teacher, "cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        value = module(s, t, *[e.to("cuda") for e in extra])
    assert torch.isfinite(value.float()), f"loss not finite under bf16 autocast: {value}"
    value.float().backward()
    for tensor in _flat(s):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
    return value.detach().float().cpu()


def check_procedure_contract(
    procedure: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    frozen: Sequence[nn.Module] = (),
) -> dict[str, torch.Tensor]:
    """A procedure returns finite named terms with a scalar ``"loss"``; frozen models get no gradient."""
    terms = procedure(x, y)
    assert "loss" in terms, f"procedure returned {sorted(terms)} without 'loss'"
    for name, value in terms.items():
        assert torch.isfinite(value).all(), f"term {name!r} is not finite"
    assert terms["loss"].dim() == 0
    terms["loss"].backward()
    trainable = [p for p in procedure.parameters() if p.requires_grad]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    for model in frozen:
        for name, parameter in model.named_parameters():
            assert parameter.grad is None, f"gradient reached frozen parameter {name}"
    return terms


@lru_cache(maxsize=4)
def _pretrained_teacher_state(seed: int, epochs: int) -> dict[str, torch.Tensor]:
    data = load_digits_split(seed=seed)
    torch.manual_seed(seed)  # the teacher's initial weights must not depend on test order
    teacher = teacher_cnn()
    train_supervised(teacher, data, epochs=epochs, seed=seed, device="cpu")
    return {k: v.detach().clone() for k, v in teacher.state_dict().items()}


def pretrained_digits_teacher(seed: int = 0, epochs: int = 8) -> nn.Module:
    """A ``teacher_cnn`` trained on digits (cached per process), frozen, on CPU.

    Eight epochs take a few seconds on two cores and reach about 97% test accuracy.
    """
    teacher = teacher_cnn()
    teacher.load_state_dict(_pretrained_teacher_state(seed, epochs))
    return freeze(teacher)


def digits_setup(seed: int = 0) -> tuple[DataSplit, nn.Module, nn.Module]:
    """Digits data, a frozen trained teacher and a fresh seeded student, for short runs.

    The student's initial weights depend on ``seed`` alone (not on whether the
    teacher was cached already), so two calls give identical students.
    """
    teacher = pretrained_digits_teacher(seed)
    torch.manual_seed(seed)
    return load_digits_split(seed=seed), teacher, student_cnn()


def digits_student_pair(seed: int = 0) -> tuple[DataSplit, nn.Module, nn.Module, nn.Module]:
    """Digits, the frozen trained teacher, and two students with identical initial weights.

    One student is distilled, the other is the same-seed baseline it is compared with.
    """
    data, teacher, student = digits_setup(seed)
    torch.manual_seed(seed)
    return data, teacher, student, student_cnn()


def random_feature_pair(
    batch: int = 4,
    student_channels: Sequence[int] = (8, 16, 32),
    teacher_channels: Sequence[int] = (32, 64, 128),
    size: int = 8,
    seed: int = 0,
    spatial_scale: Callable[[int], int] = lambda stage: 2**stage,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Random feature maps shaped like student_cnn / teacher_cnn stages (8, 4, 2 spatial)."""
    generator = torch.Generator().manual_seed(seed)

    def maps(channels: Sequence[int]) -> list[torch.Tensor]:
        return [
            torch.randn(
                batch, c, size // spatial_scale(i), size // spatial_scale(i), generator=generator
            )
            for i, c in enumerate(channels)
        ]

    return maps(student_channels), maps(teacher_channels)


class FixedLogits(nn.Module):
    """A stand-in 'model' whose logits are one trainable row, repeated for every input.

    Makes hand-computed values of procedures easy: every sample has the same,
    known prediction.
    """

    def __init__(self, row: Sequence[float]) -> None:
        super().__init__()
        self.row = nn.Parameter(torch.tensor(list(row)))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.row.expand(len(x), -1))
