r"""Generated graphs and small graph networks in plain torch, for the graph-distillation methods.

No graph library is needed. A graph is given as PyTorch Geometric gives it: node
features ``x`` ``[N, F]`` and an ``edge_index`` ``[2, E]`` of integer node indices,
row 0 the source and row 1 the target of each directed edge (an undirected graph
lists both directions). Messages flow from source to target: a node aggregates
over the edges that end at it.

* :func:`stochastic_block_model` draws a :class:`Graph`: ``num_classes`` blocks,
  edges inside a block with probability ``p_in`` and across blocks with ``p_out``,
  node features ``class mean + noise`` (the signal a feature-only MLP can read), a
  per-class train/validation/test split, all decided by the seed.
* :class:`GCN` (Kipf and Welling, symmetric normalisation with self-loops) and
  :class:`GraphSAGE` (mean aggregator, separate weights for the node and its
  neighbours, as PyG's ``SAGEConv``) propagate over a sparse adjacency built from
  ``edge_index`` (:func:`adjacency`); :class:`NodeMLP` reads the node features alone.
  All three return a :class:`~reference_impls.common.models.ModelOutput` whose
  ``embedding`` is each node's last hidden representation before its activation
  (what LSP reads; the authors' GAT returns the same with ``middle=True``).
* :func:`train_node_classifier` trains any of them full-batch with Adam (the
  optimiser of both GLNN's and LSP's code), on a given objective, keeping the
  weights of the epoch with the best validation accuracy (both codes select on
  validation), and records test accuracy per epoch.

The models compute the sparse products in at least float32 (sparse kernels have
no half-precision path on every device), so they run under ``torch.autocast``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.data import DataSplit
from reference_impls.common.losses import at_least_float32
from reference_impls.common.models import ModelOutput
from reference_impls.common.validation import at_least, in_unit_interval, node_pairs, positive


@dataclass
class Graph:
    """One graph for node classification.

    Attributes:
        x: node features ``[N, F]``, float.
        edge_index: ``[2, E]`` int64, row 0 the source and row 1 the target of each edge.
        y: node classes ``[N]``, int64.
        train_mask, val_mask, test_mask: boolean ``[N]``, disjoint.
        num_classes: number of classes.
    """

    x: torch.Tensor
    edge_index: torch.Tensor
    y: torch.Tensor
    train_mask: torch.Tensor
    val_mask: torch.Tensor
    test_mask: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        node_pairs("edge_index", self.edge_index, self.num_nodes)
        for name in ("y", "train_mask", "val_mask", "test_mask"):
            if tuple(getattr(self, name).shape) != (self.num_nodes,):
                raise ValueError(
                    f"{name} must have shape [{self.num_nodes}] (one entry per node of x), got "
                    f"shape {tuple(getattr(self, name).shape)}"
                )

    @property
    def num_nodes(self) -> int:
        return self.x.shape[0]

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    def to(self, device: torch.device | str) -> Graph:
        return Graph(
            self.x.to(device),
            self.edge_index.to(device),
            self.y.to(device),
            self.train_mask.to(device),
            self.val_mask.to(device),
            self.test_mask.to(device),
            self.num_classes,
        )

    def homophily(self) -> float:
        """Fraction of edges whose two ends share a class."""
        source, target = self.edge_index
        return (self.y[source] == self.y[target]).float().mean().item()

    def node_split(self) -> DataSplit:
        """The node features as a ``DataSplit`` (train nodes, test nodes): what an MLP sees."""
        return DataSplit(
            self.x[self.train_mask],
            self.y[self.train_mask],
            self.x[self.test_mask],
            self.y[self.test_mask],
            self.num_classes,
        )


def stochastic_block_model(
    num_nodes: int = 600,
    num_classes: int = 4,
    p_in: float = 0.04,
    p_out: float = 0.005,
    num_features: int = 32,
    signal: float = 1.0,
    noise: float = 1.0,
    train_per_class: int = 10,
    val_per_class: int = 20,
    seed: int = 0,
) -> Graph:
    """A stochastic block model with class-dependent node features, decided by ``seed``.

    Node ``i`` of class $c$ gets the features $x_i = \\mu_c + \\sigma\\,\\varepsilon_i$,
    where the class means $\\mu_c$ are drawn once, $\\mathcal N(0, I)$ scaled to norm
    ``signal``, and $\\varepsilon_i \\sim \\mathcal N(0, I)$ with $\\sigma$ = ``noise``:
    with ``signal`` comparable to ``noise * sqrt(num_features)``'s spread per direction,
    the features alone are ambiguous, and the neighbours (mostly of the same class when
    ``p_in >> p_out``) resolve it. Classes are balanced; the first ``train_per_class``
    nodes of each class (in a seeded order) are labelled for training, the next
    ``val_per_class`` form the validation set, the rest the test set. The graph is
    undirected, without self-loops, both directions listed, edges sorted.
    """
    at_least("num_nodes", num_nodes, 2)
    at_least("num_classes", num_classes, 2)
    in_unit_interval("p_in", p_in)
    in_unit_interval("p_out", p_out)
    at_least("num_features", num_features, 1)
    positive("noise", noise)
    per_class = num_nodes // num_classes
    if train_per_class + val_per_class >= per_class:
        raise ValueError(
            f"train_per_class + val_per_class must leave test nodes in each class of "
            f"{per_class} nodes, got {train_per_class} + {val_per_class}"
        )
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(num_nodes) % num_classes)
    same_class = y[:, None] == y[None, :]
    probability = np.where(same_class, p_in, p_out)
    upper = np.triu(rng.random((num_nodes, num_nodes)) < probability, k=1)
    source, target = np.nonzero(upper | upper.T)  # row-major: sorted by source, then target
    means = rng.normal(size=(num_classes, num_features))
    means *= signal / np.linalg.norm(means, axis=1, keepdims=True)
    x = means[y] + noise * rng.normal(size=(num_nodes, num_features))
    split = np.zeros(num_nodes, dtype=np.int64)  # 0 train, 1 validation, 2 test
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(y == c))
        split[members[train_per_class : train_per_class + val_per_class]] = 1
        split[members[train_per_class + val_per_class :]] = 2
    split_tensor = torch.as_tensor(split)
    return Graph(
        x=torch.as_tensor(x, dtype=torch.float32),
        edge_index=torch.as_tensor(np.stack([source, target]), dtype=torch.int64),
        y=torch.as_tensor(y, dtype=torch.int64),
        train_mask=split_tensor == 0,
        val_mask=split_tensor == 1,
        test_mask=split_tensor == 2,
        num_classes=num_classes,
    )


# ----------------------------------------------------------------------------- propagation


def adjacency(edge_index: torch.Tensor, num_nodes: int, normalization: str) -> torch.Tensor:
    """The sparse ``[N, N]`` propagation matrix $A$ (row = target), so that ``A @ h`` aggregates.

    ``"gcn"``: $\\hat D^{-1/2}(A + I)\\hat D^{-1/2}$ (Kipf and Welling; existing self-loops
    are replaced by one each). ``"mean"``: $D^{-1}A$, the mean over each node's
    in-neighbours (a node without any gets zeros).
    """
    node_pairs("edge_index", edge_index, num_nodes)
    source, target = edge_index.long()
    if normalization == "gcn":
        loops = torch.arange(num_nodes, device=edge_index.device)
        keep = source != target
        source, target = torch.cat([source[keep], loops]), torch.cat([target[keep], loops])
        degree = torch.zeros(num_nodes, device=edge_index.device).index_add_(
            0, target, torch.ones_like(target, dtype=torch.float32)
        )
        weight = degree[source].rsqrt() * degree[target].rsqrt()
    elif normalization == "mean":
        degree = torch.zeros(num_nodes, device=edge_index.device).index_add_(
            0, target, torch.ones_like(target, dtype=torch.float32)
        )
        weight = 1.0 / degree[target]
    else:
        raise ValueError(f"normalization must be one of ['gcn', 'mean'], got {normalization!r}")
    indices = torch.stack([target, source])
    shape = (num_nodes, num_nodes)
    return torch.sparse_coo_tensor(indices, weight, shape, check_invariants=False).coalesce()


def propagate(matrix: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``matrix @ h`` in at least float32 (float64 kept)."""
    h = at_least_float32(h)
    return torch.sparse.mm(matrix.to(h.dtype), h)


