"""LSP (Yang et al., 2020): a hand value, a dense reference, invariances, the schedule, bad graphs."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.algorithms.graph.lsp import LSPLoss, local_structure
from reference_impls.common.graphs import (
    GCN,
    labelled_cross_entropy,
    node_accuracy,
    run_on_graph,
    stochastic_block_model,
    train_node_classifier,
)


@pytest.fixture
def graph_embeddings() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    graph = stochastic_block_model(
        num_nodes=60, p_in=0.3, p_out=0.05, train_per_class=2, val_per_class=2, seed=0
    )
    generator = torch.Generator().manual_seed(0)
    student = 20 * torch.randn(60, 6, generator=generator)
    teacher = 40 * torch.randn(60, 12, generator=generator)
    return student, teacher, graph.edge_index


def test_hand_computed_value():
    # three nodes, edges 0 -> 2 and 1 -> 2: only node 2 has a neighbourhood (two nodes).
    # teacher: |z2 - z0|_1 = 0 and |z2 - z1|_1 = 100, so SIM = (1, e^-1) at bandwidth 100;
    # student: all embeddings equal, SIM = (1, 1), a uniform distribution
    edge_index = torch.tensor([[0, 1], [2, 2]])
    teacher = torch.tensor([[0.0, 0.0], [60.0, 40.0], [0.0, 0.0]])
    student = torch.zeros(3, 4)
    similarity = [1.0, math.exp(-1.0)]
    normaliser = sum(math.exp(s) for s in similarity)
    p_teacher = [math.exp(s) / normaliser for s in similarity]
    kl = sum(p * math.log(p / 0.5) for p in p_teacher)
    value = LSPLoss()(student, teacher, edge_index)
    assert value.item() == pytest.approx(kl / 3, rel=1e-6)  # averaged over all 3 nodes


def test_matches_a_dense_per_node_reference(graph_embeddings):
    student, teacher, edge_index = graph_embeddings
    bandwidth = 50.0
    total = 0.0
    for node in range(student.shape[0]):
        sources = edge_index[0, edge_index[1] == node]
        if len(sources) == 0:
            continue

        def distribution(z, sources=sources, node=node):
            similarity = torch.exp(-(z[sources] - z[node]).abs().sum(1) / bandwidth)
            return torch.softmax(similarity.double(), dim=0)

        p_t, p_s = distribution(teacher), distribution(student)
        total += (p_t * (p_t / p_s).log()).sum().item()
    value = LSPLoss(bandwidth=bandwidth)(student, teacher, edge_index)
    assert value.item() == pytest.approx(total / student.shape[0], rel=1e-5)


def test_local_structure_is_a_distribution_over_each_nodes_incoming_edges(graph_embeddings):
    _, teacher, edge_index = graph_embeddings
    probabilities = local_structure(teacher, edge_index, 100.0).exp()
    per_node = torch.zeros(teacher.shape[0]).index_add(0, edge_index[1], probabilities)
    has_neighbours = torch.bincount(edge_index[1], minlength=teacher.shape[0]) > 0
    torch.testing.assert_close(per_node[has_neighbours], torch.ones(int(has_neighbours.sum())))


def test_zero_for_equal_or_translated_embeddings_of_any_width(graph_embeddings):
    student, teacher, edge_index = graph_embeddings
    loss = LSPLoss()
    assert loss(teacher.clone(), teacher, edge_index).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(teacher + 3.0, teacher, edge_index).item() == pytest.approx(0.0, abs=1e-6)
    # every column twice at half the value: the same L1 distances in twice the width
    doubled = torch.cat([teacher, teacher], dim=1) / 2
    assert loss(doubled, teacher, edge_index).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(student, teacher, edge_index).item() > 1e-3


def test_nodes_without_incoming_edges_count_in_the_mean(graph_embeddings):
    student, teacher, edge_index = graph_embeddings
    loss = LSPLoss()
    isolated = loss(
        torch.cat([student, torch.zeros(1, 6)]), torch.cat([teacher, torch.ones(1, 12)]), edge_index
    )
    n = student.shape[0]
    torch.testing.assert_close(isolated, loss(student, teacher, edge_index) * n / (n + 1))


def test_gradient_reaches_the_student_only_and_stays_finite(graph_embeddings):
    student, teacher, edge_index = graph_embeddings
    # node 59 keeps one outgoing edge and no incoming one: no distribution, no NaN
    outgoing = torch.tensor([[59], [0]])
    edge_index = torch.cat([edge_index[:, edge_index[1] != 59], outgoing], dim=1)
    student, teacher = student.clone().requires_grad_(), teacher.clone().requires_grad_()
    LSPLoss()(student, teacher, edge_index).backward()
    assert torch.isfinite(student.grad).all() and student.grad.any()
    assert teacher.grad is None


def test_float64_stays_float64(graph_embeddings):
    student, teacher, edge_index = graph_embeddings
    assert LSPLoss()(student.double(), teacher.double(), edge_index).dtype == torch.float64


def test_active_for_the_authors_first_30_epochs(graph_embeddings):
    loss = LSPLoss()
    full = loss(*graph_embeddings)  # never scheduled: active
    loss.on_epoch_start(29, 500)
    torch.testing.assert_close(loss(*graph_embeddings), full)
    loss.on_epoch_start(30, 500)
    assert loss(*graph_embeddings).item() == 0.0
    always = LSPLoss(active_epochs=None)
    always.on_epoch_start(400, 500)
    torch.testing.assert_close(always(*graph_embeddings), full)


@pytest.mark.parametrize(
    ("edge_index", "match"),
    [
        (
            torch.tensor([[0, 1], [2, 60]]),
            r"from 0 to 60, outside \[0, 60\) for a graph of 60 nodes",
        ),
        (torch.tensor([[-1, 1], [2, 3]]), r"from -1 to 3, outside \[0, 60\)"),
        (torch.tensor([[0, 2], [1, 3], [4, 5]]), r"shape \[2, E\].*got shape \(3, 2\); transpose"),
        (torch.tensor([0, 1, 2]), r"edge_index must have shape \[2, E\]"),
        (torch.tensor([[0.0, 1.0], [2.0, 3.0]]), "edge_index must hold integer node indices"),
        (torch.tensor([[True], [False]]), "edge_index must hold integer node indices"),
    ],
)
def test_rejects_a_bad_edge_index(graph_embeddings, edge_index, match):
    student, teacher, _ = graph_embeddings
    with pytest.raises(ValueError, match=match):
        LSPLoss()(student, teacher, edge_index)


def test_rejects_embeddings_of_other_nodes(graph_embeddings):
    student, teacher, edge_index = graph_embeddings
    with pytest.raises(ValueError, match=r"teacher_embeddings must have shape \[60, D\]"):
        LSPLoss()(student, teacher[:50], edge_index)
    with pytest.raises(ValueError, match=r"student_embeddings must have shape \[N, D\]"):
        LSPLoss()(student[:, 0], teacher, edge_index)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"bandwidth": 0.0}, "bandwidth must be positive"), ({"active_epochs": 0}, "active_epochs")],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LSPLoss(**kwargs)


def test_lsp_student_moves_toward_the_teachers_local_structure():
    # a GCN teacher (width 64) on the stochastic block model; two GCN students of width 4
    # with the same initial weights: labels alone, or labels + 30 x LSP (bandwidth: the
    # median teacher distance along an edge, as in the notebook)
    torch.set_num_threads(1)
    graph = stochastic_block_model(seed=0)
    features = graph.x.shape[1]
    torch.manual_seed(0)
    teacher = GCN(features, 64, graph.num_classes)
    train_node_classifier(teacher, graph, epochs=100)
    with torch.no_grad():
        teacher_embeddings = run_on_graph(teacher, graph).embedding
    source, target = graph.edge_index
    bandwidth = (teacher_embeddings[source] - teacher_embeddings[target]).abs().sum(1).median()
    lsp = LSPLoss(bandwidth=bandwidth.item(), active_epochs=None)
    supervised = labelled_cross_entropy(graph)
    students = {}
    for name, weight in (("baseline", 0.0), ("lsp", 30.0)):
        torch.manual_seed(1)
        students[name] = GCN(features, 4, graph.num_classes)

        def objective(output, weight=weight):
            return supervised(output) + weight * lsp(
                output.embedding, teacher_embeddings, graph.edge_index
            )

        train_node_classifier(students[name], graph, objective, epochs=100)
    with torch.no_grad():
        gap = {
            name: lsp(run_on_graph(model, graph).embedding, teacher_embeddings, graph.edge_index)
            for name, model in students.items()
        }
    accuracy = {name: node_accuracy(m, graph, graph.test_mask) for name, m in students.items()}
    assert gap["lsp"] < 0.85 * gap["baseline"]
    assert accuracy["lsp"] > accuracy["baseline"]
