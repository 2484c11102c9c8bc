"""The digits' random views, the tiny self-supervised networks and the two probes."""

from __future__ import annotations

import pytest
import torch

from reference_impls.common.augmentations import (
    BACKGROUND,
    DINOHead,
    MultiCrop,
    SSLNetwork,
    ViewSettings,
    augment,
    byol_network,
    cosine_schedule,
    dino_network,
    knn_accuracy,
    linear_probe_accuracy,
    probe,
    random_resized_crops,
)
from reference_impls.common.data import load_digits_split
from reference_impls.common.models import student_mlp


def test_views_are_deterministic_from_a_generator_and_differ_between_draws():
    images = load_digits_split().x_train[:16]
    first = MultiCrop()(images, torch.Generator().manual_seed(3))
    again = MultiCrop()(images, torch.Generator().manual_seed(3))
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [tuple(v.shape) for v in first] == [(16, 1, 8, 8)] * 2 + [(16, 1, 4, 4)] * 8
    assert not torch.allclose(first[0], first[1])


def test_a_full_square_crop_at_the_same_size_is_the_image_itself():
    images = torch.randn(4, 1, 8, 8)
    crops = random_resized_crops(images, 8, (1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(crops, images)


def test_a_view_without_jitter_blur_or_noise_is_a_crop_and_blur_keeps_a_blank_image_blank():
    images = torch.randn(4, 1, 8, 8)
    plain = ViewSettings(size=8, scale=(1.0, 1.0), jitter=0.0, blur_p=0.0, noise=0.0)
    view = augment(images, plain, torch.Generator().manual_seed(0))
    crop = random_resized_crops(images, 8, (1.0, 1.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(view, crop)  # the crop's draws come first
    blank = torch.full((2, 1, 8, 8), BACKGROUND)
    blurred = ViewSettings(scale=(1.0, 1.0), jitter=0.0, blur_p=1.0, noise=0.0)
    for seed in range(50):  # crops touching the border once sampled zero padding
        torch.testing.assert_close(
            augment(blank, blurred, torch.Generator().manual_seed(seed)), blank
        )


def test_dino_head_prototypes_are_unit_vectors_and_outputs_are_cosines():
    torch.manual_seed(0)
    head = DINOHead(in_dim=32, out_dim=50)
    assert not head.gain.requires_grad  # norm_last_layer: their default
    out = head(torch.randn(7, 32))
    assert out.shape == (7, 50) and out.abs().max() <= 1 + 1e-6
    assert DINOHead(32, norm_last_layer=False).gain.requires_grad
    with_bn = DINOHead(32, use_bn=True)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in with_bn.mlp)


def test_networks_give_the_head_as_logits_and_the_backbone_as_embedding():
    torch.manual_seed(0)
    network = dino_network(student_mlp(), out_dim=20)
    out = network(torch.randn(5, 1, 8, 8))
    assert out.logits.shape == (5, 20) and out.embedding.shape == (5, 64)
    assert not network.backbone.fc.weight.requires_grad  # the classifier is not trained
    assert byol_network()(torch.randn(5, 1, 8, 8)).logits.shape == (5, 64)
    with pytest.raises(TypeError, match="must return a ModelOutput"):
        SSLNetwork(torch.nn.Flatten(), torch.nn.Identity())(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="embedding_dim"):
        dino_network(torch.nn.Flatten())


def test_knn_by_hand_weights_the_nearest_votes_by_their_similarity():
    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    test = torch.tensor([[1.0, 0.1]])
    # k = 3: class 0 gets exp(cos/T) of the first, class 1 of the other two
    assert knn_accuracy(train, labels, test, torch.tensor([0]), k=3, temperature=0.07) == 1.0
    assert knn_accuracy(train, labels, test, torch.tensor([1]), k=3, temperature=10.0) == 1.0
    with pytest.raises(ValueError, match=r"test_features must be \[N, D\]"):
        knn_accuracy(train, labels, test[0], torch.tensor([0]))


def test_the_probes_read_a_representation_that_separates_the_classes():
    data = load_digits_split()
    scores = probe(torch.nn.Flatten(), data)  # the raw pixels
    assert scores["linear"] > 0.9 and scores["knn"] > 0.9
    noise = torch.randn(len(data.x_train), 8)
    assert linear_probe_accuracy(noise, data.y_train, torch.randn(len(data.x_test), 8),
                                 data.y_test) < 0.3  # fmt: skip


def test_cosine_schedule_runs_from_base_towards_final_after_a_linear_warm_up():
    schedule = cosine_schedule(1.0, 0.0, epochs=4, steps_per_epoch=5, warmup_epochs=1)
    assert len(schedule) == 20 and schedule[0] == 0 and schedule[4] == 1.0
    assert schedule[5] == 1.0 and 0 < schedule[-1] < 0.05
    assert bool((schedule[5:].diff() <= 0).all())


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="scale must be"):
        ViewSettings(scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="noise must be non-negative"):
        ViewSettings(noise=-1.0)
    with pytest.raises(ValueError, match="global_crops must be at least 1"):
        MultiCrop(global_crops=0)
    with pytest.raises(ValueError, match=r"images must be a floating-point batch"):
        augment(torch.zeros(8, 8))


def test_embedding_of_reads_a_model_outputs_embedding_or_passes_a_tensor():
    from reference_impls.common.augmentations import embedding_of
    from reference_impls.common.models import ModelOutput

    embedding = torch.randn(3, 4)
    assert embedding_of(ModelOutput(torch.zeros(3, 2), embedding=embedding)) is embedding
    assert embedding_of(embedding) is embedding
    with pytest.raises(ValueError, match="has no embedding"):
        embedding_of(ModelOutput(torch.zeros(3, 2)))
