"""Every classification method of the taxonomy on the same teacher/student pairs, same budget.

    python -m benchmarks.compare                      # all methods, both tasks, seeds 0 1 2
    python -m benchmarks.compare --jobs 2             # two (method, seed) jobs at a time
    python -m benchmarks.compare --methods kd dkd at  # some methods (taxonomy ids)
    python -m benchmarks.compare --quick              # one seed, two epochs: the CI check
    python -m benchmarks.compare --torchrun 2         # each job data-parallel on 2 processes
    python -m benchmarks.compare --update --methods takd  # re-run some methods in the results

The methods are the taxonomy's implementations that train a classifier on the digits
pair (losses inside ``OfflineDistiller``, procedures as they are, multi-stage
procedures by their own ``run``); the others are listed with the reason they do not
fit. Every method trains the same student (``student_cnn``) against the same cached
teacher (``teacher_cnn``, cross-entropy on the whole training split) of each task, on
the same labelled subset, with the same schedule (``Settings``), once per seed; the
baseline ``cross-entropy`` is the student trained on the labels alone, same seed.

Per run: test accuracy, agreement with the teacher's predictions, training time per
student step (all of a procedure's training, divided by the steps of the student's
schedule) and peak memory (CUDA: ``max_memory_allocated``; CPU: the growth of the
process's peak resident set, ``VmHWM`` reset before the run). The summary gives per
method and task the accuracy mean ± std and the share of the teacher-student gap
closed, ``(acc - acc_CE) / (acc_teacher - acc_CE)`` with the same-seed baseline.

Each finished job is appended to ``<out>.partial.jsonl`` at once, so an interrupted
run resumes where it stopped (jobs already there with the same settings are not run
again); the JSON written at the end holds the provenance (commit, machine, torch,
device, seeds, date), the settings, every run and the summary. Only rank 0 of a
torchrun job writes.

After a change to some methods, ``--update --methods ...`` re-runs only those (every
task and seed of the results file, at its settings) and replaces their runs; the
results' provenance keeps the original pass and lists each update (methods, commit,
date, wall time) under ``updates``, which the Benchmarks page shows.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BASELINE = "cross-entropy"
TASKS = ("digits", "hard-digits")
TASK_TITLES = {
    "digits": "scikit-learn's 8x8 digits",
    "hard-digits": "the digits rotated (±30°), overlaid with a shifted digit of another class "
    "(intensity 0.5) and noised (σ 0.2): reference_impls.common.data.load_hard_digits_split",
}
# implementations that train a classifier but not in this harness's set-up
NOT_IN_HARNESS = {
    "reference_impls.algorithms.multi_teacher.uhc:UHC": (
        "needs teachers trained on disjoint label sets (one per half of the classes); the "
        "harness trains one teacher per task on all classes"
    ),
}


# leaves whose methods train something other than a classifier's predictions
LEAVES_NOT_IN_HARNESS = {
    "applications/self-supervised": (
        "self-supervised: trains an embedding without labels, judged by a linear probe or "
        "k-NN on it (its notebook), not by the classifier this harness measures"
    ),
}


@dataclass(frozen=True)
class Settings:
    """The budget every method gets (the notebooks' schedule, more labelled images)."""

    epochs: int = 20
    labelled: int = 200
    batch_size: int = 25
    lr: float = 0.05
    teacher_epochs: int = 5
    teacher_lr: float = 0.1
    teacher_batch_size: int = 128
    ensemble_teachers: int = 3  # multi-teacher methods: teachers of seeds 0, 1, 2
    contrastive_negatives: int = 64  # CRD/CRCD: the authors' 16384 exceed the labelled set

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


QUICK = Settings(epochs=2, labelled=100, teacher_epochs=2)


@dataclass(frozen=True)
class Method:
    """A taxonomy implementation (or the baseline) as the harness runs it."""

    id: str
    object: str
    leaf: str
    title: str


@dataclass(frozen=True)
class Job:
    task: str
    method: Method
    seed: int
    settings: Settings = field(default_factory=Settings)

    @property
    def name(self) -> str:
        return f"{self.task}/{self.method.id}/seed{self.seed}"


# ----------------------------------------------------------------------------- methods


def methods_of_taxonomy(root: Path = ROOT) -> tuple[list[Method], dict[str, str]]:
    """The implementations the harness runs, and ``{id: why not}`` for the others."""
    from kdatlas.loader import load
    from reference_impls.common.building import ImplementationCase

    kb = load(root)
    methods, not_run = [Method(BASELINE, "", "", "student trained on the labels alone")], {}
    for area, leaf, implementation in kb.implementations():
        case = ImplementationCase(implementation.object)
        if implementation.object in NOT_IN_HARNESS:
            not_run[implementation.id] = NOT_IN_HARNESS[implementation.object]
        elif f"{area.id}/{leaf.id}" in LEAVES_NOT_IN_HARNESS:
            not_run[implementation.id] = LEAVES_NOT_IN_HARNESS[f"{area.id}/{leaf.id}"]
        elif not case.runs_on_digits and implementation.object not in HARNESS_BUILDS:
            not_run[implementation.id] = f"inputs of its own: {case.recipe.why}"
        else:
            methods.append(
                Method(
                    implementation.id,
                    implementation.object,
                    f"{area.id}/{leaf.id}",
                    implementation.title,
                )
            )
    return methods, not_run


# ----------------------------------------------------------------------------- one job


@dataclass
class TaskState:
    """What every job of a task shares in one worker process: data and teachers."""

    data: Any
    labelled: Any
    teachers: list[torch.nn.Module]
    teacher_accuracy: float


_TASK_STATES: dict[tuple[str, str], TaskState] = {}


def task_state(task: str, settings: Settings, device: torch.device) -> TaskState:
    from reference_impls.common import cached_teacher, teacher_cnn
    from reference_impls.common.data import load_digits_split, load_hard_digits_split

    key = (task, settings.key())
    if key not in _TASK_STATES:
        data = {"digits": load_digits_split, "hard-digits": load_hard_digits_split}[task](seed=0)
        teachers = [
            cached_teacher(
                teacher_cnn,
                data,
                epochs=settings.teacher_epochs,
                lr=settings.teacher_lr,
                batch_size=settings.teacher_batch_size,
                seed=seed,
                device=device,
            )
            for seed in range(settings.ensemble_teachers)
        ]
        _TASK_STATES[key] = TaskState(
            data.to(device),
            data.with_train_subset(settings.labelled).to(device),
            [teacher.model for teacher in teachers],
            teachers[0].final_accuracy,
        )
    return _TASK_STATES[key]


def _build(job: Job, state: TaskState) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The procedure to train and the student it trains, built under the job's seed."""
    from reference_impls.common import Supervised, set_seed, student_cnn
    from reference_impls.common.building import BuildContext, ImplementationCase
    from reference_impls.schemes.offline.distiller import OfflineDistiller

    set_seed(job.seed)
    student = student_cnn()
    if job.method.id == BASELINE:
        return Supervised(student), student
    teacher = state.teachers[0]
    context = BuildContext.of_cnns(teacher, student_cnn, in_channels=1, student=student)
    case = ImplementationCase(job.method.object)
    harness_build = HARNESS_BUILDS.get(job.method.object)
    if harness_build is not None:
        built = harness_build(context, state, job.settings)
    else:  # run() brings a multi-stage procedure to its distilling state itself
        built = case.build(context, prepared=job.method.object not in PREPARED_BY_RUN)
    if case.is_loss:
        return OfflineDistiller(student, teacher, built), student
    trained = getattr(built, "student", None) or getattr(built, "model", None)
    return built, trained


def _multi_teacher(name: str):
    def build(context, state: TaskState, settings: Settings):
        from reference_impls.algorithms import multi_teacher

        return getattr(multi_teacher, name)(context.trained_student(), list(state.teachers))

    return build


def _contrastive(name: str):
    def build(context, state: TaskState, settings: Settings):
        from reference_impls.algorithms import contrastive

        labels = state.labelled.y_train.cpu()
        return getattr(contrastive, name)(
            context.student_dim,
            context.teacher_dim,
            len(labels),
            labels=labels,
            num_negatives=settings.contrastive_negatives,
        )

    return build


# where the contract's recipe builds for the contract (untrained extra teachers, a bank
# of 256 samples), the harness builds for the task: trained teachers, the labelled set
HARNESS_BUILDS: dict[str, Callable[..., torch.nn.Module]] = {
    "reference_impls.algorithms.multi_teacher.averaged_ensemble:AveragedEnsembleKD": (
        _multi_teacher("AveragedEnsembleKD")
    ),
    "reference_impls.algorithms.multi_teacher.ca_mkd:CAMKD": _multi_teacher("CAMKD"),
    "reference_impls.algorithms.contrastive.crd:CRDLoss": _contrastive("CRDLoss"),
    "reference_impls.algorithms.contrastive.crcd:CRCDLoss": _contrastive("CRCDLoss"),
}


def _eskd(context, state: TaskState, settings: Settings):
    from reference_impls.algorithms.adaptive.eskd import ESKD
    from reference_impls.common import teacher_cnn

    return ESKD(teacher_cnn(), context.trained_student())  # it trains (and stops) its teacher


HARNESS_BUILDS["reference_impls.algorithms.adaptive.eskd:ESKD"] = _eskd
# procedures whose run() trains every stage (their recipe's `prepare` would skip one)
PREPARED_BY_RUN = {"reference_impls.schemes.self.ban:BornAgain"}
# what a multi-stage procedure's run() gets besides the student's schedule
RUN_OPTIONS: dict[str, Callable[[TaskState, Settings], dict[str, Any]]] = {
    "reference_impls.algorithms.adaptive.eskd:ESKD": lambda state, settings: {
        "teacher_data": state.data,
        "teacher_epochs": settings.teacher_epochs,
        "teacher_lr": settings.teacher_lr,
        "teacher_batch_size": settings.teacher_batch_size,
        "stop_epoch": max(1, round(settings.teacher_epochs * 2 / 5)),
    },
}
# how a method's run differs from the plain "same student, same teacher, same schedule"
HARNESS_NOTES = {
    "averaged-ensemble": "three teachers (seeds 0, 1, 2), each trained like the task's teacher",
    "ca-mkd": "three teachers (seeds 0, 1, 2), each trained like the task's teacher",
    "crd": "memory bank of the labelled images, 64 negatives (authors: 16384 on CIFAR-100)",
    "crcd": "memory bank of the labelled images, 64 negatives (authors: 500)",
    "eskd": "trains its own teacher on the whole split and stops it after 2 of its 5 epochs",
    "ban": "trains generation 0 and three born-again generations: four times the student steps",
    "takd": "trains the assistant from the teacher first, then the student: twice the steps",
}


def _resident_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def peak_memory(device: torch.device):
    """Yields a dict that gets ``peak_mib``: the memory the block added at its peak."""
    measured: dict[str, float | None] = {"peak_mib": None}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield measured
        torch.cuda.synchronize(device)
        measured["peak_mib"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        return
    clear_refs = Path("/proc/self/clear_refs")
    try:
        clear_refs.write_text("5")  # resets VmHWM, the peak resident set, to the current size
    except OSError:
        yield measured  # not Linux, or not allowed: no figure rather than a wrong one
        return
    before = _resident_kib("VmRSS")
    yield measured
    measured["peak_mib"] = max(_resident_kib("VmHWM") - before, 0) / 1024


def run_job(job: Job, device: str | None = None) -> dict[str, Any]:
    """Train one method once on one task; the measured figures as a JSON-able dict."""
    from reference_impls.common import agreement, default_device, train
    from reference_impls.common.interfaces import RunsItsOwnTraining
    from reference_impls.common.training import accuracy

    torch.set_num_threads(1)  # one core per job: --jobs sets how many run at once
    target = torch.device(device) if device else default_device()
    settings = job.settings
    state = task_state(job.task, settings, target)
    procedure, student = _build(job, state)
    schedule = {
        "epochs": settings.epochs,
        "lr": settings.lr,
        "batch_size": settings.batch_size,
        "seed": job.seed,
        "device": target,
    }
    steps = settings.epochs * math.ceil(settings.labelled / settings.batch_size)
    with peak_memory(target) as memory:
        started = time.perf_counter()
        if isinstance(procedure, RunsItsOwnTraining):
            options = RUN_OPTIONS.get(job.method.object, lambda *_: {})(state, settings)
            procedure.run(state.labelled, **schedule, **options)
            # a multi-stage run may build its final network itself (BAN's last generation)
            student = getattr(procedure, "student", None) or student
        else:
            train(procedure, state.labelled, evaluate=student, **schedule)
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        seconds = time.perf_counter() - started
    student.eval()
    x_test, y_test = state.data.x_test, state.data.y_test
    return {
        "task": job.task,
        "method": job.method.id,
        "seed": job.seed,
        "accuracy": accuracy(student, x_test, y_test),
        "agreement": agreement(student, state.teachers[0], x_test),
        "seconds": seconds,
        "student_steps": steps,
        "ms_per_step": 1000 * seconds / steps,
        "peak_mib": memory["peak_mib"],
        "teacher_accuracy": state.teacher_accuracy,
        "settings": settings.key(),
    }


# ----------------------------------------------------------------------------- summary


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{task: {method: figures}}``: accuracy mean ± std, gap closed, agreement, time, memory."""
    by_key: dict[tuple[str, str], dict[int, dict]] = {}
    for run in runs:
        by_key.setdefault((run["task"], run["method"]), {})[run["seed"]] = run
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for (task, method), per_seed in sorted(by_key.items()):
        baseline = by_key.get((task, BASELINE), {})
        gaps = [
            (run["accuracy"] - baseline[seed]["accuracy"])
            / (run["teacher_accuracy"] - baseline[seed]["accuracy"])
            for seed, run in per_seed.items()
            if seed in baseline and run["teacher_accuracy"] != baseline[seed]["accuracy"]
        ]
        accuracies = [run["accuracy"] for run in per_seed.values()]
        memories = [r["peak_mib"] for r in per_seed.values() if r["peak_mib"] is not None]
        summary.setdefault(task, {})[method] = {
            "seeds": len(per_seed),
            "accuracy_mean": statistics.fmean(accuracies),
            "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "gap_closed_mean": statistics.fmean(gaps) if gaps else math.nan,
            "agreement_mean": statistics.fmean(r["agreement"] for r in per_seed.values()),
            "ms_per_step_median": statistics.median(r["ms_per_step"] for r in per_seed.values()),
            "peak_mib_median": statistics.median(memories) if memories else None,
            "teacher_accuracy": next(iter(per_seed.values()))["teacher_accuracy"],
        }
    return summary


# ----------------------------------------------------------------------------- provenance


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + (" (with uncommitted changes)" if git("status", "--porcelain") else "")


def provenance(device: str, seeds: Sequence[int], jobs: int, world: int) -> dict[str, Any]:
    return {
        "commit": git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)",
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "seeds": list(seeds),
        "parallel_jobs": jobs,
        "processes_per_job": world,
        "threads_per_job": 1,
    }


# ----------------------------------------------------------------------------- the run


def _read_partial(path: Path, settings: Settings) -> dict[str, dict]:
    """Finished jobs of an earlier, interrupted run with the same settings, by job name."""
    done = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError, KeyError):
                run = json.loads(line)
                if run["settings"] == settings.key():
                    done[f"{run['task']}/{run['method']}/seed{run['seed']}"] = run
    return done


def _in_worker(job: Job, device: str | None) -> dict[str, Any]:
    return run_job(job, device)


def _under_torchrun(job: Job, world: int, device: str | None) -> dict[str, Any]:
    """``job`` in ``world`` processes launched by torchrun; rank 0's result."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(world),
            "-m",
            "benchmarks.compare",
            "--one-job",
            json.dumps({"task": job.task, "method": asdict(job.method), "seed": job.seed}),
            "--settings",
            job.settings.key(),
            "--result",
            str(out),
            *(["--device", device] if device else []),
        ]
        environment = {**os.environ, "OMP_NUM_THREADS": "1"}
        completed = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, env=environment, check=False
        )
        if completed.returncode != 0 or not out.is_file():
            raise RuntimeError(f"{job.name} under torchrun failed:\n{completed.stderr[-2000:]}")
        return json.loads(out.read_text())


