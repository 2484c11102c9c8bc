# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Feature-based distillation on handwritten digits
#
# **The question.** Instead of the teacher's outputs, a student can imitate what the
# teacher computes on the way: its intermediate feature maps, where they are active
# (attention), which neurons fire (activation boundaries), or compressed "factors" of
# them. With only a few labelled examples, does this extra supervision help a small
# student, and which of nine published ways of transferring features works here?
#
# **The setting.** As in the logit notebook: a teacher CNN (~0.31M parameters) trained on
# the 1,348 training digits of scikit-learn's 8x8 set; a student 15x smaller trained on
# **100 labelled images**; tests on the 449 held-out digits. Both networks have three
# stages with 8x8, 4x4 and 2x2 maps. Every method is imported from `reference_impls`;
# the shared set-up (data, cached teacher, seeds, tables, plots) is
# `reference_impls.common.Experiment`.
#
# **Runtime.** 25-27 s whether the teacher is read from the teacher cache or trained
# first (two runs each on a 2-core CPU, kernel start included; the spread between runs
# hides the ~3 s the cache saves); the kernel itself used 23-24 s of CPU time. Seeded; runs on CUDA when present (not timed there).

# %%
import matplotlib.pyplot as plt
import torch

from reference_impls.common import Experiment, linear_cka, student_cnn
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.feature.ab import ABInitialisation, ABLoss
from reference_impls.sources.feature.at import ATLoss, attention_map
from reference_impls.sources.feature.fitnets import FitNetsLoss
from reference_impls.sources.feature.ft import FTLoss, pretrain_paraphraser
from reference_impls.sources.feature.mgd import MGDLoss
from reference_impls.sources.feature.nst import NSTLoss
from reference_impls.sources.feature.ofd import OFDLoss, margins_from_data
from reference_impls.sources.feature.reviewkd import ReviewKDLoss
from reference_impls.sources.feature.simkd import SimKD

exp = Experiment(seeds=(0, 1), epochs=9, labelled=100, batch_size=25)

# %% [markdown]
# ## The teacher
#
# The teacher of the logit notebook (5 epochs of cross-entropy on all training
# digits), frozen, and read from the teacher cache when it has been trained before.

# %%
teacher = exp.teacher()
student_channels, teacher_channels = student_cnn().channels, teacher.channels
print(f"stage widths: student {student_channels}, teacher {teacher_channels}")

# %% [markdown]
# ## The methods
#
# Each method keeps its authors' defaults (see its page) except where our 8x8 images
# make a default meaningless; the changes, and why:
#
# * **AT** and **NST** transfer at one stage, our 8x8 one (`stages=(0,)`), the size of
#   the maps the authors used (AT: 8x8 last group of a CIFAR WRN; NST: 7x7 ImageNet
#   maps). Both losses are normalised per map position, so on our 2x2 last stage the
#   authors' weights make the feature term dominate: with this notebook's set-up and
#   only the stages changed, AT on all three stages left the student at 0.23 ± 0.03 test
#   accuracy and NST at its default last stage at 0.37 ± 0.02 (two seeds; measured
#   outside the notebook, see the AT and NST pages).
# * **FT** uses `beta=62.5` instead of 500, which keeps the authors' pull per factor
#   element on our 8x smaller factor (see the FT page); its paraphraser is first trained
#   for the authors' 6 epochs on the same 100 images.
# * **MGD** uses `alpha_mgd=1e-2` instead of 7e-5: its loss is a sum over the map, and
#   the default was set for 7x7 ImageNet maps with up to 2,048 channels, ~200x more
#   elements than our 2x2x128 map.
# * **ReviewKD**'s warm-up keeps the authors' fraction of the run (20 of 240 epochs).
# * **AB** is run as in the paper: an initialisation phase on the AB loss alone (4
#   epochs here, our choice), then cross-entropy training; its connectors are discarded.
# * **OFD**'s margins are estimated from the teacher's responses on the training images.
# * **SimKD** trains the student backbone and a projector on the feature loss alone and
#   classifies with the teacher's frozen classifier, as its authors do.

