"""Tang et al. (2019): logit MSE plus cross-entropy, the augmented transfer set, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common.text import (
    MASK,
    PAD,
    BiLSTMClassifier,
    Classification,
    TransformerClassifier,
    fit,
    load_sentiment,
)
from reference_impls.common.training import freeze, set_seed
from reference_impls.modalities.text.distilled_bilstm import (
    DistilledBiLSTMLoss,
    augment_transfer_set,
)
from reference_impls.schemes.offline.distiller import OfflineDistiller


def test_hand_computed_value():
    student = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    teacher = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    target = torch.tensor([1, 0])
    mse = (1.0 + 0.0 + 4.0 + 0.0) / 4  # the mean over the batch and the classes (nn.MSELoss)
    ce = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(-2.0))) / 2
    value = DistilledBiLSTMLoss(distill_weight=2.0, ce_weight=0.5)(student, teacher, target)
    assert value.item() == pytest.approx(2.0 * mse + 0.5 * ce, rel=1e-6)


def test_default_weights_are_d_berts_one_and_one():
    generator = torch.Generator().manual_seed(0)
    student, teacher = (
        torch.randn(8, 3, generator=generator),
        torch.randn(8, 3, generator=generator),
    )
    target = teacher.argmax(1)
    expected = F.mse_loss(student, teacher) + F.cross_entropy(student, target)
    torch.testing.assert_close(DistilledBiLSTMLoss()(student, teacher, target), expected)


def test_regresses_logits_not_probabilities():
    # shifting the teacher's logits by a constant keeps its probabilities but not the loss
    student, target = torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64)
    teacher = torch.tensor([[1.0, -1.0]] * 4)
    loss = DistilledBiLSTMLoss(ce_weight=0.0)
    assert loss(student, teacher + 5.0, target) > loss(student, teacher, target) + 1.0


def test_rejects_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="distill_weight and ce_weight must not all be zero"):
        DistilledBiLSTMLoss(0.0, 0.0)
    with pytest.raises(ValueError, match="ce_weight must be non-negative"):
        DistilledBiLSTMLoss(ce_weight=-1.0)
    with pytest.raises(ValueError, match="student_logits has 2 classes but teacher_logits has 3"):
        DistilledBiLSTMLoss()(torch.zeros(4, 2), torch.zeros(4, 3), torch.zeros(4).long())
    with pytest.raises(ValueError, match="target must be class indices of shape"):
        DistilledBiLSTMLoss()(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(3).long())


@pytest.fixture(scope="module")
def sentences():
    return load_sentiment(seed=0, num_train=40, num_test=10)


def test_augmentation_is_seeded_and_gives_new_sentences_only(sentences):
    first = augment_transfer_set(sentences.x_train, sentences.word_classes, seed=0)
    again = augment_transfer_set(sentences.x_train, sentences.word_classes, seed=0)
    other = augment_transfer_set(sentences.x_train, sentences.word_classes, seed=1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    rows = [tuple(r.tolist()) for r in first]
    originals = {tuple(r.tolist()) for r in sentences.x_train}
    assert len(set(rows)) == len(rows) and not set(rows) & originals
    assert 200 < len(rows) <= 20 * 40
    assert (first[:, 0] != PAD).all()  # no empty sentence


def test_replacements_keep_the_word_class_and_mask_or_keep_every_word(sentences):
    one = sentences.x_train[:1]
    length = int((one != PAD).sum())
    out = augment_transfer_set(one, sentences.word_classes, p_ng=0.0, n_iter=50, seed=0)
    classes = sentences.word_classes
    assert len(out) > 5
    for row in out:
        assert int((row != PAD).sum()) == length  # no n-gram: the same length
        for new, old in zip(row[:length], one[0, :length], strict=True):
            assert new == MASK or classes[new] == classes[old]
    # every word replaced or masked: such samples are dropped (the authors' all_replaced)
    assert len(augment_transfer_set(one, classes, p_mask=0.5, p_pos=0.5, n_iter=20)) == 0


def test_ngram_sampling_keeps_an_ngram_of_the_perturbed_sentence(sentences):
    out = augment_transfer_set(
        sentences.x_train, sentences.word_classes, p_mask=0.0, p_pos=0.0, p_ng=1.0,
        ngram_lengths=(2,), n_iter=5,
    )  # fmt: skip
    assert len(out) > 0 and ((out != PAD).sum(1) == 2).all()
    texts = [sentences.words(r) for r in sentences.x_train]
    assert all(any(sentences.words(r) in t for t in texts) for r in out)


def test_augmentation_rejects_bad_input(sentences):
    empty = sentences.x_train[:3].clone()
    empty[2] = PAD
    with pytest.raises(ValueError, match=r"sentences has empty sequences .* rows \[2\]"):
        augment_transfer_set(empty, sentences.word_classes)
    with pytest.raises(ValueError, match="word_classes must give a class to each token id"):
        augment_transfer_set(sentences.x_train, sentences.word_classes[:5])
    with pytest.raises(ValueError, match="p_mask \\+ p_pos must lie in"):
        augment_transfer_set(sentences.x_train, sentences.word_classes, p_mask=0.6, p_pos=0.6)


def test_distilling_on_the_transfer_set_moves_the_bilstm_toward_the_teacher():
    data = load_sentiment(seed=0, num_train=600, num_test=200)
    set_seed(0)
    teacher = TransformerClassifier(len(data.vocab), d_model=32, feedforward=64)
    fit(Classification(teacher), data.x_train, data.y_train, epochs=6, lr=2e-3, seed=0)
    freeze(teacher)
    labelled = data.with_train_subset(60)
    transfer = torch.cat(
        [labelled.x_train, augment_transfer_set(labelled.x_train, data.word_classes)]
    )
    with torch.no_grad():
        teacher_labels = teacher(transfer).logits.argmax(1)
        teacher_test = teacher(data.x_test).logits.argmax(1)
    agreement = {}
    for name in ("alone", "distilled"):
        set_seed(0)
        student = BiLSTMClassifier(len(data.vocab))
        if name == "alone":
            fit(Classification(student), labelled.x_train, labelled.y_train, epochs=20, lr=3e-3)
        else:
            distiller = OfflineDistiller(student, teacher, DistilledBiLSTMLoss(), ce_weight=0.0)
            fit(distiller, transfer, teacher_labels, epochs=4, lr=3e-3)
        with torch.no_grad():
            predicted = student(data.x_test).logits.argmax(1)
        agreement[name] = (predicted == teacher_test).float().mean().item()
    assert agreement["distilled"] > agreement["alone"] + 0.05, agreement
