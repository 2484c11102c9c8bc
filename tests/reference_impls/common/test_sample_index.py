"""Sample indices for methods with a memory entry per training sample (CRD): the loader yields
them on request, the training loop passes them to a module that declares ``needs_index``, the
distiller hands them to its loss; everything else is called as before."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import nn

from reference_impls.common import DistillationLoss, DistillationProcedure, loss_inputs, train
from reference_impls.common.data import DataSplit, iterate_minibatches
from reference_impls.common.models import student_cnn, teacher_cnn
from reference_impls.common.validation import sample_indices
from reference_impls.schemes.offline.distiller import OfflineDistiller, distillation_arguments


def small_split(n: int = 30) -> DataSplit:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return DataSplit(x, y, x[:5], y[:5], 10)


def test_the_loader_yields_the_same_batches_with_each_samples_row():
    data = small_split()
    plain = list(
        iterate_minibatches(data.x_train, data.y_train, 8, True, torch.Generator().manual_seed(3))
    )
    indexed = list(
        iterate_minibatches(
            data.x_train, data.y_train, 8, True, torch.Generator().manual_seed(3), with_index=True
        )
    )
    assert len(plain) == len(indexed) == 4
    for (x, y), (xi, yi, index) in zip(plain, indexed, strict=True):
        assert torch.equal(x, xi) and torch.equal(y, yi)
        assert index.dtype == torch.int64
        assert torch.equal(data.x_train[index], xi) and torch.equal(data.y_train[index], yi)


class RecordsIndices(DistillationProcedure):
    needs_index: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        self.seen.append(index.clone())
        loss = nn.functional.cross_entropy(self.student(x), y)
        return {"loss": loss}


def test_train_passes_each_sample_index_once_per_epoch_to_a_module_that_asks():
    procedure = RecordsIndices()
    train(procedure, small_split(), epochs=2, batch_size=8, device="cpu")
    assert len(procedure.seen) == 8
    first_epoch = torch.cat(procedure.seen[:4]).sort().values
    assert torch.equal(first_epoch, torch.arange(30))


class ReadsIndices(DistillationLoss):
    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = True
    needs_index: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    def forward(self, student, teacher, target, index):
        self.calls.append(tuple(index.tolist()))
        return (student.mean() - teacher.detach().mean()).pow(2) + 0 * target.sum()


def test_the_distiller_declares_the_index_and_passes_it_after_the_target():
    torch.manual_seed(0)
    loss = ReadsIndices()
    distiller = OfflineDistiller(student_cnn(), teacher_cnn(), loss)
    assert (
        distiller.needs_index
        and not OfflineDistiller(student_cnn(), teacher_cnn(), None).needs_index
    )
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([1, 2, 3])
    distiller(x, y, torch.tensor([7, 8, 9]))
    assert loss.calls == [(7, 8, 9)]
    with pytest.raises(ValueError, match=r"ReadsIndices reads each sample's index.*train"):
        distiller(x, y)
    student_out, teacher_out = student_cnn()(x), teacher_cnn()(x)
    arguments = distillation_arguments(loss, student_out, teacher_out, y, torch.tensor([4, 5, 6]))
    assert torch.equal(arguments[2], y) and torch.equal(arguments[3], torch.tensor([4, 5, 6]))


def test_a_loss_without_the_flag_is_called_as_before():
    class Plain(DistillationLoss):
        inputs: ClassVar[str] = "logits"

        def forward(self, student, teacher):
            return (student - teacher.detach()).pow(2).mean()

    assert Plain.needs_index is False
    distiller = OfflineDistiller(student_cnn(), teacher_cnn(), Plain())
    assert not distiller.needs_index
    assert (
        len(
            distillation_arguments(
                Plain(), torch.zeros(2, 10), torch.zeros(2, 10), torch.zeros(2), torch.arange(2)
            )
        )
        == 2
    )


def test_the_flag_must_be_a_bool():
    with pytest.raises(TypeError, match="needs_index must be a bool"):

        class Wrong(DistillationLoss):
            inputs: ClassVar[str] = "logits"
            needs_index = "yes"

    class Duck(nn.Module):
        inputs = "logits"
        needs_index = 1

    with pytest.raises(TypeError, match=r"Duck.needs_index must be a bool"):
        loss_inputs(Duck())


def test_sample_indices_checks_shape_dtype_and_range():
    sample_indices("index", torch.tensor([0, 9]), 10, (2,))
    with pytest.raises(ValueError, match=r"index must have shape \(3,\), got shape \(2,\)"):
        sample_indices("index", torch.tensor([0, 9]), 10, (3,))
    with pytest.raises(ValueError, match=r"integer sample indices, got dtype torch\.bool"):
        sample_indices("index", torch.tensor([True, False]), 10, (2,))
    with pytest.raises(ValueError, match=r"must lie in \[0, 10\).*from -1 to 9"):
        sample_indices("index", torch.tensor([-1, 9]), 10, (2,))
