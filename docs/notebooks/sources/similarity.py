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
# # Similarity-based distillation on handwritten digits
#
# **The question.** A student need not copy what the teacher outputs for each image;
# it can copy how the teacher *relates* things: which images of a batch it finds
# alike (SP, RKD, CC, PKT, IRG), how its channels or layers correlate (FSP, ICKD), or
# how its predictions rank classes and images (DIST). Relations do not care about
# the width of either network, which is what makes them attractive for a small
# student. With only a few labelled examples, do they help?
#
# **The setting.** As in the other Sources notebooks: a teacher CNN (~0.31M
# parameters) trained on the 1,348 training digits of scikit-learn's 8x8 set; a
# student 15x smaller trained on **100 labelled images**; tests on the 449 held-out
# digits. Every method is imported from `reference_impls`; the shared set-up (data,
# cached teacher, seeds, tables, plots) is `reference_impls.common.Experiment`.
#
# **Runtime.** 26-28 s with the teacher read from the teacher cache, 27-29 s when it
# is trained first (two runs each on a 2-core CPU, kernel start included); the kernel
# itself used 23-26 s of CPU time. Seeded; runs on CUDA when present (not timed there).

# %%
import matplotlib.pyplot as plt
import torch

from reference_impls.common import Experiment, linear_cka, student_cnn
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.similarity.cc import CCLoss
from reference_impls.sources.similarity.dist import DISTLoss
from reference_impls.sources.similarity.fsp import FSPLoss
from reference_impls.sources.similarity.ickd import ICKDLoss
from reference_impls.sources.similarity.irg import IRGLoss
from reference_impls.sources.similarity.pkt import PKTLoss
from reference_impls.sources.similarity.rkd import RKDLoss
from reference_impls.sources.similarity.sp import SPLoss, similarity_matrix

# relations are computed within a batch: 25 images, 300 pairs
exp = Experiment(seeds=(0, 1), epochs=16, labelled=100, batch_size=25)

# %% [markdown]
# ## The teacher
#
# The teacher of the logit notebook (5 epochs of cross-entropy on all training
# digits), frozen, and read from the teacher cache when it has been trained before.

# %%
teacher = exp.teacher()
student_channels, teacher_channels = student_cnn().channels, teacher.channels

# %% [markdown]
# ## The methods
#
# Every loss runs with its authors' (or the CIFAR-100 benchmarks') weight, added to the
# student's cross-entropy: SP γ = 3000, RKD λ_D = 25 and λ_A = 50, CC 0.02, PKT 30000,
# IRG 1 (the distiller passes it both stage maps and logits), DIST 1, ICKD 2.5. FSP is
# run as in its paper: an initialisation phase on the FSP loss alone, then
# cross-entropy training; RepDistiller initialises for 30 of 240 epochs, we keep that
# fraction (2 epochs). One deviation: FSP's paper reduction (a sum over the 2,048 and
# 8,192 entries of our teacher's FSP matrices) made the initialisation diverge to NaN at
# our learning rate, so we use RepDistiller's scale instead (mean over the entries,
# weight 50), expressed through the loss's per-pair weights. Where the widths differ,
# FSP, CC and ICKD train small connectors with the student, as their modules document.

# %%
FSP_INIT_EPOCHS = max(1, round(exp.epochs * 30 / 240))


def distiller_with(loss_factory, kd_weight=1.0):
    """A method that adds one loss to the student's cross-entropy."""

    def run(seed):
        student = student_cnn()
        loss = loss_factory() if loss_factory else None
        distiller = OfflineDistiller(student, teacher, loss, ce_weight=1.0, kd_weight=kd_weight)
        return exp.train(distiller, seed)

    return run


def fsp(seed):
    student = student_cnn()
    # RepDistiller's mean over the m x n entries with weight 50, per pair of stages
    pair_weights = [
        50.0 / (teacher_channels[first] * teacher_channels[second])
        for first, second in ((0, 1), (1, 2))
    ]
    loss = FSPLoss(
        pairs=((0, 1), (1, 2)),
        lambdas=pair_weights,
        student_channels=student_channels,
        teacher_channels=teacher_channels,
    )
    initialisation = OfflineDistiller(student, teacher, loss, ce_weight=0.0, kd_weight=1.0)
    exp.train(initialisation, seed, epochs=FSP_INIT_EPOCHS)
    return exp.train(OfflineDistiller(student, teacher, None), seed)


METHODS = {
    "no distillation": distiller_with(None),
    "FSP": fsp,
    "SP": distiller_with(lambda: SPLoss(gamma=3000.0)),
    "RKD": distiller_with(lambda: RKDLoss()),
    "CC": distiller_with(
        lambda: CCLoss(student_channels[-1], teacher_channels[-1]), kd_weight=0.02
    ),
    "PKT": distiller_with(lambda: PKTLoss(), kd_weight=30000.0),
    "IRG": distiller_with(lambda: IRGLoss()),
    "DIST": distiller_with(lambda: DISTLoss()),
    "ICKD": distiller_with(lambda: ICKDLoss(student_channels, teacher_channels), kd_weight=2.5),
}

