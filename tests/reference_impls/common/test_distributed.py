"""The training loop under torchrun: two CPU processes (gloo) train what one process trains.

Each rank takes half of every global batch and DDP averages the gradients, so the
run equals the one-process run with the same global batch up to the order of
floating-point sums: in float64 the weights agree to 1e-9 (relative). The teacher of
the offline run stays frozen (it has no gradient to reduce), both peers of DML (two
networks, one optimiser each) are synchronised, and CRD's memory bank, updated from
each rank's half of the batch, holds every sample's update on every rank.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import ddp_run  # noqa: E402

METHODS = ("kd", "dml", "crd")
EQUAL_TO_ONE_PROCESS = ("kd", "dml")  # CRD draws its negatives per rank: not the same numbers


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("ddp")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "ddp_run.py"),
        str(out),
        *METHODS,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=environment, check=False
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = {method: torch.load(out / f"{method}.pt", weights_only=True) for method in METHODS}
    for method in METHODS:
        results[method]["per_rank"] = [
            torch.load(out / f"{method}-state-rank{rank}.pt", weights_only=True) for rank in (0, 1)
        ]
    return results


@pytest.mark.parametrize("method", METHODS)
def test_every_rank_ends_with_the_same_model_and_state(two_process_results, method):
    first, second = two_process_results[method]["per_rank"]
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


@pytest.mark.parametrize("method", EQUAL_TO_ONE_PROCESS)
def test_two_processes_train_what_one_process_trains(two_process_results, method):
    distributed, single = two_process_results[method], ddp_run.run(method)
    assert (distributed["world_size"], single["world_size"]) == (2, 1)
    assert distributed["state_dict"].keys() == single["state_dict"].keys()
    moved = 0
    for name, weight in single["state_dict"].items():
        torch.testing.assert_close(distributed["state_dict"][name], weight, rtol=1e-9, atol=1e-9)
        moved += int(not torch.equal(weight, ddp_run.build(method).state_dict()[name]))
    assert moved > 0  # training changed the weights: the comparison is not of two inits
    for ours, theirs in zip(distributed["losses"], single["losses"], strict=True):
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert ours[name] == pytest.approx(theirs[name], rel=1e-9)
    assert distributed["test_accuracy"] == pytest.approx(single["test_accuracy"])


def test_the_frozen_teacher_is_not_trained_under_ddp(two_process_results):
    initial = ddp_run.build("kd").state_dict()
    trained = two_process_results["kd"]["state_dict"]
    teacher = [name for name in initial if name.startswith("teacher.")]
    assert teacher and all(torch.equal(trained[name], initial[name]) for name in teacher)


def test_the_crd_memory_bank_gets_every_ranks_rows(two_process_results):
    """Each rank sees half of each batch; its bank must still hold every sample's update."""
    initial = ddp_run.build("crd").state_dict()
    trained = two_process_results["crd"]["state_dict"]
    for bank in ("loss.student_memory", "loss.teacher_memory"):
        changed = (trained[bank] != initial[bank]).any(dim=1)
        assert bool(changed.all()), f"{int((~changed).sum())} rows of {bank} never updated"
