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
# # Graph distillation on a generated graph
#
# **The question.** A graph neural network (GNN) classifies a node from its own
# features *and* its neighbours'. Can its knowledge be moved (1) into an MLP that reads
# the node's features alone, so that inference needs no graph (GLNN), and (2) into a
# much narrower GNN, by matching how the teacher embeds each node's neighbourhood (LSP)?
#
# **The setting.** A stochastic block model of 600 nodes in 4 classes: an edge joins two
# nodes of one class with probability 0.04 and of different classes with probability
# 0.005, so most neighbours share a node's class. Each node has 32 features, its class
# mean plus noise of the same size: on its own a node's features are ambiguous. Only
# 10 nodes per class are labelled; 20 per class are held out for validation (every model
# keeps the weights of its best validation epoch, as both authors' codes do) and the
# other 480 are the test set. Teacher: a GCN (hidden width 64) trained on the 40
# labels. Students, each trained for 100 full-batch epochs with Adam, three seeds: an MLP
# (width 64) on labels alone and with GLNN; a GCN of hidden width 4 on labels alone and
# with LSP. The graph models, the data and the training loop are
# `reference_impls.common.graphs`; the losses are imported from `reference_impls`.
#
# **Runtime.** 8-9 s of CPU time in the kernel (four runs; it uses one thread). It was
# measured on a 2-core CPU shared with about nine other jobs (load average 9-10), where
# the kernel's wall time was 25-51 s and the whole test execution 42 s; on an idle
# machine the wall time should be close to the CPU time plus the kernel's start (not
# measured). Seeded; runs on CUDA when present (not timed there).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import LineCollection

from reference_impls.algorithms.graph.glnn import GLNNLoss
from reference_impls.algorithms.graph.lsp import LSPLoss
from reference_impls.common import Experiment, Trained
from reference_impls.common.graphs import (
    GCN,
    NodeMLP,
    labelled_cross_entropy,
    node_accuracy,
    run_on_graph,
    stochastic_block_model,
    train_node_classifier,
)

graph = stochastic_block_model(seed=0)  # 600 nodes, 4 classes, 32 features
# the shared set-up: seeds, one CPU thread, results and figures; its data are the node
# features (what an MLP sees), the graph models read the graph below
exp = Experiment(seeds=(0, 1, 2), data=graph.node_split(), labelled=None, examples="nodes")
graph = graph.to(exp.device)
print(
    f"{graph.num_nodes} nodes, {graph.num_edges // 2} edges (mean degree "
    f"{graph.num_edges / graph.num_nodes:.1f}), {graph.homophily():.0%} of edges inside a class"
)

# %% [markdown]
# ## The graph
#
# Left: the adjacency matrix with the nodes sorted by class: the four blocks on the
# diagonal are the dense within-class edges, the sparse dots elsewhere the edges across
# classes. Middle: the graph drawn with its spectral layout (the second and third
# eigenvectors of the normalised Laplacian place nodes that share many paths close
# together), coloured by class. Right: the node *features* projected on their first
# two principal components: the classes overlap, which is why a model that sees a node
# alone struggles.

# %%
x, y = graph.x.cpu(), graph.y.cpu()
source, target = graph.edge_index.cpu()
order = torch.argsort(y, stable=True)
rank = torch.empty_like(order)
rank[order] = torch.arange(len(order))
degree = torch.bincount(target, minlength=graph.num_nodes).double()
laplacian = torch.eye(graph.num_nodes, dtype=torch.float64)
laplacian[target, source] -= 1.0 / (degree[target] * degree[source]).sqrt()
_, eigenvectors = torch.linalg.eigh(laplacian)
layout = eigenvectors[:, 1:3].numpy()


def pca_2d(points: torch.Tensor) -> np.ndarray:
    """The rows of ``points`` on their first two principal components."""
    centred = points.detach().double().cpu() - points.detach().double().cpu().mean(0)
    _, _, components = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ components[:2].T).numpy()


fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
axes[0].scatter(rank[target], rank[source], s=0.3, color="black")
axes[0].set(title="adjacency, nodes sorted by class", xlim=(0, 600), ylim=(600, 0))
axes[0].set_aspect("equal")
segments = np.stack([layout[source], layout[target]], axis=1)
axes[1].add_collection(LineCollection(segments, colors="grey", linewidths=0.1, alpha=0.4))
axes[1].scatter(*layout.T, c=y, cmap="tab10", vmin=0, vmax=9, s=8)
axes[1].set(title="the graph (spectral layout)", xticks=[], yticks=[])
axes[2].scatter(*pca_2d(x).T, c=y, cmap="tab10", vmin=0, vmax=9, s=8)
axes[2].set(title="node features (PCA)", xticks=[], yticks=[])
plt.show()

