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


def _dense_maps(seed: int, channels: int = 11, size: int = 12) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, channels, size, size, generator=generator) for _ in range(2))


def _dense_logits_example(seed: int) -> Example:
    """Segmentation logits ``[2, 11, 12, 12]`` of a student and a teacher."""
    return Example(_dense_maps(seed))


def _skd_example(seed: int) -> Example:
    """Dense logits and one feature map each (the teacher's wider)."""
    student_logits, teacher_logits = _dense_maps(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    student_map = torch.rand(2, 8, 6, 6, generator=generator)
    teacher_map = torch.rand(2, 32, 6, 6, generator=generator)
    return Example(
        (student_logits, teacher_logits, [student_map], [teacher_map]),
        student=(0, 2),
        teacher=(1, 3),
    )


def _fgd(context: BuildContext) -> nn.Module:
    """FGD for the example's maps: 8 student channels aligned to the teacher's 16."""
    from reference_impls.applications.visual_recognition.fgd import FGDLoss

    return FGDLoss(8, 16)


def _fgd_example(seed: int) -> Example:
    """Feature maps ``[2, 8, 6, 6]`` (student) and ``[2, 16, 6, 6]`` (teacher) of 24 x 24
    images, with one and two boxes (x1, y1, x2, y2, pixels) and the image size."""
    generator = torch.Generator().manual_seed(seed)
    student_map = torch.randn(2, 8, 6, 6, generator=generator)
    teacher_map = torch.randn(2, 16, 6, 6, generator=generator)
    boxes = [
        torch.tensor([[2.0, 3.0, 10.0, 12.0]]),
        torch.tensor([[0.0, 0.0, 8.0, 8.0], [12.5, 9.0, 24.0, 20.0]]),
    ]
    return Example((student_map, teacher_map, boxes, (24, 24)))


def _heatmaps_example(seed: int) -> Example:
    """Keypoint heatmaps ``[2, 10, 12, 12]``: the student's, the teacher's, the ground truth."""
    generator = torch.Generator().manual_seed(seed)
    maps = tuple(torch.rand(2, 10, 12, 12, generator=generator) for _ in range(3))
    return Example(maps)


def _ctc_frame_kd_example(seed: int) -> Example:
    """Per-frame CTC logits (blank + 10 digits) of 3 utterances of 9, 5 and 7 frames, and the mask."""
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(3, 9, 11, generator=generator)
    teacher = 3 * torch.randn(3, 9, 11, generator=generator)
    mask = torch.arange(9)[None, :] < torch.tensor([9, 5, 7])[:, None]
    return Example((student, teacher, mask))


DISTILHUBERT_DIMS = (16, 24)  # a student's and a teacher's hidden widths


def _distilhubert(context: BuildContext) -> nn.Module:
    from reference_impls.modalities.speech.distilhubert import DistilHuBERTLoss

    return DistilHuBERTLoss(*DISTILHUBERT_DIMS)


def _distilhubert_example(seed: int) -> Example:
    """A student's last hidden states, 3 teacher layers, 3 utterances of 9, 5 and 7 frames."""
    generator = torch.Generator().manual_seed(seed)
    student_dim, teacher_dim = DISTILHUBERT_DIMS
    student = torch.randn(3, 9, student_dim, generator=generator)
    teachers = [torch.randn(3, 9, teacher_dim, generator=generator) for _ in range(3)]
    mask = torch.arange(9)[None, :] < torch.tensor([9, 5, 7])[:, None]
    return Example((student, teachers, mask))


def _ssl_byol(context: BuildContext) -> nn.Module:
    from reference_impls.applications.self_supervised.byol import BYOL
    from reference_impls.common.augmentations import byol_network

    student = byol_network(context.trained_student())
    return BYOL(student, context.require_teacher(), teacher_dim=context.teacher_dim)


def _ssl_dino(context: BuildContext) -> nn.Module:
    from reference_impls.applications.self_supervised.dino import DINO
    from reference_impls.common.augmentations import DINOHead, SSLNetwork, dino_network

    student = dino_network(context.trained_student())
    teacher = SSLNetwork(context.require_teacher(), DINOHead(context.teacher_dim))
    return DINO(student, teacher)


def _tiny_seq2seq_pair() -> tuple[nn.Module, nn.Module]:
    """A student and a teacher transformer over 9 source and 11 target tokens (text leaf)."""
    from reference_impls.common.text import Seq2SeqTransformer

    teacher = Seq2SeqTransformer(9, 11, d_model=16, heads=2, feedforward=32, max_length=12)
    student = Seq2SeqTransformer(9, 11, 8, 2, 1, 1, 16, max_length=12)
    return student, teacher


def _sequence_kd(context: BuildContext) -> nn.Module:
    from reference_impls.modalities.text.seq_kd import SequenceKD

    student, teacher = _tiny_seq2seq_pair()
    return SequenceKD(student, teacher, max_length=6)


def _translation_batch(seed: int) -> Example:
    """Four padded sources ``[4, 5]`` and references ``<s> ... </s>`` ``[4, 7]``."""
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(1, 9, (4, 5), generator=generator)
    src[1, 3:], src[3, 2:] = 0, 0
    tgt = torch.randint(3, 11, (4, 7), generator=generator)
    tgt[:, 0], tgt[:, -1] = 1, 2
    tgt[2, 4], tgt[2, 5:] = 2, 0
    return Example((src, tgt))


def _translation_token_logits(seed: int) -> Example:
    """Next-token logits ``[3, 5, 11]`` of a student and a teacher, labels with padding and -100."""
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(3, 5, 11, generator=generator)
    teacher = 3 * torch.randn(3, 5, 11, generator=generator)
    target = torch.randint(3, 11, (3, 5), generator=generator)
    target[1, 3:], target[2, 2:] = 0, -100
    return Example((student, teacher, target))


def _token_logits(seed: int) -> Example:
    """Student and teacher next-token logits ``[3, 10, 97]``, labels with -100, a padding mask."""
    generator = torch.Generator().manual_seed(seed)
    student = 2 * torch.randn(3, 10, 97, generator=generator)
    teacher = 4 * torch.randn(3, 10, 97, generator=generator)
    labels = torch.randint(2, 97, (3, 10), generator=generator)
    labels[:, :2] = -100  # a prompt
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 7:] = False  # a shorter sequence, right-padded
    return Example((student, teacher, labels, mask))


