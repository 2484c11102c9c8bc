"""The generated word problems: deterministic, unseen test problems, consistent worked steps."""

from __future__ import annotations

import pytest
import torch

from reference_impls.common.reasoning import (
    load_word_problems,
    number_id,
    reasoning_student,
    source_words,
    split_chains,
    target_words,
    teacher_outputs,
    with_prefix,
)


def test_the_problems_are_decided_by_the_seed_and_test_problems_are_unseen():
    first, again = (
        load_word_problems(seed=1, num_train=50, num_test=20),
        load_word_problems(1, 50, 20),
    )
    assert torch.equal(first.src_train, again.src_train)
    assert torch.equal(first.rationale_test, again.rationale_test)
    other = load_word_problems(seed=2, num_train=50, num_test=20)
    assert not torch.equal(first.src_train, other.src_train)
    train = {tuple(row.tolist()) for row in first.src_train}
    assert not train & {tuple(row.tolist()) for row in first.src_test}


def test_the_worked_steps_compute_the_answer_the_verbs_say():
    data = load_word_problems(seed=0, num_train=200, num_test=10)
    adds, subtracts = {"buys", "finds", "gets"}, {"gives", "loses", "eats"}
    for src, rationale, answer in zip(
        data.src_train, data.rationale_train, data.answer_train, strict=True
    ):
        words, steps = source_words(src).split(), target_words(rationale).split(" , ")
        value = int(words[2])
        verbs = [w for w in words if w in adds | subtracts]
        assert len(steps) == len(verbs) == 2
        for verb, step in zip(verbs, steps, strict=True):
            left, op, amount, _, result = step.split()
            assert int(left) == value and op == ("+" if verb in adds else "-")
            value = value + int(amount) if op == "+" else value - int(amount)
            assert int(result) == value and 0 <= value <= 20
        assert value == int(answer)
    assert torch.equal(data.label_train[:, 1], data.answer_train + number_id(0))


def test_a_chain_of_thought_is_split_into_rationale_and_label():
    data = load_word_problems(seed=0, num_train=8, num_test=2)
    chain = data.chain_of_thought()
    assert all(
        target_words(row).endswith(f"so {int(a)}")
        for row, a in zip(chain, data.answer_train, strict=True)
    )
    labels, rationales = split_chains(chain[:, 1:])  # as decoded: without <s>
    assert torch.equal(labels, data.label_train)
    assert torch.equal(rationales, data.rationale_train[:, : rationales.shape[1]])
    # an output without "so": its last token is taken as the label
    labels, _ = split_chains(torch.tensor([[number_id(3), number_id(7), 2, 0]]))
    assert labels.tolist() == [[1, number_id(7), 2]]
    # an untrained teacher's outputs still give one label and one rationale per problem
    labels, rationales = teacher_outputs(reasoning_student().eval(), data.src_train)
    assert labels.shape == (8, 3) and rationales.shape[0] == 8


def test_prefixes_and_bad_arguments():
    src = torch.tensor([[5, 6, 0]])
    assert with_prefix(src, 1).tolist() == [[1, 5, 6, 0]]
    with pytest.raises(ValueError, match="num_train"):
        load_word_problems(num_train=0)
    with pytest.raises(ValueError, match="max_steps"):
        load_word_problems(max_steps=1)
