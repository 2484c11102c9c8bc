"""How each implementation and its authors' code are called for ``verify_official.py``.

One entry per taxonomy implementation id whose ``authors_code`` names a repository. Each
says, readably and in one place: the inputs (seeded, realistic CIFAR-100 shapes: batch 64,
100 classes, ResNet-8x4-like stages), which of them are the student's (their gradients are
compared), our object and its configuration, and the authors' call — their symbol as
loaded from their file (``official.<name>``), with the arguments of their main setting and,
where their code keeps it outside the function (a training weight, a normalisation in the
training script), that step written here and named in the taxonomy's ``configuration``.

Parameters (connectors, embeddings) are built on both sides and ours are copied into
theirs, so both start equal; their gradients are compared by the names given here.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdatlas.official import Adapter, Pair, Side

BATCH, CLASSES = 64, 100
ADAPTERS: dict[str, Adapter] = {}

# ----------------------------------------------------------------------------- inputs


def logits(generator: torch.Generator, scale: float = 3.0) -> torch.Tensor:
    """Logits of a trained-looking classifier: spread of a few units."""
    return scale * torch.randn(BATCH, CLASSES, generator=generator, dtype=torch.float64)


def labels(generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, CLASSES, (BATCH,), generator=generator)


def feature_map(generator: torch.Generator, *shape: int, relu: bool = True) -> torch.Tensor:
    """A ``[BATCH, *shape]`` feature map (after ReLU unless ``relu=False``: pre-activations)."""
    x = torch.randn(BATCH, *shape, generator=generator, dtype=torch.float64)
    return x.clamp(min=0) if relu else x


def embedding(generator: torch.Generator, dim: int) -> torch.Tensor:
    return torch.randn(BATCH, dim, generator=generator, dtype=torch.float64).abs()


def logit_pair(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"student_logits": logits(generator), "teacher_logits": logits(generator)}


def logit_pair_and_target(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {**logit_pair(generator), "target": labels(generator)}


# ResNet-8x4 -> ResNet-32x4 stage outputs on CIFAR (channels halved to keep the runs short)
STUDENT_STAGES = ((32, 32, 32), (64, 16, 16), (128, 8, 8))
TEACHER_STAGES = ((32, 32, 32), (64, 16, 16), (128, 8, 8))
STUDENT_NARROW = ((16, 32, 32), (32, 16, 16), (64, 8, 8))


def stages(
    student: tuple[tuple[int, ...], ...], teacher: tuple[tuple[int, ...], ...], relu: bool = True
) -> Callable[[torch.Generator], dict[str, torch.Tensor]]:
    def make(generator: torch.Generator) -> dict[str, torch.Tensor]:
        tensors = {
            f"student_{i}": feature_map(generator, *s, relu=relu) for i, s in enumerate(student)
        }
        tensors |= {
            f"teacher_{i}": feature_map(generator, *t, relu=relu) for i, t in enumerate(teacher)
        }
        return tensors

    return make


def student_names(count: int) -> tuple[str, ...]:
    return tuple(f"student_{i}" for i in range(count))


def listed(x: dict[str, torch.Tensor], side: str) -> list[torch.Tensor]:
    return [x[k] for k in sorted(x) if k.startswith(f"{side}_")]


def register(
    implementation_id: str,
    inputs: Callable[[torch.Generator], dict[str, torch.Tensor]],
    student: tuple[str, ...],
    also: tuple[str, ...] = (),
) -> Callable[[Callable[[SimpleNamespace, torch.dtype], Pair]], Callable]:
    def add(build: Callable[[SimpleNamespace, torch.dtype], Pair]) -> Callable:
        ADAPTERS[implementation_id] = Adapter(
            inputs=inputs, student=student, build=build, also=also
        )
        return build

    return add


def losses(ours: Callable[[dict], Any], theirs: Callable[[dict], Any]) -> Pair:
    """A pair of parameter-free losses."""
    return Pair(ours=Side(ours), theirs=Side(theirs))


def copy_into(theirs: nn.Module, ours: nn.Module) -> None:
    """Copy our parameters and buffers into theirs, in registration order (same shapes)."""
    mine = [*ours.parameters(), *ours.buffers()]
    other = [*theirs.parameters(), *theirs.buffers()]
    if [t.shape for t in mine] != [t.shape for t in other]:
        raise ValueError(
            f"parameter shapes differ: ours {[tuple(t.shape) for t in mine]}, "
            f"theirs {[tuple(t.shape) for t in other]}"
        )
    with torch.no_grad():
        for source, target in zip(mine, other, strict=True):
            target.copy_(source)


def named(module: nn.Module, skip: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    """A module's parameters by position (``p0``, ``p1``, ...), so both sides' names match;
    ``skip``: positions whose gradient is zero by construction (a convolution's bias before
    batch norm), whose relative error would only compare rounding noise."""
    return {f"p{i}": p for i, p in enumerate(module.parameters()) if i not in skip}


# ------------------------------------------------------------------------- Sources: logit


@register("kd", logit_pair, ("student_logits",))
def _kd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.logit.kd import KDLoss

    ours = KDLoss(temperature=4.0)
    return losses(
        lambda x: ours(x["student_logits"], x["teacher_logits"]),
        lambda x: official.kd_loss(x["student_logits"], x["teacher_logits"], 4.0),
    )


@register("dkd", logit_pair_and_target, ("student_logits",))
def _dkd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.logit.dkd import DKDLoss

    ours = DKDLoss(alpha=1.0, beta=8.0, temperature=4.0)  # after the warm-up: factor 1
    return losses(
        lambda x: ours(x["student_logits"], x["teacher_logits"], x["target"]),
        lambda x: official.dkd_loss(
            x["student_logits"], x["teacher_logits"], x["target"], 1.0, 8.0, 4.0
        ),
    )


@register("logit-standardization", logit_pair, ("student_logits",))
def _logit_standardization(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.logit.logit_standardization import LogitStandardizationLoss

    ours = LogitStandardizationLoss(base="kd", temperature=2.0)
    return losses(
        lambda x: ours(x["student_logits"], x["teacher_logits"]),
        lambda x: official.kd_loss(x["student_logits"], x["teacher_logits"], 2.0, True),
    )


@register("ttm", logit_pair, ("student_logits",))
def _ttm(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.logit.ttm import TTMLoss

    ours, theirs = TTMLoss(gamma=0.1), official.TTM(0.1)
    return losses(
        lambda x: ours(x["student_logits"], x["teacher_logits"]),
        lambda x: theirs(x["student_logits"], x["teacher_logits"]),
    )


@register("normkd", logit_pair, ("student_logits",))
def _normkd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.logit.normkd import NormKDLoss

    ours = NormKDLoss(temperature_norm=2.0)
    return losses(
        lambda x: ours(x["student_logits"], x["teacher_logits"]),
        lambda x: official.kd_loss_normal(x["student_logits"], x["teacher_logits"], 2.0),
    )


# ----------------------------------------------------------------------- Sources: feature


@register("at", stages(STUDENT_STAGES, TEACHER_STAGES), student_names(3))
def _at(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.feature.at import ATLoss

    ours = ATLoss(beta=1000.0, p=2.0, stages=(0, 1, 2))
    return losses(
        lambda x: ours(listed(x, "student"), listed(x, "teacher")),
        # cifar.py: opt.beta * sum(utils.at_loss(x, y) for each group), --beta 1e+3
        lambda x: (
            1000.0
            * sum(
                official.at_loss(s, t)
                for s, t in zip(listed(x, "student"), listed(x, "teacher"), strict=True)
            )
        ),
    )


@register("nst", stages(STUDENT_STAGES, TEACHER_STAGES), student_names(3))
def _nst(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.feature.nst import NSTLoss

    ours = NSTLoss(lambda_=50.0, stages=(0, 1, 2))
    return losses(
        lambda x: ours(listed(x, "student"), listed(x, "teacher")),
        # mdistiller: NST.LOSS.FEAT_WEIGHT (50) * nst_loss(student feats, teacher feats)
        lambda x: 50.0 * official.nst_loss(listed(x, "student"), listed(x, "teacher")),
    )


@register(
    "fitnets",
    stages(STUDENT_NARROW, TEACHER_STAGES),
    student_names(3),
    also=("models/util.py:ConvReg",),
)
def _fitnets(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.feature.fitnets import FitNetsLoss

    ours = FitNetsLoss([16, 32, 64], [32, 64, 128], hint_layer=1, beta=100.0).to(dtype)
    regressor = official.ConvReg((BATCH, 32, 16, 16), (BATCH, 64, 16, 16)).to(dtype)
    copy_into(regressor, ours.regressor)
    hint = official.HintLoss()
    return Pair(
        ours=Side(
            lambda x: ours(listed(x, "student"), listed(x, "teacher")),
            named(ours.regressor, skip=(1,)),  # conv bias before batch norm: zero gradient
        ),
        # RepDistiller train_student.py: -b 100 * HintLoss(ConvReg(feat_s[2]), feat_t[2])
        theirs=Side(
            lambda x: 100.0 * hint(regressor(x["student_1"]), x["teacher_1"]),
            named(regressor, skip=(1,)),
        ),
    )


@register("ab", stages(STUDENT_STAGES, TEACHER_STAGES, relu=False), student_names(3))
def _ab(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.feature.ab import ABLoss

    ours = ABLoss([32, 64, 128], [32, 64, 128]).to(dtype)  # equal widths: identity connectors

    def theirs(x: dict) -> torch.Tensor:
        # cifar10_AB_distillation.py, Distillation(): stage weights 1/4, 1/2, 1, per batch,
        # then loss / 1000 * 3
        criterion, batch = official.criterion_alternative_L2, x["student_0"].shape[0]
        total = criterion(x["student_2"], x["teacher_2"], 1.0) / batch
        total = total + criterion(x["student_1"], x["teacher_1"], 1.0) / batch / 2
        total = total + criterion(x["student_0"], x["teacher_0"], 1.0) / batch / 4
        return total / 1000 * 3

    return losses(lambda x: ours(listed(x, "student"), listed(x, "teacher")), theirs)


# -------------------------------------------------------------------- Sources: similarity


@register(
    "pkt",
    lambda g: {"student_emb": embedding(g, 256), "teacher_emb": embedding(g, 256)},
    ("student_emb",),
)
def _pkt(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.similarity.pkt import PKTLoss

    ours = PKTLoss()
    return losses(
        lambda x: ours(x["student_emb"], x["teacher_emb"]),
        lambda x: official.cosine_similarity_loss(x["student_emb"], x["teacher_emb"]),
    )


@register(
    "rkd",
    lambda g: {"student_emb": embedding(g, 256), "teacher_emb": embedding(g, 256)},
    ("student_emb",),
    also=("RKdAngle",),
)
def _rkd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.similarity.rkd import RKDLoss

    ours = RKDLoss(lambda_distance=25.0, lambda_angle=50.0, normalize_embeddings=True)
    distance, angle = official.RkdDistance(), official.RKdAngle()

    def theirs(x: dict) -> torch.Tensor:
        # run_distill_classification.py: F.normalize on both embeddings, 25 and 50
        s, t = F.normalize(x["student_emb"], p=2, dim=1), F.normalize(x["teacher_emb"], p=2, dim=1)
        return 25.0 * distance(s, t) + 50.0 * angle(s, t)

    return losses(lambda x: ours(x["student_emb"], x["teacher_emb"]), theirs)


@register("sp", stages(STUDENT_STAGES, TEACHER_STAGES), student_names(3))
def _sp(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.similarity.sp import SPLoss

    ours, theirs = SPLoss(gamma=3000.0, stages=(-1,)), official.Similarity()
    return losses(
        lambda x: ours(listed(x, "student"), listed(x, "teacher")),
        # RepDistiller train_student.py: -b 3000 * Similarity()([feat_s[-2]], [feat_t[-2]])
        lambda x: 3000.0 * sum(theirs([x["student_2"]], [x["teacher_2"]])).squeeze(),
    )


@register("fsp", stages(STUDENT_STAGES, TEACHER_STAGES), student_names(3))
def _fsp(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.similarity.fsp import FSPLoss

    # RepDistiller averages over the m x n entries of each FSP matrix, we sum (the paper):
    # lambda_k = 1 / (m n) makes ours theirs
    widths = [c for c, _h, _w in STUDENT_STAGES]
    ours = FSPLoss(
        pairs=((0, 1), (1, 2)),
        lambdas=[1 / (widths[0] * widths[1]), 1 / (widths[1] * widths[2])],
    )
    shapes = [(BATCH, c, h, w) for c, h, w in STUDENT_STAGES]
    theirs = official.FSP(shapes, shapes)
    return losses(
        lambda x: ours(listed(x, "student"), listed(x, "teacher")),
        lambda x: sum(theirs(listed(x, "student"), listed(x, "teacher"))),
    )


@register("dist", logit_pair, ("student_logits",))
def _dist(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.similarity.dist import DISTLoss

    ours, theirs = DISTLoss(beta=2.0, gamma=2.0, temperature=4.0), official.DIST(2.0, 2.0, 4.0)
    return losses(
        lambda x: ours(x["student_logits"], x["teacher_logits"]),
        lambda x: theirs(x["student_logits"], x["teacher_logits"]),
    )


@register("ickd", stages(STUDENT_NARROW, TEACHER_STAGES), student_names(3))
def _ickd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.similarity.ickd import ICKDLoss

    ours = ICKDLoss([16, 32, 64], [32, 64, 128], stages=(-1,)).to(dtype)
    theirs = official.ICKDLoss(SimpleNamespace(s_dim=64, feat_dim=128)).to(dtype)
    copy_into(theirs.embed_s, ours.connectors[0])
    return Pair(
        ours=Side(
            lambda x: ours(listed(x, "student"), listed(x, "teacher")), named(ours.connectors[0])
        ),
        # their train loop: sum of the per-stage list for the last feature map (feat[-2])
        theirs=Side(
            lambda x: sum(theirs([x["student_2"]], [x["teacher_2"]])), named(theirs.embed_s)
        ),
    )


# ---------------------------------------------------------------------------- Schemes: self


def _pskd_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    previous = logits(generator).softmax(dim=1)  # the predictions stored at the last epoch
    return {"logits": logits(generator), "target": labels(generator), "previous": previous}


@register(
    "ps-kd",
    _pskd_inputs,
    ("logits",),
    also=("loss/pskd_loss.py:Custom_CrossEntropy_PSKD",),
)
def _pskd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.schemes.self.pskd import progressive_targets, soft_cross_entropy

    alpha_t = 0.8 * (150 + 1) / 300  # alpha_T 0.8 at epoch 150 of 300, as main.py schedules it
    criterion = official.Custom_CrossEntropy_PSKD()  # calls .cuda() in __init__

    def ours(x: dict) -> torch.Tensor:
        targets = progressive_targets(x["target"], CLASSES, x["previous"], alpha_t)
        return soft_cross_entropy(x["logits"], targets)

    def theirs(x: dict) -> torch.Tensor:
        # main.py line 426: the soft targets of the batch, then their custom cross-entropy
        scope = official.pskd_targets(
            alpha_t=alpha_t,
            targets_one_hot=F.one_hot(x["target"], CLASSES).to(x["previous"].dtype),
            all_predictions=x["previous"],
            input_indices=torch.arange(BATCH),
        )
        return criterion(x["logits"], scope["soft_targets"])

    return losses(ours, theirs)
