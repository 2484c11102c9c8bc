"""Speed of every distillation method of the taxonomy: per call, and its share of a training step.

The methods are the taxonomy's implementations (``taxonomy/*.yaml``, loaded with
``kdatlas.loader``), in taxonomy order; there is no list here to keep up to date.
Each is built by the builder the contract tests use
(``reference_impls.common.building``): its constructor's required parameters are
filled by name from a ``BuildContext`` (channel sizes, models, ...), or a recipe
builds it from that context; everything else keeps its default. A method this
cannot build or step (a parameter with no value, a procedure that trains its
stages itself, an error) is printed with the reason and recorded under
``not_benchmarked``.

Part 1, per call (losses only): each loss's forward + backward at realistic sizes
(arguments, defaults: logits B x C of 256 x 100, 256 x 1000 and 1024 x 1000; CIFAR
ResNet32x4-like stages 64 x 32 x 32, 128 x 16 x 16, 256 x 8 x 8 at batch 128;
ResNet-50-like stages 512 x 28 x 28, 1024 x 14 x 14, 2048 x 7 x 7 at batch 64;
embeddings 1024 x 128), against its PLAIN FORMULATION (``benchmarks/plain_losses.py``:
the paper's equation typed directly, same hyperparameters and connectors). The two
calls alternate (which one goes first alternates too) and the ratio ours / plain is
the median of the paired ratios, so a drift in the machine's load cancels; repeats
are capped by ``--budget`` seconds per loss and size (at least 3; a pair slower than
3 x budget is timed once, and where the first pair, which checks agreement, already took
that long, that pair is the timed one). Before timing, the two values and student gradients are
compared (``value_rel_diff``, ``grad_rel_diff``: a plain formulation that computed
another loss would show here). Peak memory (CPU) is the peak of torch's allocator
during one forward + backward, from ``torch.profiler``'s memory events (see
:func:`peak_mib` for why not tracemalloc or RSS). The losses are built for these
sizes alone (no teacher model).

Part 2, inside a training step: teacher forward (no grad), student forward and
backward, cross-entropy and the loss, one SGD step (losses run inside
``OfflineDistiller``); procedures (online, self, SimKD, ...) are whole steps of
their own. Each is timed against the matching cross-entropy step (with the
teacher forward for methods that take a ``teacher``). Models are the project's
teacher_cnn / student_cnn on CIFAR-sized inputs (3 x 32 x 32, 100 classes).

Times are medians over repeats (the machines are shared and noisy); the
overhead is the median of paired ratios. Results go to benchmarks/results/losses.json.

    python benchmarks/bench_losses.py [--device cuda] [--threads 1] [--repeats 15] [--budget 2.5]
    python benchmarks/bench_losses.py --parts calls --only dkd,at   # re-time some losses
    python benchmarks/bench_losses.py --parts calls --repeats 3 --budget 0.5 --logits 64x100 \\
        --features "8:16x8x8,32x4x4,64x2x2" --embeddings 32x16 -o /tmp/x.json  # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kdatlas.loader import load
from reference_impls.common import student_cnn, teacher_cnn
from reference_impls.common.building import BuildContext, ImplementationCase
from reference_impls.common.interfaces import loss_inputs
from reference_impls.common.models import ModelOutput, TinyCNN
from reference_impls.common.training import freeze, logits_of
from reference_impls.schemes.offline.distiller import OfflineDistiller, distillation_arguments

try:  # run as a script (python benchmarks/bench_losses.py) or imported as benchmarks.bench_losses
    from plain_losses import PLAIN
except ImportError:
    from benchmarks.plain_losses import PLAIN

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "losses.json"
NUM_CLASSES, IN_CHANNELS = 100, 3
Method = tuple[str, ImplementationCase]  # (implementation id, its case)


class NotBenchmarked(Exception):
    """Why the generic path cannot time a method."""


def taxonomy_methods(root: Path = ROOT) -> list[Method]:
    """``(implementation id, case)`` of every implementation, in taxonomy order."""
    kb = load(root)
    return [(i.id, ImplementationCase(i.object)) for _area, _leaf, i in kb.implementations()]


def cifar_student() -> TinyCNN:
    return student_cnn(NUM_CLASSES, IN_CHANNELS)


def build(case: ImplementationCase, context: BuildContext) -> nn.Module:
    """The method built for ``context`` by the shared builder, mid-training (past epoch 0)."""
    if not case.is_loss and callable(getattr(case.cls, "run", None)):
        raise NotBenchmarked(
            "trains its stages one after another itself (run()); one generic step does not "
            "represent it"
        )
    if not case.runs_on_digits:
        raise NotBenchmarked(
            "made for other inputs than a CNN classifier's (its contract runs on its own example)"
        )
    if case.cls is OfflineDistiller:
        raise NotBenchmarked("the generic path itself: part 2 times every loss inside it")
    try:
        module = case.build(context, prepared=False)
    except Exception as error:  # a method the generic path cannot build is a finding, not a crash
        raise NotBenchmarked(
            f"cannot be built generically: {type(error).__name__}: {error}"
        ) from error
    if hasattr(module, "on_epoch_start"):
        module.on_epoch_start(1, 10)  # past the first epoch, so a warm-up ramp is running
    return module


def attempt(name: str, measure: Callable[[], dict], where: str, skipped: dict[str, str]):
    """``measure()``; or ``None``, with the reason the method was not timed printed and kept
    in ``skipped`` (one method must not stop the others)."""
    try:
        return measure()
    except NotBenchmarked as reason:
        skipped[name] = str(reason)
    except Exception as error:
        skipped[name] = f"failed in {where}: {type(error).__name__}: {error}"
    print(f"  {name:24s} not benchmarked: {skipped[name]}")
    return None


def takes_teacher(cls: type) -> bool:
    return "teacher" in inspect.signature(cls).parameters


def once_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of ``fn`` in milliseconds (on CUDA, until its kernels finish)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in milliseconds, after two warm-up calls."""
    for _ in range(2):
        fn()
    return statistics.median(once_ms(fn, device) for _ in range(repeats))


