"""The contract every implementation of the taxonomy is held to, one case per implementation.

The cases are the ``implementations[].object`` entries of ``taxonomy/*.yaml`` (a newly
listed implementation is covered at once), built at their defaults for the shared
tiny models by ``reference_impls.common.building`` (a generic builder, or a
recipe; the speed benchmark builds them the same way), and run on a real digits batch:

* it builds, and declares what it is: a loss its ``inputs``, a procedure its
  ``forward(x, y)``; one with ``run`` (``RunsItsOwnTraining``) trains its stages;
* gradients reach the student and every trainable connector, never the teacher;
* building it and one step are deterministic under a seed;
* a fresh instance that loads its ``state_dict`` gives the same loss;
* on CUDA (marked ``gpu``): CPU and CUDA agree (TF32 off, the same random draws),
  and under bf16 autocast the loss is finite, float32, and within 5% of float32's.

A method made for other inputs (graphs, point clouds, sequences, generators) runs the
same checks on the arguments of its recipe's ``example`` instead of the digits batch;
only the CIFAR-sized build is for the digits methods alone.

Test ids are the taxonomy ``object`` strings, e.g.
``test_gradients_reach_student_only[reference_impls.sources.logit.kd:KDLoss]``.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdatlas import loader
from reference_impls.common.building import (
    RECIPES,
    BuildContext,
    Example,
    ImplementationCase,
    MissingRecipe,
    Recipe,
    build_at_defaults,
    tiny_pair,
)
from reference_impls.common.data import load_digits_split
from reference_impls.common.interfaces import RunsItsOwnTraining, loss_inputs
from reference_impls.common.models import student_cnn, teacher_cnn
from reference_impls.common.testing import (
    assert_same_gradients,
    check_autocast_bf16,
    check_cpu_cuda_agreement,
    check_procedure_autocast_bf16,
    check_procedure_cpu_cuda_agreement,
    random_draws_on_cpu,
)
from reference_impls.common.training import logits_of
from reference_impls.schemes.offline.distiller import OfflineDistiller, distillation_arguments

ROOT = Path(__file__).resolve().parents[2]


def taxonomy_objects() -> list[str]:
    """Every implementation's ``object`` in taxonomy order, each once."""
    kb, problems = loader.load_with_problems(ROOT)
    broken = [str(p) for p in problems if p.is_error and "taxonomy" in Path(p.path).parts]
    if kb is None or broken:  # an area that does not load would silently lose its cases
        raise RuntimeError("the taxonomy does not load:\n" + "\n".join(broken))
    return list(dict.fromkeys(i.object for _, _, i in kb.implementations()))


OBJECTS = taxonomy_objects()
DIGITS_OBJECTS = [o for o in OBJECTS if ImplementationCase(o).runs_on_digits]


@pytest.fixture(params=OBJECTS, ids=OBJECTS)
def case(request: pytest.FixtureRequest) -> ImplementationCase:
    return ImplementationCase(request.param)


@pytest.fixture(params=DIGITS_OBJECTS, ids=DIGITS_OBJECTS)
def digits_case(request: pytest.FixtureRequest) -> ImplementationCase:
    """An implementation that reads the outputs of a classifier CNN (no example of its own)."""
    return ImplementationCase(request.param)


# --------------------------------------------------------------------------- helpers


@lru_cache(maxsize=1)
def _digits_batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits_split(seed=0)
    return data.x_train[:size].clone(), data.y_train[:size].clone()