def run_all(
    jobs: list[Job],
    out: Path,
    *,
    parallel: int = 1,
    world: int = 1,
    device: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every job not already in ``out``'s partial file; returns all runs (old and new)."""
    from tqdm.auto import tqdm

    partial = out.with_suffix(".partial.jsonl")
    partial.parent.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict] = {}
    for settings in {job.settings for job in jobs}:
        done.update(_read_partial(partial, settings))
    todo = [job for job in jobs if job.name not in done]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="job", disable=not progress)
    failures = []

    def finished(job: Job, result: dict[str, Any]) -> None:
        done[job.name] = result
        with partial.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
        bar.set_postfix_str(job.name, refresh=False)
        bar.update()

    if world > 1:
        for job in todo:
            finished(job, _under_torchrun(job, world, device))
    elif parallel == 1:
        for job in todo:
            finished(job, run_job(job, device))
    else:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no fork after torch started threads
        with ProcessPoolExecutor(parallel, mp_context=context) as pool:
            futures = {pool.submit(_in_worker, job, device): job for job in todo}
            for future in as_completed(futures):
                try:
                    finished(futures[future], future.result())
                except Exception as error:  # one failed method must not lose the others
                    failures.append(f"{futures[future].name}: {type(error).__name__}: {error}")
    bar.close()
    if failures:
        raise RuntimeError("jobs failed (the others are kept):\n" + "\n".join(failures))
    names = {job.name for job in jobs}
    return [run for name, run in done.items() if name in names]


