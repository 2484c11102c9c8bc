"""Sequence-level KD (Kim and Rush, 2016): the teacher's beams as targets, decoded once;
Seq-Inter's choice; bad input; training toward the teacher."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.common import text
from reference_impls.common.text import (
    BOS,
    EOS,
    PAD,
    Seq2SeqSupervised,
    Seq2SeqTransformer,
    beam_search,
    fit,
    frame,
    sequence_nll,
    student_seq2seq,
    teacher_forcing,
)
from reference_impls.common.training import set_seed
from reference_impls.modalities.text import seq_kd
from reference_impls.modalities.text.seq_kd import (
    SequenceKD,
    sentence_bleu,
    source_key,
    teacher_beams,
)


def test_targets_are_the_teachers_best_beam_and_the_loss_its_nll(translation):
    data, teacher = translation
    src, tgt = data.src_train[:16], data.tgt_train[:16]
    procedure = SequenceKD(student_seq2seq(), teacher, max_length=data.max_target_length)
    targets = procedure.targets(src)
    best = beam_search(teacher, src, data.max_target_length, beam_size=5).best
    torch.testing.assert_close(targets, frame(best[:, : targets.shape[1] - 1]))
    assert (targets[:, 0] == BOS).all() and ((targets == EOS).sum(1) == 1).all()
    procedure.eval()
    terms = procedure(src, tgt)
    tgt_in, labels = teacher_forcing(targets)
    expected = sequence_nll(procedure.student(src, tgt_in).logits, labels)
    torch.testing.assert_close(terms["loss"], expected)


def test_the_teacher_decodes_each_source_once(translation, monkeypatch):
    data, teacher = translation
    calls = []
    original = text.beam_search

    def counting(model, src, *args, **kwargs):
        calls.append(src.shape[0])
        return original(model, src, *args, **kwargs)

    monkeypatch.setattr(seq_kd, "beam_search", counting)
    procedure = SequenceKD(student_seq2seq(), teacher, max_length=data.max_target_length)
    src, tgt = data.src_train[:8], data.tgt_train[:8]
    procedure(src, tgt)
    procedure(src.flip(0), tgt.flip(0))  # the same sources, another order: no decoding
    procedure(torch.cat([src[:2], src[:2]]), tgt[:4])  # duplicates are decoded once
    assert calls == [8]
    shared = teacher_beams(teacher, data.src_train[:20], data.max_target_length)
    other = SequenceKD(student_seq2seq(), teacher, max_length=data.max_target_length, cache=shared)
    other(data.src_train[:20], data.tgt_train[:20])
    assert calls == [8, 20] and len(shared) == 20


def test_interpolation_trains_on_the_hypothesis_closest_to_the_reference(translation):
    _, teacher = translation
    src = torch.tensor([[1, 2, 3, 0]])
    reference = torch.tensor([[BOS, 5, 6, 7, EOS, PAD]])
    beams = torch.tensor(
        [[9, 9, 9, EOS, PAD], [5, 6, 7, EOS, PAD], [5, 6, 8, EOS, PAD], [4, EOS, PAD, PAD, PAD]]
    )
    cache = {source_key(src[0]): beams}
    inter = SequenceKD(student_seq2seq(), teacher, beam_size=4, interpolation=True, cache=cache)
    assert inter.targets(src, reference).tolist() == [[BOS, 5, 6, 7, EOS]]
    plain = SequenceKD(student_seq2seq(), teacher, beam_size=4, cache=cache)
    assert plain.targets(src, reference).tolist() == [[BOS, 9, 9, 9, EOS]]  # the best beam


def test_sentence_bleu_by_hand():
    assert sentence_bleu((1, 2, 3, 4), (1, 2, 3, 4)) == pytest.approx(1.0)
    assert sentence_bleu((7, 8), (1, 2, 3, 4)) == 0.0
    # 1 2 3 9 against 1 2 3 4: 1-grams 3/4; smoothed 2-grams (2+1)/(3+1), 3-grams (1+1)/(2+1),
    # 4-grams (0+1)/(1+1)
    expected = math.exp((math.log(3 / 4) + math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2)) / 4)
    assert sentence_bleu((1, 2, 3, 9), (1, 2, 3, 4)) == pytest.approx(expected)


def test_the_teacher_is_frozen_and_stays_in_eval_mode(translation):
    _, teacher = translation
    procedure = SequenceKD(student_seq2seq(), teacher).train()
    assert not procedure.teacher.training and procedure.student.training
    assert not any(p.requires_grad for p in procedure.teacher.parameters())


def test_bad_input_is_an_error_naming_the_argument(translation):
    data, teacher = translation
    other_vocabulary = Seq2SeqTransformer(21, 40, 32, 2, 1, 1, 64)
    with pytest.raises(ValueError, match="share the target vocabulary: the student has 40"):
        SequenceKD(other_vocabulary, teacher)
    with pytest.raises(ValueError, match="beam_size must be at least 1"):
        SequenceKD(student_seq2seq(), teacher, beam_size=0)
    procedure = SequenceKD(student_seq2seq(), teacher, max_length=4)
    empty = data.src_train[:3].clone()
    empty[1] = PAD
    with pytest.raises(ValueError, match=r"src has empty sequences .* rows \[1\]"):
        procedure(empty, data.tgt_train[:3])
    inter = SequenceKD(student_seq2seq(), teacher, max_length=4, interpolation=True)
    with pytest.raises(ValueError, match="tgt must hold one reference per source"):
        inter(data.src_train[:3], data.tgt_train[:2])


def _nll_of_teacher_translations(student, teacher, data) -> float:
    best = beam_search(teacher, data.src_test, data.max_target_length, beam_size=5).best
    tgt_in, labels = teacher_forcing(frame(best))
    with torch.no_grad():
        return sequence_nll(student(data.src_test, tgt_in).logits, labels).item()


def test_training_moves_the_student_toward_the_teachers_translations(translation):
    data, teacher = translation
    nll = {}
    for name in ("references", "seq-kd"):
        set_seed(0)
        student = student_seq2seq()
        module = Seq2SeqSupervised(student)
        if name == "seq-kd":
            module = SequenceKD(student, teacher, max_length=data.max_target_length)
        fit(module, data.src_train, data.tgt_train, epochs=3, lr=3e-3, seed=0)
        nll[name] = _nll_of_teacher_translations(student, teacher, data)
    assert nll["seq-kd"] < 0.8 * nll["references"], nll