def _masked_lm_outputs(seed: int) -> Example:
    """Masked-LM logits ``[3, 10, 98]``, last hidden states ``[3, 10, 16]``, labels, a mask."""
    generator = torch.Generator().manual_seed(seed)
    student = 2 * torch.randn(3, 10, 98, generator=generator)
    teacher = 4 * torch.randn(3, 10, 98, generator=generator)
    student_hidden = torch.randn(3, 10, 16, generator=generator)
    teacher_hidden = torch.randn(3, 10, 16, generator=generator)
    labels = torch.full((3, 10), -100)
    labels[:, 3] = torch.randint(2, 97, (3,), generator=generator)  # one masked position each
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 7:] = False
    arguments = (student, teacher, student_hidden, teacher_hidden, labels, mask)
    return Example(arguments, student=(0, 2), teacher=(1, 3))


def _bert_internals(seed: int) -> dict[str, Any]:
    """A 2-layer student (width 16) and a 4-layer teacher (width 24) BERT, 4 heads, on
    ``[3, 10]`` tokens with two padded rows: hidden states (embeddings first), attention
    scores, last-layer values, [CLS]-first logits and labels."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 7:], mask[2, 4:] = False, False

    def draw(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=generator)

    return {
        "student_hidden": [draw(3, 10, 16) for _ in range(3)],
        "teacher_hidden": [draw(3, 10, 24) for _ in range(5)],
        "student_scores": [draw(3, 4, 10, 10, scale=2.0) for _ in range(2)],
        "teacher_scores": [draw(3, 4, 10, 10, scale=3.0) for _ in range(4)],
        "student_values": draw(3, 4, 10, 4),
        "teacher_values": draw(3, 4, 10, 6),
        "student_logits": draw(3, 5, scale=2.0),
        "teacher_logits": draw(3, 5, scale=4.0),
        "target": torch.randint(0, 5, (3,), generator=generator),
        "mask": mask,
    }


def _tinybert_layers(seed: int) -> Example:
    """TinyBERT's inputs: hidden states, attention scores and the mask (:func:`_bert_internals`)."""
    x = _bert_internals(seed)
    arguments = (
        x["student_hidden"],
        x["teacher_hidden"],
        x["student_scores"],
        x["teacher_scores"],
        x["mask"],
    )
    return Example(arguments, student=(0, 2), teacher=(1, 3))