# %%
WARMUP = max(1, round(exp.epochs * 20 / 240))
with torch.no_grad():
    ofd_margins = margins_from_data(teacher, exp.labelled.x_train)


def distiller_with(loss_factory):
    """A method that adds one loss to the student's cross-entropy (weights 1 and 1)."""

    def run(seed):
        student = student_cnn()
        loss = loss_factory() if loss_factory else None
        return exp.train(OfflineDistiller(student, teacher, loss), seed)

    return run


def ft(seed):
    student = student_cnn()
    loss = FTLoss(student_channels, teacher_channels, beta=62.5)
    pretrain_paraphraser(
        loss, teacher, exp.labelled, epochs=6, batch_size=exp.batch_size, seed=seed
    )
    return exp.train(OfflineDistiller(student, teacher, loss), seed)


def ab(seed):
    student = student_cnn()
    initialisation = ABInitialisation(student, teacher, ABLoss(student_channels, teacher_channels))
    exp.train(initialisation, seed, epochs=4)  # the initialisation phase; connectors discarded
    return exp.train(OfflineDistiller(student, teacher, None), seed)


def simkd(seed):
    return exp.train(SimKD(student_cnn(), teacher), seed)  # its student reuses the teacher's fc


METHODS = {
    "no distillation": distiller_with(None),
    "FitNets": distiller_with(lambda: FitNetsLoss(student_channels, teacher_channels)),
    "AT": distiller_with(lambda: ATLoss(stages=(0,))),
    "NST": distiller_with(lambda: NSTLoss(stages=(0,))),
    "FT": ft,
    "AB": ab,
    "OFD": distiller_with(lambda: OFDLoss(student_channels, teacher_channels, ofd_margins)),
    "ReviewKD": distiller_with(
        lambda: ReviewKDLoss(student_channels, teacher_channels, warmup_epochs=WARMUP)
    ),
    "SimKD": simkd,
    "MGD": distiller_with(
        lambda: MGDLoss(
            student_channels, teacher_channels, alpha_mgd=1e-2, generator=torch.Generator()
        )
    ),
}

# %% [markdown]
# ## Training the students
#
# Every method, every seed, same 100 images, same schedule (9 epochs, SGD with a
# cosine learning rate).

# %%
x_test = exp.data.x_test
with torch.no_grad():
    teacher_features = teacher(x_test).features


def cka_to_teacher(model: torch.nn.Module, stage: int) -> float:
    """Linear CKA between the model's and the teacher's maps at one stage, on the test set."""
    with torch.no_grad():
        features = model.eval()(x_test).features
    return linear_cka(features[stage], teacher_features[stage])


def measure(model: torch.nn.Module) -> dict[str, float]:
    return {
        "accuracy": exp.accuracy(model),
        "agreement": exp.agreement(model, teacher),
        "cka first": cka_to_teacher(model, 0),
        "cka last": cka_to_teacher(model, -1),
    }


exp.compare(METHODS, measure)  # every method once per seed
exp.summary()  # mean ± std over the seeds

# %% [markdown]
# ## Learning curves
#
# Test accuracy after each epoch, mean over the seeds. The dashed line is the teacher.

# %%
exp.plot_curves(teacher)  # two seeds: no band, a standard deviation of two says little
plt.show()

# %% [markdown]
# ## Accuracy, agreement with the teacher, and how teacher-like the features are
#
# Final values, mean ± standard deviation over the seeds (only two seeds fit the time
# budget, so the error bars are rough). The last two panels measure what feature
# distillation targets directly: the linear CKA (Kornblith et al., 2019) between the
# student's and the teacher's feature maps over the test set, at the first (8x8) and the
# last (2x2) stage. CKA is 1 for representations equal up to a rotation and a scale,
# and it compares maps of different widths. (SimKD's last map is its projector's
# output, which is trained to equal the teacher's.)

