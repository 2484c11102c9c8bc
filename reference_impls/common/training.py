"""A minimal, seeded training loop that every method plugs into.

Any ``nn.Module`` whose ``forward(x, y)`` returns a dict of named loss terms
with the total under ``"loss"`` can be trained (mdistiller's ``forward_train``
contract). Optional hooks on that module:

* ``configure_optimizers(lr) -> list[Optimizer]``: methods that need several
  optimisers or parameter groups (default: one SGD over trainable parameters);
* ``on_epoch_start(epoch, epochs)``: schedules that depend on the epoch (PS-KD);
* ``needs_index`` (a bool attribute): the module is called ``module(x, y, index)``,
  ``index`` being each sample's row in the training split (CRD's memory bank).

**Under torchrun.** When a ``torch.distributed`` process group is initialised
(``torchrun --nproc_per_node N``: gloo on CPU, NCCL on GPUs), :func:`train` runs
the same code data-parallel: the module is wrapped in ``DistributedDataParallel``
for its forward and backward only (hooks and optimisers see the module itself);
parameters that do not require gradients, such as a frozen teacher's, are left
out of DDP's gradient reduction, so they never receive a gradient. Every rank
draws the same seeded order of the training split and takes its share of each
global batch (rank ``r`` of ``N`` takes rows ``r, r+N, ...``), which is what a
``DistributedSampler`` does, without changing the single-process order: with
``batch_size`` the global batch, a DDP run sees the batches of the one-process
run, and its gradients are their average over ranks. The loss terms are
all-reduced, buffers (batch-norm statistics) are broadcast from rank 0 before each
evaluation, so every rank evaluates the same model, and only
rank 0 shows progress; writing results is left to :func:`is_main_process`. Batch
norm computes its statistics over each rank's share of the batch (CPU has no
``SyncBatchNorm``), so a network with batch norm trains slightly differently
under DDP than in one process; without it the two agree to rounding. State that
must follow the global batch (CRD's memory bank, DINO's center) gathers it with
:func:`gathered_rows` or :func:`averaged_over_ranks`, which are the identity in one
process.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from reference_impls.common.data import DataSplit, iterate_minibatches
from reference_impls.common.losses import kl_divergence, softened_log_probs
from reference_impls.common.models import ModelOutput


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a generator for data shuffling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_device() -> torch.device:
    """CUDA when present (under torchrun: the GPU of this process's ``LOCAL_RANK``), else CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if distributed_world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cuda")


def distributed_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this process writes results: rank 0, or the only process."""
    return distributed_world()[0] == 0


@torch.no_grad()
def gathered_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` stacked along dim 0, in rank order (itself without a group).

    For state that must see the global batch (a memory bank's update, a running center):
    ranks may hold different numbers of rows (the last batch of an epoch). Not
    differentiable: use it on detached values.
    """
    world = distributed_world()[1]
    if world == 1:
        return tensor
    rows = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(rows) for _ in range(world)]
    dist.all_gather(counts, rows)
    longest = int(max(count.item() for count in counts))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(count.item())] for part, count in zip(parts, counts, strict=True)])


@torch.no_grad()
def averaged_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over the ranks (itself without a process group)."""
    if distributed_world()[1] == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def logits_of(output: ModelOutput | torch.Tensor) -> torch.Tensor:
    return output.logits if isinstance(output, ModelOutput) else output


class Supervised(nn.Module):
    """Plain cross-entropy training of one model (teachers, baselines)."""

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = logits_of(self.model(x))
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return {"loss": loss, "ce": loss.detach()}


@dataclass
class History:
    """Mean of every loss term per epoch, and test accuracy of the evaluated model."""

    losses: list[dict[str, float]] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return self.test_accuracy[-1] if self.test_accuracy else math.nan


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    was_training = model.training
    model.eval()
    outputs = [logits_of(model(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(outputs)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    return (predict_logits(model, x).argmax(1) == y).float().mean().item()


def agreement(student: nn.Module, teacher: nn.Module, x: torch.Tensor) -> float:
    """Fraction of inputs where student and teacher predict the same class."""
    same = predict_logits(student, x).argmax(1) == predict_logits(teacher, x).argmax(1)
    return same.float().mean().item()


def kl_to_teacher(
    student: nn.Module, teacher: nn.Module, x: torch.Tensor, temperature: float = 1.0
) -> float:
    """Mean KL(teacher || student) of the softened predictions: the distance distillation shrinks.

    No $\\tau^2$ factor: a distance to report, not a loss to train with.
    """
    log_p_student = softened_log_probs(predict_logits(student, x), temperature)
    log_p_teacher = softened_log_probs(predict_logits(teacher, x), temperature)
    return kl_divergence(log_p_student, log_p_teacher).item()


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same samples (rows): 1 = equal up to rotation and scale.

    Kornblith et al. (2019); used to measure how close a student's features are to
    the teacher's when their widths differ.
    """
    x, y = x.flatten(1).double(), y.flatten(1).double()
    x, y = x - x.mean(0), y - y.mean(0)
    return ((x.T @ y).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm())).item()


