"""GLNN (Zhang et al., 2022): a hand value, the authors' two criteria, the λ mix, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.algorithms.graph.glnn import GLNNLoss
from reference_impls.common.graphs import (
    GraphSAGE,
    NodeMLP,
    node_accuracy,
    run_on_graph,
    stochastic_block_model,
    train_node_classifier,
)


@pytest.fixture
def nodes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(50, 5, generator=generator)
    teacher = 3 * torch.randn(50, 5, generator=generator)
    target = torch.randint(0, 5, (50,), generator=generator)
    labelled = torch.zeros(50, dtype=torch.bool)
    labelled[:10] = True
    return student, teacher, target, labelled


def test_hand_computed_value():
    # node 0: teacher [ln 3, 0] -> [3/4, 1/4], student [0, 0] -> [1/2, 1/2], labelled, class 1
    # node 1: teacher [0, 0] -> [1/2, 1/2], student [0, ln 3] -> [1/4, 3/4], unlabelled
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    student = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]])
    target = torch.tensor([1, 0])
    labelled = torch.tensor([True, False])
    kl_0 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    kl_1 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    cross_entropy_0 = math.log(2.0)  # -log(1/2), node 0 only
    expected = 0.75 * (kl_0 + kl_1) / 2 + 0.25 * cross_entropy_0
    value = GLNNLoss(label_weight=0.25)(student, teacher, target, labelled)
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("label_weight", [0.0, 0.3, 1.0])
def test_equals_the_authors_criteria(nodes, label_weight):
    # train_student.py: NLLLoss on the labelled nodes' log_softmax, KLDivLoss(batchmean,
    # log_target=True) against the teacher's log_softmax on every node; weights λ and 1 - λ
    student, teacher, target, labelled = nodes
    log_p = student.log_softmax(dim=1)
    nll = torch.nn.NLLLoss()(log_p[labelled], target[labelled])
    kl = torch.nn.KLDivLoss(reduction="batchmean", log_target=True)(
        log_p, teacher.log_softmax(dim=1)
    )
    expected = label_weight * nll + (1 - label_weight) * kl
    value = GLNNLoss(label_weight=label_weight)(student, teacher, target, labelled)
    torch.testing.assert_close(value, expected)


def test_default_reads_the_teacher_alone(nodes):
    # λ = 0, the code's default: labels and the labelled mask change nothing
    student, teacher, target, labelled = nodes
    loss = GLNNLoss()
    reference = loss(student, teacher, target, labelled)
    torch.testing.assert_close(loss(student, teacher, (target + 1) % 5, ~labelled), reference)
    assert loss(teacher.clone(), teacher, target).item() == pytest.approx(0.0, abs=1e-6)


def test_labelled_none_means_every_row_and_label_weight_one_ignores_the_teacher(nodes):
    student, teacher, target, _ = nodes
    only_labels = GLNNLoss(label_weight=1.0)
    torch.testing.assert_close(
        only_labels(student, teacher, target), F.cross_entropy(student, target)
    )
    torch.testing.assert_close(
        only_labels(student, torch.randn_like(teacher), target), F.cross_entropy(student, target)
    )


def test_temperature_softens_both_sides_and_scales_by_its_square(nodes):
    student, teacher, target, _ = nodes
    tau = 4.0
    expected = tau**2 * torch.nn.KLDivLoss(reduction="batchmean", log_target=True)(
        (student / tau).log_softmax(dim=1), (teacher / tau).log_softmax(dim=1)
    )
    torch.testing.assert_close(GLNNLoss(temperature=tau)(student, teacher, target), expected)


def test_float64_stays_float64(nodes):
    student, teacher, target, labelled = (t.double() if t.is_floating_point() else t for t in nodes)
    assert GLNNLoss(label_weight=0.5)(student, teacher, target, labelled).dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"label_weight": 1.5}, r"label_weight must lie in \[0, 1\]"),
        ({"label_weight": -0.1}, "label_weight"),
        ({"temperature": 0.0}, "temperature must be positive"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GLNNLoss(**kwargs)


def test_rejects_bad_inputs(nodes):
    student, teacher, target, labelled = nodes
    loss = GLNNLoss(label_weight=0.5)
    with pytest.raises(ValueError, match=r"labelled must be a boolean mask of shape \[50\]"):
        loss(student, teacher, target, labelled[:10])
    with pytest.raises(ValueError, match="labelled must be a boolean mask"):
        loss(student, teacher, target, labelled.long())
    with pytest.raises(ValueError, match="labelled selects no node"):
        loss(student, teacher, target, torch.zeros(50, dtype=torch.bool))
    with pytest.raises(ValueError, match="student_logits and teacher_logits must have one shape"):
        loss(student, teacher[:40], target)
    with pytest.raises(ValueError, match=r"target must be class indices of shape \(50,\)"):
        loss(student, teacher, target[:10])


def test_distilled_mlp_beats_the_mlp_trained_on_labels_alone():
    # a GraphSAGE teacher on a stochastic block model whose features alone are ambiguous;
    # two MLPs with the same initial weights: labels of 40 nodes, or GLNN on every node
    torch.set_num_threads(1)
    graph = stochastic_block_model(seed=0)
    features = graph.x.shape[1]
    torch.manual_seed(0)
    teacher = GraphSAGE(features, 64, graph.num_classes)
    train_node_classifier(teacher, graph, epochs=100)
    with torch.no_grad():
        teacher_logits = run_on_graph(teacher, graph).logits
    torch.manual_seed(1)
    baseline = NodeMLP(features, 64, graph.num_classes)
    torch.manual_seed(1)
    student = NodeMLP(features, 64, graph.num_classes)
    assert torch.equal(baseline.layers[0].weight, student.layers[0].weight)
    torch.manual_seed(2)
    train_node_classifier(baseline, graph, epochs=100)
    glnn = GLNNLoss()
    torch.manual_seed(2)
    train_node_classifier(
        student, graph, lambda out: glnn(out.logits, teacher_logits, graph.y), epochs=100
    )
    teacher_accuracy = node_accuracy(teacher, graph, graph.test_mask)
    baseline_accuracy = node_accuracy(baseline, graph, graph.test_mask)
    student_accuracy = node_accuracy(student, graph, graph.test_mask)
    assert teacher_accuracy > baseline_accuracy + 0.1
    assert student_accuracy > baseline_accuracy + 0.05
