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
# # Detection distillation: FGD on generated boxes
#
# **The question.** A detector's feature map is mostly background, and the few cells
# that hold objects matter most. Focal and global distillation (FGD, Yang et al., 2022)
# imitates the teacher's map with the objects and the background weighed apart (each box
# counts the same whatever its size), both weighted by where and in which channels the
# teacher is active, plus the teacher's attention itself and a global-context relation
# (GcBlocks). Does it help a small detector, at the authors' weights?
#
# **The setting.** Canvases of 32 x 32 pixels with one to three digits of 8 to 16 pixels,
# boxes that never overlap, plus noise (`reference_impls.common.dense.load_digit_boxes`).
# The detector is CenterNet in miniature (`CentreNet`): a class heatmap, box sizes and
# centre offsets at stride 2, read from the backbone's last map, where FGD distils (as on
# one FPN level). The teacher (width 16) trains on 600 canvases for 24 epochs and is
# cached; students (width 8) train on the first 200 canvases for 20 epochs, one seed.
# `FGDLoss` runs at the RetinaNet configs' weights ($T = 0.5$, $\alpha = 10^{-3}$,
# $\beta = \gamma = 5 \cdot 10^{-4}$, $\lambda = 5 \cdot 10^{-6}$) and at 10 times
# them: its terms are sums over channels and locations, and our map (16 x 16 cells,
# 32 channels) is far smaller than a COCO FPN level (the authors retune the weights per
# detector too: Faster R-CNN's are 20 times smaller). The factor 10 was chosen from a
# sweep over 1, 10 and 30 with two seeds run outside this notebook (numbers in "What we
# saw"). Scored by mAP@0.5 on 200 test canvases.
#
# **Runtime.** 23 s of CPU time in the kernel once the teacher is cached (one thread; the
# first run adds about 28 s of CPU time to train it). Measured on a 2-core CPU shared with
# other jobs, where the wall time was 29 to 45 s; on an idle machine the wall time should
# be close to the CPU time. Seeded; runs on CUDA when present.

# %%
import dataclasses

import matplotlib.patches as patches
import matplotlib.pyplot as plt
import torch

from reference_impls.applications.visual_recognition import FGDLoss
from reference_impls.applications.visual_recognition.fgd import attention_maps, box_masks
from reference_impls.common import DataSplit, Experiment, cached_model, count_parameters
from reference_impls.common import dense as dense_module
from reference_impls.common.dense import (
    CentreNetTraining,
    DistilledCentreNet,
    boxes_of,
    decode_detections,
    detection_map,
    load_digit_boxes,
    student_centre_net,
    teacher_centre_net,
    train_dense,
)

SEED, STUDENT_CANVASES, STUDENT_EPOCHS, TEACHER_EPOCHS = 0, 200, 20, 24
AUTHORS = {"alpha_fgd": 1e-3, "beta_fgd": 5e-4, "gamma_fgd": 5e-4, "lambda_fgd": 5e-6}

data = load_digit_boxes(seed=0)
# the shared set-up: seed, one CPU thread, the device, the runtime report (the detectors
# train with common.dense's own loop)
exp = Experiment(
    seeds=(SEED,),
    labelled=STUDENT_CANVASES,
    data=DataSplit(data.x_train, data.y_train, data.x_test, data.y_test, data.num_classes),
    examples="canvases",
)
DEVICE = exp.device
data = data.to(DEVICE)
objects = (data.y_train[:, :, 0] >= 0).sum(1).float()
print(
    f"{len(data.x_train)} training and {len(data.x_test)} test canvases, "
    f"{objects.mean():.2f} digits per canvas on average"
)

# %% [markdown]
# ## The teacher, cached

# %%
teacher, record, hit = cached_model(
    teacher_centre_net,
    lambda m: {
        "loss": train_dense(CentreNetTraining(m), data, epochs=TEACHER_EPOCHS, device=DEVICE),
        "map": detection_map(m, data.x_test, data.y_test),
    },
    settings={"task": "detection", "epochs": TEACHER_EPOCHS, "canvases": len(data.x_train)},
    code_files=[dense_module.__file__],
    device=DEVICE,
)
print(f"teacher: {'read from the cache' if hit else 'trained now, then cached'}")
teacher_map = detection_map(teacher, data.x_test, data.y_test)
print(
    f"teacher ({count_parameters(teacher):,} parameters): mAP@0.5 {teacher_map:.3f}; "
    f"student: {count_parameters(student_centre_net()):,} parameters"
)

# %% [markdown]
# ## What FGD sees: masks and attention
#
# For three test canvases: the foreground mask (each box's cells hold one over its area,
# so a small digit weighs as much as a large one), the background mask (uniform over the
# rest, summing to 1), and the teacher's spatial attention at $T = 0.5$ on its last map.

# %%
with torch.no_grad():
    all_maps = teacher.backbone(data.x_test)[-1]
inside, _ = box_masks(boxes_of(data.y_test), (32, 32), tuple(all_maps.shape[-2:]))
attention, _ = attention_maps(all_maps, 0.5)
share = float((attention * (inside > 0)).sum() / attention.sum())
print(
    f"the boxes cover {float((inside > 0).float().mean()):.0%} of the map's cells and hold "
    f"{share:.0%} of the teacher's spatial attention"
)
shown = [0, 1, 2]
with torch.no_grad():
    maps = teacher(data.x_test[shown]).features[-1]
