"""GAN distillation (Aguinaldo et al., 2019): the MSE by hand, the student copies the teacher."""

from __future__ import annotations

import pytest
import torch

from reference_impls.algorithms.adversarial import GANDistillation
from reference_impls.algorithms.adversarial.gan_distillation import MLPGenerator


class Affine(torch.nn.Module):
    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale))
        self.shift = torch.nn.Parameter(torch.tensor(shift))

    def forward(self, z):
        return self.scale * z + self.shift


def test_mse_by_hand():
    procedure = GANDistillation(Affine(2.0, 0.0), Affine(1.0, 1.0), latent_dim=2)
    z = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    # teacher 2z = [[2, 4], [0, -2]]; student z + 1 = [[2, 3], [1, 0]]: squared errors 0, 1, 1, 4
    assert procedure(z)["loss"].item() == pytest.approx(6 / 4)
    procedure(z)["loss"].backward()
    assert procedure.teacher.scale.grad is None and procedure.student.scale.grad is not None


def test_zero_when_the_student_is_the_teacher():
    torch.manual_seed(0)
    teacher = MLPGenerator(hidden=(8,))
    student = MLPGenerator(hidden=(8,))
    student.load_state_dict(teacher.state_dict())
    loss = GANDistillation(teacher, student, latent_dim=2)(torch.randn(5, 2))["loss"]
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_the_small_generator_learns_the_large_ones_map():
    torch.manual_seed(0)
    teacher, student = MLPGenerator(hidden=(64, 64)), MLPGenerator(hidden=(16, 16))
    procedure = GANDistillation(teacher, student, latent_dim=2)
    z = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    before = procedure(z)["mse"].item()
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    for _ in range(300):
        loss = procedure.train()(procedure.sample_latent(64))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert procedure(z)["mse"].item() < 0.1 * before  # on codes it never trained on


def test_rejects_bad_inputs():
    procedure = GANDistillation(MLPGenerator(), MLPGenerator(hidden=(4,), output_dim=3), 2)
    with pytest.raises(ValueError, match=r"shape \[B, 2\], got shape \(4, 3\)"):
        procedure(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"\(4, 3\) but the teacher's has shape \(4, 2\)"):
        procedure(torch.randn(4, 2))
    with pytest.raises(ValueError, match="latent_dim"):
        GANDistillation(MLPGenerator(), MLPGenerator(), latent_dim=0)
