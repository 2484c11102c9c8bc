"""The generated graphs, the plain-torch GNNs and their graph checks (reference_impls.common.graphs)."""

from __future__ import annotations

import pytest
import torch

from reference_impls.common.graphs import (
    GCN,
    Graph,
    GraphSAGE,
    NodeMLP,
    adjacency,
    node_accuracy,
    run_on_graph,
    stochastic_block_model,
    train_node_classifier,
)
from reference_impls.common.validation import node_pairs, node_rows, row_mask


@pytest.fixture(scope="module")
def graph() -> Graph:
    return stochastic_block_model(seed=0)


def test_the_stochastic_block_model_is_decided_by_its_seed(graph):
    again, other = stochastic_block_model(seed=0), stochastic_block_model(seed=1)
    assert torch.equal(graph.edge_index, again.edge_index) and torch.equal(graph.x, again.x)
    assert not torch.equal(graph.x, other.x)


def test_the_graph_is_undirected_homophilous_and_split_per_class(graph):
    source, target = graph.edge_index
    pairs = set(zip(source.tolist(), target.tolist(), strict=True))
    assert all((t, s) in pairs for s, t in pairs) and all(s != t for s, t in pairs)
    assert graph.homophily() > 0.6  # p_in = 0.04 within a class of 150, p_out = 0.005
    masks = torch.stack([graph.train_mask, graph.val_mask, graph.test_mask]).long()
    assert torch.equal(masks.sum(0), torch.ones(graph.num_nodes, dtype=torch.long))
    assert torch.bincount(graph.y[graph.train_mask]).tolist() == [10, 10, 10, 10]
    assert torch.bincount(graph.y[graph.val_mask]).tolist() == [20, 20, 20, 20]
    split = graph.node_split()
    assert split.x_train.shape == (40, 32) and split.x_test.shape == (480, 32)


def test_propagation_matrices_are_the_normalised_adjacencies():
    edge_index = torch.tensor([[0, 1, 1, 2, 0], [1, 0, 2, 1, 0]])  # a path 0-1-2, a self-loop
    with_loops = torch.tensor([[1.0, 1, 0], [1, 1, 1], [0, 1, 1]])
    inverse_sqrt = torch.diag(with_loops.sum(1).rsqrt())
    gcn = adjacency(edge_index, 3, "gcn").to_dense()
    torch.testing.assert_close(gcn, inverse_sqrt @ with_loops @ inverse_sqrt)
    mean = adjacency(edge_index, 4, "mean").to_dense()  # node 3 has no neighbour: a zero row
    expected = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0, 0.5, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(mean, expected)
    with pytest.raises(ValueError, match="normalization must be one of"):
        adjacency(edge_index, 3, "sum")


@pytest.mark.parametrize("architecture", [GCN, GraphSAGE, NodeMLP])
def test_models_give_logits_and_hidden_embeddings_in_float64_too(graph, architecture):
    torch.manual_seed(0)
    model = architecture(32, 16, graph.num_classes).double().eval()
    graph64 = Graph(
        graph.x.double(),
        graph.edge_index,
        graph.y,
        graph.train_mask,
        graph.val_mask,
        graph.test_mask,
        graph.num_classes,
    )
    output = run_on_graph(model, graph64)
    assert output.logits.shape == (600, 4) and output.logits.dtype == torch.float64
    assert output.embedding.shape == (600, 16)


def test_a_gnn_reads_the_graph_and_rebuilds_its_matrix_for_another_or_edited_one(graph):
    torch.manual_seed(0)
    model = GCN(32, 16, graph.num_classes).eval()
    with torch.no_grad():
        full = model(graph.x, graph.edge_index).logits
        alone = model(graph.x, torch.empty(2, 0, dtype=torch.long)).logits
        edited = graph.edge_index.clone()
        first = model(graph.x, edited).logits
        edited[1, :300] = 0  # other edges, same tensor object: its version counter moves
        second = model(graph.x, edited).logits
    assert not torch.allclose(full, alone)
    torch.testing.assert_close(first, full)
    assert not torch.allclose(first, second)


def test_training_keeps_the_best_validation_epoch(graph):
    torch.manual_seed(0)
    model = GCN(32, 16, graph.num_classes)
    curve = train_node_classifier(model, graph, epochs=30)
    assert len(curve) == 30 and not model.training
    assert node_accuracy(model, graph, graph.test_mask) in curve
    assert max(curve) > 0.8


def test_bad_graphs_are_refused_with_their_shapes(graph):
    with pytest.raises(ValueError, match=r"outside \[0, 600\) for a graph of 600 nodes"):
        GCN(32, 16, 4)(graph.x, torch.tensor([[0], [600]]))
    with pytest.raises(ValueError, match=r"y must have shape \[600\]"):
        Graph(
            graph.x,
            graph.edge_index,
            graph.y[:10],
            graph.train_mask,
            graph.val_mask,
            graph.test_mask,
            4,
        )
    with pytest.raises(ValueError, match="must leave test nodes"):
        stochastic_block_model(num_nodes=40, train_per_class=5, val_per_class=5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: node_pairs("edge_index", torch.zeros(5, 2, dtype=torch.long), 3), "transpose"),
        (lambda: node_pairs("edges", torch.tensor([[0], [3]]), 3), r"edges holds node indices"),
        (lambda: node_rows("z", torch.zeros(4, 2), 5), r"z must have shape \[5, D\]"),
        (lambda: row_mask("mask", torch.ones(3), 3), "mask must be a boolean mask of shape"),
    ],
)
def test_graph_checks_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
    assert node_pairs("edge_index", torch.empty(2, 0, dtype=torch.long), 3) is None
    assert node_rows("z", torch.zeros(5, 2)) == 5