def _as_leaves(inputs):
    if isinstance(inputs, list):
        return [t.detach().requires_grad_() for t in inputs]
    return inputs.detach().requires_grad_()


def paired_ms(
    baseline: Callable[[], object],
    method: Callable[[], object],
    repeats: int,
    device,
    warmup: int = 2,
) -> tuple[float, float, float]:
    """Alternate the two calls (which one runs first alternates too, so neither always finds
    the caches the other left); return their median times (ms) and the median paired ratio."""
    for _ in range(warmup):
        baseline(), method()
    pairs = []
    for i in range(repeats):
        if i % 2:
            m = once_ms(method, device)
            pairs.append((once_ms(baseline, device), m))
        else:
            pairs.append((once_ms(baseline, device), once_ms(method, device)))
    ratios = [m / b for b, m in pairs]
    return (
        statistics.median(b for b, _ in pairs),
        statistics.median(m for _, m in pairs),
        statistics.median(ratios),
    )


@dataclass(frozen=True)
class CallSize:
    """One realistic size of the per-call part: what a loss of ``kind`` is called with."""

    kind: str  # "logits", "features" (also pre-activation features) or "embeddings"
    label: str
    batch: int
    classes: int = NUM_CLASSES
    stages: tuple[tuple[int, int, int], ...] = ()  # (channels, height, width) of each stage
    dim: int = 128  # embedding width


def _dims(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.strip().split("x"))


