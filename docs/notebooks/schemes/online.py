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
# # Online distillation: students that teach each other
#
# **The question.** Offline distillation needs a large teacher trained beforehand.
# Online schemes drop it: small networks train *together* and each learns from the
# others' predictions as well as from the labels. Does a small network trained in
# such a cohort end up better than the same network trained alone, and is the
# cohort's ensemble better than two networks trained independently?
#
# **The setting.** The ~20k-parameter student CNN of the other notebooks, trained on
# **100 labelled** 8x8 digits from scikit-learn (no teacher anywhere), tested on 450
# held-out digits, over three seeds. Compared: the network alone; DML (two students
# teaching each other); ONE (one network whose last stage has three branches and a
# gated ensemble); KDCL (two peers, each on a randomly shifted view, taught by a
# "min-logit" ensemble), and KDCL without its shift, to separate the augmentation
# from the distillation. All methods are imported from `reference_impls`.
#
# **Runtime.** 19 s, measured on a 2-core CPU with the kernel start included and
# other jobs sharing the cores; the kernel itself used 18 s of CPU time. Seeded;
# runs on CUDA when present (not timed there).

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# without ipywidgets, tqdm falls back to a text progress bar; that is fine here
warnings.filterwarnings("ignore", message="IProgress not found")
from tqdm.auto import tqdm

from reference_impls.common import (
    ModelOutput,
    default_device,
    load_digits_split,
    method_colors,
    plot_learning_curves,
    plot_metric_bars,
    predict_logits,
    print_summary,
    set_seed,
    student_cnn,
    train,
    train_supervised,
)
from reference_impls.schemes.online.dml import DML
from reference_impls.schemes.online.kdcl import KDCL
from reference_impls.schemes.online.one import ONE, ONENetwork

started = time.perf_counter()
torch.set_num_threads(1)  # tiny 8x8 models: one thread is as fast and never fights for cores
device = default_device()
print(f"device: {device}")

SEEDS = (0, 1, 2)
LABELLED = 100
EPOCHS = 20
BATCH = 25
data = load_digits_split(seed=0).to(device)
labelled = data.with_train_subset(LABELLED)
print(f"students train on {len(labelled.x_train)} labelled images")

# %% [markdown]
# ## The methods
#
# Defaults are the authors': DML without temperature, ONE with three branches and
# T = 3, KDCL-MinLogit with T = 2 and λ = 1 (T is flagged for review in the KDCL
# module). One change: ONE ramps its KL weight up over the first 80 of 300 CIFAR
# epochs; we keep that fraction of our 20 epochs (5 epochs).
#
# Each method returns the network we would deploy (one student, one ONE branch, one
# KDCL peer: all of the student's size, ONE's branch plus its shared trunk) and the
# cohort, whose averaged softmax is the ensemble. The baseline's "cohort" is two
# students trained independently from different seeds.

# %%
ONE_RAMPUP = round(EPOCHS * 80 / 300)


class OneBranch(nn.Module):
    """One branch of an ``ONENetwork`` with the shared trunk: what ONE deploys."""

    def __init__(self, network: ONENetwork, index: int) -> None:
        super().__init__()
        self.network = network
        self.index = index

    def forward(self, x: torch.Tensor) -> ModelOutput:
        branch_logits, _ = self.network.forward_branches(x)
        return ModelOutput(branch_logits[:, self.index])


def fit(procedure: nn.Module, evaluate: nn.Module, seed: int) -> list[float]:
    history = train(
        procedure,
        labelled,
        epochs=EPOCHS,
        batch_size=BATCH,
        seed=seed,
        device=device,
        evaluate=evaluate,
    )
    return history.test_accuracy


def alone(seed):
    settings = {"epochs": EPOCHS, "batch_size": BATCH, "device": device}
    first = student_cnn()
    curve = train_supervised(first, labelled, seed=seed, **settings).test_accuracy
    set_seed(seed + 100)  # an independent second student, for the ensemble
    second = student_cnn()
    train_supervised(second, labelled, seed=seed + 100, **settings)
    return first, [first, second], curve


def dml(seed):
    procedure = DML([student_cnn(), student_cnn()])
    curve = fit(procedure, procedure.student, seed)
    return procedure.student, list(procedure.students), curve


def one(seed):
    network = ONENetwork(channels=student_cnn().channels, num_branches=3)
    deployed = OneBranch(network, 0)
    curve = fit(ONE(network, temperature=3.0, rampup_epochs=ONE_RAMPUP), deployed, seed)
    return deployed, [network], curve  # ONE's ensemble is its own gated output


def kdcl(seed, shift=True):
    peers = [student_cnn(), student_cnn()]
    procedure = KDCL(peers) if shift else KDCL(peers, augment=None)
    curve = fit(procedure, procedure.student, seed)
    return procedure.student, list(procedure.peers), curve