def linear_stack(in_features: int, hidden: int, outputs: int, num_layers: int) -> nn.ModuleList:
    """``num_layers`` linear layers: ``in_features`` -> ``hidden`` -> ... -> ``outputs``."""
    widths = [in_features] + [hidden] * (num_layers - 1) + [outputs]
    return nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))


class GraphModel(nn.Module):
    """Base of the node classifiers: ``num_layers`` linear layers (hidden width ``hidden``), dropout;
    ``uses_graph`` says whether ``forward`` reads ``edge_index``.

    A GNN keeps the propagation matrix of the last ``edge_index`` it read (the same tensor
    object, unmodified since: its version counter) so that full-batch training on one
    graph builds it once; another graph, or an edited ``edge_index``, rebuilds it.
    """

    uses_graph: ClassVar[bool] = True
    normalization: ClassVar[str] = "gcn"

    def __init__(
        self,
        in_features: int,
        hidden: int,
        num_classes: int,
        num_layers: int = 2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        at_least("num_layers", num_layers, 2)
        self.layers = linear_stack(in_features, hidden, num_classes, num_layers)
        self.dropout = in_unit_interval("dropout", dropout)
        self.embedding_dim = hidden
        self.num_classes = num_classes

    def propagation_matrix(self, edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
        cached = getattr(self, "_propagation", None)
        if cached is not None:
            reference, version, nodes, matrix = cached
            if reference() is edge_index and version == edge_index._version and nodes == num_nodes:
                return matrix
        matrix = adjacency(edge_index, num_nodes, self.normalization)
        self._propagation = (weakref.ref(edge_index), edge_index._version, num_nodes, matrix)
        return matrix

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_propagation", None)  # a weak reference cannot be pickled or deep-copied
        return state


class GCN(GraphModel):
    """Graph convolutional network: ``num_layers`` layers $H' = \\hat A H W$, ReLU, dropout."""

    def layer(self, index: int, h: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        linear = self.layers[index]
        return propagate(matrix, h @ linear.weight.T) + linear.bias

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> ModelOutput:
        matrix = self.propagation_matrix(edge_index, x.shape[0])
        h, embedding = x, x
        for index in range(len(self.layers)):
            h = F.dropout(h, self.dropout, self.training)
            h = self.layer(index, h, matrix)
            if index < len(self.layers) - 1:
                embedding = h
                h = F.relu(h)
        return ModelOutput(h, embedding=embedding)


class GraphSAGE(GCN):
    """GraphSAGE with the mean aggregator: $h_i' = W_1 h_i + W_2\\,\\mathrm{mean}_{j \\to i} h_j$."""

    normalization: ClassVar[str] = "mean"

    def __init__(
        self,
        in_features: int,
        hidden: int,
        num_classes: int,
        num_layers: int = 2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(in_features, hidden, num_classes, num_layers, dropout)
        self.neighbour_layers = nn.ModuleList(
            nn.Linear(layer.in_features, layer.out_features, bias=False) for layer in self.layers
        )

    def layer(self, index: int, h: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        neighbours = propagate(matrix, self.neighbour_layers[index](h))
        return self.layers[index](h) + neighbours


class NodeMLP(GraphModel):
    """A multi-layer perceptron on the node features alone: the graph is never read."""

    uses_graph: ClassVar[bool] = False

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h, embedding = x, x
        for index, linear in enumerate(self.layers):
            h = linear(F.dropout(h, self.dropout, self.training))
            if index < len(self.layers) - 1:
                embedding = h
                h = F.relu(h)
        return ModelOutput(h, embedding=embedding)


def run_on_graph(
    model: nn.Module, graph: Graph, edge_index: torch.Tensor | None = None
) -> ModelOutput:
    """``model`` on every node of ``graph``: a GNN gets ``edge_index`` (default: the graph's), an
    MLP (``uses_graph = False``) the features alone."""
    if getattr(model, "uses_graph", True):
        return model(graph.x, graph.edge_index if edge_index is None else edge_index)
    return model(graph.x)


@torch.no_grad()
def node_accuracy(
    model: nn.Module, graph: Graph, mask: torch.Tensor, edge_index: torch.Tensor | None = None
) -> float:
    """Accuracy on the nodes of ``mask``, in eval mode (``edge_index``: another graph to read)."""
    was_training = model.training
    model.eval()
    logits = run_on_graph(model, graph, edge_index).logits
    model.train(was_training)
    return (logits[mask].argmax(1) == graph.y[mask]).float().mean().item()


Objective = Callable[[ModelOutput], torch.Tensor]
"""The training loss of one step, from the model's output on every node."""


def labelled_cross_entropy(graph: Graph) -> Objective:
    """Cross-entropy on the labelled (training) nodes: supervised training alone."""
    return lambda output: F.cross_entropy(
        output.logits[graph.train_mask], graph.y[graph.train_mask]
    )


def train_node_classifier(
    model: nn.Module,
    graph: Graph,
    objective: Objective | None = None,
    *,
    epochs: int = 200,
    lr: float = 0.01,
    weight_decay: float = 5e-4,
    schedules: Iterable[nn.Module] = (),
) -> list[float]:
    """Full-batch training of ``model`` on ``graph``; returns test accuracy after each epoch.

    ``objective`` maps the model's output on all nodes to the loss (default:
    :func:`labelled_cross_entropy`). Adam with ``lr`` and ``weight_decay``; each of
    ``schedules`` (e.g. a loss with an epoch schedule) gets ``on_epoch_start(epoch,
    epochs)`` first. At the end the model holds the weights of the epoch with the best
    validation accuracy (the first such epoch) and is left in eval mode. Seed the
    caller's run beforehand (dropout draws from the global generator). Denormal floats
    are flushed to zero while it trains (:func:`_denormals_flushed`).
    """
    with _denormals_flushed():
        return _train(model, graph, objective, epochs, lr, weight_decay, list(schedules))


@contextlib.contextmanager
def _denormals_flushed() -> Iterator[None]:
    """Flush denormal floats to zero within the block (then back to torch's default, off).

    Once a node classifier is confident on its few labelled nodes, its gradients fall to
    ~1e-20 and Adam's second moments (their squares) become denormal floats, on which
    CPUs are about a hundred times slower; flushed, they are zero, which Adam's epsilon
    makes harmless.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _train(
    model: nn.Module,
    graph: Graph,
    objective: Objective | None,
    epochs: int,
    lr: float,
    weight_decay: float,
    schedules: list[nn.Module],
) -> list[float]:
    objective = objective if objective is not None else labelled_cross_entropy(graph)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_val, best_state, curve = -1.0, copy.deepcopy(model.state_dict()), []
    for epoch in range(epochs):
        for schedule in schedules:
            schedule.on_epoch_start(epoch, epochs)
        model.train()
        loss = objective(run_on_graph(model, graph))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = run_on_graph(model, graph).logits.argmax(1) == graph.y
        val = correct[graph.val_mask].float().mean().item()
        if val > best_val:
            best_val, best_state = val, copy.deepcopy(model.state_dict())
        curve.append(correct[graph.test_mask].float().mean().item())
    model.load_state_dict(best_state)
    model.eval()
    return curve


__all__ = [
    "GCN",
    "Graph",
    "GraphModel",
    "GraphSAGE",
    "NodeMLP",
    "Objective",
    "adjacency",
    "labelled_cross_entropy",
    "linear_stack",
    "node_accuracy",
    "propagate",
    "run_on_graph",
    "stochastic_block_model",
    "train_node_classifier",
]
