"""Every taxonomy implementation, built at its defaults for the models of a context.

One builder serves the contract tests (``tests/reference_impls/test_contracts.py``:
the tiny digits pair, 10 classes and 1 input channel, :func:`tiny_pair`) and the
speed benchmark (``benchmarks/bench_losses.py``: CIFAR-sized, 100 classes and 3
input channels). Both describe what an implementation is built for in a
:class:`BuildContext` (channel sizes, a teacher, how to make a student), and an
implementation, named by its taxonomy ``object`` (:class:`ImplementationCase`), is
built

* by the generic builder :func:`build_at_defaults`: each constructor parameter
  without a default is filled by its name from :data:`ARGUMENTS_BY_NAME`
  (``student_channels``, ``teacher``, ``students``, ``make_model``, ...), every
  other one keeps its default;
* or, where the builder cannot infer an argument, by a :class:`Recipe` in
  :data:`RECIPES`, keyed by the taxonomy ``object`` string; a recipe builds from
  the context, so it fits either size.

A recipe may also ``prepare`` a procedure (bring it to the state in which its
distillation term is active, such as BAN's first born-again generation) and name
the parameters that legitimately get no gradient (``no_gradient``), with the
reason. An implementation that neither the builder nor a recipe can build fails
with a message saying how to add a recipe.

Methods made for other inputs than a digits CNN's outputs (graphs, point clouds,
token sequences, generators, memory banks indexed by sample) run the same contract
on inputs of their own: their recipe's ``example`` returns, for a seed, the
arguments of one call (an :class:`Example`): a loss's student and teacher
outputs in its call order, or a procedure's batch. Their ``build`` makes the
models they need (a recipe with an ``example`` gets the digits context and may
ignore it); they are not built for the CIFAR-sized CNNs of the benchmark.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reference_impls.common.models import TinyCNN, student_cnn, teacher_cnn

RECIPES_FILE = "reference_impls/common/building.py"
Channels = tuple[int, ...]


@dataclass
class BuildContext:
    """The models and sizes an implementation is built for.

    Attributes:
        student_channels, teacher_channels: the width of each stage.
        student_dim, teacher_dim: the width of the pooled embedding.
        num_classes, in_channels: of the task (classes; channels of an input image).
        make_student: returns a fresh, untrained student (cohorts, born-again generations).
        teacher: the teacher model, or ``None`` where losses are built for sizes alone
            (the benchmark's per-call part).
        student: the student a method trains, or ``None``: a fresh one from ``make_student``.
    """

    student_channels: Channels
    teacher_channels: Channels
    student_dim: int
    teacher_dim: int
    num_classes: int
    in_channels: int
    make_student: Callable[[], nn.Module]
    teacher: nn.Module | None = None
    student: nn.Module | None = None

    @classmethod
    def of_cnns(
        cls,
        teacher: TinyCNN,
        make_student: Callable[[], TinyCNN],
        in_channels: int,
        student: TinyCNN | None = None,
    ) -> BuildContext:
        """The context of a ``TinyCNN`` teacher and students: sizes read from the models."""
        shaped = student if student is not None else make_student()
        return cls(
            student_channels=shaped.channels,
            teacher_channels=teacher.channels,
            student_dim=shaped.embedding_dim,
            teacher_dim=teacher.embedding_dim,
            num_classes=teacher.num_classes,
            in_channels=in_channels,
            make_student=make_student,
            teacher=teacher,
            student=student,
        )

    def trained_student(self) -> nn.Module:
        return self.student if self.student is not None else self.make_student()

    def require_teacher(self) -> nn.Module:
        if self.teacher is None:
            raise ValueError("this context has no teacher model (it gives sizes alone)")
        return self.teacher


def tiny_pair(seed: int) -> BuildContext:
    """A fresh (untrained) ``student_cnn`` and ``teacher_cnn`` for digits, drawn under ``seed``."""
    torch.manual_seed(seed)
    student = student_cnn()
    return BuildContext.of_cnns(teacher_cnn(), student_cnn, in_channels=1, student=student)


# constructor parameter name -> its value in a context (names used across the code base);
# a value of None (no teacher model) counts as missing
ARGUMENTS_BY_NAME: dict[str, Callable[[BuildContext], Any]] = {
    "student_channels": lambda context: context.student_channels,
    "teacher_channels": lambda context: context.teacher_channels,
    "student_dim": lambda context: context.student_dim,
    "teacher_dim": lambda context: context.teacher_dim,
    "num_classes": lambda context: context.num_classes,
    "student": BuildContext.trained_student,
    "teacher": lambda context: context.teacher,
    "model": BuildContext.trained_student,  # self-distillation: one network teaches itself
    "students": lambda context: [context.trained_student(), context.make_student()],  # two
    "peers": lambda context: [context.trained_student(), context.make_student()],
    "make_model": lambda context: context.make_student,
}


class MissingRecipe(TypeError):
    """The generic builder cannot build a class; the message says how to add a recipe."""


def how_to_add_a_recipe(object_path: str) -> str:
    return (
        f"add a recipe for it to RECIPES in {RECIPES_FILE}: "
        f'"{object_path}": Recipe(build=<function of a BuildContext returning the instance at '
        f"its defaults>, why=<why the builder cannot infer it>)"
    )


def build_at_defaults(cls: type, context: BuildContext, object_path: str = "") -> nn.Module:
    """``cls`` with its required parameters filled by name from ``context``, all others at default."""
    object_path = object_path or f"{cls.__module__}:{cls.__qualname__}"
    kwargs: dict[str, Any] = {}
    unknown = []
    for name, parameter in inspect.signature(cls).parameters.items():
        optional = parameter.default is not inspect.Parameter.empty
        if optional or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = ARGUMENTS_BY_NAME[name](context) if name in ARGUMENTS_BY_NAME else None
        if value is None:
            unknown.append(name)
        else:
            kwargs[name] = value
    if unknown:
        raise MissingRecipe(
            f"{object_path}: the generic builder has no value for the required parameter(s) "
            f"{unknown} (it knows {sorted(ARGUMENTS_BY_NAME)}, where the context has them); "
            f"{how_to_add_a_recipe(object_path)}"
        )
    try:
        return cls(**kwargs)
    except Exception as error:
        raise MissingRecipe(
            f"{object_path}: building it from the arguments inferred by name {sorted(kwargs)} "
            f"failed ({type(error).__name__}: {error}); {how_to_add_a_recipe(object_path)}"
        ) from error


@dataclass(frozen=True)
class Example:
    """The arguments of one call of an implementation that does not run on the digits pair.

    Attributes:
        arguments: the positional arguments of ``forward``: for a loss, what stands for
            the student's and the teacher's outputs, then the rest (targets, masks,
            sample indices) in its call order; for a procedure, its batch.
        student: positions (in ``arguments``) of the student's outputs (a tensor or a
            list of tensors): the contract makes them leaves and asks that a gradient
            reaches them. Losses only.
        teacher: positions of the teacher's outputs: the loss must detach them, so no
            gradient may reach them. Losses only.
    """

    arguments: tuple[Any, ...]
    student: tuple[int, ...] = (0,)
    teacher: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class Recipe:
    """How to build (and prepare) one implementation where the generic builder is not enough.

    Attributes:
        why: the reason the recipe exists (shown with the tests' failures).
        build: returns the instance for a ``BuildContext``, at the implementation's
            defaults except for what the context dictates; ``None``: the generic builder.
        prepare: brings a built procedure to the state in which its distillation term is
            active (applied after every prepared build, also to the fresh instance of
            the contract tests' ``state_dict`` round trip).
        no_gradient: parameter-name prefix (as in the instance's ``named_parameters``)
            -> why that trainable parameter gets no gradient from one step.
        example: for a method that does not read a digits CNN's outputs, the
            :class:`Example` of one call for a seed (drawn from a generator seeded with
            it, so that it is the same every time); ``None``: the digits batch and pair.
    """

    why: str
    build: Callable[[BuildContext], nn.Module] | None = None
    prepare: Callable[[Any], None] | None = None
    no_gradient: Mapping[str, str] = field(default_factory=dict)
    example: Callable[[int], Example] | None = None


def _extra_teachers(context: BuildContext, count: int) -> list[nn.Module]:
    """``count`` more teachers of the context's teacher architecture, each from its own seed."""
    teachers = []
    for seed in range(count):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1000 + seed)
            teachers.append(
                TinyCNN(context.teacher_channels, context.num_classes, context.in_channels)
            )
    return teachers


def _multi_teacher(cls_name: str) -> Callable[[BuildContext], nn.Module]:
    """Three teachers (the context's and two more), as in the CA-MKD authors' CIFAR-100 runs."""

    def build(context: BuildContext) -> nn.Module:
        from reference_impls.algorithms import multi_teacher

        teachers = [context.require_teacher(), *_extra_teachers(context, 2)]
        return getattr(multi_teacher, cls_name)(context.trained_student(), teachers)

    return build


# CRD and CRCD keep a memory bank of every training sample and read each sample's index:
# the authors' 16384 (CRD) or 500 (CRCD) negatives need a bank larger than that, so the
# contract builds them for a data set of 256 samples and 64 negatives (the same code path)
CONTRASTIVE_SAMPLES, CONTRASTIVE_NEGATIVES, CONTRASTIVE_DIMS = 256, 64, (32, 128)


def _contrastive(class_name: str) -> Callable[[BuildContext], nn.Module]:
    def build(context: BuildContext) -> nn.Module:
        module = importlib.import_module("reference_impls.algorithms.contrastive")
        student_dim, teacher_dim = CONTRASTIVE_DIMS
        labels = torch.arange(CONTRASTIVE_SAMPLES) % 10  # negatives from the other classes
        return getattr(module, class_name)(
            student_dim,
            teacher_dim,
            CONTRASTIVE_SAMPLES,
            labels=labels,
            num_negatives=CONTRASTIVE_NEGATIVES,
        )

    return build


def _uhc(context: BuildContext) -> nn.Module:
    from reference_impls.algorithms.multi_teacher.uhc import UHC

    half = context.num_classes // 2
    label_sets = [list(range(half)), list(range(half, context.num_classes))]
    teachers = []
    for seed, label_set in enumerate(label_sets):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1000 + seed)
            teachers.append(TinyCNN(context.teacher_channels, len(label_set), context.in_channels))
    return UHC(context.trained_student(), teachers, label_sets, context.num_classes)


def _paired_frames(seed: int) -> Example:
    """A batch of 8 paired 8x8 frames (the teacher's channel, then the student's) and labels."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(8, 2, 8, 8, generator=generator)
    return Example((frames, torch.randint(0, 10, (8,), generator=generator)))


def _latent_codes(latent_dim: int, batch: int = 4) -> Callable[[int], Example]:
    """A procedure's batch of ``batch`` latent codes ``[batch, latent_dim]`` for a seed."""

    def example(seed: int) -> Example:
        generator = torch.Generator().manual_seed(seed)
        return Example((torch.randn(batch, latent_dim, generator=generator),))

    return example


def _dafl(context: BuildContext) -> nn.Module:
    from reference_impls.algorithms.adversarial.dafl import DAFL
    from reference_impls.algorithms.adversarial.data_free import DigitsGenerator

    generator = DigitsGenerator(latent_dim=100, channels=context.in_channels)
    return DAFL(context.require_teacher(), context.trained_student(), generator)


def _dfad(context: BuildContext) -> nn.Module:
    from reference_impls.algorithms.adversarial.data_free import DigitsGenerator
    from reference_impls.algorithms.adversarial.dfad import DFAD

    generator = DigitsGenerator(latent_dim=256, channels=context.in_channels)
    return DFAD(context.require_teacher(), context.trained_student(), generator)


def _gan_distillation(context: BuildContext) -> nn.Module:
    from reference_impls.algorithms.adversarial.gan_distillation import (
        GANDistillation,
        MLPGenerator,
    )

    teacher = MLPGenerator(latent_dim=2, hidden=(128, 128))
    return GANDistillation(teacher, MLPGenerator(latent_dim=2, hidden=(32, 32)), latent_dim=2)


def _small_graph(seed: int) -> tuple[Any, torch.Generator]:
    """A 48-node, 4-class stochastic block model and a generator, both decided by ``seed``."""
    from reference_impls.common.graphs import stochastic_block_model

    graph = stochastic_block_model(
        num_nodes=48,
        p_in=0.3,
        p_out=0.05,
        num_features=8,
        train_per_class=2,
        val_per_class=2,
        seed=seed,
    )
    return graph, torch.Generator().manual_seed(seed)


def _glnn_example(seed: int) -> Example:
    """An MLP student's and a GNN teacher's node logits, the node labels, the labelled nodes."""
    graph, generator = _small_graph(seed)
    student = torch.randn(graph.num_nodes, graph.num_classes, generator=generator)
    teacher = 3 * torch.randn(graph.num_nodes, graph.num_classes, generator=generator)
    return Example((student, teacher, graph.y, graph.train_mask))


def _lsp_example(seed: int) -> Example:
    """Student and teacher node embeddings of different widths, and the graph's edge_index."""
    graph, generator = _small_graph(seed)
    student = 5 * torch.randn(graph.num_nodes, 8, generator=generator)
    teacher = 10 * torch.randn(graph.num_nodes, 16, generator=generator)
    return Example((student, teacher, graph.edge_index))


def _contrastive_example(seed: int) -> Example:
    """Student and teacher embeddings of 16 distinct samples, and their indices in the set."""
    generator = torch.Generator().manual_seed(seed)
    student_dim, teacher_dim = CONTRASTIVE_DIMS
    student = torch.randn(16, student_dim, generator=generator)
    teacher = torch.randn(16, teacher_dim, generator=generator)
    index = torch.randperm(CONTRASTIVE_SAMPLES, generator=generator)[:16]
    return Example((student, teacher, index))


# foundation models (applications/foundation-models): CLIP pairs and SAM-style image embeddings
CLIP_DIMS = (16, 32)  # student, teacher embedding widths of the CLIP examples


def _clip_example(seed: int) -> Example:
    """Unit image/text embeddings of 12 pairs from a student and a wider teacher, and their logit scales."""
    generator = torch.Generator().manual_seed(seed)
    student_dim, teacher_dim = CLIP_DIMS

    def unit(width: int) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.randn(12, width, generator=generator), dim=1)

    student_image, student_text = unit(student_dim), unit(student_dim)
    teacher_image, teacher_text = unit(teacher_dim), unit(teacher_dim)
    student_scale, teacher_scale = torch.tensor(1 / 0.07), torch.tensor(100.0)
    arguments = (
        student_image,
        teacher_image,
        student_text,
        teacher_text,
        student_scale,
        teacher_scale,
    )
    return Example(arguments, student=(0, 2, 4), teacher=(1, 3, 5))


