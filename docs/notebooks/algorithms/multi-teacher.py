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
# # Multi-teacher distillation: several teachers, one student
#
# **The question.** When several trained teachers are at hand, some good and some
# poor, is the student better taught by their plain average, by CA-MKD, which weighs
# every teacher per sample by how well it predicts that sample's label, or by the
# best teacher alone? And can teachers that each know only *half* of the classes
# teach one student all of them?
#
# **The setting.** The ~20k-parameter student CNN of the other notebooks, trained
# on **100 labelled** 8x8 digits, tested on 449 held-out digits, 10 epochs, two
# seeds. Three teachers of the same architecture and of different quality: the
# standard teacher (all 1,348 training images), one trained on 150 images and one on
# 40. Then two specialists, one trained on the digits 0-4 only and one on 5-9 only,
# amalgamated with UHC. All methods are imported from `reference_impls`; the shared
# set-up is `reference_impls.common.Experiment`.
#
# **Runtime.** 21 s of CPU time in the kernel (two runs, teachers cached); on the
# shared, loaded 2-core machine it was measured on, the wall time was 70-83 s, so it
# is to be timed again on an idle one. Seeded; runs on CUDA when present (not timed
# there).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from reference_impls.algorithms.multi_teacher import CAMKD, UHC, AveragedEnsembleKD
from reference_impls.common import (
    DataSplit,
    Experiment,
    Trained,
    cached_teacher,
    method_colors,
    predict_logits,
    student_cnn,
    teacher_cnn,
    train,
)
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.kd import KDLoss

exp = Experiment(seeds=(0, 1), epochs=10, labelled=100, batch_size=25)

# %% [markdown]
# ## Three teachers of different quality
#
# The standard teacher, and two more trained with cross-entropy on the first 150 and
# the first 40 training images (10 epochs each). All three are cached like every
# notebook's teacher.

# %%
good = exp.teacher()


def teacher_on(images: int, seed: int) -> torch.nn.Module:
    data = exp.data.with_train_subset(images)
    return cached_teacher(
        teacher_cnn, data, epochs=10, batch_size=32, seed=seed, device=exp.device
    ).model


teachers = [good, teacher_on(150, seed=1), teacher_on(40, seed=2)]
NAMES = ["all images", "150 images", "40 images"]
for name, teacher in zip(NAMES, teachers, strict=True):
    print(f"teacher trained on {name:>10}: test accuracy {exp.accuracy(teacher):.3f}")

# %% [markdown]
# ## The methods
#
# Defaults are the authors': the averaged ensemble is Hinton et al.'s arithmetic mean
# of the teachers' softened predictions (τ = 4, the CA-MKD code's averaged baseline);
# CA-MKD uses τ = 4, its logit term with weight 1 and its intermediate-feature term
# with weight β = 50, off in the first epoch. "CA-MKD, logits" leaves the
# feature term out (β = 0, the paper's ablation). Single-teacher KD (τ = 4) learns
# from the best teacher alone.
#
# CA-MKD's per-sample weights are recorded after every epoch on the 100 labelled
# images: the logit weights depend on the frozen teachers only, the feature weights
# on how well each teacher's classifier reads the student's projected features.

# %%
recorded: dict[int, list[dict[str, float]]] = {}


def weights_now(procedure: CAMKD) -> dict[str, float]:
    with torch.no_grad():
        terms = procedure.eval()(exp.labelled.x_train, exp.labelled.y_train)
    return {name: value.item() for name, value in terms.items() if name.endswith("_weight")}


def ca_mkd(seed: int):
    procedure = CAMKD(student_cnn(), teachers)
    recorded[seed] = []

    def accuracy_and_weights(model: torch.nn.Module) -> float:
        recorded[seed].append(weights_now(procedure))
        return exp.accuracy(model)

    return exp.train(procedure, seed, curve=accuracy_and_weights)


METHODS = {
    "student alone": lambda seed: exp.train_alone(student_cnn(), seed),
    "KD, best teacher": lambda seed: exp.train(
        OfflineDistiller(student_cnn(), good, KDLoss(temperature=4.0)), seed
    ),
    "averaged ensemble": lambda seed: exp.train(AveragedEnsembleKD(student_cnn(), teachers), seed),
    "CA-MKD": ca_mkd,
    "CA-MKD, logits": lambda seed: exp.train(
        CAMKD(student_cnn(), teachers, feature_weight=0.0), seed
    ),
}
COLORS = method_colors(METHODS)


def half_of(model: torch.nn.Module) -> float:
    """How often a model puts a test digit in the right half (0-4 or 5-9): used below."""
    predicted = predict_logits(model, exp.data.x_test).argmax(1) >= 5
    return (predicted == (exp.data.y_test >= 5)).float().mean().item()


against_good = exp.against(good)
exp.compare(METHODS, lambda model: {**against_good(model), "half": half_of(model)})
exp.summary(["accuracy", "agreement"])

# %%
fig = exp.plot_bars(["accuracy", "agreement"], ylims={"accuracy": (0.8, 1.0)})
plt.show()

# %% [markdown]
# ## CA-MKD's teacher weights over training
#
# Mean weight of each teacher over the 100 labelled images, after each epoch (seed 0).
# Left: the logit term's weights, from each teacher's own cross-entropy; right: the
# feature term's, from each teacher's classifier applied to the student's projected
# features (off in the first epoch, as in the authors' code: no point there).

