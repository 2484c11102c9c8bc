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

Part 1, per call (losses only): each loss's forward, and forward + backward, at
a realistic size (logits B x 100; three stages of B x 256 x 8 x 8 feature maps;
B x 256 embeddings; B = 256 unless ``--call-batch``). The losses are built for
these sizes alone (no teacher model).

Part 2, inside a training step: teacher forward (no grad), student forward and
backward, cross-entropy and the loss, one SGD step (losses run inside
``OfflineDistiller``); procedures (online, self, SimKD, ...) are whole steps of
their own. Each is timed against the matching cross-entropy step (with the
teacher forward for methods that take a ``teacher``). Models are the project's
teacher_cnn / student_cnn on CIFAR-sized inputs (3 x 32 x 32, 100 classes).

Times are medians over repeats (the machines are shared and noisy); the
overhead is the median of paired ratios. Results go to benchmarks/results/losses.json.

    python benchmarks/bench_losses.py [--device cuda] [--repeats 15] [--batch 128]
    python benchmarks/bench_losses.py --repeats 1 --batch 4 --call-batch 8 -o /tmp/x.json  # smoke run
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


def time_loss(loss: nn.Module, student, teacher, extra: list, device, repeats: int) -> dict:
    """Median forward and forward+backward time of one loss call."""

    def forward_backward() -> None:
        loss(_as_leaves(student), teacher, *extra).backward()

    with torch.no_grad():
        forward_ms = median_ms(lambda: loss(student, teacher, *extra), repeats, device)
    return {
        "kind": "+".join(loss_inputs(loss)),
        "forward_ms": forward_ms,
        "forward_backward_ms": median_ms(forward_backward, repeats, device),
    }


def paired_ms(
    baseline: Callable[[], object], method: Callable[[], object], repeats: int, device
) -> tuple[float, float, float]:
    """Alternate the two calls; return their median times (ms) and the median paired ratio."""
    for _ in range(2):
        baseline(), method()
    pairs = [(once_ms(baseline, device), once_ms(method, device)) for _ in range(repeats)]
    ratios = [m / b for b, m in pairs]
    return (
        statistics.median(b for b, _ in pairs),
        statistics.median(m for _, m in pairs),
        statistics.median(ratios),
    )


def per_call(
    methods: list[Method], device: torch.device, repeats: int, batch: int
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Forward and forward+backward time of each loss at the realistic size; the reasons of
    those the generic path cannot time."""
    generator = torch.Generator().manual_seed(0)
    channels = (256, 256, 256)

    def maps() -> list[torch.Tensor]:
        return [torch.randn(batch, c, 8, 8, generator=generator).to(device) for c in channels]

    def randn(width: int) -> torch.Tensor:
        return torch.randn(batch, width, generator=generator).to(device)

    # drawn in this order: logits, feature maps, embeddings (student, teacher), labels
    logits = [randn(NUM_CLASSES) for _ in "st"]
    features = [maps(), maps()]
    embeddings = [randn(channels[-1]) for _ in "st"]
    student_out, teacher_out = (
        ModelOutput(logits[i], features[i], features[i], embeddings[i]) for i in (0, 1)
    )
    target = torch.randint(0, NUM_CLASSES, (batch,), generator=generator).to(device)
    sizes = BuildContext(
        student_channels=channels,
        teacher_channels=channels,
        student_dim=channels[-1],
        teacher_dim=channels[-1],
        num_classes=NUM_CLASSES,
        in_channels=IN_CHANNELS,
        make_student=cifar_student,
    )

    def measure(case: ImplementationCase) -> dict:
        loss = build(case, sizes).to(device)
        student, teacher, *extra = distillation_arguments(loss, student_out, teacher_out, target)
        return time_loss(loss, student, teacher, extra, device, repeats)

    results, skipped = {}, {}
    for name, case in methods:
        if not case.is_loss:
            continue  # procedures are whole training steps: part 2 times them
        row = attempt(name, partial(measure, case), "a call", skipped)
        if row is None:
            continue
        results[name] = row
        print(
            f"  {name:24s} {row['kind']:16s} fwd {row['forward_ms']:8.2f} ms"
            f"   fwd+bwd {row['forward_backward_ms']:8.2f} ms"
        )
    return results, skipped


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--batch", type=int, default=128, help="batch size of the training-step part"
    )
    parser.add_argument(
        "--call-batch", type=int, default=256, help="batch size of the per-call part"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--parts",
        default="calls,steps",
        help="comma-separated: calls (per-call times), steps (training-step overhead); "
        "a part not run keeps its previous result in the JSON file",
    )
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    parts = set(args.parts.split(","))
    methods = taxonomy_methods()
    print(f"{len(methods)} implementations in the taxonomy")
    existing = json.loads(args.output.read_text()) if args.output.exists() else {}
    previous = existing.get(device.type, {})
    calls, steps = previous.get("per_call", {}), previous.get("training_step", {})
    call_batch = previous.get("per_call_batch", 256)
    # part -> {method: why the generic path could not time it}
    not_benchmarked = {"per_call": {}, "training_step": {}, **previous.get("not_benchmarked", {})}
    if "calls" in parts:
        print(f"per call on {device} (median of {args.repeats}), batch {args.call_batch}:")
        calls, not_benchmarked["per_call"] = per_call(
            methods, device, args.repeats, args.call_batch
        )
        call_batch = args.call_batch
    if "steps" in parts:
        print(f"inside a training step, batch {args.batch} of 3x32x32, 100 classes:")
        step_methods, not_benchmarked["training_step"] = in_training_step(
            methods, device, args.repeats, args.batch
        )
        steps = {"batch": args.batch, "methods": step_methods}
    record = {
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "repeats": args.repeats,
        "per_call_batch": call_batch,
        "per_call": calls,
        "training_step": steps,
        "not_benchmarked": not_benchmarked,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    existing[device.type] = record
    args.output.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