def _clip_kd(context: BuildContext) -> nn.Module:
    from reference_impls.applications.foundation_models.clip_kd import CLIPKDLoss

    return CLIPKDLoss(*CLIP_DIMS)


def _image_embeddings_example(seed: int) -> Example:
    """A student encoder's and a teacher encoder's image embeddings of the same shape [4, 16, 8, 8]."""
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(4, 16, 8, 8, generator=generator)
    teacher = 2 * torch.randn(4, 16, 8, 8, generator=generator)
    return Example((student, teacher))


def _offline_distiller(context: BuildContext) -> nn.Module:
    from reference_impls.schemes.offline.distiller import OfflineDistiller
    from reference_impls.sources.logit.kd import KDLoss

    return OfflineDistiller(context.trained_student(), context.require_teacher(), KDLoss())


def _takd(context: BuildContext) -> nn.Module:
    from reference_impls.schemes.offline.takd import TAKD

    assistant = TinyCNN((16, 32, 64), context.num_classes, context.in_channels)
    return TAKD(context.require_teacher(), [assistant], context.trained_student())


def _one(context: BuildContext) -> nn.Module:
    from reference_impls.schemes.online.one import ONE, ONENetwork

    return ONE(ONENetwork(num_classes=context.num_classes, in_channels=context.in_channels))


