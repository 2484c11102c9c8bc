"""GKD's on-policy procedure (Agarwal et al., 2024): batches, masks, the λ coin, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reference_impls.applications.llm import GKD, GKDLoss
from reference_impls.common.language_models import (
    fit_language_model,
    generate,
    load_docstrings,
    student_lm,
    teacher_lm,
    token_kl,
)


class _Recording(torch.nn.Module):
    """Records the labels the procedure hands to its loss."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.labels = GKDLoss(), None

    def forward(self, student, teacher, labels):
        self.labels = labels
        return self.inner(student, teacher, labels)


def test_on_policy_batches_are_student_samples_with_the_prompt_masked(character_batch):
    torch.manual_seed(0)
    recording = _Recording()
    procedure = GKD(student_lm(), teacher_lm(), recording, lmbda=1.0, prompt_length=8)
    tokens, mask = character_batch(6)
    terms = procedure(tokens, mask)
    assert terms["on_policy"] == 1
    assert recording.labels.shape == (6, 8 + 32 - 1)  # prompt + max_new_tokens, shifted
    assert (recording.labels[:, :7] == -100).all() and (recording.labels[:, 7:] >= 2).all()


def test_off_policy_batches_are_the_data_with_padding_and_prompt_masked(character_batch):
    torch.manual_seed(0)
    recording = _Recording()
    procedure = GKD(student_lm(), teacher_lm(), recording, lmbda=0.0, prompt_length=8)
    tokens, mask = character_batch(6)
    assert procedure(tokens, mask)["on_policy"] == 0
    expected = tokens[:, 1:].masked_fill(~mask[:, 1:], -100)
    expected[:, :7] = -100
    assert torch.equal(recording.labels, expected)


def test_seq_kd_uses_the_teachers_samples_off_policy_and_lmbda_is_the_on_policy_rate(
    character_batch,
):
    torch.manual_seed(0)
    recording = _Recording()
    procedure = GKD(student_lm(), teacher_lm(), recording, lmbda=0.0, prompt_length=8, seq_kd=True)
    tokens, mask = character_batch(6)
    procedure(tokens, mask)
    assert recording.labels.shape == (6, 8 + 32 - 1)
    procedure = GKD(student_lm(), teacher_lm(), lmbda=0.3, prompt_length=8, max_new_tokens=2)
    on_policy = [float(procedure(tokens[:1], mask[:1])["on_policy"]) for _ in range(200)]
    assert 0.2 < sum(on_policy) / 200 < 0.4


def test_bad_batches_and_settings_are_clear_errors(character_batch):
    procedure = GKD(student_lm(), teacher_lm(), prompt_length=8)
    tokens, mask = character_batch(6)
    with pytest.raises(ValueError, match="prompt_length"):
        procedure(tokens[:, :8], mask[:, :8])
    short = mask.clone()
    short[0, 4:] = False
    with pytest.raises(ValueError, match="prompt"):
        procedure(tokens, short)
    with pytest.raises(ValueError, match="one shape"):
        procedure(tokens, mask[:, :5])
    with pytest.raises(ValueError, match="lmbda"):
        GKD(student_lm(), teacher_lm(), lmbda=1.5)


def test_on_policy_training_moves_the_student_toward_the_teacher_on_its_own_samples():
    # GKD's point: the student is corrected where it goes, on its own generations
    torch.manual_seed(0)
    teacher = teacher_lm()
    with torch.no_grad():
        teacher.head.weight.mul_(8)
    corpus = load_docstrings().train_subset(64)
    prompts = corpus.test_tokens[:16, :16]
    kls = {}
    for lmbda in (None, 1.0):
        torch.manual_seed(1)
        student = student_lm()
        if lmbda is None:
            fit_language_model(student, corpus, steps=20, batch_size=8, lr=1e-2)
        else:
            procedure = GKD(student, teacher, lmbda=lmbda, max_new_tokens=16)
            fit_language_model(
                student,
                corpus,
                lambda tokens, mask, rows, p=procedure: p(tokens, mask)["loss"],
                steps=20,
                batch_size=8,
                lr=1e-2,
            )
        torch.manual_seed(2)
        samples = generate(student, prompts, 16)
        kl = token_kl(student, teacher, samples, torch.ones_like(samples, dtype=torch.bool))
        kls[lmbda] = float(kl[:, 15:].mean())
    assert kls[1.0] < 0.7 * kls[None], kls


def test_gradients_do_not_flow_through_the_sampling(character_batch):
    torch.manual_seed(0)
    procedure = GKD(student_lm(), teacher_lm(), lmbda=1.0, prompt_length=8, max_new_tokens=4)
    tokens, mask = character_batch(6)
    loss = procedure(tokens, mask)["loss"]
    loss.backward()
    assert all(p.grad is None for p in procedure.teacher.parameters())
    assert F.mse_loss(loss, loss.detach()) == 0