# %% [markdown]
# ## Training the students

# %%
x_test = exp.data.x_test
with torch.no_grad():
    teacher_embeddings = teacher(x_test).embedding


def cka_to_teacher(model: torch.nn.Module) -> float:
    """Linear CKA of the pooled embeddings: how alike the two Gram matrices of the test set are."""
    with torch.no_grad():
        return linear_cka(model.eval()(x_test).embedding, teacher_embeddings)


def measure(model: torch.nn.Module) -> dict[str, float]:
    """Test accuracy, agreement with and KL to the teacher (τ = 4), and the CKA above."""
    return {**exp.against(teacher)(model), "cka": cka_to_teacher(model)}


exp.compare(METHODS, measure)  # every method once per seed
exp.summary()  # mean ± std over the seeds

# %% [markdown]
# ## Learning curves
#
# Test accuracy after each epoch, mean over the seeds. The dashed line is the teacher.
# FSP's curve starts after its initialisation phase.

# %%
exp.plot_curves(teacher)  # two seeds: no band, a standard deviation of two says little
plt.show()

# %% [markdown]
# ## Accuracy, agreement with the teacher, distance to the teacher
#
# Final values, mean ± standard deviation over the seeds (only two seeds fit the time
# budget, so the error bars are rough). The last panel is linear CKA (Kornblith et al.,
# 2019) between the student's and the teacher's pooled embeddings over the test set:
# it compares the two networks' similarity matrices of the test images, which is what
# most relation losses try to align, and it is 1 when they agree up to a rotation and
# a scale.

# %%
metrics = ["accuracy", "agreement", "kl", ("cka", "CKA to the teacher, embeddings")]
ylims = {"accuracy": (0.7, 1.0), "agreement": (0.7, 1.0), "cka": (0.0, 1.0)}
exp.plot_bars(metrics, ylims=ylims)
plt.show()

# %% [markdown]
# ## What is transferred: similarity matrices
#
# SP's knowledge is the batch similarity matrix of the last stage's activations
# (`similarity_matrix` from the SP module, each row L2-normalised). Here it is for 40
# test digits sorted by class, for the teacher, for the student trained without
# distillation and for the SP student (seed 0). Bright blocks on the diagonal mean
# that images of one digit look alike to the network. The number under each matrix
# is its distance to the teacher's (mean squared difference), the quantity SP
# minimises.

# %%
order = torch.argsort(exp.data.y_test[:40], stable=True)
batch = x_test[:40][order]
panels = [
    ("teacher", teacher),
    ("student, no distillation", exp.models["no distillation"]),  # each method's seed-0 model
    ("student, SP", exp.models["SP"]),
]
with torch.no_grad():
    matrices = [similarity_matrix(model.eval()(batch).features[-1]).cpu() for _, model in panels]
fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
for ax, (title, _), matrix in zip(axes, panels, matrices, strict=True):
    ax.imshow(matrix, cmap="viridis")
    distance = (matrix - matrices[0]).pow(2).mean().item()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"distance to teacher: {distance:.2e}" if title != "teacher" else "")
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Batch similarity of last-stage activations, 40 test digits sorted by class")
plt.show()

exp.report_runtime()

# %% [markdown]
# ## What we saw
#
# * Three outcomes, clearly apart. RKD and IRG lift the student above training alone
#   (by about 2 and 3 points) and make its embeddings the most teacher-like (CKA about
#   0.86-0.87 against 0.77). FSP, CC and ICKD end level with the baseline. SP, PKT and
#   DIST end 4 to 8 points below it, beyond the spread of the two seeds.
# * We did not tune the three that hurt. At their CIFAR-100 weights their relational
#   term starts 4 to 17 times larger than the cross-entropy (measured in a trial run
#   of this setting, first-epoch means: SP about 29, PKT about 11 after its weight,
#   DIST about 56, against cross-entropies of 2.4 to 3.4). With 25-image batches and
#   64 steps that balance is probably what is wrong for this toy, not the methods;
#   we did not test it further.
# * Matching relations is not the same as being accurate: the SP student's batch
#   similarity matrix is closer to the teacher's than the undistilled student's (the
#   distance under the matrices is lower), while its accuracy is lower.
#   DIST matches correlations of predictions, not their values, so its students are
#   far from the teacher in KL while agreeing with it about as often as PKT's.
# * What a toy cannot show: relations are computed inside a batch, and 25 images of 10
#   classes give each class two or three members per batch; the methods were designed
#   for batches of 64-256 images and long schedules. The FSP initialisation also needed
#   RepDistiller's scaling to stay finite.
