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
# # Offline distillation: a frozen teacher, and a teacher assistant
#
# **The question.** In the offline scheme a teacher is trained first, then frozen, and
# a student learns from it. Two questions follow: how much does the student's gain
# depend on how good the frozen teacher is, and when the student is much smaller than
# the teacher, does a mid-sized *teacher assistant* (TAKD) in between help?
#
# **The setting.** scikit-learn's 8x8 digits. A teacher CNN (~0.31M parameters) is
# trained on all 1,348 training images; the student (~20k parameters, 4x narrower)
# and the assistant (~80k, 2x narrower than the teacher) see only **100 labelled
# images**, the transfer set; all are tested on 449 held-out digits, over three seeds.
# Compared: the student alone; `OfflineDistiller` with Hinton's KD from the teacher,
# and from a teacher stopped after one epoch; TAKD's chain teacher → assistant →
# student, and the same chain without the assistant (one step: KD with the TAKD
# authors' loss). Everything is imported from `reference_impls`; the set-up every notebook
# shares (data, cached teachers, seeds, tables, plots) is `reference_impls.common.Experiment`.
#
# **Runtime.** 22 s of CPU time in the kernel with the teachers read from the teacher
# cache; 39 s of wall-clock time, measured while the 2-core machine was shared with other
# jobs (19-22 s on the idle machine before the fifth arm was added). Seeded; runs on CUDA
# when present (not timed there).

# %%
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch

from reference_impls.common import (
    Experiment,
    TinyCNN,
    count_parameters,
    mean_std,
    method_colors,
    student_cnn,
    teacher_cnn,
)
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.schemes.offline.takd import TAKD
from reference_impls.sources.logit.kd import KDLoss

exp = Experiment(seeds=(0, 1, 2), epochs=16, labelled=100, batch_size=25)
TEMPERATURE, LAMBDA = 5.0, 0.5  # TAKD's default; used for plain KD too


def assistant_cnn() -> TinyCNN:
    """The teacher assistant: halfway between teacher (32, 64, 128) and student (8, 16, 32)."""
    return TinyCNN((16, 32, 64))


for name, model in [("teacher", teacher_cnn()), ("assistant", assistant_cnn())]:
    print(f"{name}: {count_parameters(model):,} parameters")
print(f"student: {count_parameters(student_cnn()):,} parameters")

# %% [markdown]
# ## Two frozen teachers
#
# The same teacher network, from the same initialisation, trained for five epochs and
# for one (a weak teacher). Both come back frozen: eval mode, so their batch-norm
# statistics cannot move. Trained teachers are cached on disk, keyed by their
# configuration, so the five-epoch one is the teacher of the Sources notebooks.

# %%
teacher = exp.teacher(teacher_cnn, epochs=5)
weak_teacher = exp.teacher(teacher_cnn, epochs=1)
teacher_accuracy, weak_accuracy = exp.accuracy(teacher), exp.accuracy(weak_teacher)
teacher_state = copy.deepcopy(teacher.state_dict())

# %% [markdown]
# ## The students
#
# KD uses TAKD's default temperature and weight (τ = 5, λ = 0.5: half cross-entropy,
# half KD). TAKD follows its authors' code, whose `nn.KLDivLoss()` also averages over
# the 10 classes: its KD term is a tenth of Hinton's at the same λ. So that the only
# difference is the assistant, "TAKD, no assistant" runs the same chain with the
# assistant left out: one step of the authors' loss from the teacher. TAKD trains
# each step of its chain for the same 16 epochs on the same 100 images. The learning
# curve records, after every epoch, how often the student agrees with the (strong) teacher.

# %%


def agreement_with_teacher(model) -> float:
    return exp.agreement(model, teacher)


def alone(seed):
    distiller = OfflineDistiller(student_cnn(), teacher, None)  # cross-entropy only
    return exp.train(distiller, seed, curve=agreement_with_teacher)


def kd_from(frozen_teacher):
    def run(seed):
        loss = KDLoss(temperature=TEMPERATURE)
        distiller = OfflineDistiller(student_cnn(), frozen_teacher, loss, 1.0 - LAMBDA, LAMBDA)
        return exp.train(distiller, seed, curve=agreement_with_teacher)

    return run