# %%
metrics = [
    "accuracy",
    "agreement",
    ("cka first", "CKA to the teacher, 8x8 stage"),
    ("cka last", "CKA to the teacher, last stage"),
]
ylims = {"accuracy": (0.7, 1.0), "agreement": (0.7, 1.0), "cka first": (0, 1), "cka last": (0, 1)}
exp.plot_bars(metrics, ylims=ylims)
plt.show()

# %% [markdown]
# ## What is transferred: attention maps
#
# Attention transfer's view of a feature map is where it is active: the mean over
# channels of the squared activations, normalised (`attention_map` from the AT module).
# Below, for five test digits, the 8x8 first-stage attention of the teacher, of the
# student trained without distillation and of the AT student (seed 0). AT asks the
# student's map to look like the teacher's row.

# %%
examples = x_test[:5]
rows = [
    ("input", None),
    ("teacher", teacher),
    ("student, no distillation", exp.models["no distillation"]),  # each method's seed-0 model
    ("student, AT", exp.models["AT"]),
]
fig, axes = plt.subplots(len(rows), len(examples), figsize=(7.5, 6.4))
for row, (title, model) in enumerate(rows):
    if model is None:
        images = examples[:, 0].cpu()
    else:
        model.eval()
        with torch.no_grad():
            stage0 = model(examples).features[0]
        images = attention_map(stage0).reshape(-1, 8, 8).cpu()
    for column, image in enumerate(images):
        axes[row, column].imshow(image, cmap="gray" if model is None else "magma")
        axes[row, column].set_xticks([])
        axes[row, column].set_yticks([])
    axes[row, 0].set_ylabel(title, fontsize=8)
fig.suptitle("First-stage attention maps (brighter: more active)")
plt.show()

with torch.no_grad():
    teacher_attention = attention_map(teacher_features[0])
    print("mean cosine similarity of first-stage attention to the teacher's, test set:")
    for name in ("no distillation", "AT", "NST", "FitNets"):
        student_attention = attention_map(exp.models[name].eval()(x_test).features[0])
        similarity = torch.nn.functional.cosine_similarity(student_attention, teacher_attention)
        print(f"  {name:>16}: {similarity.mean().item():.3f}")

exp.report_runtime()

# %% [markdown]
# ## What we saw
#
# * Features do move toward the teacher's. AT makes the student's first-stage
#   attention nearly identical to the teacher's (cosine similarity about 0.98 against
#   0.81 without distillation), visible in the maps above; NST, which matches a
#   different statistic of the same stage, raises it too (about 0.93); FitNets, whose
#   hint sits at the middle stage, does not. In the CKA panels most methods (all but
#   AB, OFD and SimKD) make the stage they act on more teacher-like than training
#   alone does.
# * Accuracy moves much less. Five of the nine end above the undistilled student
#   (0.87), by up to about two points, AB and MGD highest, but with two seeds the
#   error bars of most of them overlap the baseline's. AT and OFD end level with it,
#   FitNets about a point below, SimKD five points below; SimKD trains without labels
#   (its feature loss only, as its authors do) through a borrowed classifier, which,
#   with 100 images and 9 epochs, costs it here. The curves of FitNets, AT and SimKD,
#   which start slowest, are still rising at the last epoch: a longer run could
#   change their places.
# * So on this toy the clearest lesson is the gap between the two: a student can copy
#   *where* or *how* the teacher's features respond quite closely and still gain
#   little accuracy, because the 8x8 digits are easy for both and the labels already
#   carry most of what the student can use.
# * Several defaults had to change (AT and NST stages, FT and MGD weights, see above):
#   feature losses are sums or means over map positions and channels, so weights tuned
#   for 32x32 or 7x7 maps do not carry over to 2x2 ones. That sensitivity is itself a
#   practical finding; the relative merit of the nine methods at scale is not
#   something this notebook can show.
