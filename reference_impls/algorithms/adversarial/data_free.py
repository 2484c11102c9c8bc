r"""What the two data-free procedures (DAFL, DFAD) share: the generator and the training loop.

Not a method of its own: :class:`~reference_impls.algorithms.adversarial.dafl.DAFL` and
:class:`~reference_impls.algorithms.adversarial.dfad.DFAD` subclass
:class:`DataFreeDistillation` and define their loss terms.

**The generator.** Both papers use the same generator (DFAD's ``network/gan.py``,
``GeneratorA``, is DAFL's ``Generator`` of ``DAFL-train.py`` made a module): a linear
layer from the latent code to a $\frac{s}{4} \times \frac{s}{4}$ map of $2w$ channels,
batch norm, two nearest-neighbour upsamplings each followed by a 3x3 convolution,
batch norm and LeakyReLU(0.2) (the second convolution going down to $w$ channels),
a last 3x3 convolution to the image channels, ``tanh``, and a batch norm without affine
parameters that standardises the images. :class:`DigitsGenerator` is that network for
our 8x8 digits ($s = 8$, so a 2x2 map); the authors' width is $w = 64$. One
difference between the two codes is kept as an argument: DAFL writes
``nn.BatchNorm2d(128, 0.8)``, which sets the batch norm's *epsilon* to 0.8 (the second
positional argument), in its two inner batch norms; DFAD uses the default 1e-5
(``batchnorm_eps``, default DFAD's).

**The loop.** The student never sees a real training image: every step draws latent
codes $z \sim \mathcal{N}(0, I)$, the generator makes the inputs, the teacher labels
them. Real data only measures the student (:meth:`DataFreeDistillation.fit` takes a
``DataSplit`` for its *test* images). Each iteration runs the method's ``schedule``
of phases (DAFL: one joint step of generator and student; DFAD: five student steps,
then one generator step), each on fresh codes, as in the authors' scripts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import ClassVar

import torch
from torch import nn

from reference_impls.common.data import DataSplit
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.training import History, accuracy, default_device, freeze, set_seed
from reference_impls.common.validation import at_least, one_of, positive


class DigitsGenerator(nn.Module):
    """DAFL's and DFAD's generator for ``image_size`` x ``image_size`` images (a multiple of 4).

    Args:
        latent_dim: size of the latent code $z$.
        width: $w$; the inner maps have $2w$ then $w$ channels (authors: 64).
        channels: image channels.
        image_size: side of the generated images.
        batchnorm_eps: epsilon of the two inner batch norms (DAFL's code: 0.8; DFAD's: 1e-5).
    """

    def __init__(
        self,
        latent_dim: int = 100,
        width: int = 64,
        channels: int = 1,
        image_size: int = 8,
        batchnorm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        at_least("latent_dim", latent_dim, 1)
        at_least("width", width, 1)
        if image_size < 4 or image_size % 4:
            raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
        self.latent_dim, self.image_size = latent_dim, image_size
        self.init_size = image_size // 4
        self.project = nn.Linear(latent_dim, 2 * width * self.init_size**2)
        self.norm0 = nn.BatchNorm2d(2 * width)
        self.block1 = nn.Sequential(
            nn.Conv2d(2 * width, 2 * width, 3, 1, 1),
            nn.BatchNorm2d(2 * width, eps=positive("batchnorm_eps", batchnorm_eps)),
            nn.LeakyReLU(0.2),
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, 1, 1),
            nn.BatchNorm2d(width, eps=batchnorm_eps),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, channels, 3, 1, 1),
            nn.Tanh(),
            nn.BatchNorm2d(channels, affine=False),  # standardised images, like the real inputs
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        latent_codes(z, self.latent_dim)
        out = self.project(z.flatten(1)).view(len(z), -1, self.init_size, self.init_size)
        out = nn.functional.interpolate(self.norm0(out), scale_factor=2)
        out = nn.functional.interpolate(self.block1(out), scale_factor=2)
        return self.block2(out)


def latent_codes(z: torch.Tensor, latent_dim: int) -> None:
    """``z`` is a batch of at least two latent codes ``[B, latent_dim]`` (batch norm needs two)."""
    if z.dim() != 2 or z.shape[1] != latent_dim or z.shape[0] < 2:
        raise ValueError(
            f"z must be latent codes of shape [B, {latent_dim}] with B >= 2 (the generator's "
            f"batch norm needs two samples), got shape {tuple(z.shape)}"
        )


@contextlib.contextmanager
def parameters_frozen(module: nn.Module) -> Iterator[None]:
    """Within the block, ``module``'s parameters take no gradient; the input still does.

    Used where one player's loss is back-propagated through the other player (the
    generator's loss through the student): autograd records at forward time that the
    parameters need no gradient, so restoring the flags afterwards changes nothing.
    """
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


class DataFreeDistillation(DistillationProcedure):
    """A frozen teacher, a student and a generator; the student learns on generated inputs only.

    Subclasses set ``schedule`` (the phases of one iteration) and implement
    ``forward(z, phase)``, returning the terms of that phase with the total under
    ``"loss"`` (its backward gives each trained model exactly its own objective's
    gradient), and ``configure_optimizers``.
    """

    schedule: ClassVar[tuple[str, ...]]
    phases: ClassVar[tuple[str, ...]]

    def __init__(self, teacher: nn.Module, student: nn.Module, generator: nn.Module) -> None:
        super().__init__()
        latent_dim = getattr(generator, "latent_dim", None)
        if not isinstance(latent_dim, int):
            raise ValueError(
                "generator must have an integer attribute `latent_dim` (the size of the codes "
                f"it reads), got {latent_dim!r}"
            )
        self.teacher = freeze(teacher)
        self.student = student
        self.generator = generator
        self.latent_dim = latent_dim

    def train(self, mode: bool = True) -> DataFreeDistillation:
        super().train(mode)
        self.teacher.eval()  # the authors call teacher.eval(): its batch-norm statistics stay
        return self

    def check_phase(self, phase: str) -> str:
        return one_of("phase", phase, self.phases)

    def sample_latent(self, batch_size: int, device: torch.device | str | None = None):
        """$z \\sim \\mathcal{N}(0, I)$, ``[batch_size, latent_dim]``."""
        return torch.randn(batch_size, self.latent_dim, device=device)

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """The generator's images for ``z`` in eval mode (running batch-norm statistics)."""
        was_training = self.generator.training
        self.generator.eval()
        images = self.generator(z)
        self.generator.train(was_training)
        return images

    def configure_optimizers(self, lr: float | None = None) -> list[torch.optim.Optimizer]:
        raise NotImplementedError

    def fit(
        self,
        data: DataSplit | None = None,
        *,
        epochs: int = 1,
        iterations: int = 50,
        batch_size: int = 256,
        seed: int = 0,
        device: torch.device | str | None = None,
        progress: Callable[[int, dict[str, float]], None] | None = None,
    ) -> History:
        """Train for ``epochs`` x ``iterations`` iterations of ``schedule`` on generated inputs.

        ``data`` is used for its test images only: the student's test accuracy after each
        epoch is recorded (``None``: nothing is measured). ``progress(epoch, mean_terms)``
        is called after each epoch.
        """
        at_least("epochs", epochs, 1)
        at_least("iterations", iterations, 1)
        at_least("batch_size", batch_size, 2)
        device = torch.device(device) if device is not None else default_device()
        set_seed(seed)
        self.to(device)
        optimizers = self.configure_optimizers()
        history = History()
        for epoch in range(epochs):
            self.on_epoch_start(epoch, epochs)
            self.train()
            sums: dict[str, float] = {}
            counts: dict[str, int] = {}
            for _ in range(iterations):
                for phase in self.schedule:
                    terms = self(self.sample_latent(batch_size, device), phase)
                    for optimizer in optimizers:
                        optimizer.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    for optimizer in optimizers:  # a player without gradients is not moved
                        optimizer.step()
                    for name, value in terms.items():
                        if name != "loss":
                            sums[name] = sums.get(name, 0.0) + float(value)
                            counts[name] = counts.get(name, 0) + 1
            means = {name: total / counts[name] for name, total in sums.items()}
            history.losses.append(means)
            if data is not None:
                test = data.to(device)
                history.test_accuracy.append(accuracy(self.student, test.x_test, test.y_test))
            if progress is not None:
                progress(epoch, means)
        self.eval()
        return history