# %% [markdown]
# ## The teacher
#
# A two-layer GCN trained on the 40 labelled nodes; it reads every node's neighbours.

# %%
torch.manual_seed(0)
teacher = GCN(graph.x.shape[1], 64, graph.num_classes).to(exp.device)
train_node_classifier(teacher, graph, epochs=100)
for parameter in teacher.parameters():
    parameter.requires_grad_(False)
with torch.no_grad():
    teacher_output = run_on_graph(teacher, graph)  # logits and embeddings of every node
teacher_accuracy = node_accuracy(teacher, graph, graph.test_mask)
print(f"teacher GCN: test accuracy {teacher_accuracy:.3f}")

# %% [markdown]
# ## The students
#
# * **MLP** and **GLNN MLP**: the same MLP, trained on the 40 labels, or with
#   `GLNNLoss()` at the authors' defaults (λ = 0: the KL to the teacher's predictions on
#   *all* 600 nodes, the transductive setting; no temperature).
# * **GCN-4** and **GCN-4 + LSP**: a GCN of hidden width 4, trained on the 40 labels, or
#   on the labels plus `LSPLoss` between its hidden embeddings and the teacher's. Two
#   settings depart from the authors' (PPI, GAT with 1,024-wide hidden features, 500
#   epochs): the kernel's bandwidth is set to the median L1 distance between the
#   teacher's embeddings along an edge (the authors' 100 would make every similarity
#   nearly equal for our 64-wide embeddings, and the loss nearly zero), and the term is
#   weighted 30 and kept for all epochs (`active_epochs=None`; the authors'
#   script applies it in the first 30 of 500 epochs).
#
# Every run starts from the same seed, so the two students of a pair start from the
# same weights.

# %%
distance = (teacher_output.embedding[source] - teacher_output.embedding[target]).abs().sum(1)
BANDWIDTH = distance.median().item()
LSP_WEIGHT = 30.0
EPOCHS = 100
print(f"LSP bandwidth: {BANDWIDTH:.1f} (median teacher distance along an edge)")
features = graph.x.shape[1]
labels_only = labelled_cross_entropy(graph)


def mlp(seed: int) -> Trained:
    model = NodeMLP(features, 64, graph.num_classes).to(exp.device)
    return Trained(model, train_node_classifier(model, graph, epochs=EPOCHS))


def glnn(seed: int) -> Trained:
    model, loss = NodeMLP(features, 64, graph.num_classes).to(exp.device), GLNNLoss()

    def objective(output):  # soft labels on every node; λ = 0 reads no label
        return loss(output.logits, teacher_output.logits, graph.y, graph.train_mask)

    return Trained(model, train_node_classifier(model, graph, objective, epochs=EPOCHS))


def gcn(seed: int) -> Trained:
    model = GCN(features, 4, graph.num_classes).to(exp.device)
    return Trained(model, train_node_classifier(model, graph, epochs=EPOCHS))


def lsp(seed: int) -> Trained:
    model = GCN(features, 4, graph.num_classes).to(exp.device)
    loss = LSPLoss(bandwidth=BANDWIDTH, active_epochs=None)

    def objective(output):
        structure = loss(output.embedding, teacher_output.embedding, graph.edge_index)
        return labels_only(output) + LSP_WEIGHT * structure

    return Trained(model, train_node_classifier(model, graph, objective, epochs=EPOCHS))


structure_gap = LSPLoss(bandwidth=BANDWIDTH, active_epochs=None)


@torch.no_grad()
def measure(model: torch.nn.Module) -> dict[str, float]:
    """Test accuracy; for the GCNs also the LSP distance of their embeddings to the teacher's."""
    output = run_on_graph(model.eval(), graph)
    metrics = {"accuracy": node_accuracy(model, graph, graph.test_mask)}
    if model.uses_graph:
        metrics["lsp"] = structure_gap(output.embedding, teacher_output.embedding, graph.edge_index)
        metrics["lsp"] = metrics["lsp"].item()
    return metrics