def takd(seed):
    student = student_cnn()
    chain = TAKD(teacher, [assistant_cnn()], student, temperature=TEMPERATURE, lambda_=LAMBDA)
    chain.start_step(0)  # teacher → assistant
    assistant = exp.train(chain, seed).model
    chain.start_step(1)  # assistant → student
    trained = exp.train(chain, seed, curve=agreement_with_teacher)
    trained.extras["assistant accuracy"] = exp.accuracy(assistant)
    return trained


def takd_without_assistant(seed):
    chain = TAKD(teacher, [], student_cnn(), temperature=TEMPERATURE, lambda_=LAMBDA)
    return exp.train(chain, seed, curve=agreement_with_teacher)


METHODS = {
    "alone": alone,
    "KD, weak teacher": kd_from(weak_teacher),
    "KD": kd_from(teacher),
    "TAKD, no assistant": takd_without_assistant,
    "TAKD": takd,
}
exp.compare(METHODS, exp.against(teacher))  # every method once per seed
exp.summary()  # mean ± std over the seeds
assistants = [run["assistant accuracy"] for run in exp.results["TAKD"]]
print(f"{'TAKD assistant':>16}: test accuracy {mean_std(assistants)}")

# the offline scheme's contract: the teacher did not move while teaching
unchanged = all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_state.items())
print("teacher weights and batch-norm statistics unchanged after distillation:", unchanged)

# %% [markdown]
# ## Learning curves: agreement with the teacher
#
# After each epoch, the fraction of test images on which the student predicts the
# strong teacher's class (mean over seeds, band ± one standard deviation).

# %%
exp.plot_curves(ylabel="agreement with the teacher")
plt.show()

# %% [markdown]
# ## Accuracy, agreement, distance to the teacher
#
# Final values, mean ± standard deviation over three seeds. The lines in the left
# panel are the two teachers and TAKD's assistant.

# %%
ylims = {"accuracy": (0.6, 1.0), "agreement": (0.6, 1.0)}
fig = exp.plot_bars(["accuracy", "agreement", "kl"], ylims=ylims)
accuracy_axis = fig.axes[0]
takd_color = method_colors(METHODS)["TAKD"]
accuracy_axis.axhline(teacher_accuracy, color="grey", linestyle="--", label="teacher")
accuracy_axis.axhline(weak_accuracy, color="grey", linestyle="-.", label="weak teacher")
accuracy_axis.axhline(np.mean(assistants), color=takd_color, linestyle=":", label="TAKD assistant")
accuracy_axis.legend(fontsize=7, loc="lower left")
plt.show()

exp.report_runtime()

# %% [markdown]
# ## What we saw
#
# * A good frozen teacher helps: KD from the 99% teacher lifts the student from about
#   0.89 to about 0.92 test accuracy, raises its agreement with the teacher, and cuts
#   its KL to the teacher about threefold. Its agreement curve lies above training
#   alone from the first epochs, and the gap widens in the second half.
# * The student inherits its teacher's quality. KD from the same network stopped
#   after one epoch (85% accurate) ends slightly *below* training alone, and its
#   student has the largest KL to the good teacher of all: it learned the weak
#   teacher's distribution. The student still beats its weak teacher, because it also
#   sees the labels.
# * TAKD did not help here. With its authors' loss, whose KD term is a tenth of
#   Hinton's at the same λ (their `nn.KLDivLoss()` averages over the 10 classes), the
#   student ends at 0.880 ± 0.010, below training alone (0.889 ± 0.013), and the same
#   chain without the assistant gives 0.883 ± 0.015: at λ = 0.5 the KD term is too weak
#   to matter, with or without an assistant (itself 0.905 ± 0.009). KD with Hinton's
#   reduction at the same τ and λ gives 0.924. The authors tune λ per run over [0.05, 1];
#   our toy does not, and our teacher is only 15 times the student's size on a task both
#   can nearly solve, so this notebook does not test the regime TAKD was made for.
# * The offline contract held: after all the distillation runs the teacher's weights
#   and batch-norm statistics were bit-for-bit unchanged.
# * Caveats: 100 labelled 8x8 digits, 16 epochs per step, three seeds, and TAKD's
#   default τ = 5, λ = 0.5 for both KD arms rather than tuned values.
