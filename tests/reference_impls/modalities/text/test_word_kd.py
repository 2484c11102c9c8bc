"""Word-level KD (Kim and Rush, 2016): hand value, the mixture, masking, bad input, training."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common.text import (
    Seq2SeqSupervised,
    fit,
    sequence_nll,
    student_seq2seq,
    teacher_forcing,
)
from reference_impls.common.training import set_seed
from reference_impls.modalities.text.word_kd import WordKDLoss


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(3, 5, 11, generator=generator)
    teacher = 3 * torch.randn(3, 5, 11, generator=generator)
    target = torch.randint(3, 11, (3, 5), generator=generator)
    target[1, 3:] = 0  # padding
    target[2, 1:] = -100  # ignored labels
    return student, teacher, target


def test_hand_computed_value():
    # one sentence, one real token (the second position is padding); V = 2
    # teacher p = [3/4, 1/4], student q = [1/2, 1/2], gold token 0
    teacher = torch.tensor([[[math.log(3.0), 0.0], [5.0, -5.0]]])
    student = torch.tensor([[[0.0, 0.0], [-7.0, 7.0]]])
    target = torch.tensor([[1, 0]])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    nll = math.log(2.0)
    value = WordKDLoss(alpha=0.3)(student, teacher, target)
    assert value.item() == pytest.approx(0.7 * nll + 0.3 * kl, rel=1e-6)


def test_alpha_mixes_the_word_nll_and_the_distillation_term(batch):
    student, teacher, target = batch
    nll = sequence_nll(student, target)
    torch.testing.assert_close(WordKDLoss(alpha=0.0)(*batch), nll)
    distill = WordKDLoss(alpha=1.0)(*batch)
    torch.testing.assert_close(WordKDLoss(alpha=0.5)(*batch), 0.5 * nll + 0.5 * distill)
    assert WordKDLoss(alpha=1.0)(teacher.clone(), teacher, target).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_the_distillation_term_is_the_teachers_cross_entropy_minus_its_entropy(batch):
    # the paper's L_WORD-KD = -sum_j sum_k q log p; the KL differs by the teacher's entropy
    student, teacher, target = batch
    keep = (target != 0) & (target != -100)
    q = teacher.softmax(-1)
    cross_entropy = -(q * student.log_softmax(-1)).sum(-1)
    entropy = -(q * teacher.log_softmax(-1)).sum(-1)
    expected = ((cross_entropy - entropy) * keep).sum() / 3
    torch.testing.assert_close(WordKDLoss(alpha=1.0)(*batch), expected)


def test_sentence_and_token_normalisation(batch):
    target = batch[2]
    tokens = int(((target != 0) & (target != -100)).sum())
    per_sentence = WordKDLoss(alpha=1.0)(*batch)
    per_token = WordKDLoss(alpha=1.0, normalise="tokens")(*batch)
    torch.testing.assert_close(per_token, per_sentence * 3 / tokens)


def test_padded_positions_never_contribute(batch):
    student, teacher, target = batch
    student = student.clone().requires_grad_()
    loss = WordKDLoss()
    loss(student, teacher, target).backward()
    padded = (target == 0) | (target == -100)
    noisy_student = student.detach().clone()
    noisy_student[padded] = float("nan")
    noisy_teacher = teacher.clone()
    noisy_teacher[padded] = 1e4
    noisy_target = target.masked_fill(target == 0, 0).masked_fill(target == -100, -100)
    noisy_student.requires_grad_()
    value = loss(noisy_student, noisy_teacher, noisy_target)
    value.backward()
    torch.testing.assert_close(value, loss(student.detach(), teacher, target))
    torch.testing.assert_close(noisy_student.grad, student.grad)
    assert (student.grad[padded] == 0).all()


def test_a_boolean_mask_decides_alone(batch):
    student, teacher, target = batch
    mask = (target != 0) & (target != -100)
    clean = target.masked_fill(~mask, 7)  # values at masked positions no longer say "padding"
    torch.testing.assert_close(WordKDLoss()(student, teacher, clean, mask), WordKDLoss()(*batch))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s, t, y, m: (s, t, y, m[:, :3]), r"mask must be a boolean mask of shape \(3, 5\)"),
        (lambda s, t, y, m: (s, t, y, m.float()), "mask must be a boolean"),
        (lambda s, t, y, m: (s, t[..., :9], y, m), "vocabulary of 11 but teacher_logits of 9"),
        (lambda s, t, y, m: (s, t[:2], y, m), "one shape"),
        (lambda s, t, y, m: (s[0], t[0], y, m), r"student_logits must have shape \[B, T, V\]"),
        (lambda s, t, y, m: (s, t, y[:, :4], m), r"target must have shape \(3, 5\)"),
        (lambda s, t, y, m: (s, t, y.clamp(max=11) + 1, None), "outside the vocabulary of 11"),
        (lambda s, t, y, m: (s, t, torch.zeros_like(y), None), "sequences are empty"),
    ],
)
def test_bad_input_is_an_error_naming_the_argument(batch, change, match):
    student, teacher, target = batch
    mask = (target != 0) & (target != -100)
    with pytest.raises(ValueError, match=match):
        WordKDLoss()(*change(student, teacher, target, mask))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"temperature": 0.0}, "temperature"),
        ({"normalise": "x"}, "normalise"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WordKDLoss(**kwargs)


class _WordKD(torch.nn.Module):
    """The student under teacher forcing on the references, with the teacher's logits."""

    def __init__(self, student, teacher, loss):
        super().__init__()
        self.student, self.teacher, self.loss = student, teacher, loss

    def forward(self, src, tgt):
        tgt_in, labels = teacher_forcing(tgt)
        with torch.no_grad():
            teacher_logits = self.teacher(src, tgt_in).logits
        value = self.loss(self.student(src, tgt_in).logits, teacher_logits, labels)
        return {"loss": value}


def _kl_to_teacher(student, teacher, data) -> float:
    tgt_in, labels = teacher_forcing(data.tgt_test)
    with torch.no_grad():
        s, t = student(data.src_test, tgt_in).logits, teacher(data.src_test, tgt_in).logits
    return WordKDLoss(alpha=1.0)(s, t, labels).item()


def test_training_moves_the_student_toward_the_teacher(translation):
    data, teacher = translation
    runs = {}
    for name in ("alone", "word-kd"):
        set_seed(0)
        student = student_seq2seq()
        module = Seq2SeqSupervised(student)
        if name == "word-kd":
            module = _WordKD(student, teacher, WordKDLoss(alpha=0.5))
        # 100 of the teacher's 400 pairs: what the teacher knows beyond them comes by its logits
        fit(module, data.src_train[:100], data.tgt_train[:100], epochs=8, lr=3e-3, seed=0)
        runs[name] = _kl_to_teacher(student, teacher, data)
    assert runs["word-kd"] < 0.8 * runs["alone"], runs
