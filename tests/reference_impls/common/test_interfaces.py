"""The shared interfaces: declarations are checked, errors name the class."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import nn

from reference_impls.common import (
    INPUT_KINDS,
    DistillationLoss,
    DistillationProcedure,
    RunsItsOwnTraining,
    loss_inputs,
)


def test_a_declared_loss_reports_its_inputs_as_a_tuple():
    class Declared(DistillationLoss):
        inputs: ClassVar[str] = "features"

    assert loss_inputs(Declared()) == ("features",)
    assert Declared.needs_target is False


def test_a_tuple_declaration_keeps_its_order():
    class TwoKinds(DistillationLoss):
        inputs: ClassVar[tuple[str, ...]] = ("features", "logits")

    assert loss_inputs(TwoKinds()) == ("features", "logits")


def test_a_subclass_without_inputs_fails_at_definition_naming_the_class():
    with pytest.raises(TypeError, match="NoInputs must declare `inputs`"):

        class NoInputs(DistillationLoss):
            pass


def test_an_unknown_kind_fails_at_definition_naming_the_class():
    with pytest.raises(TypeError, match=r"Misspelt\.inputs names unknown kind\(s\) \['logit'\]"):

        class Misspelt(DistillationLoss):
            inputs: ClassVar[str] = "logit"


def test_needs_target_must_be_a_bool():
    with pytest.raises(TypeError, match="needs_target must be a bool"):

        class Vague(DistillationLoss):
            inputs: ClassVar[str] = "logits"
            needs_target: ClassVar[str] = "yes"


def test_an_abstract_intermediate_class_may_leave_inputs_to_its_subclasses():
    class Base(DistillationLoss, abstract=True):
        pass

    class Concrete(Base):
        inputs: ClassVar[str] = "embeddings"

    assert loss_inputs(Concrete()) == ("embeddings",)


def test_loss_inputs_checks_plain_modules_too():
    class Plain(nn.Module):
        inputs = "preact_features"

    class Bare(nn.Module):
        pass

    assert loss_inputs(Plain()) == ("preact_features",)
    with pytest.raises(TypeError, match="Bare does not declare `inputs`"):
        loss_inputs(Bare())
    with pytest.raises(TypeError, match="must be one of"):
        loss_inputs(type("EmptyTuple", (nn.Module,), {"inputs": ()})())


def test_the_input_kinds_are_what_model_outputs_carry():
    from reference_impls.common.models import ModelOutput

    fields = set(ModelOutput.__dataclass_fields__)
    assert {"logits", "features", "preact_features"} <= fields
    assert set(INPUT_KINDS) - fields == {"embeddings"}  # ModelOutput.embedding


def test_on_epoch_start_is_a_no_op_by_default():
    class Declared(DistillationLoss):
        inputs: ClassVar[str] = "logits"

    assert Declared().on_epoch_start(0, 10) is None


def test_a_procedure_without_forward_says_so():
    class Unfinished(DistillationProcedure):
        pass

    with pytest.raises(NotImplementedError, match="Unfinished must implement forward"):
        Unfinished()(torch.zeros(1), torch.zeros(1))


def test_runs_its_own_training_recognises_multi_stage_procedures():
    from reference_impls.schemes.offline.takd import TAKD
    from reference_impls.schemes.online.dml import DML
    from reference_impls.schemes.self.ban import BornAgain

    assert issubclass(TAKD, RunsItsOwnTraining)
    assert issubclass(BornAgain, RunsItsOwnTraining)
    assert not issubclass(DML, RunsItsOwnTraining)
