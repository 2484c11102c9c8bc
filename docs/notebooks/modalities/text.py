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
# # Text: word- and sequence-level distillation for translation, and a BiLSTM taught by a transformer
#
# **The questions.** (1) A translation task where one source has *several* valid
# translations: a small student trained on the references has to spread itself over all
# of them. Does distilling a teacher word by word (Word-KD) or training on the teacher's
# beam-search translations (Seq-KD, Kim and Rush, 2016) give a student that translates
# more often correctly? (2) Can a BiLSTM trained on few labelled sentences approach a
# transformer classifier by regressing its logits on an augmented transfer set (Tang et
# al., 2019)?
#
# **The settings.** Both data sets are generated (`reference_impls.common.text`).
# *Translation*: sources of 4-8 words over 20 words; a target translates every word, in
# the source's order (probability 0.6) or reversed, and in plain (`CAT`, 0.6) or primed
# (`CAT'`) words: four valid translations per source (probabilities 0.36, 0.24, 0.24,
# 0.16), one drawn per training pair. 2,000 training pairs, 200 unseen test sources. The
# teacher is a `torch.nn.Transformer` (width 64, 2+2 layers, 177k parameters), the
# students have width 32 and 1+1 layers (26k), trained 5 epochs with Adam on the 2,000
# pairs, two seeds. A translation is *valid* when it is one of its source's four; BLEU is
# scored against all four. *Classification*: sentences from a small grammar (clauses
# "the plot was not very good", joined by "and"/"but"), labelled positive or negative by
# composing the adjectives' valences with negations, intensifiers and "but". Teacher: a
# 2-layer transformer encoder on 2,000 labelled sentences; student: a one-layer BiLSTM
# that sees 150 of them.
#
# **Runtime.** Measured on a 2-core CPU shared with other jobs (load average about 8):
# the first run trains and caches both teachers (about 3 minutes); with the teachers
# cached the kernel ran in the time printed at the end. Seeded; runs on CUDA when present
# (not timed there).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from reference_impls.common.experiment import cached_model
from reference_impls.common.text import (
    BiLSTMClassifier,
    Classification,
    Seq2SeqSupervised,
    TransformerClassifier,
    beam_search,
    classifier_accuracy,
    corpus_bleu,
    fit,
    frame,
    greedy_decode,
    load_sentiment,
    load_transduction,
    strip,
    student_seq2seq,
    teacher_forcing,
    teacher_seq2seq,
    translations,
)
from reference_impls.common.training import set_seed
from reference_impls.modalities.text.distilled_bilstm import (
    DistilledBiLSTMLoss,
    augment_transfer_set,
)
from reference_impls.modalities.text.seq_kd import SequenceKD, source_key
from reference_impls.modalities.text.word_kd import WordKDLoss, word_kl

started = time.perf_counter()
torch.set_num_threads(1)  # as fast for these tiny models, and fair to other jobs
SEEDS = (0, 1)
data = load_transduction(seed=0)
MAX_LENGTH = data.max_target_length
for i in range(3):
    print(f"{data.words(data.src_train[i], 'source'):45s} -> {data.words(data.tgt_train[i])}")

# %% [markdown]
# ## The teacher, trained once and cached
#
# `cached_model` keeps the trained weights and a record keyed by everything that decides
# them. The record also holds what the procedure needs from the teacher: its beam-search
# translations (beam 5) of every training source, decoded once. Seq-KD's
# `SequenceKD` receives them as its cache, so no seed decodes again.


# %%
def fit_translation_teacher(model):
    curve = fit(Seq2SeqSupervised(model), data.src_train, data.tgt_train, epochs=30, lr=1e-3)
    best = beam_search(model, data.src_test, MAX_LENGTH, beam_size=5).best
    beams = beam_search(model, data.src_train, MAX_LENGTH, beam_size=5).tokens
    return {
        "loss": curve,
        "test_valid": data.valid(best).float().mean().item(),
        "test_bleu": corpus_bleu([strip(r) for r in best], data.valid_test),
        "train_beams": beams.tolist(),
    }


teacher, record, from_cache = cached_model(
    teacher_seq2seq,
    fit_translation_teacher,
    settings={"data": "load_transduction(seed=0)", "epochs": 30, "lr": 1e-3, "beam": 5},
)
teacher = teacher.cpu()
cache = {
    source_key(src): torch.tensor(beams)
    for src, beams in zip(data.src_train, record["train_beams"], strict=True)
}
print(
    f"teacher {'read from the cache' if from_cache else 'trained'}: "
    f"{record['test_valid']:.3f} of its beam-search test translations valid, "
    f"BLEU {record['test_bleu']:.3f}"
)


