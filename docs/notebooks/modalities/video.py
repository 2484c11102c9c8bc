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
# # Video: distilling a model that sees every frame into one that sees a few, or one
#
# **The question.** A video model is expensive because it encodes every frame. Can a
# student that reads only a few frames of each clip, or a single frame, recover what a
# teacher reading all of them knows, and how much does each way of distilling help
# at each number of frames seen?
#
# **The setting.** Generated clips of moving digits (`reference_impls.common.video`):
# a scikit-learn 8x8 digit (classes 0-4) moves left or right across a 16x16 frame for
# 6 to 10 frames (shorter clips are padded, with a frame mask), a quarter of the frames
# are occluded, every pixel is noisy, and a faint trail behind the digit is the only
# single-frame cue of its direction. The label is the digit *and* the direction (10
# classes). The teacher reads every real frame (temporal convolutions, attention pooling
# over time); it is trained once on 1,200 clips and cached. The students train on the
# first **600 clips** for 8 epochs (SGD, lr 0.1, cosine), over two seeds:
#
# * few-frame students, the teacher's network reading $k \in \{2, 4\}$ frames evenly
#   spread over each clip: alone (labels only), with **fewer-frames distillation**
#   (Bhardwaj et al., 2019: the teacher's final representation, twice, plus its
#   predictions) and with **frame hints plus temporal relations** (FitNets' hint per
#   frame and SP's similarity matrix along time);
# * a smaller image student reading the middle real frame: alone, and with
#   **video-to-image distillation** (V2I-DETR's target-guided feature distillation of
#   the teacher's spatio-temporally fused key-frame map, and its query distillation).
#
# One setting differs from an implementation's defaults: Bhardwaj et al.'s code sums
# the prediction KL over the batch and trains with Adam, which is blind to the loss's
# overall scale; under SGD the sum multiplies every step by the batch size (64) and the
# run diverged (NaN) in our trials, so here the KL is averaged (`prediction_reduction="mean"`).
#
# **Runtime.** 23 s of CPU time with the teacher cached (one thread, kernel start
# included; measured on the shared 2-core machine under a load average of about 10, where
# the wall time was 93 s); the first run also trains the teacher (about 10 s of CPU).
# Seeded; runs on CUDA when present.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from reference_impls.common import Experiment
from reference_impls.common.video import (
    few_frame_student,
    gather_frames,
    image_student,
    load_moving_digits,
    video_teacher,
)
from reference_impls.modalities.video import (
    FewerFramesDistillation,
    TemporalRelationDistillation,
    VideoToImageDistillation,
)
from reference_impls.modalities.video.temporal_relation import temporal_similarity

data = load_moving_digits(seed=0)
split = data.split()  # packed clips: frames plus the frame-mask channel
exp = Experiment(
    seeds=(0, 1), epochs=8, labelled=600, batch_size=64, lr=0.05, data=split, examples="clips"
)
teacher = exp.teacher(video_teacher, epochs=20, lr=0.1, batch_size=64)

# %% [markdown]
# ## A clip, frame by frame
#
# One test clip as a filmstrip. Occluded frames show noise only; the padded frames after
# the clip's end (grey) are masked out and never enter a network.

# %%
clip_index = 3
frames, mask = data.clips_test[clip_index, :, 0], data.mask_test[clip_index]
visible = data.visible_test[clip_index]
fig, axes = plt.subplots(1, frames.shape[0], figsize=(1.3 * frames.shape[0], 1.8))
for t, ax in enumerate(axes):
    ax.imshow(frames[t] if mask[t] else np.full(frames[t].shape, np.nan), cmap="gray")
    ax.set_facecolor("0.85")
    state = "pad" if not mask[t] else ("occluded" if not visible[t] else "")
    ax.set_title(f"t={t}\n{state}", fontsize=8)
    ax.axis("off")
digit, direction = int(data.digit_test[clip_index]), int(data.direction_test[clip_index])
fig.suptitle(f"digit {digit}, moving {('right', 'left')[direction]}", y=1.08)
plt.show()

# %% [markdown]
# ## Where the teacher looks in time
#
# The teacher pools its frames with a softmax attention over time. On occluded frames
# there is nothing to see: does it learn to look away from them?

# %%
with torch.no_grad():
    test_output = teacher(split.x_test.to(exp.device))
