r"""GAN distillation: a small generator learns to reproduce a large generator's samples.

Citation: ``aguinaldo2019compressing`` (Aguinaldo, Chiang, Gain, Patil, Pearson and
Feizi, arXiv 2019). Authors' code: none released (the paper gives no repository; we
found only third-party re-implementations), so this follows the paper's equations.

A trained teacher generator $G_T$ (from any GAN training) and a smaller student
generator $G_S$ read the same latent codes; the student is trained to reproduce the
teacher's output for every code, a regression with no discriminator and no data:

$$
\mathcal{L}_{KD} = \mathbb{E}_{z \sim p(z)} \Big[ \tfrac{1}{d}\,
  \big\lVert G_T(z) - G_S(z) \big\rVert_2^2 \Big]
$$

(the mean squared error over the $d$ output values; with images, over pixels). The
paper calls this the student's distillation loss and trains with it alone for its
main results (MNIST, CIFAR-10 and CelebA, DCGAN and WGAN-GP teachers); since the
teacher is deterministic, the student learns the teacher's *map* from codes to
samples, so whatever the teacher's distribution is, mode coverage included, is
inherited. The latent prior $p(z)$ is the teacher's: a standard normal by default.

:meth:`GANDistillation.forward` takes a batch of codes ``[B, latent_dim]``;
:meth:`GANDistillation.sample_latent` draws them.

Not implemented: the paper's "joint" variant, which adds an adversarial term from a
discriminator trained on real data to the distillation loss; it needs real data in
the loop and is not the paper's main setting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import freeze
from reference_impls.common.validation import at_least


class MLPGenerator(nn.Module):
    """A fully connected generator (ReLU hidden layers, linear output) for low-dimensional samples.

    The teacher and the student of the notebook's 2-D example differ in ``hidden``.
    """

    def __init__(
        self, latent_dim: int = 2, hidden: tuple[int, ...] = (128, 128), output_dim: int = 2
    ) -> None:
        super().__init__()
        self.latent_dim = at_least("latent_dim", latent_dim, 1)
        layers: list[nn.Module] = []
        previous = latent_dim
        for width in hidden:
            layers += [nn.Linear(previous, at_least("hidden width", width, 1)), nn.ReLU()]
            previous = width
        layers.append(nn.Linear(previous, at_least("output_dim", output_dim, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class GANDistillation(DistillationProcedure):
    """A student generator regressed onto a frozen teacher generator's outputs, code by code.

    Args:
        teacher: the trained generator, frozen here; maps ``[B, latent_dim]`` to samples.
        student: the smaller generator trained, with the same input and output shapes.
        latent_dim: size of the latent codes both read.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.teacher = freeze(teacher)
        self.student = student
        self.latent_dim = at_least("latent_dim", latent_dim, 1)

    def train(self, mode: bool = True) -> GANDistillation:
        super().train(mode)
        self.teacher.eval()  # a trained generator is sampled in eval mode
        return self

    def sample_latent(
        self, batch_size: int, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Codes from the teacher's prior, a standard normal ``[batch_size, latent_dim]``."""
        return torch.randn(batch_size, self.latent_dim, device=device)

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"z must be latent codes of shape [B, {self.latent_dim}], got shape "
                f"{tuple(z.shape)}"
            )
        with torch.no_grad():
            target = self.teacher(z)
        output = self.student(z)
        if output.shape != target.shape:
            raise ValueError(
                f"the student generator's output has shape {tuple(output.shape)} but the "
                f"teacher's has shape {tuple(target.shape)}; they must generate the same samples"
            )
        mse = F.mse_loss(at_least_float32(output), at_least_float32(target))
        return {"loss": mse, "mse": mse.detach()}
