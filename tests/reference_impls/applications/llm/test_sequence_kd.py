"""Sequence-level KD (Kim and Rush, 2016): greedy teacher outputs, masked prompt, training."""

from __future__ import annotations

import pytest
import torch

from reference_impls.applications.llm import SequenceLevelKD
from reference_impls.common.language_models import (
    BOS,
    VOCAB_SIZE,
    fit_language_model,
    generate,
    load_docstrings,
    next_token_loss,
    student_lm,
    teacher_lm,
)


def _prompts(rows: int = 4, length: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, VOCAB_SIZE, (rows, length), generator=generator)
    tokens[:, 0] = BOS
    return tokens, torch.ones_like(tokens, dtype=torch.bool)


def test_decoding_is_the_teachers_greedy_continuation_of_the_prompt():
    torch.manual_seed(0)
    procedure = SequenceLevelKD(student_lm(), teacher_lm(), prompt_length=8, new_tokens=5)
    tokens, mask = _prompts()
    sequences, decoded_mask = procedure.decode(tokens, mask)
    assert sequences.shape == (4, 13) and decoded_mask.all()
    assert torch.equal(sequences[:, :8], tokens[:, :8])
    with torch.no_grad():
        logits = procedure.teacher(sequences).logits
    logits[..., :2] = float("-inf")  # characters only
    assert torch.equal(sequences[:, 8:], logits[:, 7:-1].argmax(-1))


def test_the_loss_is_the_students_cross_entropy_on_the_continuation_alone():
    torch.manual_seed(0)
    procedure = SequenceLevelKD(student_lm(), teacher_lm(), prompt_length=8, new_tokens=5)
    tokens, mask = _prompts()
    sequences, _ = procedure.decode(tokens, mask)
    logits = procedure.student(sequences).logits
    by_hand = torch.nn.functional.cross_entropy(
        logits[:, 7:-1].reshape(-1, VOCAB_SIZE), sequences[:, 8:].reshape(-1)
    )
    torch.testing.assert_close(procedure(tokens, mask)["loss"], by_hand)


def test_bad_batches_are_clear_errors():
    procedure = SequenceLevelKD(student_lm(), teacher_lm(), prompt_length=8)
    tokens, mask = _prompts()
    with pytest.raises(ValueError, match="prompt_length"):
        procedure(tokens[:, :5], mask[:, :5])
    with pytest.raises(ValueError, match="one shape"):
        procedure(tokens, mask[:, :3])
    with pytest.raises(ValueError, match="new_tokens"):
        SequenceLevelKD(student_lm(), teacher_lm(), new_tokens=0)


def test_the_student_learns_the_teachers_outputs_better_than_from_the_data():
    torch.manual_seed(0)
    teacher = teacher_lm()
    with torch.no_grad():
        teacher.head.weight.mul_(8)
    corpus = load_docstrings().train_subset(64)
    held_out, held_out_mask = corpus.test_tokens[:32], corpus.test_mask[:32]
    losses = {}
    for name in ("data alone", "sequence-level KD"):
        torch.manual_seed(1)
        student = student_lm()
        procedure = SequenceLevelKD(student, teacher, prompt_length=16, new_tokens=16)
        if name == "data alone":
            fit_language_model(student, corpus, steps=40, batch_size=16, lr=1e-2)
        else:  # greedy decoding is deterministic: decoding the set once equals forward's
            decoded = procedure.decode(corpus.train_tokens, corpus.train_mask)

            def loss_of_batch(tokens, mask, rows, p=procedure, decoded=decoded):
                return p.student_loss(decoded[0][rows], decoded[1][rows])

            fit_language_model(
                student,
                corpus,
                loss_of_batch,
                steps=40,
                batch_size=16,
                lr=1e-2,
            )
        # the student's cross-entropy on the teacher's greedy continuations of held-out prompts
        sequences = generate(teacher, held_out[:, :16], 16, greedy=True)
        target = torch.ones_like(sequences, dtype=torch.bool)
        target[:, :16] = False
        with torch.no_grad():
            losses[name] = float(next_token_loss(student(sequences).logits, sequences, target))
    assert held_out_mask[:, :16].all()
    assert losses["sequence-level KD"] < 0.7 * losses["data alone"], losses
