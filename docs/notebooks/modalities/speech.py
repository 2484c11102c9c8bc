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
# # Speech: distilling keyword spotters, CTC recognisers and self-supervised encoders
#
# **The question.** Speech models are distilled at three granularities: one label per
# utterance (a keyword spotter), one posterior per frame (a CTC acoustic model), and one
# hidden vector per frame and layer (a self-supervised encoder). What does each kind of
# target give a small student, on real (synthesised) speech?
#
# **The setting.** `espeak-ng` speaks the digits "zero" to "nine" with voices, speeds and
# pitches drawn from a seed, with noise at 10-30 dB SNR (`reference_impls.common.speech`):
# 400 single-digit utterances (300 train, 100 test) for the keyword task and 320
# utterances of two to four digits (240 / 80) for the CTC task; 32 log-mel bands every
# 23 ms, padded with a length mask. Three teachers, trained once and cached: a
# convolution + bidirectional GRU keyword classifier, a convolution + bidirectional GRU CTC
# model (blank + 10 digits, 46 ms per output frame), and a 3-layer transformer pre-trained
# by masked-frame prediction on the unlabelled training utterances of both sets.
#
# 1. **Keyword KD** (`KDLoss` on utterance logits, Hinton et al.): a student a tenth of the
#    teacher's size, alone and with KD, three seeds.
# 2. **Frame-level CTC KD** (`CTCFrameKDLoss`, Takashima et al. 2018; Kurata and
#    Audhkhasi 2018): a small CTC student trained on CTC alone, and on
#    $\tfrac12\,\mathrm{CTC} + \tfrac12\,\mathrm{KL}$ per frame; their alignments.
# 3. **DistilHuBERT** (`DistilHuBERTLoss`, Chang et al. 2022): a 1-layer student,
#    initialised from the teacher's first layer, predicts the teacher's three layers with
#    three heads; then a linear probe of its features on the keyword task.
#
# **Runtime.** The first run synthesises 720 utterances (about 30 s) and trains the three
# teachers (about 3 min) on a loaded 2-core machine; with both cached, see the line at
# the end (measured times are in "What we saw").

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from reference_impls.common import Experiment, Trained
from reference_impls.common.data import DataSplit
from reference_impls.common.speech import (
    DIGIT_WORDS,
    SAMPLE_RATE,
    FrameEncoder,
    batches,
    ctc_loss,
    ctc_student,
    digit_error_rate,
    fit,
    greedy_decode,
    keyword_accuracy,
    keyword_logits,
    keyword_student,
    load_digit_sequences,
    load_spoken_digits,
    read_wav,
    synthesize,
    trained_ctc_teacher,
    trained_keyword_teacher,
    trained_ssl_teacher,
    trim_silence,
    unlabelled,
)
from reference_impls.modalities.speech import CTCFrameKDLoss, DistilHuBERTLoss
from reference_impls.sources.logit.kd import KDLoss

digits = load_spoken_digits(seed=0)  # 300 + 100 single digits
sequences = load_digit_sequences(seed=0)  # 240 + 80 sequences of 2-4 digits
as_split = DataSplit(digits.x_train, digits.y_train, digits.x_test, digits.y_test, 10)
exp = Experiment(seeds=(0, 1, 2), data=as_split, labelled=None, device="cpu", examples="utterances")

# %% [markdown]
# ## The data
#
# One training utterance: the waveform espeak-ng wrote (trimmed of silence) and the
# log-mel features the models read (each band standardised over the utterance).

# %%
utterance = digits.utterances_train[0]
waveform = trim_silence(read_wav(synthesize(utterance)))
length = int(digits.lengths_train[0])
fig, axes = plt.subplots(1, 2, figsize=(12, 3.2))
axes[0].plot(np.arange(len(waveform)) / SAMPLE_RATE, waveform.numpy(), lw=0.4)
axes[0].set(
    xlabel="seconds",
    title=f'"{utterance.text}" ({utterance.voice}, -s {utterance.speed}, -p {utterance.pitch}), clean',
)
image = axes[1].imshow(digits.x_train[0, :length].T, origin="lower", aspect="auto", cmap="magma")
axes[1].set(xlabel="frame (23 ms)", ylabel="mel band", title="log-mel features, with noise")
fig.colorbar(image, ax=axes[1])
plt.tight_layout()
plt.show()
print(
    f"keyword set: {len(digits.x_train)} + {len(digits.x_test)} utterances, "
    f"{int(digits.lengths_train.min())}-{int(digits.lengths_train.max())} frames; "
    f"sequences: {len(sequences.x_train)} + {len(sequences.x_test)}, "
    f"{int(sequences.lengths_train.min())}-{int(sequences.lengths_train.max())} frames"
)