METHODS = {
    "alone": alone,
    "DML": dml,
    "ONE": one,
    "KDCL": kdcl,
    "KDCL, no shift": lambda seed: kdcl(seed, shift=False),
}
COLORS = method_colors(METHODS)  # the baseline in black, as in every figure below

# %% [markdown]
# ## Training

# %%


def ensemble_accuracy(models: list[nn.Module]) -> float:
    probabilities = sum(F.softmax(predict_logits(m, data.x_test), dim=1) for m in models)
    return (probabilities.argmax(1) == data.y_test).float().mean().item()


def entropy(model: nn.Module) -> torch.Tensor:
    log_p = F.log_softmax(predict_logits(model, data.x_test), dim=1)
    return -(log_p.exp() * log_p).sum(1).cpu()


results: dict[str, list[dict]] = {name: [] for name in METHODS}
deployed_models: dict[str, nn.Module] = {}
runs = [(name, seed) for name in METHODS for seed in SEEDS]
for name, seed in tqdm(runs, desc="methods x seeds"):
    set_seed(seed)
    deployed, cohort, curve = METHODS[name](seed)
    correct = predict_logits(deployed, data.x_test).argmax(1) == data.y_test
    results[name].append(
        {
            "curve": curve,
            "accuracy": correct.float().mean().item(),
            "ensemble": ensemble_accuracy(cohort),
        }
    )
    if seed == SEEDS[0]:
        deployed_models[name] = deployed

print_summary(results, [("accuracy", "deployed"), ("ensemble", "ensemble")])

# %% [markdown]
# ## Learning curves
#
# Test accuracy of the deployed network after each epoch, mean over seeds (band: ± one
# standard deviation).

# %%
plot_learning_curves(results, title=f"One network of each cohort, {LABELLED} labelled digits")
plt.show()

# %% [markdown]
# ## The deployed network and the cohort's ensemble
#
# Mean ± standard deviation over three seeds. Left: the single network one would
# deploy. Right: the whole cohort averaged (for "alone", two independently trained
# students; for ONE, its gated ensemble of three branches).

# %%
metrics = [("accuracy", "deployed network"), ("ensemble", "cohort ensemble")]
fig = plot_metric_bars(results, metrics, ylims={"accuracy": (0.7, 1.0)}, sharey=True)
fig.axes[0].set_ylabel("test accuracy")
plt.show()

# %% [markdown]
# ## What is transferred: softer predictions?
#
# What a peer passes on is its whole predicted distribution, so online schemes are
# often credited with softer, less over-confident predictions (the DML paper links
# mutual learning to wider minima). The plot checks this here: the cumulative
# distribution of the entropy of each deployed network's predictions on the test
# images (seed 0). 0 is a one-hot prediction, ln 10 ≈ 2.3 a uniform one; a curve
# further right means softer predictions.

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
for name, model in deployed_models.items():
    values = entropy(model).numpy()
    width = 2.5 if name == "alone" else 1.5
    ax.ecdf(values, color=COLORS[name], linewidth=width, label=name)
    print(f"{name:>15}: median prediction entropy {np.median(values):.3f} nats")
ax.set(xlabel="entropy of the test prediction (nats)", ylabel="fraction of test images")
ax.set_xlim(0, 1.5)
ax.legend(fontsize=8, loc="lower right")
plt.show()

print(
    f"notebook ran in {time.perf_counter() - started:.0f} s on {device} "
    f"({time.process_time():.0f} s of CPU time in this kernel)"
)

# %% [markdown]
# ## What we saw
#
# * No online method made the deployed network clearly better than training it alone
#   (about 0.90): DML and ONE end within a point of it, KDCL without its shift about a
#   point above, all within the spread of three seeds. KDCL with its one-pixel shifts
#   ends about 3 points *below*, so on these tiny images its distortion costs more than
#   the collaboration gives.
# * The ensembles tell the most. Two students trained independently and averaged beat
#   every cohort's ensemble, including DML's pair and ONE's gated branches. Teaching
#   each other makes the peers agree, and agreeing peers add less to an ensemble.
# * The softer-predictions story did not show up here: DML's prediction entropies are
#   those of a network trained alone, ONE and KDCL without shifts are *more*
#   confident, and only KDCL with shifts is much softer (its peers never see an
#   unshifted image in training, which may explain both its softness and its lower
#   accuracy; we did not test that).
# * Caveats: 100 labelled 8x8 digits, 20 epochs, no data augmentation (bar KDCL's shift),
#   default weights. Online distillation's published gains come from long schedules on
#   CIFAR and ImageNet with strong augmentation, which a 25 s notebook cannot reproduce.