def plan(
    methods: Iterable[Method], tasks: Sequence[str], seeds: Sequence[int], settings: Settings
) -> list[Job]:
    """Jobs ordered so that the baseline of each task runs first."""
    return [
        Job(task, method, seed, settings) for task in tasks for method in methods for seed in seeds
    ]


def write_results(
    out: Path,
    runs: list[dict[str, Any]],
    not_run: dict[str, str],
    methods: list[Method],
    settings: Settings,
    meta: dict[str, Any],
) -> None:
    payload = {
        "provenance": meta,
        "settings": asdict(settings),
        "tasks": {task: TASK_TITLES[task] for task in sorted({r["task"] for r in runs})},
        "methods": {
            m.id: {"title": m.title, "leaf": m.leaf, "note": HARNESS_NOTES.get(m.id)}
            for m in methods
        },
        "not_run": not_run,
        "summary": summarise(runs),
        "runs": sorted(runs, key=lambda r: (r["task"], r["method"], r["seed"])),
    }
    temporary = out.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    temporary.replace(out)


def _one_job_main(args: argparse.Namespace) -> None:
    """A single job in this process (under torchrun: one rank); rank 0 writes ``--result``."""
    import torch.distributed as dist

    from reference_impls.common.training import is_main_process

    spec = json.loads(args.one_job)
    settings = Settings(**json.loads(args.settings))
    job = Job(spec["task"], Method(**spec["method"]), spec["seed"], settings)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        backend = "nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo"
        dist.init_process_group(backend)
    try:
        result = run_job(job, args.device)
        if is_main_process():
            Path(args.result).write_text(json.dumps(result), encoding="utf-8")
    finally:
        if distributed:
            dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # gloo's shutdown sometimes aborts after a finished run (environment notes)


