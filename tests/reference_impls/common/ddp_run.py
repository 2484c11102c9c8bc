"""One short distillation run, the same in one process and under ``torchrun`` (gloo on CPU).

Used by ``test_distributed.py``: ``run(method)`` trains in float64 on the digits
(MLPs: no batch norm, whose statistics would be per rank) and returns the trained
student's weights and the history; run as a script under torchrun, rank 0 writes them
to ``OUT/<method>.pt``::

    python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_run.py OUT kd dml crd
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from reference_impls.algorithms.contrastive.crd import CRDLoss
from reference_impls.common import TinyMLP, load_digits_split, set_seed, train
from reference_impls.common.training import distributed_world, is_main_process
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.schemes.online.dml import DML
from reference_impls.sources.logit.kd import KDLoss

GLOBAL_BATCH, EPOCHS, LR = 64, 2, 0.05


def _mlp(hidden: tuple[int, ...]) -> TinyMLP:
    return TinyMLP(64, hidden, 10).double()


def build(method: str) -> torch.nn.Module:
    set_seed(0)
    if method == "kd":
        teacher = _mlp((128, 128))  # untrained and frozen: something to distil
        return OfflineDistiller(_mlp((32,)), teacher, KDLoss())
    if method == "dml":
        return DML([_mlp((32,)), _mlp((32,))])
    if method == "crd":  # a memory bank with one row per training sample, read by index
        teacher = _mlp((128, 128))
        labels = load_digits_split(flat=True).y_train
        loss = CRDLoss(32, 128, num_samples=len(labels), labels=labels, num_negatives=64)
        return OfflineDistiller(_mlp((32,)), teacher, loss.double())
    raise ValueError(f"method must be 'kd', 'dml' or 'crd', got {method!r}")


def run(method: str) -> dict:
    data = load_digits_split(flat=True)
    data = dataclasses.replace(data, x_train=data.x_train.double(), x_test=data.x_test.double())
    procedure = build(method)
    history = train(procedure, data, epochs=EPOCHS, lr=LR, batch_size=GLOBAL_BATCH, seed=0)
    return {
        "state_dict": {k: v.detach().clone() for k, v in procedure.state_dict().items()},
        "losses": history.losses,
        "test_accuracy": history.test_accuracy,
        "world_size": distributed_world()[1],
    }


def main(out: Path, methods: list[str]) -> None:
    dist.init_process_group("gloo")
    try:
        for method in methods:
            result = run(method)
            if is_main_process():
                torch.save(result, out / f"{method}.pt")
            # for the test only: every rank's final state, to check that they agree
            rank = distributed_world()[0]
            torch.save(result["state_dict"], out / f"{method}-state-rank{rank}.pt")
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # interpreter shutdown after gloo sometimes aborts (environment notes)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
