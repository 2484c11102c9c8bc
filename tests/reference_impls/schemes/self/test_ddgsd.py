"""DDGSD (Xu & Liu, 2019): distortions, paper properties, hand values, training, CUDA."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.common import (
    load_digits_split,
    predict_logits,
    student_cnn,
    student_mlp,
    train,
)
from reference_impls.schemes.self.ddgsd import DDGSD, distort, linear_mmd, symmetric_kl


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 8, 8, generator=generator), torch.randint(
        0, 10, (8,), generator=generator
    )


def test_two_random_views_differ_so_kl_and_mmd_are_positive(batch):
    torch.manual_seed(0)
    terms = DDGSD(student_cnn())(*batch)
    assert set(terms) == {"loss", "ce", "kl", "mmd"}
    assert terms["kl"] > 0 and terms["mmd"] > 0


def test_distortion_moves_each_image_by_at_most_the_shift():
    images = torch.zeros(64, 1, 8, 8)
    images[:, 0, 3, 4] = 1.0  # one bright pixel on a dark background
    shifted = distort(
        images, max_shift=1, noise_std=0.0, generator=torch.Generator().manual_seed(0)
    )
    assert shifted.shape == images.shape and shifted.dtype == images.dtype
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(64))  # nothing lost, nothing added
    rows, cols = shifted[:, 0].nonzero()[:, 1], shifted[:, 0].nonzero()[:, 2]
    assert (rows - 3).abs().max() == 1 and (cols - 4).abs().max() == 1
    assert len({(r, c) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)}) == 9


def test_distortion_fills_with_the_background_and_is_seeded():
    images = torch.full((4, 1, 8, 8), -0.75)
    images[:, :, 2:6, 2:6] = 1.0
    first = distort(images, 2, 0.1, generator=torch.Generator().manual_seed(5))
    again = distort(images, 2, 0.1, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, again)
    without_noise = distort(images, 2, 0.0, generator=torch.Generator().manual_seed(5))
    assert set(without_noise.unique().tolist()) == {-0.75, 1.0}
    assert torch.equal(distort(images, 0, 0.0), images)


def test_identical_views_leave_only_the_two_cross_entropies(batch):
    torch.manual_seed(0)
    procedure = DDGSD(student_cnn(), max_shift=0, noise_std=0.0)
    terms = procedure(*batch)
    assert terms["kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["mmd"].item() == pytest.approx(0.0, abs=1e-10)
    torch.testing.assert_close(terms["loss"].detach(), terms["ce"])


def test_kl_targets_are_fixed_so_each_view_only_learns():
    # d/dz_a of KL(p_b || p_a) is (p_a - p_b) / B; the other KL contributes nothing to z_a
    generator = torch.Generator().manual_seed(0)
    logits_a = torch.randn(4, 5, generator=generator, requires_grad=True)
    logits_b = torch.randn(4, 5, generator=generator)
    symmetric_kl(logits_a, logits_b).backward()
    expected = (F.softmax(logits_a.detach(), dim=1) - F.softmax(logits_b, dim=1)) / 4
    torch.testing.assert_close(logits_a.grad, expected)


def test_hand_computed_values():
    # MMD: batch means [2, 0] and [0, 1] -> 2^2 + 1^2
    mmd = linear_mmd(torch.tensor([[1.0, 0.0], [3.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 2.0]]))
    assert mmd.item() == pytest.approx(5.0)
    # symmetric KL between [0.5, 0.5] and softmax([ln 3, 0]) = [0.75, 0.25]
    forward = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    backward = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    value = symmetric_kl(torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]]))
    assert value.item() == pytest.approx(forward + backward, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lambda_kl": -1.0}, "lambda_kl"),
        ({"temperature": 0.0}, "temperature"),
        ({"max_shift": -1}, "max_shift"),
    ],
)
def test_rejects_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDGSD(student_cnn(), **kwargs)


def test_rejects_models_without_an_embedding(batch):
    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = student_mlp()

        def forward(self, x):
            return self.net(x).logits

    with pytest.raises(TypeError, match="embedding"):
        DDGSD(LogitsOnly())(*batch)


def _view_disagreement(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Symmetric KL between the predictions on two seeded distortions of held-out images."""
    generator = torch.Generator().manual_seed(123)
    view_a, view_b = distort(x, generator=generator), distort(x, generator=generator)
    return symmetric_kl(predict_logits(model, view_a), predict_logits(model, view_b)).item()


def test_training_makes_the_views_agree():
    # baseline: the same two distorted views with cross-entropy only (lambda = mu = 0)
    data = load_digits_split(seed=0)
    torch.manual_seed(0)
    model = student_cnn()
    torch.manual_seed(0)
    baseline = student_cnn()
    kwargs = {"epochs": 3, "seed": 0, "device": "cpu"}
    train(DDGSD(baseline, lambda_kl=0.0, mu_mmd=0.0), data, **kwargs)
    history = train(DDGSD(model), data, **kwargs)
    assert history.final_accuracy > 0.85
    assert _view_disagreement(model, data.x_test) < 0.8 * _view_disagreement(baseline, data.x_test)


@pytest.mark.gpu
def test_distortion_on_cuda(batch):
    images = batch[0].to("cuda")
    distorted = distort(images, generator=torch.Generator("cuda").manual_seed(0))
    assert distorted.device == images.device and distorted.shape == images.shape