def _ofd(context: BuildContext) -> nn.Module:
    from reference_impls.sources.feature.ofd import OFDLoss, bn_before_relu, margins_from_batchnorm

    if context.teacher is not None:
        margins = margins_from_batchnorm(bn_before_relu(context.teacher))
    else:  # sizes alone (timing): the margins' values do not change the arithmetic
        margins = [torch.full((width,), -0.5) for width in context.teacher_channels]
    return OFDLoss(context.student_channels, context.teacher_channels, margins)


def _fsp(context: BuildContext) -> nn.Module:
    from reference_impls.sources.similarity.fsp import FSPLoss

    return FSPLoss(
        student_channels=context.student_channels, teacher_channels=context.teacher_channels
    )


def _second_epoch(procedure: Any) -> None:
    procedure.on_epoch_start(0, 2)
    procedure.on_epoch_start(1, 2)  # the model of epoch 0 is now the frozen past self


RECIPES: dict[str, Recipe] = {
    "reference_impls.algorithms.multi_teacher.averaged_ensemble:AveragedEnsembleKD": Recipe(
        why="several teachers: the context's and two more of its architecture, other seeds",
        build=_multi_teacher("AveragedEnsembleKD"),
    ),
    "reference_impls.algorithms.multi_teacher.ca_mkd:CAMKD": Recipe(
        why="several teachers (CA-MKD's weights need two): the context's and two more",
        build=_multi_teacher("CAMKD"),
    ),
    "reference_impls.algorithms.multi_teacher.uhc:UHC": Recipe(
        why="two teachers, each trained on half of the classes (label sets 0..C/2-1, C/2..C-1)",
        build=_uhc,
    ),
    "reference_impls.algorithms.cross_modal.c2kd:C2KD": Recipe(
        why="its batch pairs two modalities: frames stacking the teacher's and the student's views",
        example=_paired_frames,
    ),
    "reference_impls.algorithms.cross_modal.supervision_transfer:SupervisionTransfer": Recipe(
        why="its batch pairs two modalities (no labels read); it trains the student's features only",
        example=_paired_frames,
        no_gradient={"student.fc.": "the transfer regresses the last stage's map, not the logits"},
    ),
    "reference_impls.algorithms.adversarial.dafl:DAFL": Recipe(
        why="data-free: it needs a generator (the authors' for 8x8 digits) and reads latent codes",
        build=_dafl,
        example=_latent_codes(100),
    ),
    "reference_impls.algorithms.adversarial.dfad:DFAD": Recipe(
        why="data-free: it needs a generator (the authors' for 8x8 digits) and reads latent codes",
        build=_dfad,
        example=_latent_codes(256),
    ),
    "reference_impls.algorithms.adversarial.gan_distillation:GANDistillation": Recipe(
        why="it distils a generator: two 2-D MLP generators reading latent codes",
        build=_gan_distillation,
        example=_latent_codes(2),
    ),
    "reference_impls.algorithms.graph.glnn:GLNNLoss": Recipe(
        why="GLNN reads node logits on a graph: an MLP student's, a GNN teacher's, the labelled nodes",
        example=_glnn_example,
    ),
    "reference_impls.algorithms.graph.lsp:LSPLoss": Recipe(
        why="LSP reads node embeddings of two GNNs and the graph's edge_index",
        example=_lsp_example,
    ),
    "reference_impls.algorithms.adaptive.eskd:ESKD": Recipe(
        why="run() trains the teacher first; the distillation stage has the frozen teacher",
        prepare=lambda procedure: procedure.start_distillation(),
    ),
    "reference_impls.algorithms.contrastive.crcd:CRCDLoss": Recipe(
        why="the memory bank is sized by the data set (num_samples, labels) and read by index",
        build=_contrastive("CRCDLoss"),
        example=_contrastive_example,
    ),
    "reference_impls.algorithms.contrastive.crd:CRDLoss": Recipe(
        why="the memory bank is sized by the data set (num_samples, labels) and read by index",
        build=_contrastive("CRDLoss"),
        example=_contrastive_example,
    ),
    "reference_impls.applications.foundation_models.clip_kd:CLIPKDLoss": Recipe(
        why="it reads a CLIP student's and teacher's image and text embeddings and logit scales",
        build=_clip_kd,
        example=_clip_example,
    ),
    "reference_impls.applications.foundation_models.mobilesam:DecoupledEncoderLoss": Recipe(
        why="it reads image embeddings of one shape (the student encoder feeds the teacher's decoder)",
        example=_image_embeddings_example,
    ),
    "reference_impls.applications.foundation_models.tinyclip:AffinityMimickingLoss": Recipe(
        why="it reads a CLIP student's and teacher's image and text embeddings and logit scales",
        example=_clip_example,
    ),
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
class ImplementationCase:
    """One taxonomy implementation and how to build it."""

    object: str

    @property
    def cls(self) -> type:
        return resolve(self.object)

    @property
    def recipe(self) -> Recipe | None:
        return RECIPES.get(self.object)

    @property
    def runs_on_digits(self) -> bool:
        """Whether it reads the digits pair's outputs (no recipe ``example`` of its own)."""
        return self.recipe is None or self.recipe.example is None

    def example(self, seed: int = 0) -> Example:
        """The recipe's :class:`Example` for ``seed`` (methods with inputs of their own)."""
        if self.recipe is None or self.recipe.example is None:
            raise ValueError(f"{self.object} runs on the digits pair: it has no example of its own")
        return self.recipe.example(seed)

    @property
    def is_loss(self) -> bool:
        """Losses declare what they read (``inputs``); everything else is a procedure."""
        return hasattr(self.cls, "inputs")

    def build(self, context: BuildContext, prepared: bool = True) -> nn.Module:
        """The instance for ``context``; ``prepared``: also brought to its distilling state."""
        recipe = self.recipe
        if recipe is not None and recipe.build is not None:
            built = recipe.build(context)
        else:
            built = build_at_defaults(self.cls, context, self.object)
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
