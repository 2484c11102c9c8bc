"""Every taxonomy implementation, built at its defaults for the shared tiny models.

The contract tests (``tests/reference_impls/test_contracts.py``) take their cases
from the taxonomy, one per ``implementations[].object`` of ``taxonomy/*.yaml``, and
build each for a fresh ``student_cnn`` / ``teacher_cnn`` pair:

* by the generic builder :func:`build_at_defaults`: each constructor parameter
  without a default is filled by its name from :data:`ARGUMENTS_BY_NAME`
  (``student_channels``, ``teacher``, ``students``, ``make_model``, ...), every
  other one keeps its default;
* or, where the builder cannot infer an argument, by a :class:`Recipe` in
  :data:`RECIPES`, keyed by the taxonomy ``object`` string.

A recipe may also ``prepare`` a procedure (bring it to the state in which its
distillation term is active, such as BAN's first born-again generation) and name
the parameters that legitimately get no gradient (``no_gradient``), with the
reason. An implementation that neither the builder nor a recipe can build fails
its contract tests with a message saying how to add a recipe.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from reference_impls.common.data import load_digits_split
from reference_impls.common.interfaces import loss_inputs
from reference_impls.common.models import ModelOutput, TinyCNN, student_cnn, teacher_cnn

RECIPES_FILE = "reference_impls/common/contract_cases.py"


@dataclass
class TinyPair:
    """The models every case is built for: a fresh student and teacher (untrained)."""

    student: TinyCNN
    teacher: TinyCNN


def tiny_pair(seed: int) -> TinyPair:
    torch.manual_seed(seed)
    return TinyPair(student_cnn(), teacher_cnn())


# constructor parameter name -> its value for the tiny pair (names used across the code base)
ARGUMENTS_BY_NAME: dict[str, Callable[[TinyPair], Any]] = {
    "student_channels": lambda pair: pair.student.channels,
    "teacher_channels": lambda pair: pair.teacher.channels,
    "student_dim": lambda pair: pair.student.embedding_dim,
    "teacher_dim": lambda pair: pair.teacher.embedding_dim,
    "num_classes": lambda pair: pair.student.num_classes,
    "student": lambda pair: pair.student,
    "teacher": lambda pair: pair.teacher,
    "model": lambda pair: pair.student,  # self-distillation: one network teaches itself
    "students": lambda pair: [pair.student, student_cnn()],  # a cohort of two
    "peers": lambda pair: [pair.student, student_cnn()],
    "make_model": lambda pair: student_cnn,
}


class MissingRecipe(TypeError):
    """The generic builder cannot build a class; the message says how to add a recipe."""


def how_to_add_a_recipe(object_path: str) -> str:
    return (
        f"add a recipe for it to RECIPES in {RECIPES_FILE}: "
        f'"{object_path}": Recipe(build=<function of a TinyPair returning the instance at '
        f"its defaults>, why=<why the builder cannot infer it>)"
    )


def build_at_defaults(cls: type, pair: TinyPair, object_path: str = "") -> nn.Module:
    """``cls`` with its required parameters filled by name from ``pair``, all others at default."""
    object_path = object_path or f"{cls.__module__}:{cls.__qualname__}"
    kwargs: dict[str, Any] = {}
    unknown = []
    for name, parameter in inspect.signature(cls).parameters.items():
        optional = parameter.default is not inspect.Parameter.empty
        if optional or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in ARGUMENTS_BY_NAME:
            kwargs[name] = ARGUMENTS_BY_NAME[name](pair)
        else:
            unknown.append(name)
    if unknown:
        raise MissingRecipe(
            f"{object_path}: the generic builder has no value for the required parameter(s) "
            f"{unknown} (it knows {sorted(ARGUMENTS_BY_NAME)}); {how_to_add_a_recipe(object_path)}"
        )
    try:
        return cls(**kwargs)
    except Exception as error:
        raise MissingRecipe(
            f"{object_path}: building it from the arguments inferred by name {sorted(kwargs)} "
            f"failed ({type(error).__name__}: {error}); {how_to_add_a_recipe(object_path)}"
        ) from error


@dataclass(frozen=True)
class Recipe:
    """How to build (and prepare) one implementation where the generic builder is not enough.

    Attributes:
        why: the reason the recipe exists (shown with the tests' failures).
        build: returns the instance for a ``TinyPair``, at the implementation's defaults
            except for what the tiny pair dictates; ``None``: the generic builder.
        prepare: brings a built procedure to the state in which its distillation term is
            active (applied after every build, also to the fresh instance of the
            ``state_dict`` round trip).
        no_gradient: parameter-name prefix (as in the instance's ``named_parameters``)
            -> why that trainable parameter gets no gradient from one step.
    """

    why: str
    build: Callable[[TinyPair], nn.Module] | None = None
    prepare: Callable[[Any], None] | None = None
    no_gradient: Mapping[str, str] = field(default_factory=dict)


def _offline_distiller(pair: TinyPair) -> nn.Module:
    from reference_impls.schemes.offline.distiller import OfflineDistiller
    from reference_impls.sources.logit.kd import KDLoss

    return OfflineDistiller(pair.student, pair.teacher, KDLoss())


def _takd(pair: TinyPair) -> nn.Module:
    from reference_impls.schemes.offline.takd import TAKD

    return TAKD(pair.teacher, [TinyCNN((16, 32, 64))], pair.student)


def _one(pair: TinyPair) -> nn.Module:
    from reference_impls.schemes.online.one import ONE, ONENetwork

    return ONE(ONENetwork())


def _ofd(pair: TinyPair) -> nn.Module:
    from reference_impls.sources.feature.ofd import OFDLoss, bn_before_relu, margins_from_batchnorm

    margins = margins_from_batchnorm(bn_before_relu(pair.teacher))
    return OFDLoss(pair.student.channels, pair.teacher.channels, margins)


def _fsp(pair: TinyPair) -> nn.Module:
    from reference_impls.sources.similarity.fsp import FSPLoss

    return FSPLoss(student_channels=pair.student.channels, teacher_channels=pair.teacher.channels)


def _second_epoch(procedure: Any) -> None:
    procedure.on_epoch_start(0, 2)
    procedure.on_epoch_start(1, 2)  # the model of epoch 0 is now the frozen past self


RECIPES: dict[str, Recipe] = {
    "reference_impls.schemes.offline.distiller:OfflineDistiller": Recipe(
        why="the loss is a required argument; KD, the scheme's paper, is plugged in",
        build=_offline_distiller,
    ),
    "reference_impls.schemes.offline.takd:TAKD": Recipe(
        why="the chain needs its assistants: one of intermediate width (16, 32, 64)",
        build=_takd,
        no_gradient={"chain.2.": "step 0 trains the assistant; the student's turn is step 1"},
    ),
    "reference_impls.schemes.online.one:ONE": Recipe(
        why="ONE trains its own multi-branch network (ONENetwork), not a plain student",
        build=_one,
    ),
    "reference_impls.schemes.self.ban:BornAgain": Recipe(
        why="generation 0 trains on labels alone; generation 1 has a teacher",
        prepare=lambda procedure: procedure.next_generation(),
    ),
    "reference_impls.schemes.self.pskd:PSKD": Recipe(
        why="the first epoch trains on labels alone; from the second the past self teaches",
        prepare=_second_epoch,
    ),
    "reference_impls.sources.feature.ofd:OFDLoss": Recipe(
        why="the margins are computed from the teacher (the authors: from its batch norm)",
        build=_ofd,
    ),
    "reference_impls.sources.feature.simkd:SimKD": Recipe(
        why="the student's own classifier is replaced by the teacher's",
        no_gradient={"student.backbone.fc.": "SimKD classifies with the reused teacher head"},
    ),
    "reference_impls.sources.similarity.fsp:FSPLoss": Recipe(
        why="connectors are optional (none by default, for equal widths); the student is thinner",
        build=_fsp,
    ),
}


def resolve(object_path: str) -> type:
    """Import ``package.module:Name`` and return the class."""
    module_name, _, name = object_path.partition(":")
    return getattr(importlib.import_module(module_name), name)


@dataclass(frozen=True)
class ContractCase:
    """One taxonomy implementation and how to build it."""

    object: str

    @property
    def cls(self) -> type:
        return resolve(self.object)

    @property
    def recipe(self) -> Recipe | None:
        return RECIPES.get(self.object)

    @property
    def is_loss(self) -> bool:
        """Losses declare what they read (``inputs``); everything else is a procedure."""
        return hasattr(self.cls, "inputs")

    def build(self, pair: TinyPair, prepared: bool = True) -> nn.Module:
        """The instance for ``pair``; ``prepared``: also brought to its distilling state."""
        recipe = self.recipe
        if recipe is not None and recipe.build is not None:
            built = recipe.build(pair)
        else:
            built = build_at_defaults(self.cls, pair, self.object)
        if prepared and recipe is not None and recipe.prepare is not None:
            recipe.prepare(built)
        return built

    @contextlib.contextmanager
    def explain_failures(self) -> Iterator[None]:
        """Within the block, an error says how the instance was built (and how to add a recipe)."""
        try:
            yield
        except Exception as error:
            if self.recipe is not None:
                error.add_note(f"{self.object} has a recipe in {RECIPES_FILE}: {self.recipe.why}")
            if self.recipe is None or self.recipe.build is None:
                error.add_note(
                    f"{self.object} was built by the generic builder (required parameters filled "
                    f"by name); if it needs other arguments, {how_to_add_a_recipe(self.object)}"
                )
            raise

    def no_gradient(self, parameter_name: str) -> str | None:
        """Why ``parameter_name`` legitimately gets no gradient, or ``None``."""
        reasons = self.recipe.no_gradient if self.recipe is not None else {}
        for prefix, reason in reasons.items():
            if parameter_name.startswith(prefix):
                return reason
        return None


@lru_cache(maxsize=1)
def _digits_batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits_split(seed=0)
    return data.x_train[:size].clone(), data.y_train[:size].clone()


def digits_batch(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` training digits ``[size, 1, 8, 8]`` and their labels (a real batch)."""
    x, y = _digits_batch(size)
    return x.clone(), y.clone()


def loss_arguments(
    loss: nn.Module, student: ModelOutput, teacher: ModelOutput, target: torch.Tensor
) -> list[Any]:
    """What ``OfflineDistiller`` passes ``loss``: student and teacher of each kind, then the labels."""
    from reference_impls.schemes.offline.distiller import select_inputs

    arguments: list[Any] = []
    for kind in loss_inputs(loss):
        arguments += [select_inputs(student, kind), select_inputs(teacher, kind)]
    if getattr(loss, "needs_target", False):
        arguments.append(target)
    return arguments