def _default_optimizers(module: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
    params = [p for p in module.parameters() if p.requires_grad]
    return [torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)]


def train(
    module: nn.Module,
    data: DataSplit,
    epochs: int = 10,
    lr: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str | None = None,
    evaluate: nn.Module | None = None,
    progress: bool | Callable[[int, dict[str, float]], None] = False,
) -> History:
    """Train ``module`` on ``data``; returns per-epoch losses and test accuracy.

    ``evaluate`` is the classifier whose test accuracy is logged (default: the
    module's ``student`` attribute, or its ``model``). ``progress=True`` shows a
    tqdm bar; a callable receives ``(epoch, mean_losses)`` after each epoch.
    The learning rate follows a cosine schedule to zero. The module is left in
    eval mode, so using a trained model afterwards cannot move its batch-norm
    statistics by accident.
    """
    device = torch.device(device) if device is not None else default_device()
    generator = set_seed(seed)
    module.to(device)
    data = data.to(device)
    rank, world = distributed_world()
    evaluated = evaluate or getattr(module, "student", None) or getattr(module, "model", None)
    with_index = getattr(module, "needs_index", False) is True  # module(x, y, index)
    configure = getattr(module, "configure_optimizers", None)
    optimizers = configure(lr) if configure else _default_optimizers(module, lr)
    steps_per_epoch = math.ceil(len(data.x_train) / batch_size)
    schedulers = [
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
        for opt in optimizers
    ]
    step = _data_parallel(module, device) if world > 1 else module
    history = History()
    epoch_range = range(epochs)
    if progress is True and rank == 0:
        from tqdm.auto import tqdm

        epoch_range = tqdm(epoch_range, desc=type(module).__name__, leave=False)
    for epoch in epoch_range:
        if hasattr(module, "on_epoch_start"):
            module.on_epoch_start(epoch, epochs)
        module.train()
        sums: dict[str, float] = {}
        batches = 0
        batches_of_epoch = iterate_minibatches(
            data.x_train, data.y_train, batch_size, True, generator, with_index=with_index
        )
        for global_batch in batches_of_epoch:
            batch = [part[rank::world] for part in global_batch]  # this rank's share
            if len(global_batch[0]) < world:
                continue  # a last batch too small to give every rank a sample (all skip it)
            terms = step(*batch)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            for opt, scheduler in zip(optimizers, schedulers, strict=True):
                opt.step()
                scheduler.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            batches += 1
        means = {name: total / batches for name, total in sums.items()}
        if world > 1:
            means = _averaged_over_ranks(means, device)
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)  # every rank evaluates rank 0's model
        history.losses.append(means)
        if evaluated is not None:
            history.test_accuracy.append(accuracy(evaluated, data.x_test, data.y_test))
        if callable(progress) and rank == 0:
            progress(epoch, means)
    module.eval()
    return history


def _data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` wrapped for one rank of a data-parallel run (its trainable parameters synced)."""
    if not any(parameter.requires_grad for parameter in module.parameters()):
        return module
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        # state that must see the global batch (memory banks, centers) gathers it itself;
        # batch-norm statistics are broadcast from rank 0 before each evaluation
        broadcast_buffers=False,
        # procedures may leave parameters unused in a step (SimKD's replaced classifier,
        # the idle peer of an alternating schedule)
        find_unused_parameters=True,
    )


def _averaged_over_ranks(means: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each loss term's epoch mean, averaged over the ranks (every rank gets the same)."""
    names = sorted(means)
    values = torch.tensor([means[name] for name in names], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    world = dist.get_world_size()
    return {name: float(value) / world for name, value in zip(names, values.tolist(), strict=True)}


def train_supervised(model: nn.Module, data: DataSplit, **kwargs) -> History:
    """Cross-entropy training of a single classifier (e.g. the teacher)."""
    return train(Supervised(model), data, evaluate=model, **kwargs)


def freeze(model: nn.Module) -> nn.Module:
    """Put a (teacher) model in eval mode and stop its gradients for good."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
