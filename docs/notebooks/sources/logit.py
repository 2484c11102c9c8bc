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
# # Logit-based distillation on handwritten digits
#
# **The question.** A student that sees only a few labelled examples learns little
# from one-hot labels. Does matching a teacher's output distribution (its
# "dark knowledge" about which classes look alike) help it, and do the refinements
# of Hinton's loss (DKD, logit standardization, TTM, NormKD) change the picture?
#
# **The setting.** A teacher CNN (~0.31M parameters) is trained on the full
# training split of scikit-learn's 8x8 digits (1,348 images). A student 15x smaller
# (~20k parameters) then trains on only **100 labelled images**, with or without the
# teacher, for 15 epochs and three seeds; all students are tested on the same 449
# held-out images.
# Every loss is imported from `reference_impls`; the notebook only wires them up, and
# the set-up every notebook shares (data, teacher, seeds, tables, plots) comes from
# `reference_impls.common.Experiment`.
#
# **Runtime.** 21-24 s with the teacher read from the teacher cache, 24-25 s when it
# is trained first (two runs each on a 2-core CPU, kernel start included); the kernel
# itself used 19-22 s of CPU time. Seeded; runs on CUDA when present (not timed there).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from reference_impls.common import Experiment, predict_logits, student_cnn
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.dkd import DKDLoss
from reference_impls.sources.logit.kd import KDLoss
from reference_impls.sources.logit.logit_standardization import (
    LogitStandardizationLoss,
)
from reference_impls.sources.logit.normkd import NormKDLoss
from reference_impls.sources.logit.ttm import TTMLoss

# the digits, split once; each student sees the first 100 training images
exp = Experiment(seeds=(0, 1, 2), epochs=15, labelled=100, batch_size=25)
print("labelled images per class:", torch.bincount(exp.labelled.y_train, minlength=10).tolist())

# %% [markdown]
# ## The teacher
#
# Five epochs of cross-entropy on the full training split are enough for ~99% test
# accuracy on digits. The teacher comes back frozen (eval mode: its batch-norm
# statistics must not move). Its weights are cached on disk, keyed by everything that
# decides them, so all notebooks share one training run.

# %%
teacher = exp.teacher()  # teacher_cnn(), 5 epochs, lr 0.1, batches of 128, seed 0

# %% [markdown]
# ## The students
#
# Each method runs with the loss weights and hyper-parameters of its authors'
# CIFAR-100 configuration (see each method's page), with two deviations:
#
# * DKD's linear warm-up lasts 20 of 240 epochs in the authors' runs; we keep that
#   fraction of our 15 epochs (1 epoch) instead of warming up for the whole run.
# * TTM's weight of 45 on the distillation term made training diverge at our learning
#   rate: in a trial run (30 epochs, batch 32) the two students ended at 10% and 21%
#   test accuracy. We use a weight of 10, and say so in the chart's label.

# %%
WARMUP = max(1, round(exp.epochs * 20 / 240))
METHODS = {
    # name: (loss factory, cross-entropy weight, distillation weight)
    "no distillation": (lambda: None, 1.0, 0.0),
    "KD": (lambda: KDLoss(temperature=4.0), 0.1, 0.9),
    "DKD": (lambda: DKDLoss(alpha=1.0, beta=8.0, temperature=4.0, warmup_epochs=WARMUP), 1.0, 1.0),
    "KD + logit std.": (lambda: LogitStandardizationLoss(base="kd", temperature=2.0), 0.1, 9.0),
    "TTM (weight 10)": (lambda: TTMLoss(gamma=0.1), 1.0, 10.0),
    "NormKD": (lambda: NormKDLoss(temperature_norm=2.0), 0.1, 0.9),
}


def distil(make_loss, ce_weight, kd_weight):
    """One method: a fresh student trained by ``OfflineDistiller`` with the given loss."""

    def run(seed):
        distiller = OfflineDistiller(student_cnn(), teacher, make_loss(), ce_weight, kd_weight)
        return exp.train(distiller, seed)  # the student, and its test accuracy per epoch

    return run