# %% [markdown]
# ## Which of the four translations?
#
# The references draw one of the four translations at random; the teacher's beam search
# picks, for each training source, the one *it* finds most probable. Counting the modes
# shows what each student is asked to imitate.


# %%
def mode_of(source_row, words) -> int:
    """0-3: (kept, plain), (kept, primed), (reversed, plain), (reversed, primed); 4 invalid."""
    source = [int(w) for w in source_row if w != 0]
    options = translations(source, len(data.src_vocab) - 1)
    return options.index(words) if words in options else 4


MODES = ["kept, plain", "kept, primed", "reversed, plain", "reversed, primed", "invalid"]
reference_modes = np.bincount(
    [mode_of(s, strip(t)) for s, t in zip(data.src_train, data.tgt_train, strict=True)],
    minlength=5,
)
teacher_modes = np.bincount(
    [mode_of(s, strip(cache[source_key(s)][0])) for s in data.src_train], minlength=5
)
for name, counts in (("references", reference_modes), ("teacher's beams", teacher_modes)):
    shares = ", ".join(f"{m} {c / counts.sum():.2f}" for m, c in zip(MODES, counts, strict=True))
    print(f"{name:16s} {shares}")

# %% [markdown]
# ## The students
#
# * **References**: maximum likelihood on the training pairs (the baseline).
# * **Word-KD**: `WordKDLoss(alpha=0.5)`, half word NLL, half the per-token KL to the
#   teacher's next-word distribution under teacher forcing on the references. The
#   teacher's logits on the 2,000 training pairs are computed once.
# * **Seq-KD**: `SequenceKD`, maximum likelihood on the teacher's beam-search
#   translations (from the shared cache).


# %%
with torch.no_grad():
    teacher_logits = teacher(data.src_train, teacher_forcing(data.tgt_train)[0]).logits


class WordKDStudent(torch.nn.Module):
    """The student under teacher forcing on the references, with the teacher's cached logits."""

    def __init__(self, student):
        super().__init__()
        self.student, self.loss = student, WordKDLoss(alpha=0.5)

    def forward(self, src, rows):
        tgt_in, labels = teacher_forcing(data.tgt_train[rows])
        value = self.loss(self.student(src, tgt_in).logits, teacher_logits[rows], labels)
        return {"loss": value}


def train_student(method: str, seed: int):
    set_seed(seed)
    student = student_seq2seq()
    settings = {"epochs": 5, "lr": 3e-3, "batch_size": 128, "seed": seed}
    if method == "references":
        fit(Seq2SeqSupervised(student), data.src_train, data.tgt_train, **settings)
    elif method == "Word-KD":
        rows = torch.arange(len(data.src_train))
        fit(WordKDStudent(student), data.src_train, rows, **settings)
    else:
        procedure = SequenceKD(student, teacher, max_length=MAX_LENGTH, cache=cache)
        fit(procedure, data.src_train, data.tgt_train, **settings)
    return student


def evaluate(model) -> dict:
    greedy = greedy_decode(model, data.src_test, MAX_LENGTH)
    beam = beam_search(model, data.src_test, MAX_LENGTH, beam_size=5).best
    return {
        "greedy": greedy,
        "valid (greedy)": data.valid(greedy).float().mean().item(),
        "valid (beam 5)": data.valid(beam).float().mean().item(),
        "BLEU (greedy)": corpus_bleu([strip(r) for r in greedy], data.valid_test),
    }


METHODS = ("references", "Word-KD", "Seq-KD")
students, results = {}, {m: [] for m in METHODS}
for method in METHODS:
    for seed in SEEDS:
        student = train_student(method, seed)
        students.setdefault(method, student)  # the seed-0 student, for the figures
        results[method].append(evaluate(student))
teacher_result = evaluate(teacher)
METRICS = ("valid (greedy)", "valid (beam 5)", "BLEU (greedy)")
print(f"{'':12s}" + "".join(f"{m:>18s}" for m in METRICS))
print(f"{'teacher':12s}" + "".join(f"{teacher_result[m]:18.3f}" for m in METRICS))
for method in METHODS:
    values = [[r[m] for r in results[method]] for m in METRICS]
    print(f"{method:12s}" + "".join(f"{np.mean(v):11.3f} ± {np.std(v):.3f}" for v in values))

