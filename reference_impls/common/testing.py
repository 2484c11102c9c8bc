"""Checks every implementation is held to (used by the test suite and by contributors).

The contract from the design page: a loss returns a finite scalar; gradients
reach the student and every trainable connector; none reach the teacher; the
same numbers come out on CPU and CUDA; a bf16 autocast run stays finite and in
float32. ``tests/reference_impls/test_contracts.py`` runs these for every
implementation the taxonomy lists (cases built by ``reference_impls.common.building``).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any

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


@contextlib.contextmanager
def random_draws_on_cpu() -> Iterator[None]:
    """Within the block, ``torch.rand``/``randn``/``randint``/``randperm`` draw on the CPU.

    CPU and CUDA have separate generators, so a method drawing random masks, views
    or noise (MGD, KDCL, DDGSD, ...) sees different numbers on each device under the
    same seed. Drawing them on the CPU, then moving them, makes an agreement check
    compare the arithmetic. Draws from an explicit ``generator`` are left alone.
    """
    names = ("rand", "randn", "randint", "randperm")
    originals = {name: getattr(torch, name) for name in names}

    def on_cpu(draw: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def wrapper(*args, device=None, generator=None, **kwargs) -> torch.Tensor:
            if generator is not None:
                return draw(*args, device=device, generator=generator, **kwargs)
            value = draw(*args, **kwargs)
            return value if device is None else value.to(device)

        return wrapper

    try:
        for name, draw in originals.items():
            setattr(torch, name, on_cpu(draw))
        yield
    finally:
        for name, draw in originals.items():
            setattr(torch, name, draw)


def _seeded(seed: int, step: Callable[[], Any]) -> Any:
    """``step()`` under ``seed``, its random draws made on the CPU (the same on every device)."""
    torch.manual_seed(seed)
    with random_draws_on_cpu():
        return step()


def _grad_or_none(tensor: torch.Tensor) -> torch.Tensor | None:
    return None if tensor.grad is None else tensor.grad.detach().float().cpu()


def _value_and_grads(loss_fn: nn.Module, arguments: Sequence, device: str, seed: int):
    """The loss and the gradient of every floating input and parameter (``None``: none reached it)."""
    module = copy.deepcopy(loss_fn).to(device)
    leaves = [_leaf_copies(a, device) for a in arguments]
    value = _seeded(seed, lambda: module(*leaves))
    value.backward()
    grads = {
        f"input {i}[{j}]": _grad_or_none(t)
        for i, a in enumerate(leaves)
        for j, t in enumerate(_flat(a))
        if t.is_floating_point()
    }
    grads.update({name: _grad_or_none(p) for name, p in module.named_parameters()})
    return value.detach().float().cpu(), grads


def assert_same_gradients(
    got: dict[str, torch.Tensor | None],
    want: dict[str, torch.Tensor | None],
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> None:
    """The same tensors get a gradient, and the gradients agree relative to each tensor's scale.

    The tolerance grows with the largest entry of the tensor: reductions (batch-norm
    backward, sums) run in a different order on another device.
    """
    assert got.keys() == want.keys()
    for name, expected in want.items():
        actual = got[name]
        assert (actual is None) == (expected is None), (
            f"{name}: a gradient on one device only ({'got' if actual is not None else 'want'})"
        )
        if expected is not None:
            scale = expected.abs().max().item()
            torch.testing.assert_close(
                actual,
                expected,
                rtol=rtol,
                atol=atol + rtol * scale,
                msg=lambda m, n=name: f"{n}: {m}",
            )


def check_cpu_cuda_agreement(
    loss_fn: nn.Module,
    student: Tensors,
    teacher: Tensors,
    *extra: torch.Tensor | Sequence[torch.Tensor],
    rtol: float = 1e-4,
    atol: float = 1e-5,
    seed: int = 0,
    device: str = "cuda",
) -> None:
    """The same loss and gradients on CPU and ``device`` (same parameters, inputs and draws, TF32 off).

    Every floating argument (``extra`` too, e.g. IRG's logits) is a leaf; the same
    inputs and parameters must get a gradient on both devices, and equal ones.
    """
    arguments = (student, teacher, *extra)
    cpu_value, cpu_grads = _value_and_grads(loss_fn, arguments, "cpu", seed)
    with exact_cuda_matmuls():
        value, grads = _value_and_grads(loss_fn, arguments, device, seed)
    torch.testing.assert_close(value, cpu_value, rtol=rtol, atol=atol)
    assert_same_gradients(grads, cpu_grads, rtol=rtol * 10, atol=atol * 10)


def check_autocast_bf16(
    loss_fn: nn.Module,
    student: Tensors,
    teacher: Tensors,
    *extra: torch.Tensor | Sequence[torch.Tensor],
    seed: int = 0,
    device: str = "cuda",
) -> torch.Tensor:
    """Forward and backward under bf16 autocast on ``device``; the loss and gradients stay finite.

    The loss comes out in float32 (half precision is computed in float32, the one
    numerical policy). Returns it on the CPU, for the caller to compare with float32's.
    """
    module = copy.deepcopy(loss_fn).to(device)
    leaves = [_leaf_copies(a, device) for a in (student, teacher, *extra)]
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        value = _seeded(seed, lambda: module(*leaves))
    assert torch.isfinite(value.float()), f"loss not finite under bf16 autocast: {value}"
    assert value.dtype == torch.float32, f"loss is {value.dtype} under autocast, not float32"
    value.backward()
    student_grads = [t.grad for t in _flat(leaves[0]) if t.grad is not None]
    assert student_grads, "no student input got a gradient under bf16 autocast"
    for grad in student_grads + [p.grad for p in module.parameters() if p.grad is not None]:
        assert torch.isfinite(grad).all(), "non-finite gradient under bf16 autocast"
    return value.detach().float().cpu()


def _to_device(value: Any, device: str) -> Any:
    """A batch element on ``device``: tensors moved, lists and tuples of them element-wise."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list | tuple):
        return type(value)(_to_device(v, device) for v in value)
    return value


def _procedure_step(procedure: nn.Module, batch: Sequence, device: str, seed: int):
    """One training step's terms and parameter gradients of a copy of ``procedure`` on ``device``."""
    module = copy.deepcopy(procedure).to(device).train()
    terms = _seeded(seed, lambda: module(*_to_device(tuple(batch), device)))
    terms["loss"].backward()
    grads = {name: _grad_or_none(p) for name, p in module.named_parameters()}
    return {name: v.detach().float().cpu() for name, v in terms.items()}, grads


def check_procedure_cpu_cuda_agreement(
    procedure: nn.Module,
    *batch: Any,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    seed: int = 0,
    device: str = "cuda",
) -> None:
    """One step of ``procedure`` on ``batch`` (``x, y`` for a classifier) gives the same terms
    and gradients on CPU and ``device`` (TF32 off)."""
    cpu_terms, cpu_grads = _procedure_step(procedure, batch, "cpu", seed)
    with exact_cuda_matmuls():
        terms, grads = _procedure_step(procedure, batch, device, seed)
    assert terms.keys() == cpu_terms.keys()
    for name, value in cpu_terms.items():
        torch.testing.assert_close(terms[name], value, rtol=rtol, atol=atol, msg=name)
    assert_same_gradients(grads, cpu_grads, rtol=rtol * 10, atol=atol * 10)


def check_procedure_autocast_bf16(
    procedure: nn.Module, *batch: Any, seed: int = 0, device: str = "cuda"
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One step of ``procedure`` on ``batch`` under bf16 autocast on ``device``: finite terms
    and gradients.

    The total comes out in float32, as for :func:`check_autocast_bf16`.

    Returns the bf16 terms and the same step's float32 terms (both on the CPU), to compare.
    """
    module = copy.deepcopy(procedure).to(device).train()
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        terms = _seeded(seed, lambda: module(*_to_device(batch, device)))
    for name, value in terms.items():
        assert torch.isfinite(value.float()).all(), f"term {name!r} not finite under bf16 autocast"
    loss = terms["loss"]
    assert loss.dtype == torch.float32, f"loss is {loss.dtype} under autocast, not float32"
    loss.backward()
    reached = [(n, p.grad) for n, p in module.named_parameters() if p.grad is not None]
    assert reached, "no parameter got a gradient under bf16 autocast"
    for name, grad in reached:
        assert torch.isfinite(grad).all(), f"non-finite gradient on {name} under bf16 autocast"
    reference, _ = _procedure_step(procedure, batch, device, seed)
    return {name: v.detach().float().cpu() for name, v in terms.items()}, reference


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