# %%
epochs = np.arange(1, exp.epochs + 1)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
for k, name in enumerate(NAMES):
    for ax, term in zip(axes, ("kd", "feature"), strict=True):
        values = [row.get(f"teacher{k}_{term}_weight", np.nan) for row in recorded[0]]
        ax.plot(epochs, values, marker="o", label=f"teacher, {name}")
for ax, title in zip(axes, ("logit term", "feature term"), strict=True):
    ax.axhline(1 / len(teachers), color="grey", linestyle=":", linewidth=1)
    ax.set(title=f"CA-MKD weights, {title}", xlabel="epoch")
axes[0].set_ylabel("mean weight")
axes[0].legend(fontsize=8)
plt.show()
for k, name in enumerate(NAMES):
    last = recorded[0][-1]
    print(
        f"teacher on {name:>10}: logit weight {last[f'teacher{k}_kd_weight']:.3f}, "
        f"feature weight after epoch 2 {recorded[0][1][f'teacher{k}_feature_weight']:.3f}, "
        f"at the end {last[f'teacher{k}_feature_weight']:.3f}"
    )

# %% [markdown]
# ## Amalgamation: two specialists, one student for all ten digits
#
# One teacher is trained on the digits 0-4 only, the other on 5-9 only (their own
# 5-way classifiers). UHC matches the student's distribution, restricted to each
# teacher's classes and renormalised, to that teacher's. With disjoint label sets the
# loss cannot say which half a digit belongs to, so we train UHC twice: on all 1,348
# training images *without labels* (the paper's setting), and on the 100 labelled
# images with their cross-entropy added.

# %%
LOW, HIGH = list(range(5)), list(range(5, 10))


def only_classes(data: DataSplit, classes: list[int]) -> DataSplit:
    """The images of ``classes``, relabelled 0..len(classes)-1: what a specialist sees."""
    relabel = torch.full((data.num_classes,), -1, dtype=torch.long, device=data.y_train.device)
    relabel[classes] = torch.arange(len(classes), device=relabel.device)
    keep_train, keep_test = relabel[data.y_train] >= 0, relabel[data.y_test] >= 0
    return DataSplit(
        data.x_train[keep_train],
        relabel[data.y_train[keep_train]],
        data.x_test[keep_test],
        relabel[data.y_test[keep_test]],
        len(classes),
    )


specialists = []
for classes in (LOW, HIGH):
    trained = cached_teacher(
        lambda: teacher_cnn(num_classes=5),
        only_classes(exp.data, classes),
        epochs=5,
        seed=0,
        device=exp.device,
    )
    specialists.append(trained.model)
    print(f"specialist {classes}: accuracy on its own classes {trained.final_accuracy:.3f}")


def uhc_unlabelled(seed: int):  # every training image, labels unused: 3 epochs, batches of 64
    procedure = UHC(student_cnn(), specialists, [LOW, HIGH], num_classes=10)
    history = train(
        procedure, exp.data, epochs=3, lr=exp.lr, batch_size=64, seed=seed, device=exp.device
    )
    return Trained(procedure.student, history.test_accuracy)


def uhc_with_labels(seed: int):
    procedure = UHC(student_cnn(), specialists, [LOW, HIGH], num_classes=10, ce_weight=1.0)
    return exp.train(procedure, seed)


AMALGAMATION = {"UHC, 1,348 unlabelled": uhc_unlabelled, "UHC + 100 labels": uhc_with_labels}
exp.compare(
    AMALGAMATION,
    lambda model: {"accuracy": exp.accuracy(model), "half": half_of(model)},
)
exp.summary(["accuracy", ("half", "right half")])

# %%
names = ["student alone", *AMALGAMATION]
fig, ax = plt.subplots(figsize=(6.5, 3.2))
width = 0.38
for i, (key, title) in enumerate((("accuracy", "accuracy, 10 digits"), ("half", "right half"))):
    values = [np.mean([row[key] for row in exp.results[name]]) for name in names]
    ax.bar(np.arange(len(names)) + (i - 0.5) * width, values, width, label=title)
ax.set_xticks(np.arange(len(names)), names)
ax.set(ylim=(0.4, 1.0), ylabel="fraction of test digits", title="Amalgamating two specialists")
ax.legend(fontsize=8)
plt.show()
exp.report_runtime()

# %% [markdown]
# ## What we saw
#
# The three teachers reach 0.991, 0.960 and 0.659 test accuracy. Over two seeds the
# student alone reaches 0.885; KD from the best teacher alone 0.925, the averaged
# ensemble of all three 0.903, CA-MKD at the authors' defaults 0.885 and CA-MKD's logit
# term alone 0.892. With a poor teacher in the set, the plain average fell 0.022 short
# of the best teacher alone, and CA-MKD did not close that gap here: its logit weights
# (0.374, 0.374, 0.252) only moderately discount the 40-image teacher, and its
# intermediate-feature term at β = 50 cost 0.007 more. Its feature weights do not
# follow the teachers' quality: by the last epoch they were 0.407, 0.104 and 0.489,
# the largest on the poorest teacher, because the student's projected features
# (which the weights are computed from) are trained through those very weights.
#
# The two specialists (0.991 and 0.987 on their own five digits) taught a student all
# ten digits: UHC on the 1,348 training images without any label reached 0.891, and
# put 0.903 of the test digits in the right half although its loss cannot see the split
# between disjoint label sets; with the 100 labelled images added it reached 0.900,
# against 0.885 for the labels alone. Two seeds and one small task: these are
# illustrations, not rankings.
