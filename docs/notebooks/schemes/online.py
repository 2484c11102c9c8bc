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
# **100 labelled** 8x8 digits from scikit-learn (no teacher anywhere), tested on 449
# held-out digits, for 15 epochs and over three seeds. Compared: the network alone; DML (two students
# teaching each other); ONE (one network whose last stage has three branches and a
# gated ensemble); KDCL (two peers, each on a randomly shifted view, taught by a
# "min-logit" ensemble), and KDCL without its shift, to separate the augmentation
# from the distillation. All methods are imported from `reference_impls`; the set-up
# every notebook shares (data, seeds, tables, plots) is `reference_impls.common.Experiment`.
#
# **Runtime.** 20-22 s (four runs on a 2-core CPU, kernel start included); the
# kernel itself used 18-20 s of CPU time. Seeded; runs on CUDA when present (not
# timed there).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common import (
    Experiment,
    ModelOutput,
    Supervised,
    method_colors,
    predict_logits,
    set_seed,
    student_cnn,
)
from reference_impls.schemes.online.dml import DML
from reference_impls.schemes.online.kdcl import KDCL
from reference_impls.schemes.online.one import ONE, ONENetwork

exp = Experiment(seeds=(0, 1, 2), epochs=15, labelled=100, batch_size=25)

# %% [markdown]
# ## The methods
#
# Defaults are the authors': DML without temperature, ONE with three branches and
# T = 3, KDCL-MinLogit with T = 2 and λ = 1 (T is flagged for review in the KDCL
# module). One change: ONE ramps its KL weight up over the first 80 of 300 CIFAR
# epochs; we keep that fraction of our 15 epochs (4 epochs).
#
# Each method returns the network we would deploy (one student, one ONE branch, one
# KDCL peer: all of the student's size, ONE's branch plus its shared trunk) and the
# test accuracy of its cohort's ensemble (the averaged softmax). The baseline's
# "cohort" is two students trained independently from different seeds.

# %%
ONE_RAMPUP = round(exp.epochs * 80 / 300)


class OneBranch(nn.Module):
    """One branch of an ``ONENetwork`` with the shared trunk: what ONE deploys."""

    def __init__(self, network: ONENetwork, index: int) -> None:
        super().__init__()
        self.network = network
        self.index = index

    def forward(self, x: torch.Tensor) -> ModelOutput:
        branch_logits, _ = self.network.forward_branches(x)
        return ModelOutput(branch_logits[:, self.index])


def ensemble_accuracy(models: list[nn.Module]) -> float:
    probabilities = sum(F.softmax(predict_logits(m, exp.data.x_test), dim=1) for m in models)
    return (probabilities.argmax(1) == exp.data.y_test).float().mean().item()


def with_ensemble(trained, cohort):
    trained.extras["ensemble"] = ensemble_accuracy(cohort)
    return trained


def alone(seed):
    first = exp.train(Supervised(student_cnn()), seed)
    set_seed(seed + 100)  # an independent second student, for the ensemble
    second = exp.train(Supervised(student_cnn()), seed + 100)
    return with_ensemble(first, [first.model, second.model])


def dml(seed):
    procedure = DML([student_cnn(), student_cnn()])
    return with_ensemble(exp.train(procedure, seed), list(procedure.students))


def one(seed):
    network = ONENetwork(channels=student_cnn().channels, num_branches=3)
    procedure = ONE(network, temperature=3.0, rampup_epochs=ONE_RAMPUP)
    trained = exp.train(procedure, seed, evaluate=OneBranch(network, 0))
    return with_ensemble(trained, [network])  # ONE's ensemble is its own gated output


def kdcl(seed, shift=True):
    peers = [student_cnn(), student_cnn()]
    procedure = KDCL(peers) if shift else KDCL(peers, augment=None)
    return with_ensemble(exp.train(procedure, seed), list(procedure.peers))


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
exp.compare(METHODS)  # every method once per seed; measured: the deployed network's accuracy
exp.summary([("accuracy", "deployed"), ("ensemble", "ensemble")])

# %% [markdown]
# ## Learning curves
#
# Test accuracy of the deployed network after each epoch, mean over seeds (band: ± one
# standard deviation).

# %%
exp.plot_curves(title=f"One network of each cohort, {len(exp.labelled.x_train)} labelled digits")
plt.show()

# %% [markdown]
# ## The deployed network and the cohort's ensemble
#
# Mean ± standard deviation over three seeds. Left: the single network one would
# deploy. Right: the whole cohort averaged (for "alone", two independently trained
# students; for ONE, its gated ensemble of three branches).

# %%
metrics = [("accuracy", "deployed network"), ("ensemble", "cohort ensemble")]
fig = exp.plot_bars(metrics, ylims={"accuracy": (0.7, 1.0)}, sharey=True)
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


def entropy(model: nn.Module) -> torch.Tensor:
    log_p = F.log_softmax(predict_logits(model, exp.data.x_test), dim=1)
    return -(log_p.exp() * log_p).sum(1).cpu()


fig, ax = plt.subplots(figsize=(7, 3.6))
for name, model in exp.models.items():  # each method's seed-0 network
    values = entropy(model).numpy()
    width = 2.5 if name == "alone" else 1.5
    ax.ecdf(values, color=COLORS[name], linewidth=width, label=name)
    print(f"{name:>15}: median prediction entropy {np.median(values):.3f} nats")
ax.set(xlabel="entropy of the test prediction (nats)", ylabel="fraction of test images")
ax.set_xlim(0, 1.5)
ax.legend(fontsize=8, loc="lower right")
plt.show()

exp.report_runtime()

# %% [markdown]
# ## What we saw
#
# * No online method made the deployed network clearly better than training it alone
#   (about 0.89): DML and ONE end level with it, KDCL without its shift under two
#   points above, within the spread of three seeds. KDCL with its one-pixel shifts
#   ends about 5 points *below*, and its curve is still climbing at the last epoch
#   (ONE's, the only one faster than training alone early on, has long flattened):
#   on these tiny images and this short schedule its distortion costs more than the
#   collaboration gives.
# * The ensembles tell the most. Two students trained independently and averaged beat
#   every cohort's ensemble, including DML's pair and ONE's gated branches. Teaching
#   each other makes the peers agree, and agreeing peers add less to an ensemble.
# * The softer-predictions story did not show up here: DML's prediction entropies are
#   those of a network trained alone, ONE and KDCL without shifts are *more*
#   confident, and only KDCL with shifts is much softer (its peers never see an
#   unshifted image in training, which may explain both its softness and its lower
#   accuracy; we did not test that).
# * Caveats: 100 labelled 8x8 digits, 15 epochs, no data augmentation (bar KDCL's shift),
#   default weights. Online distillation's published gains come from long schedules on
#   CIFAR and ImageNet with strong augmentation, which a 25 s notebook cannot reproduce.
