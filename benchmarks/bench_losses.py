"""Speed of every distillation loss: per call, and its share of a training step.

Part 1, per call: each loss's forward, and forward + backward, at a realistic
size (logits 256 x 100; three stages of 256 x 256 x 8 x 8 feature maps;
256 x 256 embeddings).

Part 2, inside a training step: teacher forward (no grad), student forward and
backward, cross-entropy and the loss, one SGD step; against the same step with
cross-entropy alone (the teacher forward still included). Models are the
project's teacher_cnn / student_cnn on CIFAR-sized inputs (3 x 32 x 32, 100
classes). Procedures (online, self, SimKD, TAKD) are whole steps of their own
and are timed against the same cross-entropy step.

Times are medians over repeats (the machines are shared and noisy); the
overhead is the ratio of medians. Results go to benchmarks/results/losses.json.

    python benchmarks/bench_losses.py [--device cuda] [--repeats 15] [--batch 128]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common import student_cnn, teacher_cnn
from reference_impls.common.training import freeze, logits_of
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.schemes.offline.takd import TAKD
from reference_impls.schemes.online.dml import DML
from reference_impls.schemes.online.kdcl import KDCL
from reference_impls.schemes.online.one import ONE, ONENetwork
from reference_impls.schemes.self.ban import BornAgain
from reference_impls.schemes.self.byot import BYOT
from reference_impls.schemes.self.ddgsd import DDGSD
from reference_impls.schemes.self.instance_label_smoothing import InstanceSpecificLabelSmoothing
from reference_impls.schemes.self.pskd import PSKD
from reference_impls.sources.feature.ab import ABLoss
from reference_impls.sources.feature.at import ATLoss
from reference_impls.sources.feature.fitnets import FitNetsLoss
from reference_impls.sources.feature.ft import FTLoss
from reference_impls.sources.feature.mgd import MGDLoss
from reference_impls.sources.feature.nst import NSTLoss
from reference_impls.sources.feature.ofd import OFDLoss, bn_before_relu, margins_from_batchnorm
from reference_impls.sources.feature.reviewkd import ReviewKDLoss
from reference_impls.sources.feature.simkd import SimKD
from reference_impls.sources.logit.dkd import DKDLoss
from reference_impls.sources.logit.kd import KDLoss
from reference_impls.sources.logit.logit_standardization import LogitStandardizationLoss
from reference_impls.sources.logit.normkd import NormKDLoss
from reference_impls.sources.logit.ttm import TTMLoss
from reference_impls.sources.similarity.cc import CCLoss
from reference_impls.sources.similarity.dist import DISTLoss
from reference_impls.sources.similarity.fsp import FSPLoss
from reference_impls.sources.similarity.ickd import ICKDLoss
from reference_impls.sources.similarity.irg import IRGLoss
from reference_impls.sources.similarity.pkt import PKTLoss
from reference_impls.sources.similarity.rkd import RKDLoss
from reference_impls.sources.similarity.sp import SPLoss

RESULTS = Path(__file__).parent / "results" / "losses.json"
Channels = tuple[int, ...]

# id -> factory(student_channels, teacher_channels, teacher) for losses
LOSSES: dict[str, Callable[[Channels, Channels, nn.Module | None], nn.Module]] = {
    "kd": lambda s, t, T: KDLoss(),
    "dkd": lambda s, t, T: DKDLoss(warmup_epochs=0),
    "logit-standardization": lambda s, t, T: LogitStandardizationLoss(),
    "ttm": lambda s, t, T: TTMLoss(),
    "normkd": lambda s, t, T: NormKDLoss(),
    "dist": lambda s, t, T: DISTLoss(),
    "fitnets": lambda s, t, T: FitNetsLoss(s, t),
    "at": lambda s, t, T: ATLoss(),
    "nst": lambda s, t, T: NSTLoss(),
    "ft": lambda s, t, T: FTLoss(s, t),
    "ab": lambda s, t, T: ABLoss(s, t),
    "ofd": lambda s, t, T: OFDLoss(s, t, _margins(t, T)),
    "reviewkd": lambda s, t, T: ReviewKDLoss(s, t, warmup_epochs=0),
    "mgd": lambda s, t, T: MGDLoss(s, t),
    "fsp": lambda s, t, T: FSPLoss(student_channels=s, teacher_channels=t),
    "sp": lambda s, t, T: SPLoss(),
    "ickd": lambda s, t, T: ICKDLoss(s, t),
    "irg": lambda s, t, T: IRGLoss(),
    "rkd": lambda s, t, T: RKDLoss(),
    "cc": lambda s, t, T: CCLoss(s[-1], t[-1]),
    "pkt": lambda s, t, T: PKTLoss(),
}


def _margins(teacher_channels: Channels, teacher: nn.Module | None) -> list[torch.Tensor]:
    if teacher is not None:
        return margins_from_batchnorm(bn_before_relu(teacher))
    return [torch.full((c,), -0.5) for c in teacher_channels]


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in milliseconds, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


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
        "kind": loss.inputs if isinstance(loss.inputs, str) else "+".join(loss.inputs),
        "forward_ms": forward_ms,
        "forward_backward_ms": median_ms(forward_backward, repeats, device),
    }


def paired_ms(
    baseline: Callable[[], object], method: Callable[[], object], repeats: int, device
) -> tuple[float, float, float]:
    """Alternate the two calls; return their median times (ms) and the median paired ratio."""

    def once(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3

    for _ in range(2):
        baseline(), method()
    pairs = [(once(baseline), once(method)) for _ in range(repeats)]
    ratios = [m / b for b, m in pairs]
    return (
        statistics.median(b for b, _ in pairs),
        statistics.median(m for _, m in pairs),
        statistics.median(ratios),
    )


def per_call(device: torch.device, repeats: int) -> dict[str, dict[str, float]]:
    """Forward and forward+backward time of each loss at the realistic size."""
    generator = torch.Generator().manual_seed(0)
    channels = (256, 256, 256)

    def maps() -> list[torch.Tensor]:
        return [torch.randn(256, c, 8, 8, generator=generator).to(device) for c in channels]

    inputs = {
        "logits": [torch.randn(256, 100, generator=generator).to(device) for _ in "st"],
        "features": [maps(), maps()],
        "embeddings": [torch.randn(256, 256, generator=generator).to(device) for _ in "st"],
    }
    inputs["preact_features"] = inputs["features"]
    target = torch.randint(0, 100, (256,), generator=generator).to(device)
    results = {}
    for name, factory in LOSSES.items():
        loss = factory(channels, channels, None).to(device)
        kinds = (loss.inputs,) if isinstance(loss.inputs, str) else loss.inputs
        student, teacher = inputs[kinds[0]]
        extra = [x for kind in kinds[1:] for x in inputs[kind]]
        extra += [target] if loss.needs_target else []
        row = results[name] = time_loss(loss, student, teacher, extra, device, repeats)
        print(
            f"  {name:24s} {row['kind']:16s} fwd {row['forward_ms']:8.2f} ms"
            f"   fwd+bwd {row['forward_backward_ms']:8.2f} ms"
        )
    return results


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


def _born_again(make: Callable[[], nn.Module]) -> BornAgain:
    procedure = BornAgain(make)
    procedure.next_generation()  # time a distilling generation, not the first (CE-only) one
    return procedure


def _procedures(teacher: nn.Module) -> dict[str, tuple[Callable[[], nn.Module], bool]]:
    """name -> (factory, whether it runs a pre-trained teacher)."""
    make = lambda: student_cnn(100, 3)  # noqa: E731
    return {
        "simkd": (lambda: SimKD(make(), teacher), True),
        "takd": (lambda: TAKD(teacher, [make()], make()), True),
        "dml": (lambda: DML([make(), make()]), False),
        "one": (
            lambda: ONE(ONENetwork(student_cnn().channels, num_classes=100, in_channels=3)),
            False,
        ),
        "kdcl": (lambda: KDCL([make(), make()]), False),
        "byot": (lambda: BYOT(make()), False),
        "ban": (lambda: _born_again(make), False),
        "ps-kd": (lambda: PSKD(make()), False),
        "instance-label-smoothing": (lambda: InstanceSpecificLabelSmoothing(make()), False),
        "ddgsd": (lambda: DDGSD(make()), False),
    }


def in_training_step(device: torch.device, repeats: int, batch: int) -> dict:
    """Step time of each loss (or procedure) over the matching cross-entropy step.

    Method and baseline steps alternate, repeat by repeat, and the overhead is the
    median of the paired ratios, so a drift in machine load cancels. Offline losses (and SimKD, TAKD) are compared with the
    cross-entropy step that still runs the teacher forward; online and self
    procedures, which have no pre-trained teacher, with the student's plain step.
    """
    torch.manual_seed(0)
    teacher = freeze(teacher_cnn(100, 3)).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (batch,), device=device)
    s_channels, t_channels = student_cnn().channels, teacher.channels

    def stepper(module: nn.Module) -> Callable[[], None]:
        module.to(device).train()
        optimizer = _optimizer(module)
        return lambda: _step(module, optimizer, x, y)

    methods: dict[str, tuple[Callable[[], nn.Module], bool]] = {
        name: (
            lambda f=factory: OfflineDistiller(
                student_cnn(100, 3), teacher, f(s_channels, t_channels, teacher)
            ),
            True,
        )
        for name, factory in LOSSES.items()
    }
    methods.update(_procedures(teacher))
    report = {}
    for name, (factory, uses_teacher) in methods.items():
        module = factory()
        if hasattr(module, "on_epoch_start"):
            module.on_epoch_start(1, 10)
        baseline = CrossEntropyStep(student_cnn(100, 3), teacher if uses_teacher else None)
        baseline_ms, step_ms, ratio = paired_ms(stepper(baseline), stepper(module), repeats, device)
        report[name] = {
            "step_ms": step_ms,
            "baseline_ms": baseline_ms,
            "baseline": "cross-entropy + teacher forward"
            if uses_teacher
            else "cross-entropy, student only",
            "overhead_pct": 100.0 * (ratio - 1.0),
        }
        print(
            f"  {name:24s} step {step_ms:8.1f} ms   baseline {baseline_ms:8.1f} ms"
            f"   overhead {report[name]['overhead_pct']:+7.1f} %"
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15)
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
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    parts = set(args.parts.split(","))
    existing = json.loads(args.output.read_text()) if args.output.exists() else {}
    previous = existing.get(device.type, {})
    calls, steps = previous.get("per_call", {}), previous.get("training_step", {})
    if "calls" in parts:
        print(f"per call on {device} (median of {args.repeats}):")
        calls = per_call(device, args.repeats)
    if "steps" in parts:
        print(f"inside a training step, batch {args.batch} of 3x32x32, 100 classes:")
        steps = {"batch": args.batch, "methods": in_training_step(device, args.repeats, args.batch)}
    record = {
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "repeats": args.repeats,
        "per_call": calls,
        "training_step": steps,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    existing[device.type] = record
    args.output.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