def parse_sizes(logits: str, features: str, embeddings: str) -> list[CallSize]:
    """``--logits 256x100,...``, ``--features 128:64x32x32,128x16x16;...``,
    ``--embeddings 1024x128,...`` as :class:`CallSize` rows."""
    sizes = []
    for item in filter(None, logits.split(",")):
        batch, classes = _dims(item)
        sizes.append(CallSize("logits", f"{batch}x{classes}", batch, classes=classes))
    for item in filter(None, features.split(";")):
        batch, stages = item.split(":")
        shapes = tuple(_dims(s) for s in stages.split(","))
        label = f"{int(batch)}: " + ", ".join("x".join(map(str, s)) for s in shapes)
        sizes.append(CallSize("features", label, int(batch), stages=shapes))
    for item in filter(None, embeddings.split(",")):
        batch, dim = _dims(item)
        sizes.append(CallSize("embeddings", f"{batch}x{dim}", batch, dim=dim))
    return sizes


def size_kind(cls: type) -> str:
    """Which sizes a loss is timed at: feature sizes if it reads any maps, else its one input."""
    kinds = (cls.inputs,) if isinstance(cls.inputs, str) else tuple(cls.inputs)
    if any(k in ("features", "preact_features") for k in kinds):
        return "features"
    return "embeddings" if "embeddings" in kinds else "logits"


def call_inputs(size: CallSize, device: torch.device):
    """Seeded student and teacher outputs of ``size`` (teacher without grad), and labels."""
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device)

    b = size.batch
    outputs = []
    for _ in "st":
        maps = [randn(b, *shape) for shape in size.stages]
        width = size.stages[-1][0] if size.stages else size.dim
        outputs.append(ModelOutput(randn(b, size.classes), maps, maps, randn(b, width)))
    target = torch.randint(0, size.classes, (b,), generator=generator).to(device)
    return outputs[0], outputs[1], target


