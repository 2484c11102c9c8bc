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


def prefixed(prefix: str, module: nn.Module, skip: tuple[int, ...] = ()) -> dict[str, Any]:
    """:func:`named` with a prefix, for several modules compared at once."""
    return {f"{prefix}.{k}": v for k, v in named(module, skip).items()}


# ------------------------------------------------------------- Sources: feature (continued)


def _ofd_margins(generator: torch.Generator) -> list[torch.Tensor]:
    """Per-channel margins E[x | x < 0] of a trained teacher: negative, of a few tenths."""
    return [
        -0.1 - 0.5 * torch.rand(c, generator=generator, dtype=torch.float64)
        for c, _h, _w in TEACHER_STAGES
    ]


@register(
    "ofd",
    stages(STUDENT_NARROW, TEACHER_STAGES, relu=False),
    student_names(3),
    also=("build_feature_connector",),
)
def _ofd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.feature.ofd import OFDLoss

    margins = _ofd_margins(torch.Generator().manual_seed(1))
    widths_s, widths_t = [c for c, _h, _w in STUDENT_NARROW], [c for c, _h, _w in TEACHER_STAGES]
    ours = OFDLoss(widths_s, widths_t, margins).to(dtype)
    connectors = nn.ModuleList(
        official.build_feature_connector(t, s) for t, s in zip(widths_t, widths_s, strict=True)
    ).to(dtype)
    copy_into(connectors, ours.connectors)
    theirs_margins = [m.float().to(dtype).reshape(1, -1, 1, 1) for m in margins]

    def theirs(x: dict) -> torch.Tensor:
        # distiller.py Distiller.forward: connector, then distillation_loss / 2 ** (K - i - 1);
        # train_with_distillation.py: loss_distill.sum() / batch_size / 1000
        total = 0
        for i, (s, t) in enumerate(zip(listed(x, "student"), listed(x, "teacher"), strict=True)):
            total = total + official.distillation_loss(
                connectors[i](s), t.detach(), theirs_margins[i]
            ) / 2 ** (3 - i - 1)
        return total / BATCH / 1000

    parameters = {
        f"c{i}.{k}": v for i, c in enumerate(ours.connectors) for k, v in named(c).items()
    }
    their_parameters = {
        f"c{i}.{k}": v for i, c in enumerate(connectors) for k, v in named(c).items()
    }
    return Pair(
        ours=Side(lambda x: ours(listed(x, "student"), listed(x, "teacher")), parameters),
        theirs=Side(theirs, their_parameters),
    )


@register(
    "reviewkd",
    stages(STUDENT_NARROW, TEACHER_STAGES, relu=False),
    student_names(3),
    also=("hcl",),
)
def _reviewkd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.feature.reviewkd import ReviewKDLoss

    widths_s, widths_t = [c for c, _h, _w in STUDENT_NARROW], [c for c, _h, _w in TEACHER_STAGES]
    ours = ReviewKDLoss(widths_s, widths_t).to(dtype)  # outside training: warm-up factor 1
    in_channels, out_channels = [*widths_s, widths_s[-1]], [*widths_t, widths_t[-1]]
    mid = min(512, in_channels[-1])
    abfs = nn.ModuleList(
        official.ABF(c_in, mid, c_out, level < len(in_channels) - 1)
        for level, (c_in, c_out) in enumerate(zip(in_channels, out_channels, strict=True))
    ).to(dtype)
    copy_into(abfs, ours.fusions)
    shapes = [1, *(h for _c, h, _w in reversed(STUDENT_NARROW))]  # deep to shallow, as theirs
    out_shapes = [1, *(h for _c, h, _w in reversed(TEACHER_STAGES))]

    def theirs(x: dict) -> torch.Tensor:
        # the student's levels (post-ReLU stages and pooled embedding), the teacher's
        # (pre-ReLU stages and pooled embedding: t_features[1:] with preact=True)
        student = [F.relu(s) for s in listed(x, "student")]
        student = [*student, student[-1].mean((2, 3), keepdim=True)]
        teacher = [t.detach() for t in listed(x, "teacher")]
        teacher = [*teacher, F.relu(teacher[-1]).mean((2, 3), keepdim=True)]
        # ReviewKD.forward, with abfs[::-1] and the student's features reversed
        levels, fusions = student[::-1], list(abfs)[::-1]
        results = []
        out, residual = fusions[0](levels[0], out_shape=out_shapes[0])
        results.append(out)
        for features, abf, shape, out_shape in zip(
            levels[1:], fusions[1:], shapes[1:], out_shapes[1:], strict=True
        ):
            out, residual = abf(features, residual, shape, out_shape)
            results.insert(0, out)
        # train.py: hcl(s_features, t_features) * min(1, epoch / warm-up) * weight 1
        return official.hcl(results, teacher)

    return Pair(
        ours=Side(lambda x: ours(listed(x, "student"), listed(x, "teacher")), named(ours.fusions)),
        theirs=Side(theirs, named(abfs)),
    )


def _simkd_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "student_map": feature_map(generator, 64, 8, 8),
        "teacher_map": feature_map(generator, 128, 8, 8),
        "target": labels(generator),
    }


class _Slice(nn.Module):
    """A stand-in backbone whose last feature map is a slice of its input's channels."""

    def __init__(self, start: int, stop: int, classes: int = CLASSES) -> None:
        super().__init__()
        self.start, self.stop = start, stop
        self.fc = nn.Linear(stop - start, classes)
        self.channels = [stop - start]

    def forward(self, x: torch.Tensor) -> Any:
        from reference_impls.common.models import ModelOutput

        features = x[:, self.start : self.stop]
        embedding = features.mean((2, 3))
        return ModelOutput(self.fc(embedding), [features], [features], embedding)


@register("simkd", _simkd_inputs, ("student_map",))
def _simkd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.feature.simkd import SimKD

    # our procedure on stand-in models: the input carries both maps side by side, the
    # student's backbone returns the first 64 channels, the teacher's the last 128
    student, teacher = _Slice(0, 64), _Slice(64, 192)
    ours = SimKD(student, teacher).to(dtype)
    theirs = official.SimKD(s_n=64, t_n=128, factor=2).to(dtype)
    copy_into(theirs, ours.student.projector)
    head = nn.Linear(128, CLASSES).to(dtype)
    copy_into(head, teacher.fc)

    def mine(x: dict) -> torch.Tensor:
        both = torch.cat([x["student_map"], x["teacher_map"]], dim=1)
        return ours(both, x["target"])["loss"]

    def authors(x: dict) -> torch.Tensor:
        # helper/loops.py (simkd): module_list[1](feat_s[-2], feat_t[-2], cls_t), then
        # criterion_kd = MSELoss on the first two; run_distill.sh: -c 0 -d 0 -b 1
        projected, target, _logits = theirs(x["student_map"], x["teacher_map"].detach(), head)
        return F.mse_loss(projected, target)

    return Pair(ours=Side(mine, named(ours.student.projector)), theirs=Side(authors, named(theirs)))


@register("mgd", stages(STUDENT_NARROW, TEACHER_STAGES), student_names(3))
def _mgd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.feature.mgd import MGDLoss

    ours = MGDLoss([16, 32, 64], [32, 64, 128]).to(dtype)  # last stage, channel mask, 0.15
    theirs = official.MGDLoss(64, 128, "mgd", alpha_mgd=7e-5, lambda_mgd=0.15).to(dtype)
    copy_into(theirs, ours)
    # both draw the mask from torch's global generator, seeded alike before each call
    return Pair(
        ours=Side(lambda x: ours(listed(x, "student"), listed(x, "teacher")), named(ours)),
        theirs=Side(lambda x: theirs(x["student_2"], x["teacher_2"]), named(theirs)),
    )