# every method once per seed; test accuracy, agreement with and KL to the teacher (τ = 4)
exp.compare({name: distil(*method) for name, method in METHODS.items()}, exp.against(teacher))
exp.summary()  # mean ± std over the seeds

# %% [markdown]
# ## Learning curves
#
# Test accuracy after each epoch, mean over seeds (the band is ± one standard
# deviation). The dashed line is the teacher.

# %%
exp.plot_curves(teacher)  # the teacher as a dashed line
plt.show()

# %% [markdown]
# ## Accuracy, agreement with the teacher, distance to the teacher
#
# Final values, mean ± standard deviation over the seeds. Agreement is the fraction
# of test images where the student predicts the teacher's class; the KL divergence
# is measured at temperature 4, so it also counts the non-target classes.

# %%
exp.plot_bars(["accuracy", "agreement", "kl"], ylims={"accuracy": (0.7, 1), "agreement": (0.7, 1)})
plt.show()

# %% [markdown]
# ## What is transferred
#
# The teacher's knowledge that logit losses pass on is its whole output
# distribution. Averaging the teacher's softened probabilities (τ = 4) over the
# test images of each true class gives a class-by-class matrix: the diagonal is
# confidence, the off-diagonal cells say which digits the teacher finds alike.
# Beside it, the same matrix for a student trained without and with KD (seed 0).
# The colour scale is logarithmic so the small, informative off-diagonal mass is
# visible.


# %%
def class_similarity(model: torch.nn.Module, temperature: float = 4.0) -> np.ndarray:
    """Mean softened prediction per true class: row c is the average over test images of c."""
    probs = F.softmax(predict_logits(model, exp.data.x_test) / temperature, dim=1).cpu()
    labels = exp.data.y_test.cpu()
    return np.stack([probs[labels == c].mean(0).numpy() for c in range(10)])


panels = [
    ("teacher", teacher),
    ("student, no distillation", exp.models["no distillation"]),  # each method's seed-0 model
    ("student, KD", exp.models["KD"]),
]
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, (title, model) in zip(axes, panels, strict=True):
    image = ax.imshow(class_similarity(model), norm="log", vmin=1e-2, vmax=1, cmap="viridis")
    ax.set(title=title, xlabel="predicted class", ylabel="true class")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
fig.colorbar(image, ax=axes, shrink=0.8, label="mean probability at τ = 4")
plt.show()

exp.report_runtime()

# %% [markdown]
# ## What we saw
#
# * With 100 labelled digits the student alone reaches about 0.89 test accuracy; the
#   teacher, trained on 13x more images, about 0.99. Every logit loss lifted the
#   student's mean accuracy, by 1 to 3.5 points, and its agreement with the teacher by
#   as much. KD came out on top, with DKD and TTM within a point of it, but the spread
#   over seeds (1 to 3.5 points) is as large as the differences between the five
#   losses: this run shows that distilling logits helps here, not which refinement is
#   best.
# * The KL panel shows what each loss actually matches. KD and DKD students are the
#   closest to the teacher at a shared temperature (KD's KL is under a third of the
#   undistilled student's). The TTM student is the farthest,
#   further than the undistilled one, by design: TTM fits the teacher's tempered
#   distribution with an untempered student, so the student's own logits are a
#   shrunken copy of the teacher's. Logit standardization matches the shape of the
#   logits, not their scale, and is not closer either. Agreement, not KL, is the fair
#   comparison across them.
# * The class-by-class matrices show the "dark knowledge": the teacher's
#   probabilities on wrong classes are structured (some digits look alike to it).
#   The KD student's matrix takes over that pattern and the teacher's sharper
#   diagonal; the undistilled student's is flatter and more uniform off the diagonal.
# * Loss weights and warm-ups set how fast the curves rise: TTM, with the
#   cross-entropy at full weight, climbs first, KD next; DKD, logit standardization
#   and NormKD start slowest. All curves flatten over the last third of the run.
# * What a toy setting cannot show: these are 8x8 images, 15 epochs on 100 images,
#   three seeds and CIFAR-100 hyper-parameters (TTM's weight lowered). Gaps of one or
#   two points between methods, which decide rankings in papers, are within the noise
#   here.