def peak_mib(fn: Callable[[], object]) -> float:
    """Peak bytes (MiB) the CPU allocator held during ``fn()`` above what was live before.

    From ``torch.profiler`` with ``profile_memory=True``: every allocation and free of
    torch's CPU allocator, replayed in time order. (``tracemalloc`` sees only Python's
    own allocations, not tensors; the process RSS is page-granular and the allocator
    reuses freed blocks, so its delta undercounts short-lived intermediates.)
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak / 2**20


def _max_relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def compare_call(
    loss: nn.Module, plain: Callable, arguments: list, device, repeats: int, budget_s: float
) -> dict:
    """Ours and the plain formulation, forward + backward, alternated; their peak memory."""

    def leaves() -> list:
        kinds = loss_inputs(loss)
        args = list(arguments)
        for i in range(len(kinds)):  # student inputs are at 0, 2, ...
            args[2 * i] = _as_leaves(args[2 * i])
        return args

    def run(fn: Callable) -> tuple[torch.Tensor, list[torch.Tensor]]:
        loss.zero_grad(set_to_none=True)
        args = leaves()
        torch.manual_seed(0)  # a loss that draws random masks (MGD) draws the same in both
        value = fn(*args)
        value.backward()
        students = [args[2 * i] for i in range(len(loss_inputs(loss)))]
        flat = [t for s in students for t in (s if isinstance(s, list) else [s])]
        return value.detach(), [t.grad for t in flat if t.grad is not None]

    def ours() -> object:
        return run(loss)

    def textbook() -> object:
        return run(partial(plain, loss))

    agreement_runs: list = []

    ours_first_ms = once_ms(lambda: agreement_runs.append(ours()), device)
    plain_first_ms = once_ms(lambda: agreement_runs.append(textbook()), device)
    (value, grads), (plain_value, plain_grads) = agreement_runs
    agreement = {
        "value_rel_diff": _max_relative_difference(value, plain_value),
        "grad_rel_diff": max(
            (_max_relative_difference(g, p) for g, p in zip(grads, plain_grads, strict=True)),
            default=0.0,
        ),
    }
    if (ours_first_ms + plain_first_ms) / 1e3 > 3 * budget_s:
        # too slow for repeats here: the agreement pair is the one timed pair (a call this
        # long is dominated by its arithmetic, not by first-call costs)
        return {
            "ours_ms": ours_first_ms,
            "plain_ms": plain_first_ms,
            "ratio": ours_first_ms / plain_first_ms,
            "repeats": 1,
            **agreement,
        }
    single_ours, single_plain = once_ms(ours, device), once_ms(textbook, device)
    if (single_ours + single_plain) / 1e3 > 3 * budget_s:  # one warm pair only: too slow here
        return {
            "ours_ms": single_ours,
            "plain_ms": single_plain,
            "ratio": single_ours / single_plain,
            "repeats": 1,
            **agreement,
        }
    n = max(3, min(repeats, int(budget_s * 1e3 / (single_ours + single_plain))))
    plain_ms, ours_ms, ratio = paired_ms(textbook, ours, n, device, warmup=0)
    row = {"ours_ms": ours_ms, "plain_ms": plain_ms, "ratio": ratio, "repeats": n, **agreement}
    if device.type == "cpu":
        row["ours_peak_mib"], row["plain_peak_mib"] = peak_mib(ours), peak_mib(textbook)
    return row


def per_call(
    methods: list[Method],
    sizes: list[CallSize],
    device: torch.device,
    repeats: int,
    budget_s: float,
    only: set[str] | None = None,
) -> tuple[dict[str, dict], dict[str, str]]:
    """Each loss, forward + backward, against its plain formulation at each size of its kind."""
    results, skipped = {}, {}
    for name, case in methods:
        if not case.is_loss or (only and name not in only):
            continue
        plain = PLAIN.get(name)
        rows: dict[str, dict] = {}
        if not case.runs_on_digits:
            skipped[name] = (
                "made for other inputs than a CNN classifier's (its contract runs on its own "
                "example)"
            )
            continue
        for size in sizes:
            if size.kind != size_kind(case.cls):
                continue
            measure = partial(measure_call, name, case, size, device, repeats, budget_s)
            row = attempt(f"{name} @ {size.label}", measure, "a call", skipped)
            if row is None:
                continue
            rows[size.label] = row
            ratio = f"x{row['ratio']:.2f}" if "ratio" in row else "(no plain)"
            print(f"  {name:22s} {size.label:34s} {row['ours_ms']:9.2f} ms  {ratio}", flush=True)
        if rows or plain is not None:
            results[name] = {"kind": size_kind(case.cls), "plain": plain is not None, "sizes": rows}
    return results, skipped


def measure_call(
    name: str,
    case: ImplementationCase,
    size: CallSize,
    device: torch.device,
    repeats: int,
    budget_s: float,
) -> dict:
    """One loss at one size: against its plain formulation, or alone where there is none."""
    if name in TOO_LARGE and TOO_LARGE[name][0](size):
        raise NotBenchmarked(TOO_LARGE[name][1])
    channels = tuple(c for c, _, _ in size.stages) or (size.dim,) * 3
    width = channels[-1] if size.stages else size.dim
    context = BuildContext(
        student_channels=channels,
        teacher_channels=channels,
        student_dim=width,
        teacher_dim=width,
        num_classes=size.classes,
        in_channels=IN_CHANNELS,
        make_student=cifar_student,
    )
    loss = build(case, context).to(device)
    student_out, teacher_out, target = call_inputs(size, device)
    index = torch.arange(size.batch, device=device)
    arguments = distillation_arguments(loss, student_out, teacher_out, target, index)
    plain = PLAIN.get(name)
    if plain is None:
        _backward(loss, arguments)  # warm-up
        return {"ours_ms": once_ms(lambda: _backward(loss, arguments), device)}
    return compare_call(loss, plain, arguments, device, repeats, budget_s)


def _backward(loss: nn.Module, arguments: list) -> None:
    args = list(arguments)
    for i in range(len(loss_inputs(loss))):
        args[2 * i] = _as_leaves(args[2 * i])
    loss(*args).backward()


def _cubic_in_batch(limit: int) -> Callable[[CallSize], bool]:
    return lambda size: size.batch > limit


#: why a loss is slower than its plain formulation, where we keep it so (shown on the site)
NOTES: dict[str, str] = {
    "dkd": "at 256 x 100 a call takes about 1 ms and the ratio swings between runs (0.93 over "
    "300 alternated repeats in a scratch run, 1.13-1.18 over 15-21 here): ours launches a "
    "few more small kernels (logsumexp over the non-target classes, logaddexp) than the "
    "masked softmax (1.08 on the idle machine); at 256 x 1000 and 1024 x 1000, where the "
    "passes over [B, C] dominate, "
    "it is 0.5-0.8. We keep the log-space form: it stays exact when the teacher's p_t "
    "rounds to 1 in float32 (test_extreme_logits_match_the_log_space_reference), where "
    "log(1 - p_t) of the plain form is log 0",
    "normkd": "the same passes as the plain formulation plus a floor on each sample's "
    "standard deviation (a [B, 1] clamp, so a constant row cannot divide by zero). On the "
    "idle machine 0.98, 1.05 and 1.16 at the three sizes; on the loaded machine the ~1 ms "
    "call at 256 x 100 measured 1.23 and 7.42 in two passes, and 0.83 over 100 alternated "
    "pairs in a scratch loop, where the two took the same CPU time (0.93 and 0.87 ms)",
    "kd": "the same passes as the plain formulation (log_softmax on both sides, KL in log "
    "space); the small-size ratio is noise of a ~0.3 ms call on a loaded machine",
    "at": "after the rewrite (a square for p = 2 instead of abs then pow) the same passes as "
    "the plain formulation; 0.95-1.08 across runs",
    "sp": "the same passes as the plain formulation (the Gram matrix in float32 under "
    "autocast adds no work in float32); 1.00-1.06 is run-to-run spread",
    "pkt": "the same passes as the plain formulation; 1.01-1.06 is run-to-run spread",
    "ickd": "the same passes as the plain formulation (1x1 connector, channel Gram, "
    "normalise); run-to-run spread",
    "fsp": "the same passes as the plain formulation; run-to-run spread",
    "fitnets": "the same regressor and MSE as the plain formulation; run-to-run spread",
    "mgd": "the same random mask (drawn from the same seed), generation block and MSE as "
    "the plain formulation; 1.00 at the CIFAR size and 0.99 at the ImageNet-like size on "
    "the idle machine is run-to-run spread",
    "dist": "the same passes as the plain formulation; the small-size ratio is noise of a "
    "~1.5 ms call",
    "ttm": "one log_softmax of the scaled teacher logits (the power transform in log space); "
    "run-to-run spread",
    "logit-standardization": "z-score then KD, the same passes as the plain formulation; "
    "run-to-run spread",
    "ctkd": "KD at the learned temperature, the same passes as the plain formulation; "
    "run-to-run spread",
    "cc": "the same passes as the plain formulation; run-to-run spread",
    "ft": "the same translator, paraphraser encoder and normalised L1 distance as the plain "
    "formulation; the convolutions take nearly all of a call (about 110 s at the "
    "ImageNet-like size under load, so one pair was timed): 1.01-1.02 on the idle machine",
    "ofd": "after the rewrite (the partial L2 as one mse_loss kernel each way, as the "
    "plain formulation) the same operations as plain: in a scratch profile at the CIFAR "
    "size ours took 413 ms of CPU time and plain 423 ms, op for op the same; 1.01-1.02 on "
    "the idle machine, 1.06-1.15 at load average 5-7",
    "reviewkd": "the fusion modules and HCL are the plain formulation's operations on the "
    "same modules (3x3 convolutions take nearly all of a call); few pairs are timed (a call "
    "takes seconds), ours first: 1.01 on the idle machine, 0.80-1.47 under load",
    "irg": "after the rewrite (the edge matrix scales the [B, B] product by 2 instead of "
    "the [B, D] features, 1.62 before at the ImageNet-like size) the same operations as the "
    "plain formulation, op for op in a scratch profile; 0.99-1.01 on the idle machine",
}

#: losses whose memory grows as B^3: not run where that would not fit a shared machine
TOO_LARGE: dict[str, tuple[Callable[[CallSize], bool], str]] = {
    "rkd": (
        _cubic_in_batch(512),
        "the angle term holds [B, B, B] tensors (4 GiB each at B = 1024), in the paper and here",
    ),
}


def _optimizer(module: nn.Module) -> torch.optim.Optimizer:
    # lr = 0: every repeat computes on the same weights. With a real step, a loss that
    # diverges on random data (NaNs, saturated units) would change the arithmetic timed.
    return torch.optim.SGD(
        [p for p in module.parameters() if p.requires_grad], lr=0.0, momentum=0.9
    )


def _step(module: nn.Module, optimizer: torch.optim.Optimizer, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    module(x, y)["loss"].backward()
    optimizer.step()


class CrossEntropyStep(nn.Module):
    """The baseline: the student learns from labels only; the teacher forward still runs if given."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None) -> None:
        super().__init__()
        self.student = student
        self.teacher = freeze(teacher) if teacher is not None else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.teacher is not None:
            with torch.no_grad():
                self.teacher(x)
        return {"loss": F.cross_entropy(logits_of(self.student(x)), y)}