# %% [markdown]
# ## Translated samples
#
# Greedy translations of the first test sources by the teacher and the seed-0 students;
# ✓ marks a valid translation, ✗ one that is none of the four (typically a mixture of
# orders or of registers).

# %%
for i in range(6):
    print(f"source      {data.words(data.src_test[i], 'source')}")
    for name, result in (("teacher", teacher_result), *((m, results[m][0]) for m in METHODS)):
        words = strip(result["greedy"][i])
        mark = "✓" if mode_of(data.src_test[i], words) < 4 else "✗"
        print(f"  {name:10s} {mark} {data.words(words)}")

# %% [markdown]
# ## What each model outputs, by mode, and the scores
#
# Left: the share of test translations (greedy) in each of the four modes, or invalid.
# Right: valid translations and BLEU per method, mean and spread over the two seeds, the
# teacher (greedy) as a dashed line.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), width_ratios=(1.1, 1))
rows = {"teacher": teacher_result, **{m: results[m][0] for m in METHODS}}
colors = ["#4c72b0", "#8da0cb", "#dd8452", "#f2b880", "#c44e52"]
for y, result in enumerate(rows.values()):
    shares = np.bincount(
        [mode_of(s, strip(g)) for s, g in zip(data.src_test, result["greedy"], strict=True)],
        minlength=5,
    ) / len(data.src_test)
    starts = np.concatenate([[0], np.cumsum(shares)[:-1]])
    for k in range(5):
        left.barh(y, shares[k], left=starts[k], color=colors[k], label=MODES[k] if y == 0 else None)
left.set_yticks(range(len(rows)), list(rows))
left.invert_yaxis()
left.set_xlabel("share of the 200 test translations (greedy, seed 0)")
left.legend(ncol=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22))
x = np.arange(len(METRICS))
for j, method in enumerate(METHODS):
    values = np.array([[r[m] for m in METRICS] for r in results[method]])
    right.bar(x + (j - 1) * 0.25, values.mean(0), 0.25, yerr=values.std(0), label=method)
for k, m in enumerate(METRICS):
    right.hlines(teacher_result[m], k - 0.4, k + 0.4, colors="k", linestyles="--")
