"""OfflineDistiller: contract, frozen teacher, CE-only baseline, input routing, targets."""

from __future__ import annotations

import copy
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common import accuracy, student_cnn, teacher_cnn, train
from reference_impls.common.testing import check_procedure_contract, digits_setup
from reference_impls.schemes.offline.distiller import OfflineDistiller, distillation_arguments
from reference_impls.sources.logit.kd import KDLoss


class RecordingLoss(nn.Module):
    """Remembers what the distiller passed; returns a differentiable stand-in value."""

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = False

    def __init__(self, value: float = 0.5) -> None:
        super().__init__()
        self.value = value
        self.calls: list[tuple] = []

    def forward(self, student, teacher, *extra):
        self.calls.append((student, teacher, *extra))
        first = student[0] if isinstance(student, list) else student
        return first.sum() * 0.0 + self.value


def recording(kind: str | tuple[str, ...], target: bool = False) -> RecordingLoss:
    cls = type(
        "RecordingLoss_" + "_".join([kind] if isinstance(kind, str) else kind),
        (RecordingLoss,),
        {"inputs": kind, "needs_target": target},
    )
    return cls()


@pytest.fixture
def models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return student_cnn(), teacher_cnn()


def test_teacher_is_frozen_and_stays_in_eval_mode(models, batch):
    student, teacher = models
    distiller = OfflineDistiller(student, teacher, KDLoss())
    assert not any(p.requires_grad for p in teacher.parameters())
    distiller.train()
    assert student.training and not teacher.training
    running_mean = teacher.stem[1].running_mean.clone()
    distiller(*batch)["loss"].backward()
    # batch-norm statistics of the teacher do not move, and no gradient reaches it
    torch.testing.assert_close(teacher.stem[1].running_mean, running_mean)
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())


def test_cross_entropy_only_baseline_when_loss_is_none(models, batch):
    student, teacher = models
    x, y = batch
    distiller = OfflineDistiller(student, teacher, None, ce_weight=0.5)
    distiller.eval()
    terms = distiller(x, y)
    assert set(terms) == {"ce", "loss"}
    expected = F.cross_entropy(student(x).logits, y)
    torch.testing.assert_close(terms["ce"], expected)
    torch.testing.assert_close(terms["loss"], 0.5 * expected)


def test_total_is_the_weighted_sum(models, batch):
    student, teacher = models
    distiller = OfflineDistiller(student, teacher, KDLoss(), ce_weight=0.1, kd_weight=0.9)
    terms = distiller(*batch)
    torch.testing.assert_close(terms["loss"], 0.1 * terms["ce"] + 0.9 * terms["kd"])


@pytest.mark.parametrize("kind", ["logits", "features", "preact_features", "embeddings"])
def test_each_input_kind_is_routed_from_both_models(kind, models, batch):
    student, teacher = models
    x, y = batch
    loss = recording(kind)
    distiller = OfflineDistiller(student, teacher, loss)
    distiller.eval()  # deterministic batch norm, so the values can be compared
    distiller(x, y)
    (student_in, teacher_in) = loss.calls[0]
    field = {"embeddings": "embedding"}.get(kind, kind)
    for got, model in ((student_in, student), (teacher_in, teacher)):
        want = getattr(model(x), field)
        if isinstance(want, list):
            assert isinstance(got, list) and len(got) == len(want) == 3
            for g, w in zip(got, want, strict=True):
                torch.testing.assert_close(g, w)
        else:
            torch.testing.assert_close(got, want)
    # the teacher side carries no autograd history
    teacher_tensors = teacher_in if isinstance(teacher_in, list) else [teacher_in]
    assert not any(t.requires_grad for t in teacher_tensors)


def test_a_loss_reading_two_kinds_gets_student_and_teacher_of_each(models, batch):
    student, teacher = models
    x, y = batch
    loss = recording(("features", "logits"), target=True)
    distiller = OfflineDistiller(student, teacher, loss)
    distiller.eval()
    distiller(x, y)
    s_feats, t_feats, s_logits, t_logits, target = loss.calls[0]
    assert len(s_feats) == len(t_feats) == 3
    assert s_feats[0].shape[1] == student.channels[0] and t_feats[0].shape[1] == teacher.channels[0]
    torch.testing.assert_close(s_logits, student(x).logits)
    torch.testing.assert_close(t_logits, teacher(x).logits)
    assert torch.equal(target, y)