def digits_batch(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` training digits ``[size, 1, 8, 8]`` and their labels (a real batch)."""
    x, y = _digits_batch(size)
    return x.clone(), y.clone()


def _leaves(value: Any) -> Any:
    """A fresh leaf that can take a gradient (lists and tuples element-wise)."""
    if isinstance(value, list | tuple):
        return type(value)(_leaves(v) for v in value)
    return value.detach().clone().requires_grad_()


def _flat(value: Any) -> list[torch.Tensor]:
    return list(value) if isinstance(value, list | tuple) else [value]


def example_arguments(case: ImplementationCase) -> tuple[Example, list[Any]]:
    """The case's example and its arguments, the student's and teacher's outputs as leaves."""
    example = case.example(0)
    outputs = {*example.student, *example.teacher} if case.is_loss else set()
    arguments = [_leaves(a) if i in outputs else a for i, a in enumerate(example.arguments)]
    return example, arguments


def batch_of(case: ImplementationCase) -> tuple[Any, ...]:
    """What a procedure is called with: the digits batch, or its example's batch."""
    return digits_batch() if case.runs_on_digits else tuple(case.example(0).arguments)


def one_step(
    case: ImplementationCase, built: nn.Module, pair: BuildContext, ce_weight: float = 1.0
) -> dict[str, torch.Tensor]:
    """The terms of one training step: a loss inside ``OfflineDistiller`` (or on its example's
    arguments), a procedure alone."""
    with case.explain_failures():
        if case.is_loss and not case.runs_on_digits:
            return {"loss": built(*example_arguments(case)[1])}
        if case.is_loss:
            x, y = digits_batch()
            return OfflineDistiller(pair.student, pair.teacher, built, ce_weight=ce_weight)(x, y)
        return built.train()(*batch_of(case))


def loss_inputs_of(loss: nn.Module, pair: BuildContext) -> list[Any]:
    """What the distiller passes ``loss`` on the digits batch, as plain tensors."""
    x, y = digits_batch()
    with torch.no_grad():
        return distillation_arguments(loss, pair.student(x), pair.teacher.eval()(x), y)


def moved(pair: BuildContext) -> BuildContext:
    """``pair`` with every parameter moved at random (batch-norm scales too, which start at 1)."""
    with torch.no_grad():
        for parameter in [*pair.student.parameters(), *pair.teacher.parameters()]:
            parameter.add_(0.1 * torch.randn_like(parameter))
    return pair


def check_terms(terms: dict[str, torch.Tensor]) -> None:
    assert isinstance(terms, dict) and "loss" in terms, f"forward returned {terms!r}"
    assert terms["loss"].dim() == 0, f"loss has shape {tuple(terms['loss'].shape)}"
    for name, value in terms.items():
        assert torch.isfinite(value).all(), f"term {name!r} is not finite: {value}"


def check_trainable_gradients(case: ImplementationCase, module: nn.Module) -> None:
    """Frozen parameters get no gradient; trainable ones a finite one, and every layer a non-zero one.

    Non-zero is asked per layer, not per tensor: the bias of a layer followed by batch
    norm has a gradient that is zero in exact arithmetic. Parameters the recipe names
    in ``no_gradient`` must get none (so a stale entry fails too).
    """
    for name, parameter in module.named_parameters():
        reason = case.no_gradient(name)
        if not parameter.requires_grad:
            assert parameter.grad is None, f"gradient reached frozen parameter {name}"
        elif reason is not None:
            got = parameter.grad is not None and bool(parameter.grad.any())
            assert not got, f"{name} got a gradient, but the recipe says it gets none: {reason}"
        else:
            assert parameter.grad is not None, f"no gradient reached trainable parameter {name}"
            assert torch.isfinite(parameter.grad).all(), f"non-finite gradient on {name}"
    for layer_name, layer in module.named_modules():
        own = [
            p
            for name, p in layer.named_parameters(prefix=layer_name, recurse=False)
            if p.requires_grad and case.no_gradient(name) is None
        ]
        if own:
            assert any(p.grad.any() for p in own), f"layer {layer_name!r} got an all-zero gradient"


# --------------------------------------------------------------------------- the contract


def test_builds_at_defaults_and_declares_what_it_is(case):
    built = case.build(tiny_pair(0))
    assert isinstance(built, nn.Module), f"{case.object} built a {type(built).__name__}"
    if case.is_loss:
        assert loss_inputs(built)  # raises, naming the class, on a bad declaration
    else:
        assert callable(getattr(built, "forward", None))
    if hasattr(case.cls, "run"):  # it trains its stages itself: one epoch each, on 64 digits
        assert isinstance(built, RunsItsOwnTraining)
        runner = case.build(tiny_pair(0), prepared=False)
        data = load_digits_split(seed=0).with_train_subset(64)
        histories = runner.run(data, epochs=1, device="cpu")
        assert histories, "run() returned no History"
        for history in histories:
            assert history.losses and all(math.isfinite(v) for v in history.losses[-1].values())


def test_gradients_reach_student_only(case):
    pair = tiny_pair(0)
    built = case.build(pair)
    if case.is_loss and not case.runs_on_digits:
        check_example_gradients(case, built)
        return
    if not case.is_loss:
        terms = one_step(case, built, pair)
        check_terms(terms)
        terms["loss"].backward()
        check_trainable_gradients(case, built)
        teacher = getattr(built, "teacher", None)
        if isinstance(teacher, nn.Module):
            assert not any(p.requires_grad for p in teacher.parameters()), "teacher not frozen"
        return
    terms = one_step(case, built, pair, ce_weight=0.0)  # the distillation term alone
    check_terms(terms)
    terms["loss"].backward()
    assert all(p.grad is None for p in pair.teacher.parameters()), "gradient reached the teacher"
    check_trainable_gradients(case, built)
    for name, parameter in pair.student.named_parameters():
        assert torch.isfinite(parameter.grad).all(), f"non-finite gradient on student {name}"
    stem = next(pair.student.parameters())
    assert stem.grad.any(), "the distillation term does not reach the student's first layer"
    # the loss itself detaches the teacher: give it teacher outputs that could carry gradients
    x, y = digits_batch()
    pair = tiny_pair(0)
    built = case.build(pair)
    arguments = distillation_arguments(built, pair.student(x), pair.teacher.eval()(x), y)
    built(*arguments).backward()
    leaked = [n for n, p in pair.teacher.named_parameters() if p.grad is not None and p.grad.any()]
    assert not leaked, f"gradient reached teacher parameters {leaked}: detach the teacher's inputs"


def check_example_gradients(case: ImplementationCase, loss: nn.Module) -> None:
    """A loss on its example: the student's outputs get a gradient, the teacher's none."""
    example, arguments = example_arguments(case)
    with case.explain_failures():
        value = loss(*arguments)
    check_terms({"loss": value})
    value.backward()
    for position in example.student:
        grads = [t.grad for t in _flat(arguments[position])]
        assert any(g is not None and g.any() for g in grads), (
            f"no gradient reached the student's outputs (argument {position})"
        )
    for position in example.teacher:
        leaked = [t.grad for t in _flat(arguments[position]) if t.grad is not None and t.grad.any()]
        assert not leaked, (
            f"gradient reached the teacher's outputs (argument {position}): detach them"
        )
    check_trainable_gradients(case, loss)


def test_deterministic_under_a_seed(case):
    def build_and_step() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        pair = tiny_pair(0)
        built = case.build(pair)
        torch.manual_seed(1)
        terms = one_step(case, built, pair)
        return {k: v.detach() for k, v in terms.items()}, built.state_dict()

    (first_terms, first_state), (second_terms, second_state) = build_and_step(), build_and_step()
    torch.testing.assert_close(first_state, second_state, rtol=0, atol=0)
    torch.testing.assert_close(first_terms, second_terms, rtol=0, atol=0)


def test_state_dict_round_trip(case):
    pair = tiny_pair(0)
    original = case.build(pair)
    fresh = case.build(moved(tiny_pair(1)))  # other weights, and what is computed from them
    fresh.load_state_dict(original.state_dict())
    if case.is_loss:
        arguments = call_arguments(case, original, pair)
        values = []
        for loss in (original, fresh):
            torch.manual_seed(2)
            values.append(loss(*arguments).detach())
    else:
        batch = batch_of(case)
        values = []
        for procedure in (original, fresh):
            torch.manual_seed(2)
            values.append({k: v.detach() for k, v in procedure.train()(*batch).items()})
    torch.testing.assert_close(values[1], values[0], rtol=0, atol=0)


def call_arguments(case: ImplementationCase, loss: nn.Module, pair: BuildContext) -> list[Any]:
    """What a loss is called with: the digits pair's outputs, or its example's arguments."""
    if case.runs_on_digits:
        return loss_inputs_of(loss, pair)
    return list(case.example(0).arguments)


@pytest.mark.gpu
def test_cpu_cuda_agreement(case):
    pair = tiny_pair(0)
    built = case.build(pair)
    if case.is_loss:
        check_cpu_cuda_agreement(built, *call_arguments(case, built, pair))
    else:
        check_procedure_cpu_cuda_agreement(built, *batch_of(case))


@pytest.mark.gpu
def test_bf16_autocast(case):
    pair = tiny_pair(0)
    built = case.build(pair)
    if case.is_loss:
        arguments = call_arguments(case, built, pair)
        value = check_autocast_bf16(built, *arguments)
        torch.manual_seed(0)
        with random_draws_on_cpu():
            reference = built(*arguments).detach()
    else:
        terms, reference_terms = check_procedure_autocast_bf16(built, *batch_of(case))
        value, reference = terms["loss"], reference_terms["loss"]
    torch.testing.assert_close(value, reference, rtol=0.05, atol=1e-6)


def test_builds_and_steps_for_cifar_sized_models(digits_case):
    # the benchmark's size: a recipe that fixed digits' 10 classes or 1 channel would fail here
    case = digits_case
    torch.manual_seed(0)
    student = student_cnn(num_classes=100, in_channels=3)
    context = BuildContext.of_cnns(
        teacher_cnn(num_classes=100, in_channels=3),
        lambda: student_cnn(num_classes=100, in_channels=3),
        in_channels=3,
        student=student,
    )
    built = case.build(context)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 100, (4,))
    with case.explain_failures():
        if case.is_loss:
            built = OfflineDistiller(student, context.require_teacher(), built)
        terms = built.train()(x, y)
    check_terms(terms)
    assert logits_of(student(x)).shape == (4, 100)


# --------------------------------------------------------------------------- the case list


def test_every_recipe_is_for_a_taxonomy_implementation():
    stale = sorted(set(RECIPES) - set(OBJECTS))
    assert not stale, f"recipes for objects the taxonomy does not list: {stale}"
    assert all(recipe.why for recipe in RECIPES.values())


def test_an_implementation_the_builder_cannot_build_fails_saying_how_to_add_a_recipe():
    class NeedsSomethingUnusual(nn.Module):
        inputs: ClassVar[str] = "logits"

        def __init__(self, codebook: torch.Tensor, temperature: float = 1.0) -> None:
            super().__init__()

    with pytest.raises(MissingRecipe, match=r"\['codebook'\].*add a recipe for it to RECIPES"):
        build_at_defaults(NeedsSomethingUnusual, tiny_pair(0))
    with pytest.raises(MissingRecipe, match=r"failed.*add a recipe"):
        build_at_defaults(lambda student_channels: [][0], tiny_pair(0), "example:Broken")


def test_losses_build_for_sizes_alone_and_a_teacher_model_is_required_where_read():
    # the benchmark's per-call part: channel sizes, no models; ``teacher=None`` is no value
    sizes = BuildContext(
        student_channels=(256, 256, 256),
        teacher_channels=(256, 256, 256),
        student_dim=256,
        teacher_dim=256,
        num_classes=100,
        in_channels=3,
        make_student=lambda: student_cnn(num_classes=100, in_channels=3),
    )
    losses = [ImplementationCase(o) for o in DIGITS_OBJECTS if ImplementationCase(o).is_loss]
    assert losses
    for case in losses:
        with case.explain_failures():
            assert isinstance(case.build(sizes), nn.Module)
    with pytest.raises(MissingRecipe, match=r"SimKD.*\['teacher'\]"):
        ImplementationCase("reference_impls.sources.feature.simkd:SimKD").build(sizes)
    with pytest.raises(ValueError, match="no teacher model"):
        ImplementationCase("reference_impls.schemes.offline.takd:TAKD").build(sizes)


# --------------------------------------------------------------------------- the device checks


class RandomlyMaskedRegression(nn.Module):
    """A loss with a connector and a random mask drawn from the global generator."""

    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.connector = nn.Linear(32, 128)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        keep = (torch.rand(student.shape, device=student.device) > 0.3).float()
        return F.mse_loss(self.connector(student * keep), teacher.detach())


def test_the_device_checks_run_with_the_cpu_as_second_device():
    # what the gpu-marked tests call, here without a GPU: copies, seeds, random draws, bookkeeping
    pair = tiny_pair(0)
    loss = RandomlyMaskedRegression()
    arguments = loss_inputs_of(loss, pair)
    check_cpu_cuda_agreement(loss, *arguments, device="cpu")
    value = check_autocast_bf16(loss, *arguments, device="cpu")
    torch.testing.assert_close(value, check_autocast_bf16(loss, *arguments, device="cpu"))
    distiller = OfflineDistiller(pair.student, pair.teacher, loss)
    check_procedure_cpu_cuda_agreement(distiller, *digits_batch(), device="cpu")
    terms, reference = check_procedure_autocast_bf16(distiller, *digits_batch(), device="cpu")
    torch.testing.assert_close(terms["loss"], reference["loss"], rtol=0.05, atol=1e-6)
    with random_draws_on_cpu():
        torch.manual_seed(0)
        assert torch.rand(3, device="meta").device.type == "meta"
    with pytest.raises(AssertionError, match="on one device only"):
        assert_same_gradients({"w": None}, {"w": torch.ones(2)})
    with pytest.raises(AssertionError):
        assert_same_gradients({"w": torch.ones(2)}, {"w": torch.full((2,), 1.01)})


# --------------------------------------------------------------------------- inputs of its own


class MaskedSequenceRegression(nn.Module):
    """A sequence loss (``[B, T, D]`` and a padding mask): not a digits CNN's outputs."""

    inputs: ClassVar[str] = "embeddings"
    needs_target: ClassVar[bool] = False

    def __init__(self, detach_teacher: bool = True) -> None:
        super().__init__()
        self.connector = nn.Linear(4, 6)
        self.detach_teacher = detach_teacher

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor):
        teacher = teacher.detach() if self.detach_teacher else teacher
        error = (self.connector(student) - teacher).pow(2).mean(-1)
        return (error * mask).sum() / mask.sum()


def _sequence_example(seed: int) -> Example:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    return Example(
        (torch.randn(2, 5, 4, generator=generator), torch.randn(2, 5, 6, generator=generator), mask)
    )


def test_a_method_with_inputs_of_its_own_runs_the_contract_on_its_example(monkeypatch):
    module = type(sys)("fake_sequence_methods")
    module.MaskedSequenceRegression = MaskedSequenceRegression
    module.Leaky = type("Leaky", (MaskedSequenceRegression,), {})
    monkeypatch.setitem(sys.modules, "fake_sequence_methods", module)
    recipe = Recipe(why="a sequence loss", example=_sequence_example)
    monkeypatch.setitem(RECIPES, "fake_sequence_methods:MaskedSequenceRegression", recipe)
    case = ImplementationCase("fake_sequence_methods:MaskedSequenceRegression")
    assert not case.runs_on_digits and case.is_loss
    test_gradients_reach_student_only(case)
    test_deterministic_under_a_seed(case)
    test_state_dict_round_trip(case)
    check_cpu_cuda_agreement(case.build(tiny_pair(0)), *case.example(0).arguments, device="cpu")

    leaky = Recipe(
        why="forgets to detach",
        build=lambda _: module.Leaky(detach_teacher=False),
        example=_sequence_example,
    )
    monkeypatch.setitem(RECIPES, "fake_sequence_methods:Leaky", leaky)
    with pytest.raises(AssertionError, match="gradient reached the teacher's outputs"):
        test_gradients_reach_student_only(ImplementationCase("fake_sequence_methods:Leaky"))