def _minilm_last_layer(seed: int) -> Example:
    """MiniLM's inputs: the last layer's scores and values, and the mask."""
    x = _bert_internals(seed)
    arguments = (
        x["student_scores"][-1],
        x["teacher_scores"][-1],
        x["student_values"],
        x["teacher_values"],
        x["mask"],
    )
    return Example(arguments, student=(0, 2), teacher=(1, 3))


def _patient_kd_layers(seed: int) -> Example:
    """Patient KD's inputs: logits, hidden states of one width (the teacher's, 24), labels."""
    x = _bert_internals(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    student_hidden = [torch.randn(3, 10, 24, generator=generator) for _ in range(3)]
    arguments = (
        x["student_logits"],
        x["teacher_logits"],
        student_hidden,
        x["teacher_hidden"],
        x["target"],
    )
    return Example(arguments, student=(0, 2), teacher=(1, 3))


def _tinybert_loss(context: BuildContext) -> nn.Module:
    """TinyBERT's loss for :func:`_tinybert_layers`' widths (16 to 24)."""
    from reference_impls.applications.llm.tinybert import TinyBERTLoss

    return TinyBERTLoss(16, 24)


def _character_sequences(seed: int) -> Example:
    """A procedure's batch: 4 right-padded character sequences ``[4, 24]`` and their mask."""
    from reference_impls.common.language_models import BOS, PAD, VOCAB_SIZE

    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, VOCAB_SIZE, (4, 24), generator=generator)
    tokens[:, 0] = BOS
    tokens[2, 20:] = PAD
    return Example((tokens, tokens != PAD))


def _language_model_procedure(class_name: str) -> Callable[[BuildContext], nn.Module]:
    """A tiny causal-LM student and teacher (``student_lm``, ``teacher_lm``), untrained."""

    def build(context: BuildContext) -> nn.Module:
        from reference_impls.applications import llm
        from reference_impls.common.language_models import student_lm, teacher_lm

        return getattr(llm, class_name)(student_lm(), teacher_lm())

    return build


def _distilling_step_by_step(context: BuildContext) -> nn.Module:
    """A tiny seq2seq student of the word problems (``reasoning_student``), untrained."""
    from reference_impls.applications.llm import DistillingStepByStep
    from reference_impls.common.reasoning import reasoning_student

    return DistillingStepByStep(reasoning_student())


def _word_problem_batch(seed: int) -> Example:
    """A procedure's batch: 4 word problems ``[4, S]`` and their label and rationale targets."""
    from reference_impls.applications.llm.distilling_step_by_step import stack_targets
    from reference_impls.common.reasoning import load_word_problems

    data = load_word_problems(seed=seed, num_train=4, num_test=1)
    return Example((data.src_train, stack_targets(data.label_train, data.rationale_train)))


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


# diffusion distillation: an untrained small denoiser as the teacher, data points of the ring
def _small_denoiser() -> nn.Module:
    from reference_impls.common.diffusion import Denoiser

    return Denoiser(hidden=(16, 16))


def _diffusion(class_name: str) -> Callable[[BuildContext], nn.Module]:
    def build(context: BuildContext) -> nn.Module:
        from reference_impls.applications import diffusion

        cls = getattr(diffusion, class_name)
        if class_name == "ProgressiveDistillation":
            return cls(_small_denoiser(), teacher_steps=8)
        if class_name == "DistributionMatchingDistillation":
            return cls(_small_denoiser(), reference_count=64, reference_steps=4)
        return cls(_small_denoiser())

    return build


def _video_clips(seed: int) -> Example:
    """A batch of 4 packed clips of up to 6 16x16 frames, of lengths 6, 4, 5 and 3, and labels."""
    from reference_impls.common.video import pack_clips

    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(4, 6, 1, 16, 16, generator=generator)
    mask = torch.arange(6)[None] < torch.tensor([6, 4, 5, 3])[:, None]
    return Example((pack_clips(frames, mask), torch.randint(0, 10, (4,), generator=generator)))