def update(
    out: Path, methods: list[Method], not_run: dict[str, str], args: argparse.Namespace
) -> int:
    """Re-run ``args.methods`` on the tasks and seeds of ``out`` and replace their runs."""
    if not args.methods:
        raise SystemExit("--update needs --methods: the taxonomy ids to run again")
    if not out.is_file():
        raise SystemExit(f"--update: {out} does not exist; run without --update first")
    record = json.loads(out.read_text(encoding="utf-8"))
    meta, settings = record["provenance"], Settings(**record["settings"])
    again = [m for m in methods if m.id in args.methods]
    every = [m for m in methods_of_taxonomy()[0] if m.id in record["methods"] or m in again]
    jobs = plan(again, sorted(record["tasks"]), meta["seeds"], settings)
    started = time.perf_counter()
    fresh = run_all(
        jobs,
        out.with_name(out.stem + "-update.json"),
        parallel=args.jobs,
        world=args.torchrun,
        device=args.device,
        progress=not args.no_progress,
    )
    kept = [run for run in record["runs"] if run["method"] not in args.methods]
    meta.setdefault("updates", []).append(
        {
            "methods": sorted(args.methods),
            "commit": git_commit(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "runs": len(fresh),
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
    )
    write_results(out, kept + fresh, not_run, every, settings, meta)
    out.with_name(out.stem + "-update.partial.jsonl").unlink(missing_ok=True)
    print(f"{len(fresh)} runs of {', '.join(sorted(args.methods))} replaced in {out}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", help="taxonomy ids (default: every one that fits)")
    parser.add_argument("--jobs", type=int, default=1, help="jobs run at once, one core each")
    parser.add_argument("--torchrun", type=int, default=1, metavar="N", help="processes per job")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when present)")
    parser.add_argument("--quick", action="store_true", help="one seed, 2 epochs: the CI check")
    parser.add_argument(
        "--out", type=Path, help="default: benchmarks/results/compare-<device>.json"
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="re-run only --methods and replace their runs in the existing --out file",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--one-job", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one_job:
        _one_job_main(args)
    sys.path.insert(0, str(ROOT))
    settings = QUICK if args.quick else Settings()
    seeds = args.seeds[:1] if args.quick else args.seeds
    methods, not_run = methods_of_taxonomy()
    if args.methods:
        known = {m.id for m in methods} | set(not_run)
        unknown = sorted(set(args.methods) - known)
        if unknown:
            raise SystemExit(f"--methods: unknown taxonomy ids {unknown}")
        methods = [m for m in methods if m.id in args.methods or m.id == BASELINE]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = (
        args.out or RESULTS / f"compare-{device.split(':')[0]}{'-quick' if args.quick else ''}.json"
    )
    if args.update:
        return update(out, methods, not_run, args)
    jobs = plan(methods, args.tasks, seeds, settings)
    meta = provenance(device, seeds, args.jobs, args.torchrun)  # the code that runs: now
    earlier = _read_partial(out.with_suffix(".partial.jsonl"), settings)
    meta["runs_resumed"] = sum(job.name in earlier for job in jobs)  # from an interrupted run
    started = time.perf_counter()
    runs = run_all(
        jobs,
        out,
        parallel=args.jobs,
        world=args.torchrun,
        device=args.device,
        progress=not args.no_progress,
    )
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_results(out, runs, not_run, methods, settings, meta)
    out.with_suffix(".partial.jsonl").unlink(missing_ok=True)  # finished: nothing to resume
    print(f"{len(runs)} runs of {len(methods)} methods written to {out}")
    for task, per_method in summarise(runs).items():
        print(f"\n{task}: teacher {next(iter(per_method.values()))['teacher_accuracy']:.3f}")
        ranked = sorted(per_method.items(), key=lambda kv: -kv[1]["accuracy_mean"])
        for method, figures in ranked:
            print(
                f"  {method:28s} {figures['accuracy_mean']:.3f} ± {figures['accuracy_std']:.3f}"
                f"  gap closed {figures['gap_closed_mean']:+.2f}"
                f"  {figures['ms_per_step_median']:.1f} ms/step"
            )
    if not_run:
        print(f"\nnot run ({len(not_run)}): " + ", ".join(sorted(not_run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