def in_training_step(
    methods: list[Method], device: torch.device, repeats: int, batch: int
) -> tuple[dict, dict[str, str]]:
    """Step time of each method over the matching cross-entropy step; the reasons of those
    the generic path cannot time.

    Method and baseline steps alternate, repeat by repeat, and the overhead is the
    median of the paired ratios, so a drift in machine load cancels. Methods that take
    a pre-trained ``teacher`` (every loss, inside ``OfflineDistiller``) are compared with
    the cross-entropy step that still runs the teacher forward; the others (online and
    self procedures) with the student's plain step.
    """
    torch.manual_seed(0)
    teacher = freeze(teacher_cnn(NUM_CLASSES, IN_CHANNELS)).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    context = BuildContext.of_cnns(teacher, cifar_student, IN_CHANNELS)  # a fresh student each

    def stepper(module: nn.Module) -> Callable[[], None]:
        module.to(device).train()
        optimizer = _optimizer(module)
        return lambda: _step(module, optimizer, x, y)

    def measure(case: ImplementationCase, uses_teacher: bool) -> dict:
        method = build(case, context)
        if case.is_loss:
            method = OfflineDistiller(context.make_student(), teacher, method)
        baseline = CrossEntropyStep(context.make_student(), teacher if uses_teacher else None)
        baseline_ms, step_ms, ratio = paired_ms(stepper(baseline), stepper(method), repeats, device)
        return {
            "step_ms": step_ms,
            "baseline_ms": baseline_ms,
            "baseline": "cross-entropy + teacher forward"
            if uses_teacher
            else "cross-entropy, student only",
            "overhead_pct": 100.0 * (ratio - 1.0),
        }

    report, skipped = {}, {}
    for name, case in methods:
        uses_teacher = case.is_loss or takes_teacher(case.cls)
        row = attempt(name, partial(measure, case, uses_teacher), "a step", skipped)
        if row is None:
            continue
        report[name] = row
        print(
            f"  {name:24s} step {row['step_ms']:8.1f} ms   baseline {row['baseline_ms']:8.1f} ms"
            f"   overhead {row['overhead_pct']:+7.1f} %"
        )
    return report, skipped