foreground, background = box_masks(boxes_of(data.y_test[shown]), (32, 32), tuple(maps.shape[-2:]))
spatial, _ = attention_maps(maps, 0.5)
fig, axes = plt.subplots(3, 4, figsize=(9, 7))
for row, index in enumerate(shown):
    axes[row, 0].imshow(data.x_test[index, 0].cpu(), cmap="gray")
    for x1, y1, x2, y2 in boxes_of(data.y_test[index : index + 1])[0].tolist():
        axes[row, 0].add_patch(
            patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="lime")
        )
    for column, (picture, title) in enumerate(
        [
            (foreground, "foreground mask"),
            (background, "background mask"),
            (spatial, "teacher attention"),
        ],
        start=1,
    ):
        axes[row, column].imshow(picture[row].cpu(), cmap="viridis")
        if row == 0:
            axes[row, column].set_title(title)
axes[0, 0].set_title("canvas and boxes")
for ax in axes.flat:
    ax.set(xticks=[], yticks=[])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Students: alone, FGD at the authors' weights, FGD at 10 times them

# %%
small = dataclasses.replace(
    data, x_train=data.x_train[:STUDENT_CANVASES], y_train=data.y_train[:STUDENT_CANVASES]
)
channels = (student_centre_net().channels[-1], teacher.channels[-1])
methods = {
    "alone": lambda s: CentreNetTraining(s),
    "FGD": lambda s: DistilledCentreNet(s, teacher, FGDLoss(*channels)),
    "FGD x10": lambda s: DistilledCentreNet(
        s, teacher, FGDLoss(*channels, **{k: 10 * v for k, v in AUTHORS.items()})
    ),
}
results, students = {}, {}
for name, make in methods.items():
    torch.manual_seed(SEED)
    student = student_centre_net()
    train_dense(make(student), small, epochs=STUDENT_EPOCHS, seed=SEED, device=DEVICE)
    students[name] = student
    results[name] = detection_map(student, data.x_test, data.y_test)
    print(f"{name:8s} mAP@0.5 {results[name]:.3f}")

# %%
fig, axes = plt.subplots(2, 4, figsize=(10, 5.2))
models = {"teacher": teacher, **students}
for row, index in enumerate([3, 4]):
    for column, (name, model) in enumerate(models.items()):
        ax = axes[row, column]
        ax.imshow(data.x_test[index, 0].cpu(), cmap="gray")
        for x1, y1, x2, y2 in boxes_of(data.y_test[index : index + 1])[0].tolist():
            ax.add_patch(
                patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="lime")
            )
        model.eval()
        with torch.no_grad():
            found = decode_detections(model(data.x_test[index : index + 1]), top_k=5)
        for box, score, cls in zip(found.boxes[0], found.scores[0], found.classes[0], strict=True):
            if score < 0.3:
                continue
            x1, y1, x2, y2 = box.tolist()
            ax.add_patch(
                patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="red")
            )
            ax.text(x1, y1 - 1, f"{int(cls)} {score:.2f}", color="red", fontsize=7)
        ax.set(xticks=[], yticks=[])
        if row == 0:
            ax.set_title(name)
plt.suptitle("ground truth (green) and detections with score >= 0.3 (red: class, score)")
plt.tight_layout()
plt.show()

# %%
fig, ax = plt.subplots(figsize=(5, 3))
names = list(results)
ax.bar(names, [results[n] for n in names])
ax.axhline(teacher_map, color="k", linestyle="--", label="teacher")
ax.set(ylabel="test mAP@0.5", title=f"{STUDENT_CANVASES} canvases, {STUDENT_EPOCHS} epochs")
ax.legend()
plt.tight_layout()
plt.show()
exp.report_runtime()

# %% [markdown]
# ## What we saw
#
# * The teacher (51,614 parameters, 24 epochs on 600 canvases) reaches mAP@0.5 0.862 on
#   the test canvases. The boxes cover 32% of its map's cells and hold 44% of its spatial
#   attention at $T = 0.5$: the attention FGD weights by leans toward the objects, without
#   ignoring the rest.
# * The foreground mask makes every digit count once: a small digit's few cells each
#   weigh more than a large digit's many (the brighter small boxes in the masks above).
# * With 200 canvases and 20 epochs the student (13,142 parameters) alone reaches mAP
#   0.397. FGD at the authors' RetinaNet weights gave 0.379, at ten times them 0.414.
#   At the authors' weights its four terms add a few hundredths to a detection loss near
#   one on these small maps, so it barely steers the student.
# * One seed here. The sweep run outside this notebook (same code, seeds 0 and 1) gave,
#   at 200 canvases and 20 epochs: alone 0.397 / 0.371, FGD x1 0.379 / 0.367, x10
#   0.414 / 0.436, x30 0.347 / 0.448; at 300 canvases and 24 epochs: alone 0.643 / 0.599,
#   x1 0.650 / 0.602, x10 0.640 / 0.649, x30 0.650 / 0.652. The seed-to-seed spread is 2
#   to 5 points. So: no gain at the authors' weights, a gain of 2 to 6 points at ten times
#   them in three of four runs. That is suggestive, not established, on this generated
#   task.