def _video(class_name: str, image_student: bool = False) -> Callable[[BuildContext], nn.Module]:
    """A video procedure on untrained tiny video models (the all-frame teacher, a few-frame
    or an image student), whatever the context's digits CNNs."""

    def build(context: BuildContext) -> nn.Module:
        from reference_impls.common import video
        from reference_impls.modalities import video as methods

        student = video.image_student() if image_student else video.few_frame_student()
        return getattr(methods, class_name)(student, video.video_teacher())

    return build


def _ring_points(seed: int) -> Example:
    """A procedure's batch of 8 points of the ring of Gaussians ``[8, 2]``."""
    from reference_impls.common.diffusion import sample_ring

    return Example((sample_ring(8, torch.Generator().manual_seed(seed)),))


def _second_epoch(procedure: Any) -> None:
    procedure.on_epoch_start(0, 2)
    procedure.on_epoch_start(1, 2)  # the model of epoch 0 is now the frozen past self


# modalities/3d and modalities/multi-view: per-point features of the tiny point networks
# (student 8-16-32, teacher 32-64-128 channels) on 4 clouds of 64 points, and what the
# 2-D teachers give (pixel maps of 8x8 renders; descriptors of 6 views)
POINT_STUDENT, POINT_TEACHER, POINT_BATCH, POINT_COUNT = (8, 16, 32), (32, 64, 128), 4, 64


def _point_maps(generator: torch.Generator, channels: Channels) -> list[torch.Tensor]:
    return [
        torch.randn(POINT_BATCH, width, POINT_COUNT, generator=generator).clamp(min=0)
        for width in channels
    ]


def _pointdistiller_example(seed: int) -> Example:
    """Student and teacher per-point feature maps ``[4, C, 64]`` of each stage."""
    generator = torch.Generator().manual_seed(seed)
    return Example((_point_maps(generator, POINT_STUDENT), _point_maps(generator, POINT_TEACHER)))


def _pointdistiller(context: BuildContext) -> nn.Module:
    from reference_impls.modalities._3d.pointdistiller import PointDistillerLoss

    return PointDistillerLoss(POINT_STUDENT, POINT_TEACHER)


def _slidr_example(seed: int) -> Example:
    """Point maps, an image network's 8x8 maps, each point's pixel (some none), 4x4 grid regions."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 64, (POINT_BATCH, POINT_COUNT), generator=generator)
    pixels[:, :8] = -1  # points outside the image
    cells = torch.arange(8) // 4
    superpixels = (cells[:, None] * 2 + cells[None, :]).expand(POINT_BATCH, -1, -1).clone()
    images = [torch.randn(POINT_BATCH, width, 8, 8, generator=generator) for width in (16, 32)]
    return Example((_point_maps(generator, POINT_STUDENT), images, pixels, superpixels))


def _slidr(context: BuildContext) -> nn.Module:
    from reference_impls.modalities._3d.slidr import SLidRLoss

    return SLidRLoss(POINT_STUDENT, (16, 32))


def _pointmcd_example(seed: int) -> Example:
    """Point maps, a multi-view teacher's descriptors ``[4, 6, 64]``, visibility ``[4, 64, 6]``."""
    generator = torch.Generator().manual_seed(seed)
    student = _point_maps(generator, POINT_STUDENT)
    descriptors = torch.randn(POINT_BATCH, 6, 64, generator=generator).clamp(min=0)
    visibility = torch.rand(POINT_BATCH, POINT_COUNT, 6, generator=generator) < 0.5
    return Example((student, descriptors, visibility))