DEFAULT_LOGITS = "256x100,256x1000,1024x1000"
# CIFAR ResNet32x4-like stages at batch 128; ResNet-50-like stages 2-4 (2048 x 7 x 7 last) at 64
DEFAULT_FEATURES = "128:64x32x32,128x16x16,256x8x8;64:512x28x28,1024x14x14,2048x7x7"
DEFAULT_EMBEDDINGS = "1024x128"


def git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        return "?"


def load_note() -> str:
    try:
        import os

        one, five, _ = os.getloadavg()
        return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"
    except OSError:
        return "load average unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15, help="most repeats per measure")
    parser.add_argument(
        "--budget",
        type=float,
        default=4.0,
        help="seconds of timing per loss and size at most "
        "(fewer repeats for slow calls, at least 3)",
    )
    parser.add_argument("--logits", default=DEFAULT_LOGITS, help="B x C sizes, comma-separated")
    parser.add_argument(
        "--features",
        default=DEFAULT_FEATURES,
        help="B:CxHxW,CxHxW,... (one map per stage), sizes separated by ';'",
    )
    parser.add_argument("--embeddings", default=DEFAULT_EMBEDDINGS, help="B x D sizes")
    parser.add_argument("--only", default="", help="comma-separated implementation ids")
    parser.add_argument(
        "--batch", type=int, default=128, help="batch size of the training-step part"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--parts",
        default="calls,steps",
        help="comma-separated: calls (per-call times), steps (training-step overhead); "
        "a part not run keeps its previous result in the JSON file",
    )
    parser.add_argument("--note", default="", help="a remark on this run, kept with the results")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    parts = set(args.parts.split(","))
    only = set(filter(None, args.only.split(","))) or None
    methods = taxonomy_methods()
    print(f"{len(methods)} implementations in the taxonomy")
    existing = json.loads(args.output.read_text()) if args.output.exists() else {}
    previous = existing.get(device.type, {})
    calls, steps = previous.get("per_call", {}), previous.get("training_step", {})
    # part -> {method: why the generic path could not time it}
    not_benchmarked = {"per_call": {}, "training_step": {}, **previous.get("not_benchmarked", {})}
    call_sizes = previous.get("per_call_sizes", {})
    load_before = load_note()
    if "calls" in parts:
        sizes = parse_sizes(args.logits, args.features, args.embeddings)
        print(f"per call on {device} (paired, at most {args.repeats} repeats), ours vs plain:")
        new_calls, new_skipped = per_call(methods, sizes, device, args.repeats, args.budget, only)
        if only:  # a partial run updates the methods it ran and keeps the others
            calls = {**calls, **new_calls}
            kept = {
                k: v
                for k, v in not_benchmarked["per_call"].items()
                if k.split(" @ ")[0] not in only
            }
            not_benchmarked["per_call"] = {**kept, **new_skipped}
        else:
            calls, not_benchmarked["per_call"] = new_calls, new_skipped
        call_sizes = {
            kind: list(
                dict.fromkeys(
                    [
                        *(call_sizes.get(kind, []) if only else []),  # a partial run adds
                        *(s.label for s in sizes if s.kind == kind),
                    ]
                )
            )
            for kind in ("logits", "features", "embeddings")
        }
    if "steps" in parts:
        print(f"inside a training step, batch {args.batch} of 3x32x32, 100 classes:")
        step_methods, not_benchmarked["training_step"] = in_training_step(
            methods, device, args.repeats, args.batch
        )
        steps = {
            "batch": args.batch,
            "methods": step_methods,
            "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        }
    record = {
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "commit": git_commit(),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)",
        "machine": f"{platform.node() and 'shared host'}, {platform.processor() or platform.machine()}",
        "torch": torch.__version__,
        "load": f"before: {load_before}; after: {load_note()}",
        "note": args.note or previous.get("note", ""),
        "repeats": args.repeats,
        "budget_s": args.budget,
        "memory": "peak of torch's CPU allocator during one forward + backward "
        "(torch.profiler, profile_memory=True), above what was live before",
        "per_call_sizes": call_sizes,
        "per_call": calls,
        "notes": NOTES,
        "training_step": steps,
        "not_benchmarked": not_benchmarked,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    existing[device.type] = record
    args.output.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
