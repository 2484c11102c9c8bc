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
# # Contrastive distillation on handwritten digits
#
# **The question.** Logit distillation matches the teacher one image at a time.
# Contrastive distillation asks more of the student: its representation of an image
# must be closer to the teacher's representation of *that* image than to the
# teacher's representations of other images, the positives and negatives of a
# contrastive loss. CRD (Tian et al., 2020) contrasts embeddings against a memory bank
# holding one entry per training image; CRCD (Zhu et al., 2021) contrasts *relations*,
# the directions from anchor images to an image. Do they pull the student's embedding
# space toward the teacher's, and does that help its accuracy, compared with KD?
#
# **The setting.** As in the other notebooks: a teacher CNN (~0.31M parameters)
# trained on the 1,348 training digits of scikit-learn's 8x8 set, a student 15x smaller
# trained on **200 labelled images**, tested on the 449 held-out digits. The shared
# set-up is `reference_impls.common.Experiment`; the losses are imported from
# `reference_impls`.
#
# **Runtime.** 19 s of CPU time in the kernel with the teacher read from the teacher
# cache (22 s with the kernel start: our estimate of the wall time on an idle 2-core CPU).
# We could not time it idle: on a 2-core machine shared with other jobs (load average
# about 8) it took 48 s in the kernel and 59 s with the start. Seeded; runs on CUDA when
# present (not timed there).

# %%
import matplotlib.pyplot as plt
import torch

from reference_impls.algorithms.contrastive import CRCDLoss, CRDLoss
from reference_impls.common import Experiment, linear_cka, student_cnn
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.kd import KDLoss

exp = Experiment(seeds=(0, 1), epochs=12, labelled=200, batch_size=25)

# %% [markdown]
# ## The teacher
#
# Five epochs of cross-entropy on all training digits, frozen, read from the teacher
# cache when it has been trained before.

# %%
teacher = exp.teacher()

# %% [markdown]
# ## The methods, and the memory bank scaled to the data
#
# CRD and CRCD keep one memory entry per training image, so the bank here holds the
# **200 labelled images** (CIFAR-100: 50,000). Each image is contrasted with $K$ others,
# drawn from the other classes as the authors' data loader does (`labels=`). Their
# $K$ is 16,384 for CRD and 500 for CRCD, more than our whole set. For CRD we keep the
# proportion of the bank, about a third: $K = 64$. CRCD's 500 are 1% of CIFAR-100, which
# here would be 2 negatives; we take $K = 16$, as many as the time budget allows (CRCD
# compares every image with every anchor of the batch, so its cost grows as batch² × K).
# Same code path as at full size; everything else is at the
# authors' defaults: a 128-d contrastive space, momentum 0.5, temperatures 0.07 (CRD)
# and 0.05 (CRCD), weights 0.8 (CRD) and 1 (CRCD) on top of the cross-entropy; KD is
# Hinton's loss at τ = 4 with weight 1. The training loop passes each batch's sample
# indices to the loss: CRD declares `needs_index`, and so does the distiller around it.

# %%
labels = exp.labelled.y_train
NUM_SAMPLES = len(labels)
embedding_dims = (student_cnn().embedding_dim, teacher.embedding_dim)
nce_per_epoch: dict[str, list[list[float]]] = {"CRD": [], "CRCD": []}


def distilled(make_loss, name=None):
    """A method: the student trained with cross-entropy plus ``make_loss()``."""

    def run(seed):
        loss = make_loss() if make_loss else None
        per_step: list[float] = []
        if name is not None:  # record the contrastive term (before its weight) at every step
            loss.register_forward_hook(lambda m, i, out: per_step.append(out.item() / m.weight))
        trained = exp.train(OfflineDistiller(student_cnn(), teacher, loss), seed)
        if name is not None:
            steps = len(per_step) // exp.epochs
            nce_per_epoch[name].append(
                [sum(per_step[e * steps : (e + 1) * steps]) / steps for e in range(exp.epochs)]
            )
            trained.extras["loss"] = loss
        return trained

    return run


METHODS = {
    "no distillation": distilled(None),
    "KD": distilled(KDLoss),
    "CRD": distilled(
        lambda: CRDLoss(*embedding_dims, NUM_SAMPLES, labels=labels, num_negatives=64), "CRD"
    ),
    "CRCD": distilled(
        lambda: CRCDLoss(*embedding_dims, NUM_SAMPLES, labels=labels, num_negatives=16), "CRCD"
    ),
}

# %%
x_test = exp.data.x_test
with torch.no_grad():
    teacher_embeddings = teacher(x_test).embedding