right.set_xticks(x, METRICS)
right.set_ylim(0.5, 1.0)
right.legend(fontsize=8, loc="lower left")
right.set_title("test scores (two seeds); dashed: teacher", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Where the students part from the teacher: per-token KL
#
# Each row is a test source, teacher-forced on the teacher's own greedy translation;
# each cell the KL divergence from the teacher's next-word distribution to the student's
# at that position (`word_kl`, the term Word-KD minimises). Position 0 is the choice of
# the first word, which fixes the order and the register.

# %%
sources = data.src_test[:12]
target = frame(teacher_result["greedy"][:12])
tgt_in, labels = teacher_forcing(target)
keep = (labels != 0) & (labels != -100)
with torch.no_grad():
    t_logits = teacher(sources, tgt_in).logits
    maps = {m: word_kl(students[m](sources, tgt_in).logits, t_logits, keep) for m in METHODS}
top = max(float(v.max()) for v in maps.values())
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
for ax, (method, kl) in zip(axes, maps.items(), strict=True):
    shown = np.ma.masked_where(~keep.numpy(), kl.numpy())
    image = ax.imshow(shown, cmap="magma_r", vmin=0, vmax=top, aspect="auto")
    ax.set_title(f"{method}: mean KL {float(kl.sum() / keep.sum()):.3f}", fontsize=10)
    ax.set_xlabel("target position")
axes[0].set_ylabel("test source")
fig.colorbar(image, ax=axes, shrink=0.9, label="KL(teacher ‖ student)")
plt.show()
first = {m: float(kl[:, 0].mean()) for m, kl in maps.items()}
rest = {m: float(kl[:, 1:].sum() / keep[:, 1:].sum()) for m, kl in maps.items()}
for method in METHODS:
    print(f"{method:12s} KL at position 0: {first[method]:.3f}   at the others: {rest[method]:.3f}")

# %% [markdown]
# ## Seq-Inter: the beam hypothesis closest to the reference
#
# `SequenceKD(..., interpolation=True)` trains on the teacher's hypothesis with the highest
# sentence BLEU to the reference instead of its best one. On the training set it
# agrees with the reference's mode more often (not trained further here).

# %%
inter = SequenceKD(
    student_seq2seq(), teacher, max_length=MAX_LENGTH, cache=cache, interpolation=True
)
plain = SequenceKD(student_seq2seq(), teacher, max_length=MAX_LENGTH, cache=cache)
src, tgt = data.src_train[:500], data.tgt_train[:500]
for name, procedure in (("Seq-KD", plain), ("Seq-Inter", inter)):
    chosen = procedure.targets(src, tgt)
    same = np.mean([strip(c) == strip(r) for c, r in zip(chosen, tgt, strict=True)])
    print(f"{name:10s} target equals the reference on {same:.3f} of 500 training pairs")

# %% [markdown]
# ## A BiLSTM taught by a transformer classifier (Tang et al., 2019)
#
# The teacher sees 2,000 labelled sentences; the BiLSTM 150. Tang et al.'s transfer set
# perturbs each of the 150 sentences 20 times (masking, replacement by a word of the same
# grammatical class, n-gram sampling); the teacher labels it, and the student regresses the
# teacher's logits (`DistilledBiLSTMLoss`: MSE plus cross-entropy on the teacher's labels).

# %%
sentiment = load_sentiment(seed=0)


def fit_classifier_teacher(model):
    fit(Classification(model), sentiment.x_train, sentiment.y_train, epochs=15, lr=1e-3)
    return {"test_accuracy": classifier_accuracy(model, sentiment.x_test, sentiment.y_test)}


classifier, classifier_record, _ = cached_model(
    lambda: TransformerClassifier(len(sentiment.vocab)),
    fit_classifier_teacher,
    settings={"data": "load_sentiment(seed=0)", "epochs": 15, "lr": 1e-3},
)
classifier = classifier.cpu()
labelled = sentiment.with_train_subset(150)
augmented = augment_transfer_set(labelled.x_train, sentiment.word_classes, seed=0)
transfer = torch.cat([labelled.x_train, augmented])
with torch.no_grad():
    transfer_logits = classifier(transfer).logits
print(f"transfer set: {len(labelled.x_train)} sentences + {len(augmented)} generated, e.g.")
for row in augmented[:4]:
    print(
        f"  {sentiment.words(row):40s} teacher: {classifier(row[None]).logits.softmax(1)[0, 1]:.2f} positive"
    )


class TangStudent(torch.nn.Module):
    def __init__(self, student):
        super().__init__()
        self.student, self.loss = student, DistilledBiLSTMLoss()

    def forward(self, x, rows):
        teacher = transfer_logits[rows]
        return {"loss": self.loss(self.student(x).logits, teacher, teacher.argmax(1))}


accuracy = {"BiLSTM alone": [], "BiLSTM, Tang et al.": []}
for seed in SEEDS:
    set_seed(seed)
    alone = BiLSTMClassifier(len(sentiment.vocab))
    fit(
        Classification(alone),
        labelled.x_train,
        labelled.y_train,
        epochs=30,
        lr=3e-3,
        batch_size=32,
        seed=seed,
    )
    accuracy["BiLSTM alone"].append(classifier_accuracy(alone, sentiment.x_test, sentiment.y_test))
    set_seed(seed)
    distilled = BiLSTMClassifier(len(sentiment.vocab))
    rows = torch.arange(len(transfer))
    fit(TangStudent(distilled), transfer, rows, epochs=4, lr=3e-3, batch_size=64, seed=seed)
    accuracy["BiLSTM, Tang et al."].append(
        classifier_accuracy(distilled, sentiment.x_test, sentiment.y_test)
    )
print(f"{'transformer teacher':22s} {classifier_record['test_accuracy']:.3f}")
for name, values in accuracy.items():
    print(f"{name:22s} {np.mean(values):.3f} ± {np.std(values):.3f}  (seeds {values})")

fig, ax = plt.subplots(figsize=(5, 2.6))
names = list(accuracy)
ax.barh(names, [np.mean(accuracy[n]) for n in names], xerr=[np.std(accuracy[n]) for n in names])
ax.axvline(classifier_record["test_accuracy"], color="k", linestyle="--", label="teacher")
ax.set_xlim(0.5, 1.0)
ax.set_xlabel("test accuracy (500 sentences)")
ax.legend(loc="lower right")
plt.tight_layout()
plt.show()
print(
    f"notebook ran in {time.perf_counter() - started:.0f} s ({time.process_time():.0f} s of CPU time)"
)

# %% [markdown]
# ## What we saw
#
# (written from the numbers above)