def test_target_passed_only_when_the_loss_asks_for_it(models, batch):
    student, teacher = models
    x, y = batch
    with_target, without = recording("logits", target=True), recording("logits")
    OfflineDistiller(student, teacher, with_target)(x, y)
    OfflineDistiller(student, teacher, without)(x, y)
    assert len(with_target.calls[0]) == 3 and torch.equal(with_target.calls[0][2], y)
    assert len(without.calls[0]) == 2


def test_distillation_arguments_are_what_the_distiller_passes(models, batch):
    student, teacher = models
    x, y = batch
    student.eval()
    loss = recording(("features", "logits"), target=True)
    OfflineDistiller(student, teacher, loss).eval()(x, y)
    s_out, t_out = student(x), teacher(x)
    arguments = distillation_arguments(loss, s_out, t_out, y)
    assert len(arguments) == len(loss.calls[0]) == 5
    for got, passed in zip(arguments, loss.calls[0], strict=True):
        torch.testing.assert_close(got, passed)
    assert arguments[0] is s_out.features and arguments[3] is t_out.logits and arguments[4] is y
    assert distillation_arguments(recording("embeddings"), s_out, t_out, y) == [
        s_out.embedding,
        t_out.embedding,
    ]
    with pytest.raises(TypeError, match=r"RecordingLoss_attention\.inputs names unknown kind"):
        distillation_arguments(recording("attention"), s_out, t_out, y)


def test_unknown_input_kind_is_an_error_naming_the_class(models):
    student, teacher = models
    with pytest.raises(TypeError, match=r"RecordingLoss_attention\.inputs names unknown kind"):
        OfflineDistiller(student, teacher, recording("attention"))


def test_a_loss_without_declared_inputs_is_refused_not_treated_as_logits(models):
    class Undeclared(nn.Module):
        def forward(self, student, teacher):
            return (student - teacher).pow(2).mean()

    student, teacher = models
    with pytest.raises(TypeError, match="Undeclared does not declare `inputs`"):
        OfflineDistiller(student, teacher, Undeclared())


def test_connector_parameters_train_with_the_student(models, batch):
    class ConnectorLoss(nn.Module):
        inputs: ClassVar[str] = "embeddings"
        needs_target: ClassVar[bool] = False

        def __init__(self) -> None:
            super().__init__()
            self.regressor = nn.Linear(32, 128)

        def forward(self, student, teacher):
            return F.mse_loss(self.regressor(student), teacher)

    student, teacher = models
    loss = ConnectorLoss()
    distiller = OfflineDistiller(student, teacher, loss)
    names = {name for name, p in distiller.named_parameters() if p.requires_grad}
    assert {"loss.regressor.weight", "loss.regressor.bias"} <= names
    check_procedure_contract(distiller, *batch, frozen=[teacher])
    assert loss.regressor.weight.grad.abs().sum() > 0


def test_epoch_is_forwarded_to_scheduled_losses_only(models):
    class Scheduled(RecordingLoss):
        def on_epoch_start(self, epoch: int, epochs: int) -> None:
            self.seen = (epoch, epochs)

    student, teacher = models
    scheduled = Scheduled()
    OfflineDistiller(student, teacher, scheduled).on_epoch_start(3, 7)
    assert scheduled.seen == (3, 7)
    OfflineDistiller(student, teacher, RecordingLoss()).on_epoch_start(3, 7)  # no hook: no error
    OfflineDistiller(student, teacher, None).on_epoch_start(3, 7)


def test_training_keeps_the_teacher_and_trains_the_student():
    data, teacher, student = digits_setup(seed=0)
    before = copy.deepcopy(teacher.state_dict())
    history = train(
        OfflineDistiller(student, teacher, KDLoss(), ce_weight=0.1, kd_weight=0.9),
        data,
        epochs=2,
        seed=0,
        device="cpu",
    )
    for name, value in teacher.state_dict().items():
        torch.testing.assert_close(value, before[name], msg=f"teacher changed: {name}")
    assert history.losses[-1]["loss"] < history.losses[0]["loss"]
    assert accuracy(student, data.x_test, data.y_test) > 0.5  # ten classes: chance is 0.1