# %% [markdown]
# ## The teachers (cached)

# %%
keyword_teacher, keyword_record = trained_keyword_teacher(digits)
ctc_teacher, ctc_record = trained_ctc_teacher(sequences)
ssl_teacher, ssl_record = trained_ssl_teacher(unlabelled(digits, sequences))


def size(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


print(
    f"keyword teacher: {size(keyword_teacher):,} parameters, test accuracy {keyword_accuracy(keyword_teacher, digits):.3f}"
)
print(
    f"CTC teacher: {size(ctc_teacher):,} parameters, test digit error rate {digit_error_rate(ctc_teacher, sequences):.3f}"
)
print(
    f"SSL teacher: {size(ssl_teacher):,} parameters, masked-frame L1 {ssl_record['loss'][0]:.3f} -> {ssl_record['loss'][-1]:.3f}"
)

# %% [markdown]
# ## 1. Keyword KD on utterance logits
#
# Student: convolutions of 16 channels and a bidirectional GRU of 16 units (7.5 k
# parameters, against the teacher's 82 k), 8 epochs of Adam. KD: mdistiller's
# $0.1\,\mathrm{CE} + 0.9\,\mathrm{KD}$ at $\tau = 4$. The teacher's logits on the
# training set are computed once (it is frozen; nothing is augmented).

# %%
KEYWORD_EPOCHS = 8
teacher_train_logits = keyword_logits(keyword_teacher, digits, "train")
kd = KDLoss(temperature=4.0)


def keyword_run(kd_weight: float):
    def run(seed: int) -> Trained:
        torch.manual_seed(seed)
        student = keyword_student()
        curve = []

        def step(batch):
            logits = student(batch.features, batch.mask).logits
            terms = {"ce": F.cross_entropy(logits, batch.targets)}
            if kd_weight:
                terms["kd"] = kd(logits, teacher_train_logits[batch.rows])
            terms["loss"] = (1 - kd_weight) * terms["ce"] + kd_weight * terms.get("kd", 0.0)
            return terms

        for epoch in range(KEYWORD_EPOCHS):  # one epoch at a time, to record the test curve
            fit(step, student, digits, epochs=1, seed=seed * 100 + epoch)
            curve.append(keyword_accuracy(student, digits))
        return Trained(student, curve)

    return run


def keyword_measure(model: torch.nn.Module) -> dict[str, float]:
    logits, teacher = keyword_logits(model, digits), keyword_logits(keyword_teacher, digits)
    return {
        "accuracy": keyword_accuracy(model, digits),
        "agreement": float((logits.argmax(1) == teacher.argmax(1)).float().mean()),
    }


exp.compare({"student alone": keyword_run(0.0), "KD": keyword_run(0.9)}, keyword_measure)
exp.summary(["accuracy", "agreement"])

# %% [markdown]
# ## 2. Frame-level KD for a CTC model
#
# Student: 24 channels and a bidirectional GRU of 24 units (14.5 k parameters against
# the teacher's 129 k), 10 epochs of Adam at 0.01, one seed. The per-frame KL includes
# the blank and runs over real output frames only (the mask).

# %%
CTC_EPOCHS = 10
with torch.no_grad():
    train_all = next(batches(sequences, len(sequences.x_train), split="train"))
    teacher_frames = ctc_teacher(train_all.features, train_all.mask).logits  # [N, T', 11]
frame_kd = CTCFrameKDLoss()


def ctc_run(kd_weight: float, seed: int = 0):
    torch.manual_seed(seed)
    student = ctc_student()

    def step(batch):
        logits = student(batch.features, batch.mask).logits
        mask = student.output_mask(batch.mask)
        terms = {"ctc": ctc_loss(logits, mask, batch)}
        if kd_weight:
            teacher = teacher_frames[batch.rows, : logits.shape[1]]
            terms["frame_kd"] = frame_kd(logits, teacher, mask)
        terms["loss"] = (1 - kd_weight) * terms["ctc"] + kd_weight * terms.get("frame_kd", 0.0)
        return terms

    history = fit(step, student, sequences, epochs=CTC_EPOCHS, lr=1e-2, batch_size=16, seed=seed)
    return student, history


ctc_students = {"CTC alone": ctc_run(0.0), "CTC + frame KD": ctc_run(0.5)}
ctc_der = {name: digit_error_rate(model, sequences) for name, (model, _) in ctc_students.items()}
print(f"teacher: test digit error rate {digit_error_rate(ctc_teacher, sequences):.3f}")
for name, (_, history) in ctc_students.items():
    print(
        f"{name}: test digit error rate {ctc_der[name]:.3f}; training CTC loss by epoch "
        + " ".join(f"{h['ctc']:.2f}" for h in history)
    )

# %% [markdown]
# **Alignments.** For one test utterance, the per-frame argmax (the best path) of the
# teacher and of both students: grey is blank, a coloured mark a digit. CTC models emit
# each digit as a spike of one or two frames among blanks; frame-level KD assumes the
# student can put its spikes where the teacher puts them (here both are bidirectional,
# the case where it can).

# %%
test = next(batches(sequences, 8, split="test"))
row = 0
models = {"teacher": ctc_teacher, **{name: model for name, (model, _) in ctc_students.items()}}
fig, axes = plt.subplots(len(models) + 1, 1, figsize=(12, 6.5), sharex=True)
frames = int(ctc_teacher.output_mask(test.mask)[row].sum())
reference = test.targets[row, : int(test.target_lengths[row])].tolist()
axes[0].imshow(
    test.features[row, : 2 * frames].T,
    origin="lower",
    aspect="auto",
    cmap="magma",
    extent=(-0.5, frames - 0.5, 0, 32),
)
axes[0].set(ylabel="mel", title=f"test utterance: {' '.join(DIGIT_WORDS[d] for d in reference)}")
for ax, (name, model) in zip(axes[1:], models.items(), strict=True):
    with torch.no_grad():
        logits = model(test.features, test.mask).logits[row, :frames]
    posteriors = logits.softmax(-1)
    best = logits.argmax(-1)
    ax.plot(posteriors[:, 0], color="grey", lw=1, label="blank")
    for label in range(1, 11):
        ax.plot(posteriors[:, label], lw=1)
    for t in torch.nonzero(best != 0).flatten().tolist():
        ax.annotate(str(int(best[t]) - 1), (t, 1.02), ha="center", fontsize=9)
    decoded = greedy_decode(logits[None], torch.ones(1, frames, dtype=torch.bool))[0]
    ax.set(ylim=(0, 1.15), ylabel="posterior", title=f"{name}: decodes {decoded}")
axes[-1].set_xlabel("output frame (46 ms)")
plt.tight_layout()
plt.show()
agreement = {}
for name, (model, _) in ctc_students.items():
    same = total = 0
    for b in batches(sequences, 512, split="test"):
        with torch.no_grad():
            mask = model.output_mask(b.mask)
            same += int(
                (
                    (
                        model(b.features, b.mask).logits.argmax(-1)
                        == ctc_teacher(b.features, b.mask).logits.argmax(-1)
                    )
                    & mask
                ).sum()
            )
            total += int(mask.sum())
    agreement[name] = same / total
    print(
        f"{name}: per-frame argmax equal to the teacher's on {agreement[name]:.1%} of test frames"
    )

# %% [markdown]
# ## 3. DistilHuBERT: layer-wise prediction heads
#
# The teacher has a projection and three transformer layers (64 features). The student
# keeps the projection and the first layer, copied from the teacher (the paper's
# initialisation), and three heads predict teacher layers 1, 2 and 3 (the paper's 4, 8
# and 12 of 12) with L1 + (−log σ(cos)), λ = 1. It trains 6 epochs on the unlabelled
# training utterances of both sets. The teacher's hidden states are computed once.

# %%
SSL_EPOCHS = 6
pool = unlabelled(digits, sequences)
with torch.no_grad():
    teacher_layers = torch.stack(ssl_teacher(pool.x_train, pool.mask_train).hidden_states[1:], 1)


def distilled_student(seed: int = 0):
    torch.manual_seed(seed)
    student = FrameEncoder(layers=1)
    state = {
        k: v
        for k, v in ssl_teacher.state_dict().items()
        if not k.startswith("layers.") or k.startswith("layers.0.")
    }
    student.load_state_dict(state)
    loss = DistilHuBERTLoss(student_dim=64, teacher_dim=64, num_heads=3)
    per_head = []

    class Both(torch.nn.Module):  # the student and the heads, trained together
        def __init__(self):
            super().__init__()
            self.student, self.loss = student, loss

    def step(batch):
        targets = teacher_layers[batch.rows, :, : batch.features.shape[1]]
        distance, cosine = loss.terms(student(batch.features, batch.mask).last, targets, batch.mask)
        per_head.append(torch.cat([distance, cosine]).detach())
        return {"loss": distance.mean() + loss.cosine_weight * cosine.mean()}

    fit(step, Both(), pool, epochs=SSL_EPOCHS, lr=2e-3, seed=seed)
    return student, torch.stack(per_head)


student_encoder, head_curves = distilled_student()
steps = np.arange(len(head_curves))
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
for head in range(3):
    axes[0].plot(steps, head_curves[:, head], label=f"head → teacher layer {head + 1}")
    axes[1].plot(steps, head_curves[:, 3 + head], label=f"head → teacher layer {head + 1}")
axes[0].set(xlabel="step", title="L1 per head")
axes[1].set(xlabel="step", title="−log σ(cos) per head (floor log(1 + 1/e) = 0.313)")
axes[0].legend()
plt.tight_layout()
plt.show()
print(
    "last step, per head (layers 1, 2, 3): L1 "
    + " ".join(f"{v:.3f}" for v in head_curves[-1, :3])
    + "; -log sigma(cos) "
    + " ".join(f"{v:.3f}" for v in head_curves[-1, 3:])
)

# %% [markdown]
# **A probe of the features.** A linear classifier (logistic regression, 200 full-batch
# Adam steps) on each encoder's last hidden states averaged over an utterance's frames,
# trained on the 300 training keywords and tested on the 100 others: the distilled student,
# the same 1-layer student before distillation (the teacher's first layer), a randomly
# initialised one, and the 3-layer teacher.


# %%
def pooled(encoder: FrameEncoder, split: str) -> torch.Tensor:
    x, mask = getattr(digits, f"x_{split}"), getattr(digits, f"mask_{split}")
    with torch.no_grad():
        hidden = encoder(x, mask).last
    weights = mask[..., None].float()
    return (hidden * weights).sum(1) / weights.sum(1)


def probe(encoder: FrameEncoder) -> float:
    train, test = pooled(encoder, "train"), pooled(encoder, "test")
    mean, std = train.mean(0), train.std(0) + 1e-5
    torch.manual_seed(0)
    classifier = torch.nn.Linear(train.shape[1], 10)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        F.cross_entropy(classifier((train - mean) / std), digits.y_train).backward()
        optimizer.step()
    return float((classifier((test - mean) / std).argmax(1) == digits.y_test).float().mean())


truncated = FrameEncoder(layers=1)
truncated.load_state_dict(
    {
        k: v
        for k, v in ssl_teacher.state_dict().items()
        if not k.startswith("layers.") or k.startswith("layers.0.")
    }
)
torch.manual_seed(0)
probes = {
    "random 1-layer": probe(FrameEncoder(layers=1)),
    "teacher's first layer (before distillation)": probe(truncated),
    "DistilHuBERT student (1 layer)": probe(student_encoder),
    "SSL teacher (3 layers)": probe(ssl_teacher),
}
for name, accuracy in probes.items():
    print(f"linear probe on {name}: keyword test accuracy {accuracy:.3f}")

# %% [markdown]
# ## Keyword accuracy per method
#
# The keyword students over three seeds (mean and standard deviation) beside the
# DistilHuBERT student read by a linear probe and the teacher.

# %%
fig, ax = plt.subplots(figsize=(8, 3.2))
names = ["student alone", "KD"]
means = [np.mean([r["accuracy"] for r in exp.results[n]]) for n in names]
stds = [np.std([r["accuracy"] for r in exp.results[n]]) for n in names]
ax.barh(names, means, xerr=stds, color=["grey", "tab:blue"])
ax.barh(["DistilHuBERT + probe"], [probes["DistilHuBERT student (1 layer)"]], color="tab:green")
ax.barh(["keyword teacher"], [keyword_accuracy(keyword_teacher, digits)], color="black")
ax.set(xlim=(0.5, 1.0), xlabel="keyword test accuracy")
plt.tight_layout()
plt.show()
exp.report_runtime()

# %% [markdown]
# ## What we saw
#
# (written from the numbers above; see below)