@register(
    "ft",
    stages(STUDENT_STAGES, TEACHER_STAGES),
    student_names(3),
    also=("Translator", "utils.py:FT"),
)
def _ft(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.feature.ft import FTLoss

    ours = FTLoss([32, 64, 128], [32, 64, 128], stage=2, rate=0.5, beta=500.0).to(dtype)
    paraphraser = official.Paraphraser(128, round(128 * 0.5)).to(dtype)
    translator = official.Translator(128, round(128 * 0.5)).to(dtype)
    copy_into(paraphraser, ours.paraphraser)
    copy_into(translator, ours.translator)
    l1 = nn.L1Loss()

    def theirs(x: dict) -> torch.Tensor:
        # train_student.py: BETA * L1Loss(FT(Translator(s)), FT(Paraphraser(t, mode 1)))
        factor_t = paraphraser(x["teacher_2"], 1)
        factor_s = translator(x["student_2"])
        return 500.0 * l1(official.FT(factor_s), official.FT(factor_t.detach()))

    return Pair(
        ours=Side(
            lambda x: ours(listed(x, "student"), listed(x, "teacher")), named(ours.translator)
        ),
        theirs=Side(theirs, named(translator)),
    )


class _Columns(nn.Module):
    """A stand-in classifier whose logits are columns of its input (our procedures run on
    given logits: the input carries the student's and the teacher's side by side)."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start : self.stop]


class _Meter:
    """Stands for the training scripts' ``AverageMeter`` objects: ``update`` does nothing."""

    def update(self, *_args: object) -> None:
        pass


# ----------------------------------------------------------------------- Schemes: offline


@register("takd", logit_pair_and_target, ("student_logits",))
def _takd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.schemes.offline.takd import TAKD

    # one step of the chain (teacher -> student), tau 5 and lambda 0.5 on both
    ours = TAKD(_Columns(CLASSES, 2 * CLASSES), [], _Columns(0, CLASSES), 5.0, 0.5)

    def mine(x: dict) -> torch.Tensor:
        both = torch.cat([x["student_logits"], x["teacher_logits"]], dim=1)
        return ours(both, x["target"])["loss"]

    def theirs(x: dict) -> torch.Tensor:
        # train.py TrainManager.train, lines 89-97, as written
        scope = official.takd_step_loss(
            criterion=nn.CrossEntropyLoss(),
            output=x["student_logits"],
            target=x["target"],
            self=SimpleNamespace(have_teacher=True, teacher=lambda _d: x["teacher_logits"]),
            data=None,
            lambda_=0.5,
            T=5.0,
        )
        return scope["loss"]

    return losses(mine, theirs)


# ------------------------------------------------------------------------ Schemes: online


class _TensorFlow:
    """The TensorFlow 1.x ops the DML and fewer-frames authors' code calls (TensorFlow is not
    installable here), written in torch as TensorFlow documents them. Their functions and
    statements run as written with ``tf`` bound to this; graph book-keeping (summaries,
    collections, control dependencies) does nothing."""

    class distributions:
        class Categorical:
            def __init__(self, probs: torch.Tensor) -> None:
                self.logits = torch.log(probs)  # tf: logits = log(probs)

        @staticmethod
        def kl_divergence(a: Any, b: Any) -> torch.Tensor:
            # tf.distributions' _kl_categorical_categorical
            log_a, log_b = a.logits.log_softmax(dim=-1), b.logits.log_softmax(dim=-1)
            return (log_a.exp() * (log_a - log_b)).sum(dim=-1)

    class GraphKeys:
        TRAINABLE_VARIABLES = UPDATE_OPS = "graph collection"

    nn = SimpleNamespace(softmax=lambda logits: torch.softmax(logits, dim=-1))
    summary = SimpleNamespace(scalar=lambda *args, **kwargs: None)
    losses = SimpleNamespace(get_regularization_losses=lambda scope=None: [])
    log, square, subtract, identity = torch.log, torch.square, torch.subtract, torch.clone

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    @staticmethod
    def reduce_sum(x: torch.Tensor, axis: int | None = None) -> torch.Tensor:
        return x.sum() if axis is None else x.sum(dim=axis)

    @staticmethod
    def reduce_mean(x: torch.Tensor) -> torch.Tensor:
        return x.mean()

    def constant(self, value: float) -> torch.Tensor:
        return torch.tensor(value, dtype=self.dtype)

    @staticmethod
    def get_collection(*_args: object) -> list:
        return []


@register("dml", logit_pair_and_target, ("student_logits", "teacher_logits"))
def _dml(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.schemes.online.dml import DML

    # a cohort of two (their --num_networks=2); "teacher_logits" are the second student's
    ours = DML([_Columns(0, CLASSES), _Columns(CLASSES, 2 * CLASSES)])
    official.kl_loss_compute.__globals__["tf"] = _TensorFlow(dtype)

    def mine(x: dict) -> torch.Tensor:
        both = torch.cat([x["student_logits"], x["teacher_logits"]], dim=1)
        return ours(both, x["target"])["loss"]

    def theirs(x: dict) -> torch.Tensor:
        # train_models.py _tower_loss: each network's softmax cross-entropy (label_smoothing
        # 0.0, the flag's default) plus kl_loss_compute(own logits, peer's logits); each
        # network's train op updates its own variables only, so the peer's side is constant
        cohort = [x["student_logits"], x["teacher_logits"]]
        total = torch.zeros((), dtype=dtype)
        for i, own in enumerate(cohort):
            peer = cohort[1 - i].detach()
            total = total + F.cross_entropy(own, x["target"])
            total = total + official.kl_loss_compute(own, peer)
        return total

    return losses(mine, theirs)


def _one_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        **{f"branch_{i}": logits(generator) for i in range(3)},
        "gate": torch.randn(BATCH, 3, generator=generator, dtype=torch.float64).softmax(dim=1),
        "target": labels(generator),
    }


@register("one", _one_inputs, ("branch_0", "branch_1", "branch_2", "gate"))
def _one(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.schemes.online.one import one_loss

    criterion, criterion_kl = nn.CrossEntropyLoss(), official.KLLoss()

    def mine(x: dict) -> torch.Tensor:
        branches = torch.stack([x[f"branch_{i}"] for i in range(3)], dim=1)
        return one_loss(branches, x["gate"], x["target"], 3.0, kl_weight=1.0)["loss"]

    def theirs(x: dict) -> torch.Tensor:
        o1, o2, o3, gate, target = (
            x[k] for k in ("branch_0", "branch_1", "branch_2", "gate", "target")
        )
        # models/cifar/resnet.py ResNet.forward, lines 260-263: the gated ensemble x_m
        x_m = sum(
            gate[:, i].repeat(CLASSES, 1).transpose(0, 1) * o for i, o in enumerate((o1, o2, o3))
        )
        # cifar_one.py train(): cross-entropy of all four, consistency weight 1 (after the ramp)
        loss_cross = criterion(o1, target) + criterion(o2, target) + criterion(o3, target)
        loss_cross = loss_cross + criterion(x_m, target)
        loss_kl = criterion_kl(o1, x_m) + criterion_kl(o2, x_m) + criterion_kl(o3, x_m)
        return loss_cross + loss_kl

    return losses(mine, theirs)


# -------------------------------------------------------------------------- Schemes: self


def _byot_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        **{f"logits_{i}": logits(generator) for i in range(4)},  # three exits, then the deepest
        **{f"features_{i}": embedding(generator, 128) for i in range(4)},
        "target": labels(generator),
    }


@register(
    "byot",
    _byot_inputs,
    (*(f"logits_{i}" for i in range(4)), *(f"features_{i}" for i in range(4))),
)
def _byot(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.schemes.self.byot import byot_loss

    def mine(x: dict) -> torch.Tensor:
        exits = [x[f"logits_{i}"] for i in range(4)]
        features = [x[f"features_{i}"] for i in range(4)]
        return byot_loss(exits, features, x["target"], 3.0, 0.1, 1e-6)["loss"]

    def theirs(x: dict) -> torch.Tensor:
        # train.py lines 196-228, as written: --temperature 3 --alpha 0.1 --beta 1e-6
        scope = official.byot_step_loss(
            criterion=nn.CrossEntropyLoss(),
            output=x["logits_3"],
            middle_output1=x["logits_0"],
            middle_output2=x["logits_1"],
            middle_output3=x["logits_2"],
            final_fea=x["features_3"],
            middle1_fea=x["features_0"],
            middle2_fea=x["features_1"],
            middle3_fea=x["features_2"],
            target=x["target"],
            input=x["target"],
            args=SimpleNamespace(temperature=3, alpha=0.1, beta=1e-6),
            **{
                name: _Meter()
                for name in (
                    "losses",
                    "middle1_losses",
                    "middle2_losses",
                    "middle3_losses",
                    "losses1_kd",
                    "losses2_kd",
                    "losses3_kd",
                    "feature_losses_1",
                    "feature_losses_2",
                    "feature_losses_3",
                    "total_losses",
                )
            },
        )
        return scope["total_loss"]

    return losses(mine, theirs)


def _ils_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "logits": logits(generator),
        "teacher_logits": logits(generator),
        "target": labels(generator),
    }


class _NumpyBetaFromTorch:
    """Stands for ``numpy`` in ``soft_beta_loss``: ``np.random.beta(beta, 1, n)`` returns the
    draws our code makes (``U ** (1 / beta)`` from torch's generator, seeded alike), the same
    distribution, so both sides smooth with the same numbers."""

    def __init__(self) -> None:
        self.random = SimpleNamespace(beta=self._beta)

    @staticmethod
    def _beta(a: float, b: float, n: int) -> Any:
        from reference_impls.schemes.self.instance_label_smoothing import sample_beta_confidences

        if b != 1:
            raise ValueError("only Beta(a, 1) is drawn by inversion here")
        return sample_beta_confidences(n, a).double().numpy()


@register("instance-label-smoothing", _ils_inputs, ("logits",))
def _ils(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.schemes.self.instance_label_smoothing import (
        beta_smoothing_loss,
        beta_smoothing_targets,
        sample_beta_confidences,
    )

    official.soft_beta_loss.__globals__["np"] = _NumpyBetaFromTorch()

    def mine(x: dict) -> torch.Tensor:
        # InstanceSpecificLabelSmoothing.forward's steps, on given student and teacher logits
        teacher_probabilities = F.softmax(x["teacher_logits"].float(), dim=1)
        confidences = sample_beta_confidences(BATCH, 3.0)
        targets = beta_smoothing_targets(teacher_probabilities, x["target"], confidences)
        return beta_smoothing_loss(x["logits"], x["target"], targets, 0.6)[0]

    def theirs(x: dict) -> torch.Tensor:
        # train_smoothing.py: (1 - alpha) * CE + alpha * soft_beta_loss, alpha 0.6, beta 3
        beta_loss = official.soft_beta_loss(
            x["logits"], x["target"], 3.0, x["teacher_logits"], num_classes=CLASSES
        )
        return 0.4 * F.cross_entropy(x["logits"], x["target"]) + 0.6 * beta_loss

    return losses(mine, theirs)


# --------------------------------------------------------------------- Algorithms: attention


def _cat_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "student_map": feature_map(generator, 128, 8, 8),
        "student_weight": 0.1 * torch.randn(CLASSES, 128, generator=generator, dtype=torch.float64),
        "teacher_map": feature_map(generator, 128, 8, 8),
        "teacher_weight": 0.1 * torch.randn(CLASSES, 128, generator=generator, dtype=torch.float64),
    }


@register("cat-kd", _cat_inputs, ("student_map", "student_weight"))
def _cat_kd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.algorithms.attention.cat_kd import cat_loss, class_activation_maps

    def mine(x: dict) -> torch.Tensor:
        # CATKD.forward's CAT term at its defaults: beta 15, resolution 2, no normalisation
        student = class_activation_maps(x["student_map"], x["student_weight"])
        teacher = class_activation_maps(x["teacher_map"], x["teacher_weight"])
        return 15.0 * cat_loss(student, teacher, 2, False)

    def theirs(x: dict) -> torch.Tensor:
        # the CAMs as the *_test models' conv_test: a 1x1 convolution, no bias, holding the
        # classifier's weight; then CAT_KD.forward_train: CAT_loss_weight * CAT_loss(...)
        def cams(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            return F.conv2d(features, weight.view(*weight.shape, 1, 1))

        student = cams(x["student_map"], x["student_weight"])
        teacher = cams(x["teacher_map"], x["teacher_weight"])
        return 15.0 * official.CAT_loss(student, teacher, 2, False)

    return losses(mine, theirs)


# ---------------------------------------------------------------------- Algorithms: adaptive


def _ctkd_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"student_logits": logits(generator), "teacher_logits": logits(generator, 5.0)}


@register(
    "ctkd",
    _ctkd_inputs,
    ("student_logits",),
    also=("distiller_zoo/KD.py:DistillKL", "train_student.py:CosineDecay"),
)
def _ctkd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.algorithms.adaptive.ctkd import CTKDLoss

    epoch = 5  # mid-way through the 10-epoch cosine ramp of the reversal weight
    ours = CTKDLoss(initial_parameter=0.3).to(dtype)
    ours.on_epoch_start(epoch - 1, 240)  # our epochs count from 0, theirs from 1
    mlp = official.Global_T().to(dtype)
    copy_into(mlp, ours)
    decay = official.CosineDecay(max_value=0, min_value=-1, num_loops=10)
    criterion = official.DistillKL()

    def theirs(x: dict) -> torch.Tensor:
        # helper/loops.py train_distill: temp = t_start + t_end * sigmoid(mlp(..., cos_value)),
        # then -a 0.9 (the KD weight) times DistillKL(logit_s, logit_t, temp)
        temp = mlp(x["teacher_logits"], x["student_logits"], decay.get_value(epoch))
        temp = 1.0 + 20.0 * torch.sigmoid(temp)
        return 0.9 * criterion(x["student_logits"], x["teacher_logits"], temp)

    return Pair(
        ours=Side(lambda x: ours(x["student_logits"], x["teacher_logits"]), named(ours)),
        theirs=Side(theirs, named(mlp)),
    )


# ------------------------------------------------------------------------- Algorithms: graph


def _glnn_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    nodes, classes = 2708, 7  # Cora
    labelled = torch.zeros(nodes, dtype=torch.bool)
    labelled[torch.randperm(nodes, generator=generator)[:140]] = True
    return {
        "student_logits": 2 * torch.randn(nodes, classes, generator=generator, dtype=torch.float64),
        "teacher_logits": 4 * torch.randn(nodes, classes, generator=generator, dtype=torch.float64),
        "target": torch.randint(0, classes, (nodes,), generator=generator),
        "labelled": labelled,
    }


@register("glnn", _glnn_inputs, ("student_logits",))
def _glnn(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.algorithms.graph.glnn import GLNNLoss

    lamb = 0.5  # their --lamb defaults to 0 (soft labels alone); 0.5 exercises both terms
    ours = GLNNLoss(label_weight=lamb)

    def theirs(x: dict) -> torch.Tensor:
        # train_and_eval.py train_mini_batch, lines 76-82 (one mini-batch holding every node),
        # once on the labelled nodes with criterion_l and lamb, once on all nodes with
        # criterion_t and 1 - lamb, as distill_run_transductive calls it
        student = x["student_logits"]
        out_t = x["teacher_logits"].log_softmax(dim=1)  # what train_teacher.py saves
        total = 0
        for ids, labels_, criterion, weight in (
            (x["labelled"].nonzero().squeeze(1), x["target"], nn.NLLLoss(), lamb),
            (
                torch.arange(len(student)),
                out_t,
                nn.KLDivLoss(reduction="batchmean", log_target=True),
                1 - lamb,
            ),
        ):
            scope = official.glnn_batch_loss(
                model=lambda _graph, nodes: student[nodes],
                feats=ids,
                idx_batch=torch.arange(len(ids)).view(1, -1),
                i=0,
                labels=labels_ if labels_.dim() == 2 else labels_[ids],
                criterion=criterion,
                lamb=weight,
                total_loss=0,
            )
            total = total + scope["loss"]
        return total

    return losses(
        lambda x: ours(x["student_logits"], x["teacher_logits"], x["target"], x["labelled"]),
        theirs,
    )


# ------------------------------------------------------------------ Algorithms: multi-teacher


def _teachers_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "student_logits": 2 * torch.randn(BATCH, CLASSES, generator=generator, dtype=torch.float64),
        **{f"teacher_{k}": logits(generator) for k in range(3)},
        "target": labels(generator),
    }


def _their_branch(official: SimpleNamespace, symbol: str, x: dict, method: str) -> torch.Tensor:
    scope = getattr(official, symbol)(
        opt=SimpleNamespace(ensemble_method=method, teacher_num=3),
        criterion_div=official.DistillKL(4.0),
        logit_s=x["student_logits"],
        logit_t_list=[x[f"teacher_{k}"] for k in range(3)],
        target=x["target"],
    )
    return scope["loss_div"]


@register(
    "averaged-ensemble",
    _teachers_inputs,
    ("student_logits",),
    also=("distiller_zoo/KD.py:DistillKL",),
)
def _averaged_ensemble(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.algorithms.multi_teacher.averaged_ensemble import averaged_ensemble_kd

    return losses(
        lambda x: averaged_ensemble_kd(
            x["student_logits"], [x[f"teacher_{k}"] for k in range(3)], 4.0, average="losses"
        ),
        lambda x: _their_branch(official, "average_loss_branch", x, "AVERAGE_LOSS"),
    )


@register("ca-mkd", _teachers_inputs, ("student_logits",), also=("distiller_zoo/KD.py:DistillKL",))
def _ca_mkd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.algorithms.multi_teacher.ca_mkd import ca_mkd_logit_term

    return losses(
        lambda x: ca_mkd_logit_term(
            x["student_logits"], [x[f"teacher_{k}"] for k in range(3)], x["target"], 4.0
        )[0],
        lambda x: _their_branch(official, "camkd_branch", x, "CAMKD"),
    )


# ------------------------------------------------------------------- Algorithms: adversarial


def _dafl_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    # the teacher's logits and penultimate features on generated images: the generator's
    # loss reads them, and its gradient reaches the generator through them
    return {"teacher_logits": logits(generator), "teacher_features": embedding(generator, 256)}


@register("dafl", _dafl_inputs, ("teacher_logits", "teacher_features"))
def _dafl(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.algorithms.adversarial.dafl import dafl_generator_terms

    weights = {"one_hot": 0.5, "activation": 0.1, "information_entropy": 20.0}  # our defaults

    def mine(x: dict) -> torch.Tensor:
        # DAFL.forward's generator loss: the weighted sum of dafl_generator_terms
        terms = dafl_generator_terms(x["teacher_logits"], x["teacher_features"])
        return sum(weights[name] * terms[name] for name in weights)

    def theirs(x: dict) -> torch.Tensor:
        # DAFL-train.py lines 175-180, as written: --oh 0.5 --ie 20 --a 0.1 (CIFAR-100)
        scope = official.dafl_generator_loss(
            outputs_T=x["teacher_logits"],
            features_T=x["teacher_features"],
            criterion=nn.CrossEntropyLoss(),
            opt=SimpleNamespace(oh=0.5, ie=20.0, a=0.1),
        )
        return scope["loss"]

    return losses(mine, theirs)


@register("dfad", logit_pair, ("student_logits",))
def _dfad(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.algorithms.adversarial.dfad import logit_l1

    def theirs(x: dict) -> torch.Tensor:
        # DFAD_cifar.py train(), line 30: the imitation (student) step's loss, as written
        scope = official.dfad_student_loss(s_logit=x["student_logits"], t_logit=x["teacher_logits"])
        return scope["loss_S"]

    return losses(lambda x: logit_l1(x["student_logits"], x["teacher_logits"]), theirs)


# ---------------------------------------------------------------------- Algorithms: adaptive


def _cd_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    tensors = stages(STUDENT_NARROW, TEACHER_STAGES)(generator)
    teacher = logits(generator, 5.0)
    target = labels(generator)
    target[:40] = teacher[:40].argmax(dim=1)  # the teacher is right on 40 of the 64
    return {
        **tensors,
        "logits_s": logits(generator),
        "logits_t": teacher,
        "target": target,
    }


@register(
    "channel-distillation",
    _cd_inputs,
    (*student_names(3), "logits_s"),
    also=("losses/kd_loss.py:KDLossv2", "models/channel_distillation.py:conv1x1_bn"),
)
def _channel_distillation(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.algorithms.adaptive.channel_distillation import (
        channel_distillation_loss,
        connector,
        guided_kd_loss,
    )

    widths_s, widths_t = [c for c, _h, _w in STUDENT_NARROW], [c for c, _h, _w in TEACHER_STAGES]
    ours_connectors = nn.ModuleList(
        connector(s, t) for s, t in zip(widths_s, widths_t, strict=True)
    ).to(dtype)
    their_connectors = nn.ModuleList(
        official.conv1x1_bn(s, t) for s, t in zip(widths_s, widths_t, strict=True)
    ).to(dtype)
    copy_into(their_connectors, ours_connectors)
    cd, gkd = official.CDLoss(), official.KDLossv2(1)

    def mine(x: dict) -> torch.Tensor:
        # ChannelDistillation.forward's distillation terms at the first epoch (decay factor 1)
        connected = [c(s) for c, s in zip(ours_connectors, listed(x, "student"), strict=True)]
        features = channel_distillation_loss(connected, listed(x, "teacher"))
        guided = guided_kd_loss(x["logits_s"], x["logits_t"], x["target"], 1.0)
        return 6.0 * features + 0.1 * guided

    def theirs(x: dict) -> torch.Tensor:
        # cifar_train.py train(): loss_rate 6 * CDLoss(connected student maps, teacher maps)
        # + 0.1 * KDLossv2(T 1)(student logits, teacher logits, labels), cifar_config.py
        connected = [c(s) for c, s in zip(their_connectors, listed(x, "student"), strict=True)]
        features = cd(connected, listed(x, "teacher"))
        return 6.0 * features + 0.1 * gkd(x["logits_s"], x["logits_t"], x["target"])

    return Pair(
        ours=Side(
            mine,
            {f"c{i}.{k}": v for i, c in enumerate(ours_connectors) for k, v in named(c).items()},
        ),
        theirs=Side(
            theirs,
            {f"c{i}.{k}": v for i, c in enumerate(their_connectors) for k, v in named(c).items()},
        ),
    )


# ------------------------------------------------------------------------- Algorithms: graph


class _Graph:
    """The few DGL pieces the LSP authors' code calls (DGL has no wheel for this torch), as
    DGL documents them: ``local_var``/``local_scope``, ``ndata``/``edata``, ``apply_edges`` with
    ``fn.u_sub_v``, ``update_all`` with ``fn.u_mul_e`` and ``fn.sum`` (a sum at each edge's
    destination, 0 for a node without incoming edges)."""

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, nodes: int) -> None:
        self.src, self.dst, self.nodes = src, dst, nodes
        self.ndata: dict[str, torch.Tensor] = {}
        self.edata: dict[str, torch.Tensor] = {}

    def local_var(self) -> _Graph:
        graph = _Graph(self.src, self.dst, self.nodes)
        graph.ndata, graph.edata = dict(self.ndata), dict(self.edata)
        return graph

    def local_scope(self) -> Any:
        import contextlib

        @contextlib.contextmanager
        def scope() -> Any:
            saved = dict(self.ndata), dict(self.edata)
            try:
                yield
            finally:
                self.ndata, self.edata = saved

        return scope()

    def number_of_nodes(self) -> int:
        return self.nodes

    def apply_edges(self, function: Any) -> None:
        message, _reduce, out = function
        self.edata[out] = message(self)

    def update_all(self, message: Any, reduce: Any) -> None:
        values = message(self)
        total = torch.zeros((self.nodes, *values.shape[1:]), dtype=values.dtype)
        self.ndata[reduce[1]] = total.index_add(0, self.dst, values)


_DGL_FUNCTION = SimpleNamespace(
    u_sub_v=lambda u, v, out: (lambda g: g.ndata[u][g.src] - g.ndata[v][g.dst], None, out),
    u_mul_e=lambda u, e, out: lambda g: g.ndata[u][g.src] * g.edata[e],
    sum=lambda message, out: (None, out),
)


def _edge_softmax(graph: _Graph, scores: torch.Tensor) -> torch.Tensor:
    """DGL's ``edge_softmax``: a softmax over the edges entering each destination node."""
    shape = (graph.nodes, *scores.shape[1:])
    peak = torch.full(shape, -torch.inf, dtype=scores.dtype)
    peak = peak.index_reduce(0, graph.dst, scores.detach(), "amax")
    exp = torch.exp(scores - peak[graph.dst])
    total = torch.zeros(shape, dtype=scores.dtype).index_add(0, graph.dst, exp)
    return exp / total[graph.dst]


def _lsp_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    # PPI-like: 2,000 nodes, about 15 incoming edges each, student width 136, teacher 1,024
    nodes, edges = 2000, 30000
    src = torch.randint(0, nodes, (edges,), generator=generator)
    dst = torch.randint(0, nodes, (edges,), generator=generator)
    keep = src != dst
    return {
        "student_embeddings": torch.randn(nodes, 136, generator=generator, dtype=torch.float64),
        "teacher_embeddings": torch.randn(nodes, 1024, generator=generator, dtype=torch.float64),
        "edge_index": torch.stack([src[keep], dst[keep]]),
    }


@register("lsp", _lsp_inputs, ("student_embeddings",), also=("auxilary_loss.py:graph_KLDiv",))
def _lsp(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    import warnings

    from reference_impls.algorithms.graph.lsp import LSPLoss

    warnings.filterwarnings("ignore", "index_reduce")
    for function in (official.distanceNet.forward, official.graph_KLDiv):
        function.__globals__.update(fn=_DGL_FUNCTION, edge_softmax=_edge_softmax)
    ours, distance = LSPLoss(), official.distanceNet()

    def theirs(x: dict) -> torch.Tensor:
        # main.py train_student: graph_KLDiv(graph, distanceNet(student), distanceNet(teacher))
        src, dst = x["edge_index"]
        graph = _Graph(src, dst, len(x["student_embeddings"]))
        student = distance(graph, x["student_embeddings"])
        teacher = distance(graph, x["teacher_embeddings"].detach())
        return official.graph_KLDiv(graph, student, teacher)

    return losses(
        lambda x: ours(x["student_embeddings"], x["teacher_embeddings"], x["edge_index"]), theirs
    )


# ------------------------------------------------------------------- Algorithms: cross-modal


def _c2kd_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    # AVE: batch 64, 28 classes; the proxies correlated so that some samples are selected
    classes = 28
    z_s, z_t, q_s, q_t = (
        scale * torch.randn(BATCH, classes, generator=generator, dtype=torch.float64)
        for scale in (3.0, 4.0, 2.0, 2.0)
    )
    return {
        "student_logits": z_s,
        "teacher_logits": z_t,
        "student_proxy": q_s,
        "teacher_proxy": q_t + 0.5 * q_s,
        "target": torch.randint(0, classes, (BATCH,), generator=generator),
    }


class _Given(nn.Module):
    """A stand-in network returning given logits and, as its one feature map, given proxy
    logits (the proxies are then the identity)."""

    def __init__(self, logits_: torch.Tensor, proxy: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.proxy = logits_, proxy

    def forward(self, _x: torch.Tensor) -> Any:
        from reference_impls.common.models import ModelOutput

        return ModelOutput(self.logits, [self.proxy])


@register(
    "c2kd",
    _c2kd_inputs,
    ("student_logits", "teacher_logits", "student_proxy", "teacher_proxy"),
)
def _c2kd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.algorithms.cross_modal.c2kd import C2KD

    def mine(x: dict) -> torch.Tensor:
        # our procedure on stand-in networks; both networks learn (update_teacher, the default)
        student = _Given(x["student_logits"], x["student_proxy"])
        teacher = _Given(x["teacher_logits"], x["teacher_proxy"])
        procedure = C2KD(
            student, teacher, num_classes=28, stage=-1, student_width=1, teacher_width=1
        )
        procedure.teacher_model = teacher  # not a copy: gradients reach the given tensors
        procedure.student_proxy, procedure.teacher_proxy = nn.Identity(), nn.Identity()
        frames = torch.zeros(BATCH, 2, 1, 1, dtype=x["student_logits"].dtype)
        return procedure(frames, x["target"])["loss"]

    def theirs(x: dict) -> torch.Tensor:
        # ave/utils/helper.py train_network_distill, lines 163-197, as written (--krc 0)
        scope = official.c2kd_step_loss(
            outputs=x["student_logits"],
            pseu_label=x["teacher_logits"],
            stu_logits=x["student_proxy"],
            tea_logits=x["teacher_proxy"],
            labels=x["target"],
            args=SimpleNamespace(krc=0.0),
            criterion3=nn.KLDivLoss(reduction="batchmean"),
            criterion4=nn.KLDivLoss(reduction="none"),
        )
        return scope["loss"]

    return losses(mine, theirs)


# --------------------------------------------------------------- Sources: similarity (more)


def _irg_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    tensors = stages(STUDENT_STAGES, TEACHER_STAGES)(generator)
    return {**tensors, "logits_s": logits(generator), "logits_t": logits(generator)}


@register("irg", _irg_inputs, (*student_names(3), "logits_s"))
def _irg(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.sources.similarity.irg import IRGLoss

    ours, theirs = IRGLoss(), official.IRG(0.1, 5.0, 5.0)  # train_kd.py's defaults

    def authors(x: dict) -> torch.Tensor:
        # train_kd.py (irg): the last two stage maps, the pooled feature and the logits
        def graph(side: str) -> list[torch.Tensor]:
            maps = listed(x, side)
            return [maps[1], maps[2], maps[2].mean((2, 3)), x[f"logits_{side[0]}"]]

        return theirs(graph("student"), [t.detach() for t in graph("teacher")])

    return losses(
        lambda x: ours(listed(x, "student"), listed(x, "teacher"), x["logits_s"], x["logits_t"]),
        authors,
    )


# ------------------------------------------------------------ Algorithms: adversarial (more)


def _images(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """CIFAR-10-shaped images in [0, 1] and labels (batch 64)."""
    return {
        "images": torch.rand(BATCH, 3, 32, 32, generator=generator, dtype=torch.float64),
        "labels": torch.randint(0, 10, (BATCH,), generator=generator),
    }


def _linear_classifier(seed: int, dtype: torch.dtype) -> nn.Module:
    """A small differentiable classifier of images (the attack needs input gradients)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)).to(dtype)


@register("rslad", _images, ())
def _rslad(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    import copy

    from reference_impls.algorithms.adversarial.rslad import RSLAD

    student, teacher = _linear_classifier(1, dtype), _linear_classifier(2, dtype)
    their_student, their_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    ours = RSLAD(student, teacher)  # 5/6, 1/6, eps 8/255, 10 steps of 2/255, start 0.001 N(0, 1)

    def theirs(x: dict) -> torch.Tensor:
        # resnet18_rslad_cifar10.py lines 53-63, as written: rslad_inner_loss (the attack, from
        # rslad_loss.py), then 5/6 kl_loss(adversarial) + 1/6 kl_loss(natural)
        scope = official.rslad_step_loss(
            teacher=their_teacher,
            student=their_student,
            train_batch_data=x["images"],
            train_batch_labels=x["labels"],
            optimizer=SimpleNamespace(zero_grad=lambda: None),
        )
        return scope["loss"]

    return Pair(
        ours=Side(lambda x: ours(x["images"], x["labels"])["loss"], named(student)),
        theirs=Side(theirs, named(their_student)),
    )


@register("ard", _images, (), also=("AttackPGD",))
def _ard(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    import copy

    from reference_impls.algorithms.adversarial.ard import ARD

    student, teacher = _linear_classifier(1, dtype), _linear_classifier(2, dtype)
    their_student, their_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    ours = ARD(student, teacher)  # T 30, alpha 1, eps 8/255, 10 steps of 2/255, uniform start
    config = {"epsilon": 8.0 / 255, "num_steps": 10, "step_size": 2.0 / 255}  # main.py's

    def theirs(x: dict) -> torch.Tensor:
        # main.py train(), lines 124-127, as written: AttackPGD(basic_net, config), the
        # teacher and the student on the clean inputs, --temp 30 --alpha 1 (the defaults)
        scope = official.ard_step_loss(
            net=official.AttackPGD(their_student, config),
            teacher_net=their_teacher,
            basic_net=their_student,
            inputs=x["images"],
            targets=x["labels"],
            args=SimpleNamespace(alpha=1.0, temp=30.0),
        )
        return scope["loss"]

    return Pair(
        ours=Side(lambda x: ours(x["images"], x["labels"])["loss"], named(student)),
        theirs=Side(theirs, named(their_student)),
    )


# ------------------------------------------------------------------- Algorithms: contrastive

CRD_SAMPLES, CRD_NEGATIVES = 50000, 16384  # CIFAR-100's training set; --nce_k 16384


def _crd_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    index = torch.randperm(CRD_SAMPLES, generator=generator)[:BATCH]
    contrast = torch.randint(0, CRD_SAMPLES, (BATCH, CRD_NEGATIVES + 1), generator=generator)
    contrast[:, 0] = index  # column 0: each sample itself, as CIFAR100InstanceSample returns
    return {
        "student_emb": torch.randn(BATCH, 256, generator=generator, dtype=torch.float64),
        "teacher_emb": torch.randn(BATCH, 256, generator=generator, dtype=torch.float64),
        "index": index,
        "contrast": contrast,
    }


def _crd_options() -> SimpleNamespace:
    return SimpleNamespace(
        s_dim=256, t_dim=256, feat_dim=128, nce_k=CRD_NEGATIVES, nce_t=0.07, nce_m=0.5,
        n_data=CRD_SAMPLES,
    )  # fmt: skip


def _contrastive_pair(
    ours: nn.Module, theirs: nn.Module, dtype: torch.dtype, weight: float, temperature: float
) -> Pair:
    """Both with our heads and memory banks; theirs times the weight ours folds in."""
    with torch.no_grad():
        for mine, other in (
            (ours.student_head, theirs.embed_s),
            (ours.teacher_head, theirs.embed_t),
        ):
            other.linear.weight.copy_(mine.linear.weight)
            other.linear.bias.copy_(mine.linear.bias)
        theirs.contrast.memory_v1.copy_(ours.student_memory)
        theirs.contrast.memory_v2.copy_(ours.teacher_memory)
    ours.to(dtype)
    theirs.to(dtype)
    with torch.no_grad():  # their params buffer would hold T and m rounded to float32
        theirs.contrast.params[1] = temperature
        theirs.contrast.params[4] = 0.5

    def parameters(student: nn.Module, teacher: nn.Module) -> dict[str, Any]:
        return {
            "W_s": student.linear.weight,
            "b_s": student.linear.bias,
            "W_t": teacher.linear.weight,
            "b_t": teacher.linear.bias,
        }

    return Pair(
        ours=Side(
            lambda x: ours(x["student_emb"], x["teacher_emb"], x["index"], x["contrast"]),
            parameters(ours.student_head, ours.teacher_head),
        ),
        theirs=Side(
            lambda x: (
                weight
                * theirs(x["student_emb"], x["teacher_emb"], x["index"], x["contrast"]).reshape(())
            ),
            parameters(theirs.embed_s, theirs.embed_t),
        ),
    )


@register("crd", _crd_inputs, ("student_emb",))
def _crd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.algorithms.contrastive.crd import CRDLoss

    ours = CRDLoss(256, 256, CRD_SAMPLES)  # 128-d, 16384 negatives, T 0.07, momentum 0.5, 0.8
    return _contrastive_pair(ours, official.CRDLoss(_crd_options()), dtype, 0.8, 0.07)


def _crcd_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    tensors = _crd_inputs(generator)
    return {**tensors, "contrast": tensors["contrast"][:, : 500 + 1].contiguous()}  # --nce_k 500


@register("crcd", _crcd_inputs, ("student_emb",))
def _crcd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.algorithms.contrastive.crcd import CRCDLoss

    ours = CRCDLoss(256, 256, CRD_SAMPLES)  # 128-d, 500 negatives, T 0.05, momentum 0.5, 1
    options = SimpleNamespace(**{**vars(_crd_options()), "nce_k": 500, "nce_t": 0.05})
    theirs = official.CRCDLoss(SimpleNamespace(**vars(options), embed_type="linear"))
    return _contrastive_pair(ours, theirs, dtype, 1.0, 0.05)


# ------------------------------------------------------- Applications: visual recognition


def dense_logits(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Cityscapes-like segmentation logits at 1/8 resolution: 19 classes, 32 x 64."""
    return {
        "student_logits": 3 * torch.randn(4, 19, 32, 64, generator=generator, dtype=torch.float64),
        "teacher_logits": 3 * torch.randn(4, 19, 32, 64, generator=generator, dtype=torch.float64),
    }


def dense_logits_and_features(generator: torch.Generator) -> dict[str, torch.Tensor]:
    maps = dense_logits(generator)
    maps["student_map"] = torch.randn(4, 64, 32, 64, generator=generator, dtype=torch.float64)
    maps["teacher_map"] = torch.randn(4, 256, 32, 64, generator=generator, dtype=torch.float64)
    return {name: m.clamp(min=0) if name.endswith("map") else m for name, m in maps.items()}


def pose_heatmaps(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """MPII-like heatmaps: 16 keypoints at 64 x 64, some invisible (target weight 0)."""
    shape = (4, 16, 64, 64)
    return {
        "student_heatmaps": torch.rand(shape, generator=generator, dtype=torch.float64),
        "teacher_heatmaps": torch.rand(shape, generator=generator, dtype=torch.float64),
        "target_heatmaps": torch.rand(shape, generator=generator, dtype=torch.float64),
        "target_weight": (torch.rand(4, 16, generator=generator) > 0.2).double(),
    }


@register("cwd", dense_logits, ("student_logits",), also=("ChannelNorm",))
def _cwd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.visual_recognition.cwd import CWDLoss

    ours, theirs = CWDLoss(), official.CriterionCWD("channel", "kl", 4.0)
    return losses(
        lambda x: ours(x["student_logits"], x["teacher_logits"]),
        lambda x: 3.0 * theirs(x["student_logits"], x["teacher_logits"]),  # lambda_cwd 3
    )


@register(
    "skd",
    dense_logits_and_features,
    ("student_logits", "student_map"),
    also=("CriterionPairWiseforWholeFeatAfterPool",),
)
def _skd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.visual_recognition.skd import SKDLoss

    ours = SKDLoss()
    pixel = official.CriterionPixelWise()
    pair = official.CriterionPairWiseforWholeFeatAfterPool(scale=0.5, feat_ind=1)

    def theirs(x: dict) -> torch.Tensor:
        student = [x["student_logits"], x["student_map"]]  # their list of outputs
        teacher = [x["teacher_logits"], x["teacher_map"].detach()]
        return 10.0 * pixel(student, teacher) + 1.0 * pair(student, teacher)

    return losses(
        lambda x: ours(
            x["student_logits"], x["teacher_logits"], [x["student_map"]], [x["teacher_map"]]
        ),
        theirs,
    )


@register("fpd", pose_heatmaps, ("student_heatmaps",))
def _fpd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.visual_recognition.fpd import FPDLoss

    ours, criterion = FPDLoss(), official.JointsMSELoss(use_target_weight=True)
    alpha = 0.5  # KD.ALPHA

    def theirs(x: dict) -> torch.Tensor:  # fpd_train, lib/core/function.py
        weight = x["target_weight"][:, :, None]  # their dataset gives [B, K, 1]
        pose = criterion(x["student_heatmaps"], x["target_heatmaps"], weight)
        taught = criterion(x["student_heatmaps"], x["teacher_heatmaps"], weight)
        return (1 - alpha) * pose + alpha * taught

    return losses(
        lambda x: ours(
            x["student_heatmaps"],
            x["teacher_heatmaps"],
            x["target_heatmaps"],
            target_weight=x["target_weight"],
        ),
        theirs,
    )


# ----------------------------------------------------------------------------- applications/diffusion
# 64 points of a 2-D problem; every network is our MLP denoiser (its parameters copied across).
DIFFUSION_BATCH = 64


def _diffusion_points(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"x": 0.5 * torch.randn(DIFFUSION_BATCH, 2, generator=generator, dtype=torch.float64)}


def _denoisers(count: int, dtype: torch.dtype) -> list[nn.Module]:
    """``count`` small denoisers with different weights (seeds 0, 1, ...), in ``dtype``."""
    from reference_impls.common.diffusion import Denoiser

    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        models.append(Denoiser(hidden=(32, 32)).to(dtype))
    return models


class _TheirNetwork(nn.Module):
    """Our F_theta called as their UNets are: ``model(c_in * x, rescaled_t)``,
    rescaled_t = 250 ln(sigma) = 1000 * (our c_noise = ln(sigma) / 4)."""

    def __init__(self, denoiser: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x_in: torch.Tensor, rescaled_t: torch.Tensor) -> torch.Tensor:
        return self.denoiser.raw(x_in, rescaled_t / 1000)


@register("consistency-distillation", _diffusion_points, ())
def _consistency_distillation(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    import copy

    from reference_impls.applications.diffusion import ConsistencyDistillation
    from reference_impls.common.diffusion import as_consistency_model

    teacher, student, target = _denoisers(3, dtype)
    ours = ConsistencyDistillation(teacher, student=as_consistency_model(student))  # N 40, mu 0.95
    ours.target.load_state_dict(as_consistency_model(target).state_dict())  # an EMA past
    # their grid is computed in float32 (indices / (N - 1) is a float32 tensor), ours in
    # float64 and rounded: 1 ulp apart; ours is given theirs so the rest is compared exactly
    rho, indices = 7.0, torch.arange(40)
    low, high = 0.002 ** (1 / rho), 80.0 ** (1 / rho)
    ours.sigmas.copy_((high + indices / 39 * (low - high)) ** rho)
    their_student = _TheirNetwork(copy.deepcopy(ours.student))
    their_target = _TheirNetwork(copy.deepcopy(ours.target))
    their_teacher = _TheirNetwork(copy.deepcopy(ours.teacher))
    scales = {"sigma_data": 0.5, "sigma_max": 80.0, "sigma_min": 0.002, "rho": 7.0}
    diffusion = official.KarrasDenoiser(
        **scales, weight_schedule="uniform", distillation=True, loss_norm="l2"
    )
    teacher_diffusion = official.KarrasDenoiser(**scales, distillation=False, loss_norm="l2")

    def theirs(x: dict[str, torch.Tensor]) -> torch.Tensor:
        terms = diffusion.consistency_losses(
            their_student,
            x["x"],
            40,
            target_model=their_target,
            teacher_model=their_teacher,
            teacher_diffusion=teacher_diffusion,
        )
        return terms["loss"].mean()  # CMTrainLoop: (losses["loss"] * weights).mean(), weights 1

    return Pair(
        ours=Side(lambda x: ours.train()(x["x"])["loss"], dict(ours.student.named_parameters())),
        theirs=Side(theirs, dict(their_student.denoiser.named_parameters())),
    )


class _TheirUNet(nn.Module):
    """Our denoiser called as DMD2's EDM UNets are: ``unet(latents [B, C, 1, 1], sigma, labels)``."""

    def __init__(self, denoiser: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: Any) -> torch.Tensor:
        return self.denoiser(x.flatten(1), sigma.flatten()).view_as(x)


@register("dmd", _diffusion_points, ("x",), also=("get_sigmas_karras",))
def _dmd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    import copy

    from reference_impls.applications.diffusion import DistributionMatchingDistillation

    teacher, fake = _denoisers(2, dtype)
    pairs = torch.zeros(4, 2, dtype=dtype)
    ours = DistributionMatchingDistillation(
        teacher, fake_score=fake, reference_noise=pairs, reference_samples=pairs
    )  # 1000 levels, steps 20 to 980, rho 7
    guidance = official.EDMGuidance.__new__(official.EDMGuidance)
    nn.Module.__init__(guidance)  # their __init__ loads a pickled EDM network: set its fields
    guidance.real_unet = _TheirUNet(copy.deepcopy(ours.teacher))
    guidance.fake_unet = _TheirUNet(copy.deepcopy(ours.fake_score))
    guidance.sigma_data, guidance.num_train_timesteps = 0.5, 1000
    sigmas = official.get_sigmas_karras(1000, sigma_max=80.0, sigma_min=0.002, rho=7.0)
    guidance.register_buffer("karras_sigmas", torch.flip(sigmas, dims=[0]).to(dtype))
    ours.sigmas.copy_(guidance.karras_sigmas)  # theirs in float32 arithmetic, ours rounded: 1 ulp
    guidance.min_step, guidance.max_step = int(0.02 * 1000), int(0.98 * 1000)

    def theirs(x: dict[str, torch.Tensor]) -> torch.Tensor:
        latents = x["x"].view(DIFFUSION_BATCH, 2, 1, 1)
        dm, _ = guidance.compute_distribution_matching_loss(latents, None)
        fake_loss, _ = guidance.compute_loss_fake(latents, None)
        return dm["loss_dm"] + fake_loss["loss_fake_mean"]

    def ours_call(x: dict[str, torch.Tensor]) -> torch.Tensor:
        return ours.distribution_matching_loss(x["x"]) + ours.fake_score_loss(x["x"])

    return Pair(
        ours=Side(ours_call, dict(ours.fake_score.named_parameters())),
        theirs=Side(theirs, dict(guidance.fake_unet.denoiser.named_parameters())),
    )


# ------------------------------------------------------------------ Modalities: video

FF_WIDTH, FF_CLASSES = 1024, 100  # their hierarchical LSTM's state width; classes as elsewhere


class _VideoColumns(nn.Module):
    """A stand-in video model: the clip carries its representation and logits side by side."""

    def __init__(self, start: int) -> None:
        super().__init__()
        self.start, self.embedding_dim = start, FF_WIDTH

    def forward(self, clips: torch.Tensor) -> Any:
        from reference_impls.common.models import ModelOutput

        middle = self.start + FF_WIDTH
        return ModelOutput(
            logits=clips[:, middle : middle + FF_CLASSES], embedding=clips[:, self.start : middle]
        )


def _fewer_frames_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    def state() -> torch.Tensor:  # an LSTM state: tanh-bounded
        return torch.randn(BATCH, FF_WIDTH, generator=generator, dtype=torch.float64).tanh()

    return {
        "student_state": state(),
        "student_logits": logits(generator),
        "teacher_state": state(),
        "teacher_logits": logits(generator),
        "target": labels(generator),
    }


@register("fewer-frames", _fewer_frames_inputs, ("student_state", "student_logits"))
def _fewer_frames(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.modalities.video.fewer_frames import FewerFramesDistillation

    width = FF_WIDTH + FF_CLASSES
    ours = FewerFramesDistillation(_VideoColumns(0), _VideoColumns(width))

    def mine(x: dict) -> torch.Tensor:
        student = torch.cat([x["student_state"], x["student_logits"]], dim=1)
        teacher = torch.cat([x["teacher_state"], x["teacher_logits"]], dim=1)
        return ours(torch.cat([student, teacher], dim=1), x["target"])["loss"]

    def theirs(x: dict) -> torch.Tensor:
        # code_student_uniform/train.py build_graph, lines 359-406, as written
        def label_loss(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            # the single-label softmax cross-entropy in place of YouTube-8M's per-class BCE
            return F.nll_loss(torch.log(probabilities), labels)

        scope = official.fewer_frames_student_loss(
            tf=_TensorFlow(dtype),
            print=lambda *args: None,  # their shape printouts
            teacher_state=x["teacher_state"].detach(),
            student_state=x["student_state"],
            student_results={"predictions": torch.softmax(x["student_logits"], dim=-1)},
            predictions=torch.softmax(x["teacher_logits"].detach(), dim=-1),
            labels_batch=x["target"],
            label_loss_fn=SimpleNamespace(calculate_loss=label_loss),
            regularization_penalty=0.0,  # weight decay is the optimiser's, on both sides
            FLAGS=SimpleNamespace(batch_size=BATCH),
        )
        return scope["total_student_loss"]

    return losses(mine, theirs)


# ------------------------------------------------------------------ Modalities: speech

# DistilHuBERT at a reduced scale: HuBERT Base's 768 features halved, 3 heads, 2 s of 20 ms frames
SPEECH_BATCH, SPEECH_FRAMES, SPEECH_DIM, SPEECH_HEADS = 8, 100, 384, 3


def _distilhubert_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    shape = (SPEECH_BATCH, SPEECH_FRAMES, SPEECH_DIM)
    return {
        "student_hidden": torch.randn(*shape, generator=generator, dtype=torch.float64),
        # teacher layers: a shared component (so that cosines are not all near 0) plus noise
        "teacher_hiddens": torch.randn(
            SPEECH_BATCH, 1, SPEECH_FRAMES, SPEECH_DIM, generator=generator, dtype=torch.float64
        )
        + 0.5
        * torch.randn(
            SPEECH_BATCH, SPEECH_HEADS, *shape[1:], generator=generator, dtype=torch.float64
        ),
    }


@register(
    "distilhubert",
    _distilhubert_inputs,
    ("student_hidden",),
    also=("s3prl/upstream/distiller/module.py:SplitLinear",),
)
def _distilhubert(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.modalities.speech.distilhubert import DistilHuBERTLoss

    ours = DistilHuBERTLoss(SPEECH_DIM, SPEECH_DIM, num_heads=SPEECH_HEADS).to(dtype)
    # DistillerModel.output_layer for out_layer_type "expand-last", inter_dim = the width
    output_layer = nn.Sequential(
        nn.Linear(SPEECH_DIM, SPEECH_DIM * SPEECH_HEADS),
        nn.GELU(),
        official.SplitLinear(SPEECH_DIM, SPEECH_HEADS, SPEECH_DIM),
    ).to(dtype)
    with torch.no_grad():
        output_layer[0].weight.copy_(ours.heads.expand.weight)
        output_layer[0].bias.copy_(ours.heads.expand.bias)
        output_layer[2].weight.copy_(ours.heads.weight)
    # SplitLinear's bias is [1, 1, N, D]: kept as an [N, D] leaf (their values, reshaped at
    # each call) so that its gradient is compared with ours by the same shape
    split_bias = nn.Parameter(ours.heads.bias.detach().clone())
    del output_layer[2].bias
    # config_model.yaml: loss_type l1, cosine_loss 1.0, feat_pen_loss 0.0
    expert = SimpleNamespace(
        loss_func=nn.L1Loss(reduction="none"),
        cosine_loss=1.0,
        config=SimpleNamespace(feat_pen_loss=0.0),
    )

    def theirs(x: dict) -> torch.Tensor:
        hidden = x["student_hidden"]
        b_sz, t_sz = hidden.shape[:2]
        output_layer[2].bias = split_bias.reshape(1, 1, SPEECH_HEADS, SPEECH_DIM)
        # DistillerModel.forward, expand-last: [B, T, N*D] -> [B, N, T, D]
        pred = output_layer(hidden).reshape(b_sz, t_sz, SPEECH_HEADS, -1).permute(0, 2, 1, 3)
        total, *_ = official.DistillerForPretrain.compute_loss(
            expert, hidden, pred, x["teacher_hiddens"]
        )
        return total

    everything = torch.ones(
        SPEECH_BATCH, SPEECH_FRAMES, dtype=torch.bool
    )  # their batch: no padding
    return Pair(
        ours=Side(
            lambda x: ours(x["student_hidden"], x["teacher_hiddens"], everything),
            {
                "expand.weight": ours.heads.expand.weight,
                "expand.bias": ours.heads.expand.bias,
                "split.weight": ours.heads.weight,
                "split.bias": ours.heads.bias,
            },
        ),
        theirs=Side(
            theirs,
            {
                "expand.weight": output_layer[0].weight,
                "expand.bias": output_layer[0].bias,
                "split.weight": output_layer[2].weight,
                "split.bias": split_bias,
            },
        ),
    )


# ---------------------------------------------------- Applications: self-supervised learning

SSL_BATCH, DINO_CROPS, DINO_PROTOTYPES = 16, 10, 4096


def _dino_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """DINO head outputs (cosines of an l2-normalised bottleneck to unit prototypes, in
    [-1, 1]): the student's for 2 global + 8 local views, the teacher's for the 2 global."""

    def cosines(rows: int) -> torch.Tensor:
        return 2 * torch.rand(rows, DINO_PROTOTYPES, generator=generator, dtype=torch.float64) - 1

    return {
        "student_output": cosines(DINO_CROPS * SSL_BATCH),
        "teacher_output": cosines(2 * SSL_BATCH),
        "center": 0.1 * torch.randn(1, DINO_PROTOTYPES, generator=generator, dtype=torch.float64),
    }


def _one_process_group() -> None:
    """Their ``update_center`` calls ``dist.all_reduce`` unconditionally: a one-process gloo
    group lets it run as written (ours then all-reduces too, over the one process)."""
    import tempfile

    import torch.distributed as dist

    if not dist.is_initialized():
        rendezvous = tempfile.mkdtemp(prefix="kdatlas-dino-") + "/init"
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=0, world_size=1)


@register("dino", _dino_inputs, ("student_output",))
def _dino(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.self_supervised.dino import DINOLoss

    _one_process_group()
    # the loss DINO.forward computes; their defaults, epoch 0 (no warm-up: 0.04 throughout)
    ours = DINOLoss(DINO_PROTOTYPES, num_crops=DINO_CROPS).to(dtype)
    theirs = official.DINOLoss(DINO_PROTOTYPES, DINO_CROPS, 0.04, 0.04, 0, 100).to(dtype)

    def mine(x: dict) -> torch.Tensor:
        ours.center.copy_(x["center"])  # a centre after some steps, the same on both sides
        return ours(x["student_output"], x["teacher_output"])

    def their_call(x: dict) -> torch.Tensor:
        theirs.center = x["center"].clone()
        return theirs(x["student_output"], x["teacher_output"], 0)

    return losses(mine, their_call)


SEED_STUDENT_DIM, SEED_DIM, SEED_QUEUE = 512, 128, 4096


def _seed_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A ResNet-18 student's pooled features (512-d, after ReLU) and a teacher's 128-d
    projection, for a batch of 64."""
    return {
        "student_embedding": embedding(generator, SEED_STUDENT_DIM),
        "teacher_embedding": torch.randn(BATCH, SEED_DIM, generator=generator, dtype=torch.float64),
    }


class _SeedStudent(nn.Module):
    """Stands for their student network: ``fc`` (which their ``mlp=True`` wraps in the MLP head)
    applied to the student's embedding, the first columns of their ``image``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(SEED_STUDENT_DIM, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(image[:, :SEED_STUDENT_DIM])


class _SeedTeacher(nn.Module):
    """Stands for their (frozen) teacher network: the teacher's embedding, the last columns."""

    def __init__(self, num_classes: int, width_multiplier: int) -> None:
        super().__init__()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image[:, SEED_STUDENT_DIM:]


@register("seed", _seed_inputs, ("student_embedding",))
def _seed(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.self_supervised.seed import SEEDLoss

    # the loss SEED.forward computes: --temp 0.2 --distill-t 1e-4 --student_mlp True
    ours = SEEDLoss(SEED_STUDENT_DIM, SEED_DIM, queue_size=SEED_QUEUE).to(dtype)
    # teacher_ssl "simclr": their teacher's fc is not replaced (ours reads its output as given)
    theirs = official.SEED(
        _SeedStudent, _SeedTeacher, dim=SEED_DIM, K=SEED_QUEUE, t=0.2, mlp=True,
        temp=1e-4, dist=False, stu="simclr",
    ).to(dtype)  # fmt: skip
    copy_into(theirs, ours)  # the head's weights, the queue and its pointer

    def their_call(x: dict) -> torch.Tensor:
        image = torch.cat([x["student_embedding"], x["teacher_embedding"]], dim=1)
        logit, label = theirs(image=image)
        # main.py soft_cross_entropy(student_logit, teacher_logit)
        return -(label * torch.nn.functional.log_softmax(logit, 1)).sum() / logit.shape[0]

    return Pair(
        ours=Side(lambda x: ours(x["student_embedding"], x["teacher_embedding"]), named(ours.head)),
        theirs=Side(their_call, named(theirs.student.fc)),
    )


COMPRESS_STUDENT_DIM, COMPRESS_TEACHER_DIM, COMPRESS_QUEUE = 128, 512, 4096


def _compress_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A student's, its momentum copy's and a teacher's embeddings of a batch of 64."""

    def rows(dim: int) -> torch.Tensor:
        return torch.randn(BATCH, dim, generator=generator, dtype=torch.float64)

    student = rows(COMPRESS_STUDENT_DIM)
    return {
        "student_embedding": student,
        "teacher_embedding": rows(COMPRESS_TEACHER_DIM),
        "student_key_embedding": student + 0.1 * rows(COMPRESS_STUDENT_DIM),
    }


@register("compress", _compress_inputs, ("student_embedding",))
def _compress(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.self_supervised.compress import CompRess

    # the loss CompRess.forward computes: --compress_t 0.04, banks of 4096 (128000 in theirs)
    ours = CompRess(
        nn.Identity(), nn.Identity(), COMPRESS_STUDENT_DIM, COMPRESS_TEACHER_DIM, COMPRESS_QUEUE
    ).to(dtype)
    theirs = official.CompReSSMomentum(
        COMPRESS_TEACHER_DIM, COMPRESS_STUDENT_DIM, COMPRESS_QUEUE, 0.04
    ).to(dtype)
    with torch.no_grad():  # the same (random) banks on both sides
        theirs.student_sample_similarities.memory.copy_(ours.student_bank.memory)
        theirs.teacher_sample_similarities.memory.copy_(ours.teacher_bank.memory)

    def mine(x: dict) -> torch.Tensor:
        return ours.loss(x["student_embedding"], x["teacher_embedding"], x["student_key_embedding"])

    def their_call(x: dict) -> torch.Tensor:
        return theirs(x["teacher_embedding"], x["student_embedding"], x["student_key_embedding"])

    return losses(mine, their_call)


class _Jax:
    """The jax and jax.numpy functions BYOL's loss statements and ``regression_loss`` call
    (jax is not installed here), written in torch as JAX documents them."""

    lax = SimpleNamespace(stop_gradient=torch.Tensor.detach, rsqrt=torch.rsqrt)
    square, maximum, mean = torch.square, torch.clamp_min, torch.mean

    @staticmethod
    def sum(x: torch.Tensor, axis: int | None = None, keepdims: bool = False) -> torch.Tensor:
        return x.sum() if axis is None else x.sum(dim=axis, keepdim=keepdims)


BYOL_WIDTH = 256  # their projection and prediction width


def _byol_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    def rows() -> torch.Tensor:
        return torch.randn(BATCH, BYOL_WIDTH, generator=generator, dtype=torch.float64)

    return {name: rows() for name in ("prediction_1", "prediction_2", "target_1", "target_2")}


@register(
    "byol",
    _byol_inputs,
    ("prediction_1", "prediction_2"),
    also=("byol/utils/helpers.py:regression_loss",),
)
def _byol(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.self_supervised.byol import BYOLLoss

    # the loss BYOL.forward adds over both view orders; our predictor set aside (identity):
    # the predictions are the inputs on both sides
    loss = BYOLLoss(BYOL_WIDTH, BYOL_WIDTH)
    loss.predictor = nn.Identity()
    official.regression_loss.__globals__.update(jax=_Jax, jnp=_Jax)

    def mine(x: dict) -> torch.Tensor:
        return loss(x["prediction_1"], x["target_2"]) + loss(x["prediction_2"], x["target_1"])

    def theirs(x: dict) -> torch.Tensor:
        # byol_experiment.py loss_fn, lines 243-250, as written
        scope = official.loss_fn(
            jax=_Jax,
            jnp=_Jax,
            helpers=SimpleNamespace(regression_loss=official.regression_loss),
            online_network_out={
                "prediction_view1": x["prediction_1"],
                "prediction_view2": x["prediction_2"],
            },
            target_network_out={
                "projection_view1": x["target_1"],
                "projection_view2": x["target_2"],
            },
        )
        return scope["repr_loss"]

    return losses(mine, theirs)


# ---------------------------------------------------------------------- Modalities: text


def _two_class_logits(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """SST-2-like: student and teacher logits of 2 classes; the labels are the teacher's argmax."""
    student = 3.0 * torch.randn(BATCH, 2, generator=generator, dtype=torch.float64)
    teacher = 3.0 * torch.randn(BATCH, 2, generator=generator, dtype=torch.float64)
    return {"student_logits": student, "teacher_logits": teacher, "target": teacher.argmax(1)}


@register("distilled-bilstm", _two_class_logits, ("student_logits",))
def _distilled_bilstm(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.modalities.text.distilled_bilstm import DistilledBiLSTMLoss

    ours = DistilledBiLSTMLoss()  # distill_weight 1, ce_weight 1

    def theirs(x: dict) -> torch.Tensor:
        # distill_birnn.py main(), lines 125-130: the loss of one training step, as written
        teacher = x["teacher_logits"]
        scope = official.distill_birnn_loss(
            args=SimpleNamespace(float_score=False, distill_lambda=1, ce_lambda=1),
            batch=SimpleNamespace(
                logits_0=teacher[:, 0], logits_1=teacher[:, 1], label=x["target"]
            ),
            logits=x["student_logits"],
            kd_criterion=nn.MSELoss(),
            criterion=nn.CrossEntropyLoss(),
        )
        return scope["loss"]

    return losses(lambda x: ours(x["student_logits"], x["teacher_logits"], x["target"]), theirs)


# ------------------------------------------------------------ Applications: large language models

LM_SHAPE = (4, 32, 2000)  # batch, tokens, vocabulary: a small LLM batch


def _token_logits_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Student and teacher next-token logits, labels with -100 at a quarter of the tokens."""
    batch, length, vocab = LM_SHAPE
    student = 2 * torch.randn(*LM_SHAPE, generator=generator, dtype=torch.float64)
    teacher = 4 * torch.randn(*LM_SHAPE, generator=generator, dtype=torch.float64)
    label = torch.randint(0, vocab, (batch, length), generator=generator)
    dropped = torch.rand(batch, length, generator=generator) < 0.25
    return {
        "student_logits": student,
        "teacher_logits": teacher,
        "label": label.masked_fill(dropped, -100),
    }


def _teacher_entropy(x: dict) -> torch.Tensor:
    """Mean over kept tokens of the teacher's entropy: a constant their cross-entropy forms add."""
    log_p = F.log_softmax(x["teacher_logits"], dim=-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    kept = x["label"] != -100
    return entropy[kept].sum() / kept.sum()


def _ours_token_loss(loss: nn.Module) -> Callable[[dict], torch.Tensor]:
    return lambda x: loss(x["student_logits"], x["teacher_logits"], x["label"])


@register("word-level-kd", _token_logits_inputs, ("student_logits",))
def _word_level_kd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.llm.word_level import WordLevelKDLoss

    return losses(
        _ours_token_loss(WordLevelKDLoss()),
        # forward_kl is the cross-entropy -sum p log q: KL plus the teacher's entropy
        lambda x: (
            official.forward_kl(x["student_logits"], x["teacher_logits"], {"label": x["label"]})
            - _teacher_entropy(x)
        ),
    )


@register("minillm", _token_logits_inputs, ("student_logits",))
def _minillm(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.llm.minillm import MiniLLMReverseKLLoss

    def theirs(x: dict) -> torch.Tensor:
        # Loss._reg_loss reads the teacher's logits from its trainer: a stand-in holds them
        trainer = SimpleNamespace(
            compute_logits_and_log_probs=lambda *args, **kwargs: x["teacher_logits"]
        )
        loss = official.Loss(SimpleNamespace(model_parallel=False), trainer)
        mask = (x["label"] != -100).to(x["student_logits"].dtype)
        inf_mask = torch.zeros(LM_SHAPE, dtype=torch.bool)
        return loss._reg_loss(None, None, mask, x["student_logits"], inf_mask, {})

    return losses(_ours_token_loss(MiniLLMReverseKLLoss()), theirs)


@register("gkd", _token_logits_inputs, ("student_logits",))
def _gkd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.llm.gkd import GKDLoss

    def theirs(x: dict) -> torch.Tensor:
        # the body of GKDTrainer.generalized_jsd_loss up to the masking (lines 271-303), with
        # its defaults beta 0.5 and temperature 1; then its "batchmean" reduction (316-317)
        scope = official.generalized_jsd_loss(
            student_logits=x["student_logits"],
            teacher_logits=x["teacher_logits"],
            labels=x["label"],
            beta=0.5,
            temperature=1.0,
        )
        return scope["jsd"].sum() / scope["mask"].sum().clamp_min(1)

    return losses(_ours_token_loss(GKDLoss(beta=0.5)), theirs)


@register("distillm-skew-kl", _token_logits_inputs, ("student_logits",))
def _distillm_skew_kl(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.llm.skew_kl import SkewKLLoss

    return losses(
        _ours_token_loss(SkewKLLoss(skew=0.1)),
        # skewed_forward_kl is the cross-entropy against the mixture: plus the teacher's entropy
        lambda x: (
            official.skewed_forward_kl(
                x["student_logits"], x["teacher_logits"], {"label": x["label"]}, lam=0.1
            )
            - _teacher_entropy(x)
        ),
    )


@register("distillm-skew-reverse-kl", _token_logits_inputs, ("student_logits",))
def _distillm_skew_reverse_kl(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.llm.skew_reverse_kl import SkewReverseKLLoss

    return losses(
        _ours_token_loss(SkewReverseKLLoss(skew=0.1)),
        lambda x: official.skewed_reverse_kl(
            x["student_logits"], x["teacher_logits"], {"label": x["label"]}, lam=0.1
        ),
    )


def _distilbert_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A masked-LM batch: logits, last hidden states, MLM labels at 15%, right padding."""
    batch, length, vocab = LM_SHAPE
    tensors = {
        "s_logits": 2 * torch.randn(*LM_SHAPE, generator=generator, dtype=torch.float64),
        "t_logits": 4 * torch.randn(*LM_SHAPE, generator=generator, dtype=torch.float64),
        "s_hidden": torch.randn(batch, length, 64, generator=generator, dtype=torch.float64),
        "t_hidden": torch.randn(batch, length, 64, generator=generator, dtype=torch.float64),
    }
    attention_mask = torch.ones(batch, length, dtype=torch.bool)
    attention_mask[1, 20:] = False
    attention_mask[3, 9:] = False
    chosen = (torch.rand(batch, length, generator=generator) < 0.15) & attention_mask
    labels = torch.randint(0, vocab, (batch, length), generator=generator)
    return {
        **tensors,
        "lm_labels": labels.masked_fill(~chosen, -100),
        "attention_mask": attention_mask,
    }


@register("distilbert", _distilbert_inputs, ("s_logits", "s_hidden"))
def _distilbert(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.llm.distilbert import DistilBERTLoss

    ours = DistilBERTLoss(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
    # the Distiller's attributes at the README's distilbert-base-uncased command
    # (--alpha_ce 5.0 --alpha_mlm 2.0 --alpha_cos 1.0 --alpha_clm 0.0, temperature 2.0) and its
    # loss functions as Distiller.__init__ builds them (lines 111-116)
    distiller = SimpleNamespace(
        params=SimpleNamespace(restrict_ce_to_mask=False),
        temperature=2.0,
        alpha_ce=5.0,
        alpha_mlm=2.0,
        alpha_clm=0.0,
        alpha_mse=0.0,
        alpha_cos=1.0,
        ce_loss_fct=nn.KLDivLoss(reduction="batchmean"),
        lm_loss_fct=nn.CrossEntropyLoss(ignore_index=-100),
        cosine_loss_fct=nn.CosineEmbeddingLoss(reduction="mean"),
    )

    def theirs(x: dict) -> torch.Tensor:
        scope = official.step(
            self=distiller,
            s_logits=x["s_logits"],
            t_logits=x["t_logits"],
            s_hidden_states=[x["s_hidden"]],
            t_hidden_states=[x["t_hidden"]],
            attention_mask=x["attention_mask"],
            lm_labels=x["lm_labels"],
        )
        return scope["loss"]

    return losses(
        lambda x: ours(
            x["s_logits"],
            x["t_logits"],
            x["s_hidden"],
            x["t_hidden"],
            x["lm_labels"],
            x["attention_mask"],
        ),
        theirs,
    )


# ------------------------------------------------------------ Modalities: 3d and multi-view


class _TorchOfDtype:
    """``torch`` with ``FloatTensor`` made in the run's dtype: the PointDistiller code starts
    its sum from ``torch.FloatTensor([0.0])``, which would round a float64 run to float32."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.FloatTensor = lambda data: torch.tensor(data, dtype=dtype)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def _edge_layer(in_channels: int, out_channels: int) -> nn.Module:
    """mmcv's ConvModule(kernel (1, 1), Conv2d, BN2d, ReLU, bias='auto'): conv without bias."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


# PointRCNN's fp_features at the 4x compression (student 64 channels, teacher 128), on 1024
# points with the authors' query ratio 6000/16384 (375 queries) and 32 neighbours
PD_POINTS, PD_QUERIES, PD_NEIGHBOURS = 1024, 375, 32


def _pointdistiller_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    def relu_map(channels: int) -> torch.Tensor:
        x = torch.randn(4, channels, PD_POINTS, generator=generator, dtype=torch.float64)
        return x.clamp(min=0)

    return {"student_features": relu_map(64), "teacher_features": relu_map(128)}


@register("pointdistiller", _pointdistiller_inputs, ("student_features",))
def _pointdistiller(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.modalities._3d.pointdistiller import PointDistillerLoss

    ours = PointDistillerLoss([64], [128], num_queries=PD_QUERIES, neighbours=PD_NEIGHBOURS).to(
        dtype
    )
    shim = SimpleNamespace(
        teacher_gcn_adapt=_edge_layer(256, 64).to(dtype),
        student_gcn_adapt=_edge_layer(128, 64).to(dtype),
    )
    copy_into(shim.teacher_gcn_adapt, ours.teacher_graph)
    copy_into(shim.student_gcn_adapt, ours.student_graph)

    def theirs(x: dict) -> torch.Tensor:
        # point_rcnn.py lines 162-237 define get_knn_point_backbone; called as at line 284
        scope = official.get_knn_point_backbone(self=shim, torch=_TorchOfDtype(dtype))
        distance = scope["get_knn_point_backbone"](
            teacher_feature=x["teacher_features"],
            student_feature=x["student_features"],
            point_saliency=None,
            num_points=PD_QUERIES,
            kneighbours=PD_NEIGHBOURS,
            reweight=True,
            sample_mode="top",
            pool_mode="max",
            fuse_mode="idendity",
        )
        return distance.sum()

    return Pair(
        ours=Side(
            lambda x: ours([x["student_features"]], [x["teacher_features"]]),
            {**prefixed("student", ours.student_graph), **prefixed("teacher", ours.teacher_graph)},
        ),
        theirs=Side(
            theirs,
            {
                **prefixed("student", shim.student_gcn_adapt),
                **prefixed("teacher", shim.teacher_gcn_adapt),
            },
        ),
    )


# SLidR on two 32x56 images (4x4 grid superpixels, 112 per image: SLIC's at most 150), 2048
# points each (a fifth outside the image), MinkUNet's 96 last channels, a 256-channel image map
SL_BATCH, SL_POINTS, SL_HEIGHT, SL_WIDTH, SL_CELL = 2, 2048, 32, 56, 4


def _slidr_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    shape = (SL_BATCH, SL_POINTS)
    pixels = torch.randint(0, SL_HEIGHT * SL_WIDTH, shape, generator=generator)
    outside = torch.rand(shape, generator=generator) < 0.2
    rows = torch.arange(SL_HEIGHT)[:, None] // SL_CELL
    cols = torch.arange(SL_WIDTH)[None, :] // SL_CELL
    grid = rows * (SL_WIDTH // SL_CELL) + cols
    return {
        "student_features": torch.randn(SL_BATCH, 96, SL_POINTS, generator=generator).double(),
        "teacher_features": torch.randn(
            SL_BATCH, 256, SL_HEIGHT, SL_WIDTH, generator=generator
        ).double(),
        "pixels": torch.where(outside, torch.full_like(pixels, -1), pixels),
        "superpixels": grid.expand(SL_BATCH, -1, -1).clone(),
    }


@register(
    "slidr",
    _slidr_inputs,
    ("student_features",),
    also=("pretrain/criterion.py:NCELoss",),
)
def _slidr(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.modalities._3d.slidr import SLidRLoss

    ours = SLidRLoss([96], [256]).to(dtype)
    # MinkUNet's final layer (1x1, bias) and DilationFeatureExtractor's decoder conv (1x1, bias)
    point_head, image_head = nn.Conv1d(96, 64, 1).to(dtype), nn.Conv2d(256, 64, 1).to(dtype)
    copy_into(point_head, ours.point_head)
    copy_into(image_head, ours.image_head)
    shim = SimpleNamespace(
        device=torch.device("cpu"), superpixel_size=150, criterion=official.NCELoss(0.07)
    )

    def theirs(x: dict) -> torch.Tensor:
        # normalize_features: True on both networks' outputs; points flattened over the batch
        output_points = F.normalize(point_head(x["student_features"]), dim=1)
        output_points = output_points.transpose(1, 2).reshape(-1, 64)
        output_images = F.normalize(image_head(x["teacher_features"]), dim=1)
        pixels = x["pixels"]
        sample, point = torch.nonzero(pixels >= 0, as_tuple=True)
        flat = pixels[sample, point]
        batch = {
            "superpixels": x["superpixels"],
            "pairing_points": sample * SL_POINTS + point,
            "pairing_images": torch.stack([sample, flat // SL_WIDTH, flat % SL_WIDTH], dim=1),
        }
        scope = official.loss_superpixels_average()  # lines 82-130 define the method
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # its sparse one-hot matrices: torch.ones(...) default dtype
        try:
            return scope["loss_superpixels_average"](shim, batch, output_points, output_images)
        finally:
            torch.set_default_dtype(previous)

    return Pair(
        ours=Side(
            lambda x: ours(
                [x["student_features"]], [x["teacher_features"]], x["pixels"], x["superpixels"]
            ),
            {**prefixed("point", ours.point_head), **prefixed("image", ours.image_head)},
        ),
        theirs=Side(theirs, {**prefixed("point", point_head), **prefixed("image", image_head)}),
    )


# PointNet_Cls_Distiller at its defaults: 1024 points, 1024 channels, 12 views, 512-d codewords
MCD_BATCH, MCD_POINTS, MCD_CHANNELS, MCD_VIEWS, MCD_DIM = 2, 1024, 1024, 12, 512


def _pointmcd_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    shape = (MCD_BATCH, MCD_CHANNELS, MCD_POINTS)
    return {
        "student_features": torch.randn(*shape, generator=generator).double().clamp(min=0),
        "teacher_view_descriptors": torch.randn(MCD_BATCH, MCD_VIEWS, MCD_DIM, generator=generator)
        .double()
        .clamp(min=0),
        "visibility": torch.rand(MCD_BATCH, MCD_POINTS, MCD_VIEWS, generator=generator) < 0.4,
    }


@register("pointmcd", _pointmcd_inputs, ("student_features",))
def _pointmcd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.modalities.multi_view.pointmcd import PointMCDLoss

    ours = PointMCDLoss([MCD_CHANNELS], MCD_DIM).to(dtype)
    net = official.PointNet_Cls_Distiller().to(dtype)
    copy_into(net.mv_cdw_alignment, ours.alignment)

    class Encoder(nn.Module):  # the Student_PointNet's output: per-point features [B, N, C]
        def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return points, points.new_zeros(())

    net.encoder = Encoder()

    def theirs(x: dict) -> torch.Tensor:
        # distiller_pn_c.py: loss_dist_cdw_mv = nn.L1Loss()(mv_cdw_s, mv_cdw_t), weight 1.0
        pwe = x["student_features"].transpose(1, 2)
        _, mv_cdw_s, _, _, _ = net(pwe, x["visibility"].to(dtype))
        return nn.L1Loss()(mv_cdw_s, x["teacher_view_descriptors"])

    return Pair(
        ours=Side(
            lambda x: ours([x["student_features"]], x["teacher_view_descriptors"], x["visibility"]),
            prefixed("alignment", ours.alignment),
        ),
        theirs=Side(theirs, prefixed("alignment", net.mv_cdw_alignment)),
    )


# ------------------------------------------------------- Applications: foundation models

SENTENCE_DIM, STUDENT_SENTENCE_DIM = 384, 128  # all-MiniLM-L6-v2's width; a smaller student


def _sentence_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A student's raw 128-d sentence embeddings and a teacher's unit 384-d ones (batch 64)."""
    student = torch.randn(BATCH, STUDENT_SENTENCE_DIM, generator=generator, dtype=torch.float64)
    teacher = torch.randn(BATCH, SENTENCE_DIM, generator=generator, dtype=torch.float64)
    return {"student_emb": student, "teacher_emb": F.normalize(teacher, dim=1)}


def _embed_distill(metric: str, ours_class: str) -> Callable[[SimpleNamespace, torch.dtype], Pair]:
    """sentence-transformers' EmbedDistillLoss (``metric``) with a 128 -> 384 projection."""

    def build(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
        from reference_impls.applications import foundation_models

        ours = getattr(foundation_models, ours_class)(STUDENT_SENTENCE_DIM, SENTENCE_DIM)
        ours = ours.to(dtype)
        # their __init__ reads the student model's width; set the two attributes it sets
        theirs = official.EmbedDistillLoss.__new__(official.EmbedDistillLoss)
        nn.Module.__init__(theirs)
        theirs.distance_metric = metric
        theirs.projection = nn.Linear(STUDENT_SENTENCE_DIM, SENTENCE_DIM).to(dtype)
        copy_into(theirs.projection, ours.projection)
        return Pair(
            ours=Side(lambda x: ours(x["student_emb"], x["teacher_emb"]), named(ours.projection)),
            theirs=Side(
                lambda x: theirs.compute_loss_from_embeddings(
                    [x["student_emb"]], [x["teacher_emb"]]
                ),
                named(theirs.projection),
            ),
        )

    return build


register("embedding-mse", _sentence_inputs, ("student_emb",))(
    _embed_distill("mse", "EmbeddingMSELoss")
)
register("embedding-cosine", _sentence_inputs, ("student_emb",))(
    _embed_distill("cosine", "EmbeddingCosineLoss")
)

CLIP_STUDENT_DIM, CLIP_TEACHER_DIM = 256, 512  # e.g. a ViT-T/16 student of a ViT-B/16 CLIP


def _clip_inputs(normalise_student: bool) -> Callable[[torch.Generator], dict[str, torch.Tensor]]:
    """A batch of 64 pairs: student and teacher image/text embeddings and logit scales."""

    def make(generator: torch.Generator) -> dict[str, torch.Tensor]:
        def batch(width: int, unit: bool) -> torch.Tensor:
            x = torch.randn(BATCH, width, generator=generator, dtype=torch.float64)
            return F.normalize(x, dim=1) if unit else x

        return {
            "student_image": batch(CLIP_STUDENT_DIM, normalise_student),
            "student_text": batch(CLIP_STUDENT_DIM, normalise_student),
            "teacher_image": batch(CLIP_TEACHER_DIM, True),
            "teacher_text": batch(CLIP_TEACHER_DIM, True),
            "student_scale": torch.tensor(
                30.0 if normalise_student else 1 / 0.07, dtype=torch.float64
            ),
            "teacher_scale": torch.tensor(100.0, dtype=torch.float64),
        }

    return make


def _clip_call(loss: Callable[..., Any]) -> Callable[[dict], Any]:
    return lambda x: loss(
        x["student_image"], x["teacher_image"], x["student_text"], x["teacher_text"],
        x["student_scale"], x["teacher_scale"],
    )  # fmt: skip


@register(
    "tinyclip-affinity",
    _clip_inputs(normalise_student=True),
    ("student_image", "student_text", "student_scale"),
)
def _tinyclip_affinity(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.foundation_models.tinyclip import AffinityMimickingLoss

    ours = AffinityMimickingLoss()
    theirs = official.ClipSoftLoss(local_loss=True, rank=0, world_size=1)
    theirs.gather_feature = lambda feature: feature  # one rank: all_gather is the identity

    def their_loss(x: dict) -> torch.Tensor:
        # TinyCLIP/src/training/train.py loss_fn: each direction * 0.5 * alpha * weight (1, 1)
        image_to_text, text_to_image = theirs(
            x["student_image"], x["student_text"], x["student_scale"],
            x["teacher_image"], x["teacher_text"], x["teacher_scale"],
            average_two_losses=False,
        )  # fmt: skip
        return 0.5 * image_to_text + 0.5 * text_to_image

    return losses(_clip_call(ours), their_loss)


@register(
    "clip-kd",
    _clip_inputs(normalise_student=False),
    ("student_image", "student_text", "student_scale"),
)
def _clip_kd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.foundation_models.clip_kd import CLIPKDLoss

    ours = CLIPKDLoss(CLIP_STUDENT_DIM, CLIP_TEACHER_DIM).to(dtype)  # FD 2000, ICL 1, CKD 1
    options = SimpleNamespace(
        t_embed_dim=CLIP_TEACHER_DIM, s_embed_dim=CLIP_STUDENT_DIM,
        alpha_ckd_loss=1.0, alpha_icl_loss=1.0, alpha_fd_loss=2000.0,
        alpha_cross_kd_loss=0.0, alpha_gd_loss=0.0, alpha_afd_loss=0.0,
    )  # fmt: skip
    # world_size 2: their one-process branch reads a variable before assigning it; on one
    # rank the gathered features are the local batch
    theirs = official.KDClipLoss(options, world_size=2).to(dtype)
    theirs.forward.__globals__["gather_features"] = lambda image, text, *rest: (image, text)
    copy_into(theirs.visual_proj, ours.image_projection)
    copy_into(theirs.text_proj, ours.text_projection)

    def their_loss(x: dict) -> torch.Tensor:
        _, ckd, icl, _, fd, _, _ = theirs(
            x["student_image"], x["student_text"], x["student_scale"],
            x["teacher_image"], x["teacher_text"], x["teacher_scale"],
        )  # fmt: skip
        return ckd + icl + fd

    def parameters(scale: nn.Parameter, image: nn.Module, text: nn.Module) -> dict:
        return {"icl_scale": scale, **{f"image_{k}": v for k, v in named(image).items()},
                **{f"text_{k}": v for k, v in named(text).items()}}  # fmt: skip

    return Pair(
        ours=Side(
            _clip_call(ours),
            parameters(ours.icl_scale, ours.image_projection, ours.text_projection),
        ),
        theirs=Side(
            their_loss,
            parameters(theirs.cross_logit_scale, theirs.visual_proj, theirs.text_proj),
        ),
    )


# ---- applications/llm: MiniLLM policy gradient

POLICY_SHAPE = (4, 8, 32, 2000)  # batch, prompt tokens, response tokens, vocabulary


def _minillm_policy_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A scored rollout as their sampler stores it (no padding): the student's response
    logits, the teacher's, the sampled ids, the log-probabilities at sampling time (the
    current ones perturbed, so that some ratios leave the clip range), the rewards
    (log p - log q) / 0.5 and the weights q / (0.8 q + 0.2 p)."""
    batch, prompt, response, vocab = POLICY_SHAPE
    student = 2 * torch.randn(batch, response, vocab, generator=generator, dtype=torch.float64)
    teacher = 4 * torch.randn(batch, response, vocab, generator=generator, dtype=torch.float64)
    ids = torch.randint(0, vocab, (batch, response), generator=generator)
    log_q = F.log_softmax(student, -1).gather(-1, ids[..., None])[..., 0]
    log_p = F.log_softmax(teacher, -1).gather(-1, ids[..., None])[..., 0]
    old = log_q + 0.3 * torch.randn(batch, response, generator=generator, dtype=torch.float64)
    mixed = torch.logaddexp(old + torch.tensor(0.8).log(), log_p + torch.tensor(0.2).log())
    return {
        "student_logits": student,
        "teacher_logits": teacher,
        "prompt": torch.randint(0, vocab, (batch, prompt), generator=generator),
        "response": ids,
        "old_logprobs": old,
        "rewards": ((log_p - old) / 0.5).clamp(-100, 100),
        "weights": (old - mixed).exp(),
    }


class _GivenLogits(nn.Module):
    """A stand-in student whose logits at the response positions are the inputs'."""

    def __init__(self) -> None:
        super().__init__()
        self.response_logits = torch.empty(0)

    def forward(self, tokens: torch.Tensor) -> SimpleNamespace:
        batch, _, vocab = self.response_logits.shape
        before = self.response_logits.new_zeros(batch, POLICY_SHAPE[1] - 1, vocab)
        after = self.response_logits.new_zeros(batch, 1, vocab)
        return SimpleNamespace(logits=torch.cat([before, self.response_logits, after], 1))


# get_log_probs comes with Loss (losses.py imports it from .utils)
@register("minillm-policy", _minillm_policy_inputs, ("student_logits",))
def _minillm_policy(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.llm.minillm_policy import MiniLLM, Rollout

    student = _GivenLogits()
    ours = MiniLLM(student, nn.Identity())  # defaults: gamma 0.95, cliprange 0.2

    def our_loss(x: dict) -> torch.Tensor:
        student.response_logits = x["student_logits"]
        rollout = Rollout(
            tokens=torch.cat([x["prompt"], x["response"]], 1),
            mask=torch.ones_like(x["response"], dtype=torch.bool),
            old_logprobs=x["old_logprobs"],
            rewards=x["rewards"],
            weights=x["weights"],
            teacher_logits=x["teacher_logits"],
        )
        terms = ours.policy_loss(rollout)
        return terms["pg"] + terms["single_step"]

    def their_loss(x: dict) -> torch.Tensor:
        # Loss.ppo_loss's training terms (its logging needs torch.distributed): the
        # response log-probabilities (get_log_probs), _get_advantages_and_returns,
        # _pg_loss, plus _reg_loss under --single-step-reg; the teacher's logits through a
        # stand-in trainer
        trainer = SimpleNamespace(
            compute_logits_and_log_probs=lambda *args, **kwargs: x["teacher_logits"]
        )
        args = SimpleNamespace(model_parallel=False, gamma=0.95, cliprange=0.2)
        loss = official.Loss(args, trainer)
        mask = torch.ones(x["response"].shape, dtype=torch.long)
        logits = x["student_logits"]
        logprobs = official.get_log_probs(logits, x["response"], mask)
        advantages = loss._get_advantages_and_returns(x["rewards"], mask.shape[1], mask)
        pg = loss._pg_loss(logprobs, x["old_logprobs"], advantages, mask, x["weights"])
        inf_mask = torch.zeros(logits.shape, dtype=torch.bool)
        return pg + loss._reg_loss(None, None, mask, logits, inf_mask, {})

    return losses(our_loss, their_loss)


# ---- applications/llm: BERT compression (TinyBERT, MiniLM, Patient KD)

# TinyBERT-4 (4 layers, width 312, 12 heads) from BERT-base (12 layers, width 768, 12 heads)
# on a short batch; no padding, where their mean over all entries and ours over the real
# (query, key) pairs agree (the declared deviation); their additive mask (-10000) is left out
TINYBERT_SHAPE = (4, 32)  # batch, tokens
TINYBERT_STUDENT, TINYBERT_TEACHER, TINYBERT_HEADS = (4, 312), (12, 768), 12


def _tinybert_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Hidden states (embeddings first) and attention scores of a student and a teacher."""
    batch, length = TINYBERT_SHAPE
    tensors = {}
    for side, (layers, width) in (("s", TINYBERT_STUDENT), ("t", TINYBERT_TEACHER)):
        for index in range(layers + 1):
            tensors[f"{side}_hidden_{index:02d}"] = torch.randn(
                batch, length, width, generator=generator, dtype=torch.float64
            )
        for index in range(layers):
            tensors[f"{side}_scores_{index:02d}"] = 3 * torch.randn(
                batch, TINYBERT_HEADS, length, length, generator=generator, dtype=torch.float64
            )
    return tensors


def _tinybert_lists(x: dict, side: str, what: str) -> list[torch.Tensor]:
    return [x[k] for k in sorted(x) if k.startswith(f"{side}_{what}_")]


@register(
    "tinybert",
    _tinybert_inputs,
    tuple(f"s_hidden_{i:02d}" for i in range(TINYBERT_STUDENT[0] + 1))
    + tuple(f"s_scores_{i:02d}" for i in range(TINYBERT_STUDENT[0])),
)
def _tinybert(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.llm.tinybert import TinyBERTLoss

    ours = TinyBERTLoss(TINYBERT_STUDENT[1], TINYBERT_TEACHER[1]).to(dtype)
    # their student's fit_dense (modeling.py: nn.Linear(hidden_size, fit_size)), applied to
    # every hidden state before the loop, as TinyBertForSequenceClassification.forward does
    fit_dense = nn.Linear(*ours.projection.weight.shape[::-1]).to(dtype)
    copy_into(fit_dense, ours.projection)
    mask = torch.ones(TINYBERT_SHAPE, dtype=torch.bool)

    def ours_call(x: dict) -> torch.Tensor:
        return ours(
            _tinybert_lists(x, "s", "hidden"),
            _tinybert_lists(x, "t", "hidden"),
            _tinybert_lists(x, "s", "scores"),
            _tinybert_lists(x, "t", "scores"),
            mask,
        )

    def theirs(x: dict) -> torch.Tensor:
        scope = official.intermediate_layer_loss(
            student_atts=_tinybert_lists(x, "s", "scores"),
            teacher_atts=_tinybert_lists(x, "t", "scores"),
            student_reps=[fit_dense(h) for h in _tinybert_lists(x, "s", "hidden")],
            teacher_reps=_tinybert_lists(x, "t", "hidden"),
            loss_mse=nn.MSELoss(),
            att_loss=0.0,
            rep_loss=0.0,
            device="cpu",
        )
        return scope["loss"]

    return Pair(
        ours=Side(ours_call, dict(ours.named_parameters())),
        theirs=Side(theirs, {f"projection.{k}": v for k, v in fit_dense.named_parameters()}),
    )


def _sentence_pair_logits(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Classifier logits of a GLUE batch: 32 sentences, 3 classes (MNLI)."""
    return {
        "student_logits": 2 * torch.randn(32, 3, generator=generator, dtype=torch.float64),
        "teacher_logits": 4 * torch.randn(32, 3, generator=generator, dtype=torch.float64),
    }


@register("tinybert-prediction", _sentence_pair_logits, ("student_logits",))
def _tinybert_prediction(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.llm.tinybert import TinyBERTPredictionLoss

    temperature = 1.0  # task_distill.py's --temperature default

    def theirs(x: dict) -> torch.Tensor:
        soft_cross_entropy = official.soft_cross_entropy()["soft_cross_entropy"]
        # line 969: cls_loss = soft_cross_entropy(student_logits / T, teacher_logits / T)
        return soft_cross_entropy(
            x["student_logits"] / temperature, x["teacher_logits"] / temperature
        )

    ours = TinyBERTPredictionLoss(temperature=temperature)
    return losses(lambda x: ours(x["student_logits"], x["teacher_logits"]), theirs)


# Patient KD: a 6-layer student of BERT-base (12 layers, width 768) on an RTE-like batch
PKD_BATCH, PKD_LENGTH, PKD_WIDTH, PKD_CLASSES = 32, 16, 768, 2


def _patient_kd_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    tensors = {
        "student_logits": 2
        * torch.randn(PKD_BATCH, PKD_CLASSES, generator=generator, dtype=torch.float64),
        "teacher_logits": 4
        * torch.randn(PKD_BATCH, PKD_CLASSES, generator=generator, dtype=torch.float64),
        "target": torch.randint(0, PKD_CLASSES, (PKD_BATCH,), generator=generator),
    }
    for side, layers in (("s", 6), ("t", 12)):
        for index in range(layers + 1):
            tensors[f"{side}_hidden_{index:02d}"] = torch.randn(
                PKD_BATCH, PKD_LENGTH, PKD_WIDTH, generator=generator, dtype=torch.float64
            )
    return tensors


@register(
    "patient-kd",
    _patient_kd_inputs,
    ("student_logits", *(f"s_hidden_{i:02d}" for i in range(1, 6))),
    also=("distillation_loss",),
)
def _patient_kd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.llm.patient_kd import PatientKDLoss

    ours = PatientKDLoss(alpha=0.7, temperature=10.0, beta=500.0, strategy="skip", normalize=True)

    def theirs(x: dict) -> torch.Tensor:
        # NLI_KD_training.py lines 256-274 at get_predefine_argv's kd.cls command: the student's
        # patience is the [CLS] state of every layer but the last (its encoder returns
        # full_output[i][:, 0]); the teacher's that of --fc_layer_idx 1,3,5,7,9 (0-based
        # encoder layers: hidden states 2, 4, 6, 8, 10)
        student_hidden = _tinybert_lists(x, "s", "hidden")[1:]
        teacher_hidden = _tinybert_lists(x, "t", "hidden")[1:]
        student_patience = torch.stack([h[:, 0] for h in student_hidden[:-1]]).transpose(0, 1)
        teacher_patience = torch.stack([teacher_hidden[i][:, 0] for i in (1, 3, 5, 7, 9)], 1)
        loss_dl, _, _ = official.distillation_loss(
            x["student_logits"], x["target"], x["teacher_logits"], T=10.0, alpha=0.7
        )
        return loss_dl + 500.0 * official.patience_loss(teacher_patience, student_patience, True)

    return losses(
        lambda x: ours(
            x["student_logits"],
            x["teacher_logits"],
            _tinybert_lists(x, "s", "hidden"),
            _tinybert_lists(x, "t", "hidden"),
            x["target"],
        ),
        theirs,
    )


# ---- applications/visual-recognition: FGD
# One FPN level of a RetinaNet on a 400 x 608 image (stride 8: a 50 x 76 map); the student's
# map narrower (128 channels) than the teacher's (256), so that the align convolution is
# compared too; three to six boxes per image. Their FeatureLoss holds the align
# convolution and the two GcBlocks: ours are moved at random (so that no gradient is zero by
# the zero initialisation) and copied into theirs by name.
FGD_IMAGE, FGD_MAP, FGD_BOXES = (400, 608), (50, 76), 4


def _fgd_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    def boxes() -> torch.Tensor:
        height, width = FGD_IMAGE
        corners = torch.rand(2, FGD_BOXES, 2, 2, generator=generator, dtype=torch.float64)
        scale = torch.tensor([width, height], dtype=torch.float64)
        low, high = corners.min(2).values * scale, corners.max(2).values * scale
        return torch.cat([low, high], -1)  # [B, n, 4] x1, y1, x2, y2

    return {
        "student_map": torch.randn(2, 128, *FGD_MAP, generator=generator, dtype=torch.float64),
        "teacher_map": torch.randn(2, 256, *FGD_MAP, generator=generator, dtype=torch.float64),
        "boxes": boxes(),
    }


_FGD_THEIR_NAMES = {
    "student_context.mask": "conv_mask_s",
    "teacher_context.mask": "conv_mask_t",
    "student_context.transform": "channel_add_conv_s",
    "teacher_context.transform": "channel_add_conv_t",
}


def _fgd_their_name(name: str) -> str:
    for ours, theirs in _FGD_THEIR_NAMES.items():
        if name.startswith(ours + "."):
            return theirs + name.removeprefix(ours)
    return name


@register("fgd", _fgd_inputs, ("student_map",))
def _fgd(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.visual_recognition.fgd import FGDLoss

    def kaiming_init(module: nn.Module, mode: str = "fan_out", **_: Any) -> None:
        nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")
        nn.init.zeros_(module.bias)

    def constant_init(module: nn.Module, val: float, bias: float = 0.0) -> None:
        nn.init.constant_(module.weight, val)
        nn.init.constant_(module.bias, bias)

    # mmcv.cnn's initialisers (mmcv is not installed); every parameter is overwritten below
    official.FeatureLoss.reset_parameters.__globals__.update(
        kaiming_init=kaiming_init, constant_init=constant_init
    )
    weights = {"alpha_fgd": 0.001, "beta_fgd": 0.0005, "gamma_fgd": 0.0005, "lambda_fgd": 0.000005}
    ours = FGDLoss(128, 256).double()  # RetinaNet configs: temp 0.5 and the weights above
    theirs = official.FeatureLoss(128, 256, "loss_fgd_fpn_1", temp=0.5, **weights).to(dtype)
    with torch.no_grad():  # drawn in float64, so that both precisions start equal
        for parameter in ours.parameters():
            parameter.copy_(0.05 * torch.randn_like(parameter) + parameter)
    ours.to(dtype)
    theirs.load_state_dict({_fgd_their_name(k): v for k, v in ours.state_dict().items()})
    metas = [{"img_shape": (*FGD_IMAGE, 3)}] * 2
    their_parameters = dict(theirs.named_parameters())
    # the context convolutions' biases get a zero gradient in exact arithmetic (a softmax
    # over locations does not see a constant), whose relative error would compare noise
    compared = [n for n, _ in ours.named_parameters() if not n.endswith("mask.bias")]

    return Pair(
        ours=Side(
            lambda x: ours(x["student_map"], x["teacher_map"], list(x["boxes"]), FGD_IMAGE),
            {n: p for n, p in ours.named_parameters() if n in compared},
        ),
        theirs=Side(
            lambda x: theirs(x["student_map"], x["teacher_map"].detach(), list(x["boxes"]), metas),
            {n: their_parameters[_fgd_their_name(n)] for n in compared},
        ),
    )


# ---- applications/llm: distilling step-by-step

STEP_BATCH, STEP_LABEL, STEP_RATIONALE, STEP_VOCAB = 16, 4, 48, 2000  # T5-like targets


def _step_by_step_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A task-prefix batch: the student's logits for the label and the rationale targets
    (as T5 computes them, one position per target token), target ids with padding at the
    end of some rows (the collator's -100 on their side, 0 on ours)."""
    tensors = {}
    for task, length in (("label", STEP_LABEL), ("rationale", STEP_RATIONALE)):
        shape = (STEP_BATCH, length, STEP_VOCAB)
        tensors[f"{task}_logits"] = 2 * torch.randn(
            *shape, generator=generator, dtype=torch.float64
        )
        ids = torch.randint(3, STEP_VOCAB, (STEP_BATCH, length), generator=generator)
        lengths = torch.randint(1, length + 1, (STEP_BATCH,), generator=generator)
        lengths[0] = length
        tensors[f"{task}_ids"] = ids.masked_fill(torch.arange(length) >= lengths[:, None], 0)
    return tensors


@register("distilling-step-by-step", _step_by_step_inputs, ("label_logits", "rationale_logits"))
def _distilling_step_by_step(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
    from reference_impls.applications.llm.distilling_step_by_step import (
        DistillingStepByStep,
        stack_targets,
    )
    from reference_impls.common.reasoning import LABEL_PREFIX

    pred = torch.zeros(STEP_BATCH, 3, dtype=torch.int64)  # "predict: " + input, tokenised
    expl = torch.ones(STEP_BATCH, 3, dtype=torch.int64)  # "explain: " + input

    def ours(x: dict) -> torch.Tensor:
        width = max(STEP_LABEL, STEP_RATIONALE)

        class Student(nn.Module):
            """A stand-in for the seq2seq student: the given logits of the task its prefix names."""

            def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> SimpleNamespace:
                task = "label" if int(src[0, 0]) == LABEL_PREFIX else "rationale"
                logits = x[f"{task}_logits"]
                return SimpleNamespace(logits=F.pad(logits, (0, 0, 0, width - logits.shape[1])))

        start = torch.ones(STEP_BATCH, 1, dtype=torch.int64)  # <s>, then the target tokens
        targets = stack_targets(
            torch.cat([start, x["label_ids"]], 1), torch.cat([start, x["rationale_ids"]], 1)
        )
        procedure = DistillingStepByStep(Student(), alpha=0.5)  # run.py --alpha 0.5
        src = torch.full((STEP_BATCH, 3), 5, dtype=torch.int64)
        return procedure(src, targets)["loss"]

    def theirs(x: dict) -> torch.Tensor:
        def t5(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
            # T5ForConditionalGeneration.forward's loss: CrossEntropyLoss(ignore_index=-100)
            # over lm_logits.view(-1, V) and labels.view(-1)
            logits = x["label_logits"] if input_ids is pred else x["rationale_logits"]
            loss = nn.CrossEntropyLoss(ignore_index=-100)(
                logits.reshape(-1, logits.size(-1)), labels.reshape(-1)
            )
            return SimpleNamespace(loss=loss)

        def batch(ids: torch.Tensor, input_ids: torch.Tensor) -> dict:
            # TaskPrefixDataCollator: DataCollatorForSeq2Seq pads the labels with -100
            return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                    "labels": ids.masked_fill(ids == 0, -100)}  # fmt: skip

        inputs = {"pred": batch(x["label_ids"], pred), "expl": batch(x["rationale_ids"], expl)}
        # model_utils.py TaskPrefixTrainer.compute_loss, lines 50-53, at run.py's alpha 0.5
        scope = official.compute_loss(model=t5, inputs=inputs, self=SimpleNamespace(alpha=0.5))
        return scope["loss"]

    return losses(ours, theirs)
