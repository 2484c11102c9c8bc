"""Token-level KD at LLM vocabulary sizes: peak memory and time of the chunked losses vs naive.

Four forms of the same loss (``reference_impls/applications/llm/token_losses.py``), each
timed for forward + backward on float32 inputs with 10% of the tokens labelled -100:

* ``naive``: ``naive_token_kd_loss`` on given ``[N, V]`` student and teacher logits (autograd
  through log-softmax, probabilities and the divergence, every ``[N, V]`` tensor at once);
* ``chunked``: ``chunked_token_kd_loss`` on the same logits (``--chunk-size`` tokens at a
  time; the ``[N, V]`` gradient of the logits is still returned, as autograd requires);
* ``naive_head``: the LM heads applied in full (``hidden @ weight.T`` for student and
  teacher, ``[N, H]`` hidden states, ``[V, H]`` weights, ``H = --hidden``), then ``naive``;
* ``fused``: ``fused_linear_token_kd_loss`` on the hidden states and weights (no ``[N, V]``
  logits for either model).

Time: wall clock, and the process's CPU time (``time.process_time``), which a shared,
busy machine disturbs less; with one thread the two agree on an idle machine.

Peak memory: every configuration runs in a fresh Python subprocess; after a warm-up call
on 16 tokens and building the inputs, the process's resident-set high-water mark is reset
(Linux ``/proc/self/clear_refs``, value 5) and the reported peak is ``VmHWM - VmRSS`` just
before the first forward + backward: the memory the loss added on top of its inputs (its
gradients included). Time: median of ``--repeats`` further forward + backward calls in the
same subprocess, ``--threads`` threads.

    python benchmarks/bench_llm_kd.py                                  # the committed CPU run
    python benchmarks/bench_llm_kd.py --sizes 64x1000 --repeats 2 -o /tmp/x.json   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "llm_kd.json"
FORMS = ("naive", "chunked", "naive_head", "fused")
sys.path.insert(0, str(ROOT))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(form: str, tokens: int, vocab: int, args: argparse.Namespace) -> dict[str, float]:
    """One configuration, in this (fresh) process: peak extra memory and median time."""
    from reference_impls.applications.llm.token_losses import (
        chunked_token_kd_loss,
        fused_linear_token_kd_loss,
        naive_token_kd_loss,
    )

    torch.set_num_threads(args.threads)

    def make(tokens: int) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
        torch.manual_seed(0)
        labels = torch.randint(0, vocab, (tokens,))
        labels[torch.rand(tokens) < 0.1] = -100
        options = {"divergence": args.divergence, "beta": 0.5}
        chunked = {"chunk_size": args.chunk_size or None}
        if form in ("naive", "chunked"):
            student = (2 * torch.randn(tokens, vocab)).requires_grad_()
            teacher = 2 * torch.randn(tokens, vocab)
            leaves = [student]
            if form == "naive":

                def step() -> torch.Tensor:
                    return naive_token_kd_loss(student, teacher, labels, **options)
            else:

                def step() -> torch.Tensor:
                    return chunked_token_kd_loss(student, teacher, labels, **options, **chunked)
        else:
            scale = args.hidden**-0.5
            student_hidden = torch.randn(tokens, args.hidden).requires_grad_()
            student_weight = (2 * scale * torch.randn(vocab, args.hidden)).requires_grad_()
            teacher_hidden = torch.randn(tokens, args.hidden)
            teacher_weight = 2 * scale * torch.randn(vocab, args.hidden)
            leaves = [student_hidden, student_weight]
            if form == "naive_head":

                def step() -> torch.Tensor:
                    with torch.no_grad():
                        teacher_logits = teacher_hidden @ teacher_weight.T
                    student_logits = student_hidden @ student_weight.T
                    return naive_token_kd_loss(student_logits, teacher_logits, labels, **options)
            else:

                def step() -> torch.Tensor:
                    return fused_linear_token_kd_loss(
                        student_hidden,
                        student_weight,
                        teacher_hidden,
                        teacher_weight,
                        labels,
                        **options,
                        **chunked,
                    )

        return leaves, step

    def forward_backward(leaves, step) -> tuple[float, float, float]:
        for leaf in leaves:
            leaf.grad = None
        start, start_cpu = time.perf_counter(), time.process_time()
        loss = step()
        loss.backward()
        return time.perf_counter() - start, time.process_time() - start_cpu, loss.item()

    # a warm-up on 16 tokens loads the kernels' code and the allocator's first pages, which
    # the process keeps: the peak measured next is the loss's own memory
    forward_backward(*make(16))
    inputs = make(tokens)
    gc.collect()
    rss_before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    first, _, value = forward_backward(*inputs)
    peak = _status_kib("VmHWM") - rss_before
    times = [forward_backward(*inputs) for _ in range(args.repeats)]
    return {
        "peak_extra_mib": peak / 1024,
        "median_s": statistics.median(t[0] for t in times),
        "median_cpu_s": statistics.median(t[1] for t in times),
        "first_s": first,
        "loss": value,
    }


def run_configuration(form: str, tokens: int, vocab: int, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, __file__, "--worker", form, "--sizes", f"{tokens}x{vocab}",
        "--divergence", args.divergence, "--hidden", str(args.hidden), "--threads",
        str(args.threads), "--repeats", str(args.repeats), "--chunk-size", str(args.chunk_size),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit " + str(done.returncode)])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256x32000,1024x32000,2048x32000,4096x32000",
                        help="comma-separated NxV (tokens x vocabulary)")  # fmt: skip
    parser.add_argument("--divergence", default="forward_kl")
    parser.add_argument(
        "--divergences", default=None, help="comma-separated; overrides --divergence"
    )
    parser.add_argument("--hidden", type=int, default=256, help="H of the LM heads (fused forms)")
    parser.add_argument("--chunk-size", type=int, default=0, help="0: the losses' default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--worker", choices=FORMS, help=argparse.SUPPRESS)
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    parser.add_argument("--append", action="store_true", help="add rows to the output's")
    args = parser.parse_args()
    sizes = [tuple(int(x) for x in size.split("x")) for size in args.sizes.split(",")]
    if args.worker:
        print(json.dumps(worker(args.worker, *sizes[0], args)))
        return
    rows = []
    for divergence in (args.divergences or args.divergence).split(","):
        args.divergence = divergence
        for tokens, vocab in sizes:
            row: dict = {"divergence": divergence, "tokens": tokens, "vocab": vocab}
            for form in args.forms.split(","):
                row[form] = run_configuration(form, tokens, vocab, args)
                print(divergence, tokens, vocab, form, row[form], flush=True)
            for ours, naive in (("chunked", "naive"), ("fused", "naive_head")):
                if "median_s" in row.get(ours, {}) and "median_s" in row.get(naive, {}):
                    row[f"{ours}_time_ratio"] = row[ours]["median_s"] / row[naive]["median_s"]
                    row[f"{ours}_cpu_time_ratio"] = (
                        row[ours]["median_cpu_s"] / row[naive]["median_cpu_s"]
                    )
                    row[f"{ours}_memory_ratio"] = (
                        row[ours]["peak_extra_mib"] / row[naive]["peak_extra_mib"]
                    )
            rows.append(row)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    record = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": f"CPU ({platform.machine()}, {args.threads} thread(s))",
        "torch": torch.__version__,
        "commit": commit,
        "command": "python benchmarks/bench_llm_kd.py " + " ".join(sys.argv[1:]),
        "dtype": "float32",
        "hidden": args.hidden,
        "chunk_size": args.chunk_size
        or "default (2**20 // V tokens; fused 2**22 // V, at least 64)",
        "repeats": args.repeats,
        "memory": "VmHWM - VmRSS of a fresh subprocess, high-water mark reset after the inputs "
        "are built (/proc/self/clear_refs 5): the loss's extra resident memory, gradients included",
        "rows": rows,
    }
    if args.append and args.output.exists():
        previous = json.loads(args.output.read_text())["cpu"]
        record["rows"] = previous["rows"] + rows
        record["command"] = previous["command"] + " ; " + record["command"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"cpu": record}, indent=2) + "\n")
    print("wrote", args.output)


if __name__ == "__main__":
    main()