def _pointmcd(context: BuildContext) -> nn.Module:
    from reference_impls.modalities.multi_view.pointmcd import PointMCDLoss

    return PointMCDLoss(POINT_STUDENT, 64)


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
    "reference_impls.applications.visual_recognition.cwd:CWDLoss": Recipe(
        why="it reads dense (per-pixel) logits [B, C, H, W] of a segmentation network",
        example=_dense_logits_example,
    ),
    "reference_impls.applications.visual_recognition.fgd:FGDLoss": Recipe(
        why="it reads one feature map per detector and the images' boxes (detection)",
        build=_fgd,
        no_gradient={
            f"{side}_context.{layer}": "the GcBlock's last convolution starts at zero (the "
            "authors' last_zero_init), so the layers before it get no gradient on the first step"
            for side in ("student", "teacher")
            for layer in ("mask", "transform.0", "transform.1")
        },
        example=_fgd_example,
    ),
    "reference_impls.applications.visual_recognition.fpd:FPDLoss": Recipe(
        why="it reads keypoint heatmaps [B, K, H, W] and the ground-truth heatmaps",
        example=_heatmaps_example,
    ),
    "reference_impls.applications.visual_recognition.skd:SKDLoss": Recipe(
        why="it reads dense logits and one feature map per network (segmentation)",
        example=_skd_example,
    ),
    "reference_impls.applications.diffusion.add:AdversarialDiffusionDistillation": Recipe(
        why="it distils a 2-D diffusion model (a small Denoiser) and reads data points",
        build=_diffusion("AdversarialDiffusionDistillation"),
        example=_ring_points,
    ),
    "reference_impls.applications.diffusion.consistency:ConsistencyDistillation": Recipe(
        why="it distils a 2-D diffusion model (a small Denoiser) and reads data points",
        build=_diffusion("ConsistencyDistillation"),
        example=_ring_points,
    ),
    "reference_impls.applications.diffusion.dmd:DistributionMatchingDistillation": Recipe(
        why="it distils a 2-D diffusion model into a one-step generator reading noise codes",
        build=_diffusion("DistributionMatchingDistillation"),
        example=_latent_codes(2),
    ),
    "reference_impls.applications.diffusion.progressive:ProgressiveDistillation": Recipe(
        why="it distils a 2-D diffusion model's 8-step sampler (a small Denoiser), reads data points",
        build=_diffusion("ProgressiveDistillation"),
        example=_ring_points,
    ),
    "reference_impls.modalities.speech.ctc_frame_kd:CTCFrameKDLoss": Recipe(
        why="it reads per-frame CTC logits [B, T, 11] of padded utterances and their frame mask",
        example=_ctc_frame_kd_example,
    ),
    "reference_impls.modalities.speech.distilhubert:DistilHuBERTLoss": Recipe(
        why="it reads a student's hidden states [B, T, d], teacher layers and the frame mask",
        build=_distilhubert,
        example=_distilhubert_example,
    ),
    "reference_impls.applications.self_supervised.byol:BYOL": Recipe(
        why="a student with BYOL's projector; the context's teacher is the target, read as its "
        "embedding (distillation; the EMA target is the test file's)",
        build=_ssl_byol,
    ),
    "reference_impls.applications.self_supervised.compress:CompRess": Recipe(
        why="CompRess trains the student's embedding; the classifier is unused",
        no_gradient={"student.fc.": "CompRess reads the pooled embedding, not the logits"},
    ),
    "reference_impls.applications.self_supervised.dino:DINO": Recipe(
        why="a student with a DINO head; the context's teacher with a DINO head of the same width",
        build=_ssl_dino,
    ),
    "reference_impls.applications.self_supervised.seed:SEED": Recipe(
        why="SEED trains the student's embedding (through its own head); the classifier is unused",
        no_gradient={"student.fc.": "SEED reads the pooled embedding, not the logits"},
    ),
    "reference_impls.modalities.video.fewer_frames:FewerFramesDistillation": Recipe(
        why="video: packed clips with frame masks, a few-frame student and an all-frame teacher",
        build=_video("FewerFramesDistillation"),
        example=_video_clips,
    ),
    "reference_impls.modalities.video.temporal_relation:TemporalRelationDistillation": Recipe(
        why="video: packed clips with frame masks, a few-frame student and an all-frame teacher",
        build=_video("TemporalRelationDistillation"),
        example=_video_clips,
    ),
    "reference_impls.modalities.video.video_to_image:VideoToImageDistillation": Recipe(
        why="video: packed clips with frame masks, an image student and an all-frame teacher",
        build=_video("VideoToImageDistillation", image_student=True),
        example=_video_clips,
    ),
    "reference_impls.modalities.text.seq_kd:SequenceKD": Recipe(
        why="it translates: tiny transformer encoder-decoders, a batch of token sequences",
        build=_sequence_kd,
        example=_translation_batch,
    ),
    "reference_impls.modalities.text.word_kd:WordKDLoss": Recipe(
        why="it reads next-token logits [B, T, V] and token labels with padding",
        example=_translation_token_logits,
    ),
    "reference_impls.applications.llm.distilbert:DistilBERTLoss": Recipe(
        why="masked-LM outputs: [B, T, V] logits, [B, T, D] last hidden states, labels, a mask",
        example=_masked_lm_outputs,
    ),
    "reference_impls.applications.llm.distilling_step_by_step:DistillingStepByStep": Recipe(
        why="it trains a seq2seq student on word problems: source ids, label and rationale targets",
        build=_distilling_step_by_step,
        example=_word_problem_batch,
    ),
    "reference_impls.applications.llm.gkd:GKDLoss": Recipe(
        why="a token-level loss: [B, T, V] logits of a causal LM, labels with -100, a mask",
        example=_token_logits,
    ),
    "reference_impls.applications.llm.minillm:MiniLLMReverseKLLoss": Recipe(
        why="a token-level loss: [B, T, V] logits of a causal LM, labels with -100, a mask",
        example=_token_logits,
    ),
    "reference_impls.applications.llm.minillm_policy:MiniLLM": Recipe(
        why="policy-gradient distillation of a causal LM: character sequences and their mask",
        build=_language_model_procedure("MiniLLM"),
        example=_character_sequences,
    ),
    "reference_impls.applications.llm.minilm:MiniLMLoss": Recipe(
        why="last-layer BERT internals: [B, h, T, T] attention scores, [B, h, T, d] values, a mask",
        example=_minilm_last_layer,
    ),
    "reference_impls.applications.llm.on_policy:GKD": Recipe(
        why="on-policy distillation of a causal LM: character sequences and their padding mask",
        build=_language_model_procedure("GKD"),
        example=_character_sequences,
    ),
    "reference_impls.applications.llm.patient_kd:PatientKDLoss": Recipe(
        why="BERT hidden states: lists of [B, T, D] per layer, [CLS] first; logits and labels",
        example=_patient_kd_layers,
    ),
    "reference_impls.applications.llm.sequence_kd:SequenceLevelKD": Recipe(
        why="it trains a causal LM on its teacher's decoded continuations of character prompts",
        build=_language_model_procedure("SequenceLevelKD"),
        example=_character_sequences,
    ),
    "reference_impls.applications.llm.skew_kl:SkewKLLoss": Recipe(
        why="a token-level loss: [B, T, V] logits of a causal LM, labels with -100, a mask",
        example=_token_logits,
    ),
    "reference_impls.applications.llm.skew_reverse_kl:SkewReverseKLLoss": Recipe(
        why="a token-level loss: [B, T, V] logits of a causal LM, labels with -100, a mask",
        example=_token_logits,
    ),
    "reference_impls.applications.llm.tinybert:TinyBERTLoss": Recipe(
        why="BERT internals: lists of [B, T, D] hidden states and [B, h, T, T] scores, a mask",
        build=_tinybert_loss,
        example=_tinybert_layers,
    ),
    "reference_impls.applications.llm.word_level:WordLevelKDLoss": Recipe(
        why="a token-level loss: [B, T, V] logits of a causal LM, labels with -100, a mask",
        example=_token_logits,
    ),
    "reference_impls.modalities._3d.pointdistiller:PointDistillerLoss": Recipe(
        why="it reads per-point feature maps [B, C, N] of point networks, not a digits CNN's",
        build=_pointdistiller,
        example=_pointdistiller_example,
    ),
    "reference_impls.modalities._3d.slidr:SLidRLoss": Recipe(
        why="it pairs a point network's maps with an image network's through pixels and regions",
        build=_slidr,
        example=_slidr_example,
    ),
    "reference_impls.modalities.multi_view.pointmcd:PointMCDLoss": Recipe(
        why="it reads point maps, a multi-view teacher's descriptors and per-view visibility",
        build=_pointmcd,
        example=_pointmcd_example,
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
