"""Distilling step-by-step (Hsieh et al., 2023): the two-task loss, its limits, padding, training.

The contract every implementation meets (construction at defaults, gradients, determinism,
state_dict, CPU/CUDA and bf16) is checked for all of them by
tests/reference_impls/test_contracts.py; this file holds only what is specific to
DistillingStepByStep.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.applications.llm.distilling_step_by_step import (
    DistillingStepByStep,
    stack_targets,
)
from reference_impls.common.reasoning import (
    LABEL_PREFIX,
    RATIONALE_PREFIX,
    answer_accuracy,
    load_word_problems,
    reasoning_student,
    with_prefix,
)
from reference_impls.common.text import fit


class Uniform(torch.nn.Module):
    """A 'student' whose logits are zero: every token has probability 1/V."""

    def __init__(self, vocab: int = 5) -> None:
        super().__init__()
        self.vocab = vocab
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor):
        logits = torch.zeros(*tgt_in.shape, self.vocab) + 0 * self.bias
        return type("Out", (), {"logits": logits})()


def _batch(rows: int = 6):
    data = load_word_problems(seed=3, num_train=rows, num_test=1)
    return data.src_train, stack_targets(data.label_train, data.rationale_train)


def test_hand_computed_value_is_the_mix_of_two_per_token_averages():
    # uniform logits over V = 5: every real target token costs log 5, so each task's
    # per-token average is log 5 and any alpha mixes them to log 5
    procedure = DistillingStepByStep(Uniform(5), alpha=0.3)
    src = torch.tensor([[5, 6, 0], [7, 0, 0]])
    targets = torch.tensor(
        [[[1, 3, 2, 0, 0], [1, 3, 4, 3, 2]], [[1, 4, 2, 0, 0], [1, 2, 0, 0, 0]]]
    )  # labels "3 </s>", "4 </s>"; rationales "3 4 3 </s>", "</s>"
    out = procedure(src, targets)
    assert out["label"].item() == pytest.approx(math.log(5))
    assert out["rationale"].item() == pytest.approx(math.log(5))
    assert out["loss"].item() == pytest.approx(math.log(5))


def test_each_task_is_averaged_over_its_own_tokens_as_hugging_face_t5_loss():
    # T5ForConditionalGeneration's loss: CrossEntropyLoss(ignore_index=-100) over the labels,
    # the collator padding them with -100; the code mixes the two tasks' losses with alpha
    torch.manual_seed(0)
    student = reasoning_student().eval()  # no dropout: one function on both sides
    procedure = DistillingStepByStep(student, alpha=0.5)
    src, targets = _batch()
    out = procedure(src, targets)
    expected = []
    for task, prefix in ((0, LABEL_PREFIX), (1, RATIONALE_PREFIX)):
        target = targets[:, task]
        logits = student(with_prefix(src, prefix), target[:, :-1]).logits
        hf_labels = target[:, 1:].masked_fill(target[:, 1:] == 0, -100)
        expected.append(F.cross_entropy(logits.flatten(0, 1), hf_labels.flatten()))
    torch.testing.assert_close(out["label"], expected[0].detach())
    torch.testing.assert_close(out["rationale"], expected[1].detach())
    torch.testing.assert_close(out["loss"], 0.5 * expected[0] + 0.5 * expected[1])


def test_alpha_one_and_zero_are_the_single_tasks():
    torch.manual_seed(0)
    student = reasoning_student().eval()
    src, targets = _batch()
    label_only = DistillingStepByStep(student, alpha=1.0)(src, targets)
    rationale_only = DistillingStepByStep(student, alpha=0.0)(src, targets)
    both = DistillingStepByStep(student, alpha=0.5)(src, targets)
    torch.testing.assert_close(label_only["loss"], both["label"])
    torch.testing.assert_close(rationale_only["loss"], both["rationale"])
    assert label_only["rationale"].item() == 0.0 and rationale_only["label"].item() == 0.0
    # alpha = 1 is standard fine-tuning: the rationale task gets no gradient at all
    label_only["loss"].backward()
    grads = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()
    changed = targets.clone()
    changed[:, 1, 1:] = 3  # other rationales
    DistillingStepByStep(student, alpha=1.0)(src, changed)["loss"].backward()
    for before, after in zip(grads, (p.grad for p in student.parameters()), strict=True):
        torch.testing.assert_close(before, after)


def test_padding_never_counts():
    torch.manual_seed(0)
    student = reasoning_student().eval()
    procedure = DistillingStepByStep(student)
    src, targets = _batch()
    wider = torch.cat([targets, torch.zeros(len(targets), 2, 4, dtype=targets.dtype)], dim=2)
    torch.testing.assert_close(procedure(src, wider)["loss"], procedure(src, targets)["loss"])
    # what follows a label's </s> is padding: the label target padded to the rationale's
    # width equals the label target alone
    label_alone = procedure.task_loss(src, targets[:, 0, :3], LABEL_PREFIX)
    torch.testing.assert_close(procedure(src, targets)["label"], label_alone)


def test_prefixes_tell_the_tasks_apart():
    torch.manual_seed(0)
    student = reasoning_student().eval()
    procedure = DistillingStepByStep(student)
    src, targets = _batch()
    same = procedure.task_loss(src, targets[:, 1], LABEL_PREFIX)
    assert not torch.allclose(same, procedure(src, targets)["rationale"])


def test_bad_inputs_are_clear_errors():
    procedure = DistillingStepByStep(reasoning_student())
    src, targets = _batch()
    with pytest.raises(ValueError, match="alpha"):
        DistillingStepByStep(reasoning_student(), alpha=1.5)
    with pytest.raises(ValueError, match="label_prefix and rationale_prefix"):
        DistillingStepByStep(reasoning_student(), label_prefix=2, rationale_prefix=2)
    with pytest.raises(ValueError, match=r"targets must be \[B, 2, T\]"):
        procedure(src, targets[:, 0])
    with pytest.raises(ValueError, match=r"targets must be \[B, 2, T\]"):
        procedure(src[:3], targets)
    with pytest.raises(ValueError, match="src"):
        procedure(torch.zeros_like(src), targets)
    with pytest.raises(ValueError, match="labels and rationales"):
        stack_targets(targets[:3, 0], targets[:, 1])
    empty = targets.clone()
    empty[:, 1, 1:] = 0  # rationale targets of <s> alone: nothing to predict
    with pytest.raises(ValueError, match="padding or masked"):
        procedure(src, empty)


def test_rationales_beat_labels_alone_with_few_examples():
    # the paper's Figure 1/4 claim at its smallest data: with 300 problems, the student
    # trained on labels and rationales answers more test problems than the one trained on
    # labels alone (the generator's own worked steps stand for a perfect teacher's)
    data = load_word_problems(seed=0, num_train=300, num_test=300)
    targets = stack_targets(data.label_train, data.rationale_train)
    accuracy = {}
    for alpha in (1.0, 0.5):
        torch.manual_seed(0)
        student = reasoning_student()
        fit(DistillingStepByStep(student, alpha=alpha), data.src_train, targets,
            epochs=16, lr=5e-3, batch_size=32, seed=0)  # fmt: skip
        accuracy[alpha] = answer_accuracy(student, data.src_test, data.answer_test)
    assert accuracy[0.5] > accuracy[1.0] + 0.05, accuracy