exp.compare({"MLP": mlp, "GLNN MLP": glnn, "GCN-4": gcn, "GCN-4 + LSP": lsp}, measure)
exp.summary()
for name in ("GCN-4", "GCN-4 + LSP"):  # how far each GCN's local structure is from the teacher's
    gaps = 1e3 * np.array([run["lsp"] for run in exp.results[name]])
    print(f"{name:>11}: LSP distance to the teacher ({gaps.mean():.2f} ± {gaps.std():.2f}) x 1e-3")

# %% [markdown]
# ## Accuracy
#
# Test accuracy after each epoch (mean over the seeds, ± one standard deviation), with
# the teacher as a dashed line, and the final values (each run keeps its best
# validation epoch).

# %%
fig = exp.plot_curves(teacher_accuracy=teacher_accuracy, title="Students on 40 labelled nodes")
fig.axes[0].set_ylim(0.2, 1.0)
plt.show()
exp.plot_bars([("accuracy", "test accuracy")], ylims={"accuracy": (0.2, 1.0)})
plt.show()

# %% [markdown]
# ## Inference without the graph
#
# The MLPs never read `edge_index`: at inference they need a node's features and
# nothing else, so a new node can be classified before its edges are known and without
# fetching any neighbour. The teacher cannot do without: given the same features but no
# edges, it falls back to what it learnt about a node alone.

# %%
no_edges = torch.empty(2, 0, dtype=torch.long, device=exp.device)
alone = node_accuracy(teacher, graph, graph.test_mask, edge_index=no_edges)
mlp_accuracy = np.mean([run["accuracy"] for run in exp.results["MLP"]])
glnn_accuracy = np.mean([run["accuracy"] for run in exp.results["GLNN MLP"]])
print(f"teacher GCN with its graph:    {teacher_accuracy:.3f}")
print(f"teacher GCN without any edge:  {alone:.3f}")
print(f"MLP (labels), features only:   {mlp_accuracy:.3f}")
print(f"GLNN MLP, features only:       {glnn_accuracy:.3f}")

# %% [markdown]
# ## Node embeddings
#
# The hidden representation of every node (the teacher's 64 dimensions, the GCN-4's 4,
# the MLPs' 64) projected on its first two principal components and coloured by class;
# seed 0 of each student. The LSP distance under each GCN is the loss it was trained
# with (the teacher's is 0 by definition).

# %%
panels = {"teacher GCN": teacher, **{name: exp.models[name] for name in exp.results}}
fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6))
for ax, (name, model) in zip(axes, panels.items(), strict=True):
    with torch.no_grad():
        embedding = run_on_graph(model.eval(), graph).embedding
    ax.scatter(*pca_2d(embedding).T, c=y, cmap="tab10", vmin=0, vmax=9, s=5)
    title = name
    if name.startswith("GCN-4"):
        title += f"\nLSP distance {exp.results[name][0]['lsp']:.4f}"
    ax.set(title=title, xticks=[], yticks=[])
plt.tight_layout()
plt.show()
exp.report_runtime()

# %% [markdown]
# ## What we saw
#
# * The generated graph is what a GNN is for: the adjacency matrix shows four dense
#   class blocks (73% of the 2,444 edges stay inside a class), while the node features
#   of the four classes overlap in their principal components.
# * The teacher GCN reached 0.890 test accuracy from 40 labels; given the same features
#   without any edge it fell to 0.556. The MLP trained on the 40 labels reached
#   0.435 ± 0.005. Trained with GLNN on the teacher's predictions for all 600 nodes, the
#   same MLP reached 0.600 ± 0.009: 16.5 points more, and above the teacher deprived of
#   its graph, with inference from a node's own features. It stayed 29 points below the
#   teacher: here a node's features carry only part of its class, and the rest is in its
#   neighbours, which no feature-only model can read. In the embedding projections the
#   GLNN MLP's classes are only loosely sorted, the plain MLP's hardly at all.
# * The GCN of width 4 trained on labels alone reached 0.897 ± 0.009, already above its
#   teacher (0.890: the wide teacher fits 40 labels more closely than a narrow network
#   does). With LSP (weight 30, bandwidth 14.5, all epochs) it reached 0.917 ± 0.008, and
#   its local structure moved toward the teacher's: the LSP distance fell from
#   (1.61 ± 0.27) x 1e-3 to (1.12 ± 0.07) x 1e-3. LSP also rose faster: its mean test
#   accuracy first reached 0.9 at epoch 58, against epoch 87 without it. The distances
#   are small because the kernel exp(-d/b) keeps every similarity in (0, 1]:
#   neighbourhood distributions are never sharp.
# * Three seeds of one generated graph, one teacher: differences of a point or two are
#   within what another graph or teacher could change.