test_output.attention = test_output.attention.cpu()
attention = test_output.attention
shown = data.visible_test & data.mask_test
hidden = ~data.visible_test & data.mask_test
lengths = data.mask_test.sum(1).float()
uniform = (1.0 / lengths)[:, None].expand_as(attention)
ratio_shown = (attention[shown] / uniform[shown]).mean().item()
ratio_hidden = (attention[hidden] / uniform[hidden]).mean().item()
print(
    f"attention relative to uniform: {ratio_shown:.2f} on visible frames, "
    f"{ratio_hidden:.2f} on occluded frames"
)
fig, axes = plt.subplots(1, 3, figsize=(11, 2.4), sharey=True)
for ax, index in zip(axes, (clip_index, 7, 11), strict=True):
    length = int(data.mask_test[index].sum())
    colors = ["tab:blue" if data.visible_test[index, t] else "tab:red" for t in range(length)]
    ax.bar(range(length), attention[index, :length], color=colors)
    ax.axhline(1 / length, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("frame")
    ax.set_title(f"clip {index} (red: occluded)", fontsize=9)
axes[0].set_ylabel("teacher attention")
plt.show()

# %% [markdown]
# ## The methods, at 2 and 4 frames and at one
#
# Each run builds a fresh student under the seed and trains it on the same 600 clips
# with `reference_impls.common.train` (SGD, cosine schedule). The weights are the
# implementations' defaults (Bhardwaj et al.'s: representation term twice), except the
# averaged prediction KL above.

# %%
FRAME_COUNTS = (2, 4)


def few_frames_alone(frames_seen):
    return lambda seed: exp.train_alone(few_frame_student(frames_seen), seed)


def fewer_frames(frames_seen):
    def run(seed):
        student = few_frame_student(frames_seen)
        procedure = FewerFramesDistillation(student, teacher, prediction_reduction="mean")
        return exp.train(procedure, seed)

    return run


def temporal_relation(frames_seen):
    def run(seed):
        student = few_frame_student(frames_seen)
        return exp.train(TemporalRelationDistillation(student, teacher), seed)

    return run


def image_alone(seed):
    return exp.train_alone(image_student(), seed)


def video_to_image(seed):
    return exp.train(VideoToImageDistillation(image_student(), teacher), seed)


methods = {}
for k in FRAME_COUNTS:
    methods[f"alone, {k} frames"] = few_frames_alone(k)
    methods[f"fewer frames, {k} frames"] = fewer_frames(k)
    methods[f"hints + relation, {k} frames"] = temporal_relation(k)
methods["image alone, 1 frame"] = image_alone
methods["video-to-image, 1 frame"] = video_to_image
results = exp.compare(methods)
exp.summary()
print(f"teacher (all frames): {exp.accuracy(teacher):.3f}")

# %% [markdown]
# ## Accuracy against the number of frames seen

# %%
families = {
    "alone (few frames)": ["alone, 2 frames", "alone, 4 frames"],
    "fewer frames (Bhardwaj)": ["fewer frames, 2 frames", "fewer frames, 4 frames"],
    "hints + temporal relation": ["hints + relation, 2 frames", "hints + relation, 4 frames"],
    "image alone": ["image alone, 1 frame"],
    "video-to-image (V2I)": ["video-to-image, 1 frame"],
}
fig, ax = plt.subplots(figsize=(6.5, 4))
for family, names in families.items():
    counts = [1] if len(names) == 1 else list(FRAME_COUNTS)
    values = [[row["accuracy"] for row in results[name]] for name in names]
    ax.errorbar(
        counts,
        [np.mean(v) for v in values],
        yerr=[np.std(v) for v in values],
        marker="o",
        capsize=3,
        label=family,
    )
ax.axhline(exp.accuracy(teacher), color="k", ls="--", lw=1, label="teacher (all frames)")
ax.set_xlabel("frames the student reads per clip")
ax.set_ylabel("test accuracy (digit and direction)")
ax.set_xticks([1, 2, 4])
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Temporal similarity: teacher and students
#
# For one test clip, the row-normalised similarity of the frame embeddings at the four
# frames a 4-frame student reads (SP's matrix along time): the teacher's, the student
# trained with the relation term, and the student trained alone (seed 0). The distance
# to the teacher's matrix is averaged over the test clips.

# %%
clips = split.x_test.to(exp.device)
with torch.no_grad():
    matrices, distances = {}, {}
    for name in ("hints + relation, 4 frames", "alone, 4 frames"):
        output = exp.models[name](clips)
        teacher_frames = gather_frames(test_output.frame_embeddings, output.frame_index)
        student_matrix = temporal_similarity(output.frame_embeddings, output.mask).cpu()
        teacher_matrix = temporal_similarity(teacher_frames, output.mask).cpu()
        matrices[name], matrices["teacher"] = student_matrix[clip_index], teacher_matrix[clip_index]
        distances[name] = (student_matrix - teacher_matrix).pow(2).sum((1, 2)).mean().item() / 16
        print(f"{name}: mean squared distance to the teacher's matrix {distances[name]:.4f}")
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, name in zip(
    axes, ("teacher", "hints + relation, 4 frames", "alone, 4 frames"), strict=True
):
    image = ax.imshow(matrices[name], vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("frame read")
fig.colorbar(image, ax=axes, shrink=0.8)
plt.show()
exp.report_runtime()

# %% [markdown]
# ## What we saw
#
# * The task needs time: the teacher, reading every frame, reached 0.880 test accuracy;
#   the same network trained alone on 600 clips for 8 epochs reached 0.275 ± 0.015 with
#   2 frames and 0.298 ± 0.018 with 4, and the image student 0.197 ± 0.003 with one.
#   Part of that gap is the short schedule and the smaller training set, but the order
#   (1 < 2 < 4 frames) held for every family of methods.
# * The teacher learned where to look in time: its attention on occluded frames was 0.76
#   of uniform, on visible frames 1.09.
# * No distillation beat its same-seed baseline on this schedule. Fewer-frames
#   distillation came closest (0.257 ± 0.020 and 0.268 ± 0.012, two to three points
#   below training alone); frame hints plus temporal relations lost 8 to 11 points
#   (0.162 ± 0.012 and 0.202 ± 0.008); video-to-image distillation lost 3.5 points
#   (0.162 ± 0.008 against 0.197). Regressing the teacher's all-frame representation from
#   a few frames pulls against the labels in 8 epochs. These terms are also touchy under
#   SGD: the summed prediction KL of the authors' code diverged in our trials (hence the
#   averaged KL), and at lr 0.1 instead of 0.05 the 2-frame fewer-frames student fell to
#   chance and the 4-frame hints + relation student diverged.
# * The relation term did what it is for: the distilled 4-frame student's temporal
#   similarity matrices were closer to the teacher's (mean squared distance 0.0064
#   against 0.0095 for the student trained alone), without that buying accuracy here.
