r"""The two interfaces every reference implementation follows, written once.

A **distillation loss** compares what a student and a frozen teacher produce
(logits, feature maps, embeddings) and returns a scalar. It declares what it
reads, so one generic distiller (``OfflineDistiller``) and one training loop
(``reference_impls.common.train``) serve every loss:

* ``inputs``: ``"logits"``, ``"features"``, ``"preact_features"`` or
  ``"embeddings"``, or a tuple of them for a loss that reads several kinds
  (IRG reads ``("features", "logits")`` and is called
  ``loss(student_features, teacher_features, student_logits, teacher_logits)``);
* ``needs_target``: whether the labels are passed after the outputs;
* ``needs_index``: whether each sample's index in the training split is passed
  last (CRD's memory bank keeps one entry per sample); the training loop then
  gives it to the distiller (``OfflineDistiller``), which passes it on;
* ``on_epoch_start(epoch, epochs)``: optional schedule (DKD's warm-up).

A **distillation procedure** owns its models (online cohorts, self-distillation,
multi-step pipelines): ``forward(x, y)`` returns a dict of named terms with the
total under ``"loss"``, and ``reference_impls.common.train`` trains it. A
procedure that trains several models one after another (TAKD, BAN) also has
``run(data, ...)``, which calls ``train`` once per stage (:class:`RunsItsOwnTraining`).

Subclassing :class:`DistillationLoss` checks the declaration when the class is
defined; :func:`loss_inputs` checks any object (a user's own loss too) before it
is used, so a missing or misspelt declaration is an error that names the class
instead of a silent fallback.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

INPUT_KINDS: tuple[str, ...] = ("logits", "features", "preact_features", "embeddings")


def _check_declaration(owner: type, inputs: Any) -> tuple[str, ...]:
    kinds = (inputs,) if isinstance(inputs, str) else inputs
    if not isinstance(kinds, tuple) or not kinds:
        raise TypeError(
            f"{owner.__qualname__}.inputs must be one of {INPUT_KINDS} or a non-empty tuple "
            f"of them, got {inputs!r}"
        )
    unknown = [kind for kind in kinds if kind not in INPUT_KINDS]
    if unknown:
        raise TypeError(
            f"{owner.__qualname__}.inputs names unknown kind(s) {unknown}; "
            f"expected one of {INPUT_KINDS}"
        )
    return kinds


def loss_inputs(loss: object) -> tuple[str, ...]:
    """The input kinds ``loss`` declares, as a tuple; ``TypeError`` naming its class otherwise."""
    owner = type(loss)
    if not hasattr(loss, "inputs"):
        raise TypeError(
            f"{owner.__qualname__} does not declare `inputs` (what it reads: one of "
            f"{INPUT_KINDS}); subclass reference_impls.common.DistillationLoss and set it"
        )
    for flag in ("needs_target", "needs_index"):
        if not isinstance(getattr(loss, flag, False), bool):
            raise TypeError(f"{owner.__qualname__}.{flag} must be a bool")
    return _check_declaration(owner, loss.inputs)


class DistillationLoss(nn.Module):
    """Base class of the distillation losses: declares ``inputs``, ``needs_target``, ``needs_index``.

    Subclasses set the class attributes and implement ``forward``; trainable
    connectors (regressors, attention fusions) are built in ``__init__`` from the
    channel sizes they are given, and the teacher's inputs are detached inside
    ``forward``. An intermediate class that leaves ``inputs`` to its subclasses
    is declared with ``class Base(DistillationLoss, abstract=True)``.
    """

    inputs: ClassVar[str | tuple[str, ...]]
    needs_target: ClassVar[bool] = False
    needs_index: ClassVar[bool] = False

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        if not hasattr(cls, "inputs"):
            raise TypeError(f"{cls.__qualname__} must declare `inputs`, one of {INPUT_KINDS}")
        _check_declaration(cls, cls.inputs)
        for flag in ("needs_target", "needs_index"):
            if not isinstance(getattr(cls, flag), bool):
                raise TypeError(f"{cls.__qualname__}.{flag} must be a bool")

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Called by the training loop before each epoch; losses with a schedule override it."""


class DistillationProcedure(nn.Module):
    """Base class of procedures that own their models and return their loss terms.

    ``forward(x, y)`` returns ``{"loss": total, <name>: detached term, ...}``;
    ``reference_impls.common.train`` optimises the total and logs the terms. The
    classifier whose accuracy is reported is the ``student`` attribute. Optional
    hooks: ``on_epoch_start(epoch, epochs)`` and ``configure_optimizers(lr)``. A
    procedure with ``needs_index`` true is called ``forward(x, y, index)``, ``index``
    being each sample's row in the training split.
    """

    needs_index: ClassVar[bool] = False

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__qualname__} must implement forward(x, y)")

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Called by the training loop before each epoch; procedures with a schedule override it."""


@runtime_checkable
class RunsItsOwnTraining(Protocol):
    """A procedure that trains several stages itself (TAKD's chain, BAN's generations).

    ``run(data, ...)`` calls ``reference_impls.common.train`` once per stage and
    returns one ``History`` per stage.
    """

    def run(self, data: Any, *args: Any, **kwargs: Any) -> list[Any]: ...


__all__ = [
    "INPUT_KINDS",
    "DistillationLoss",
    "DistillationProcedure",
    "RunsItsOwnTraining",
    "loss_inputs",
]