def measure(model: torch.nn.Module) -> dict[str, float]:
    """Accuracy, agreement with and KL to the teacher, and linear CKA of the embeddings."""
    with torch.no_grad():
        cka = linear_cka(model.eval()(x_test).embedding, teacher_embeddings)
    return {**exp.against(teacher)(model), "cka": cka}


exp.compare(METHODS, measure)
exp.summary(["accuracy", "agreement", ("cka", "CKA to the teacher")])

# %% [markdown]
# ## Accuracy, agreement and how teacher-like the embeddings are
#
# Final values, mean ± standard deviation over two seeds (only two fit the time budget). The last panel is linear CKA
# between the student's and the teacher's pooled embeddings of the test images (1 when
# they agree up to a rotation and a scale): what the contrastive losses work on.

# %%
metrics = ["accuracy", "agreement", "kl", ("cka", "CKA to the teacher, embeddings")]
exp.plot_bars(metrics, ylims={"accuracy": (0.7, 1.0), "agreement": (0.7, 1.0), "cka": (0, 1)})
plt.show()

# %% [markdown]
# ## What is transferred: one shared contrastive space
#
# CRD's two heads map the student's and the teacher's embeddings into one 128-d space,
# where the NCE loss pulls the student's point of an image toward the teacher's point of
# the same image. Left: the two heads' outputs for 200 test digits (seed 0), projected on
# the two leading principal directions of the teacher's points; circles are the teacher,
# crosses the student, colours the digit. Right: the contrastive term per epoch (NCE,
# before the weight, mean over the steps of the epoch and the seeds); it falls as the
# student's points move to their positives.

# %%
crd_loss = exp.results["CRD"][0]["loss"]
with torch.no_grad():
    student_model = exp.models["CRD"].eval()
    points_teacher = crd_loss.teacher_head(teacher_embeddings[:200])
    points_student = crd_loss.student_head(student_model(x_test[:200]).embedding)
centred = points_teacher - points_teacher.mean(0)
_, _, directions = torch.linalg.svd(centred, full_matrices=False)
project = lambda points: ((points - points_teacher.mean(0)) @ directions[:2].T).cpu()  # noqa: E731
cosine = (points_teacher * points_student).sum(1).mean().item()

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
digits = exp.data.y_test[:200].cpu()
for points, marker, label in ((points_teacher, "o", "teacher"), (points_student, "x", "student")):
    xy = project(points)
    left.scatter(xy[:, 0], xy[:, 1], c=digits, cmap="tab10", marker=marker, s=22, label=label)
left.set_title(f"CRD's contrastive space (mean cosine student-teacher {cosine:.2f})", fontsize=10)
left.legend()
left.set_xticks([])
left.set_yticks([])
for name, curves in nce_per_epoch.items():
    mean_curve = torch.tensor(curves).mean(0)
    right.plot(range(1, exp.epochs + 1), mean_curve, marker=".", label=name)
right.set_xlabel("epoch")
right.set_ylabel("NCE term (both sides)")
right.set_title("Contrastive loss during training", fontsize=10)
right.legend()
plt.show()

exp.report_runtime()

# %% [markdown]
# ## What we saw
#
# * KD is the strongest of the three on this toy: test accuracy 0.970 against 0.947
#   without distillation, and the highest agreement with the teacher. CRD (0.954) and
#   CRCD (0.958) gain less than a point over the baseline, with spreads of 0.001-0.004
#   over the two seeds.
# * The contrastive losses never look at the logits: the KL to the teacher's softened
#   predictions stays at the baseline's level for both (0.16 against 0.15), while KD
#   brings it to 0.04.
# * They do move the embeddings: CKA to the teacher is 0.868 for CRD and 0.853 for CRCD
#   against 0.839 without distillation (KD, through the logits, reaches 0.907). In CRD's
#   shared space the student's points lie beside the teacher's points of the same digit,
#   with a mean cosine of 0.51 between the two points of one image.
# * The NCE terms fall throughout training: CRD's from 11.4 to 0.6, CRCD's from 8.8 to
#   3.6. Both rise from the first epoch to the second, probably because $Z$ is fixed on
#   the first batch, while the memory banks are still random, and the banks then fill
#   with embeddings (we did not test this).
# * What the toy cannot show: the methods were made for 50,000 images, a bank of 50,000
#   entries and 16,384 (CRD) or 500 (CRCD) negatives over 240 epochs; here 200 images,
#   64 and 16 negatives and 12 epochs. CRD's term nearly reaches zero: with 200 images,
#   telling each positive from 64 negatives becomes easy. We did not test larger scales.
