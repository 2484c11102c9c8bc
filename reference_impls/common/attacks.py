r"""Projected gradient ascent in an $\ell_\infty$ ball (PGD), the attack of robust distillation.

The adversarial-robust methods (ARD, ``goldblum2020adversarially``; RSLAD,
``zi2021revisiting``) train the student on inputs perturbed by PGD (Madry et al., ICLR
2018): from a start $x^0$ near the clean input $x$, $K$ signed-gradient steps of size
$\alpha$ on an objective $\ell$ of the model's logits, each followed by the projection
onto the $\epsilon$-ball around $x$ intersected with the valid pixel range,

$$
x^{k+1} = \Pi_{\{x' :\ \lVert x' - x\rVert_\infty \le \epsilon\} \cap [\mathrm{lo}, \mathrm{hi}]^d}
  \Big(x^{k} + \alpha\, \mathrm{sign}\, \nabla_{x^k}\, \ell\big(f(x^{k})\big)\Big).
$$

Both boxes are coordinate-wise, so clamping to the ball and then to the range (ARD's
``AttackPGD``, RSLAD's ``rslad_inner_loss``) and the reverse order (RSLAD's
``attack_pgd``) give the same point. What differs between the methods is written by
each caller: the objective (ARD: the student's cross-entropy on the labels; RSLAD: the
KL divergence from the teacher's soft labels), the start (``"uniform"`` in the ball, or
``"normal"`` with a small standard deviation) and the model's mode (ARD attacks the
student in training mode, RSLAD in eval mode); :func:`pgd` leaves the mode as it finds it.

**Units.** The authors' CIFAR models read pixels in $[0, 1]$ and their defaults are in
those units: $\epsilon = 8/255$, $\alpha = 2/255$, 10 steps. Our digits are standardised
(``input = (pixel - 0.3) / 0.4``, :func:`~reference_impls.common.data.load_digits_split`),
so every radius, step and start noise is given in pixel units and converted by a
:class:`PixelScale` (a distance $d$ becomes $d / \mathrm{std}$, the range $[0, 1]$ becomes
$[-\mathrm{mean}/\mathrm{std},\ (1 - \mathrm{mean})/\mathrm{std}]$). The identity scale is
the authors' set-up; :data:`DIGITS_PIXELS` is the digits'. $8/255$ is half of one of the
digits' 17 grey levels, so the adversarial notebook attacks with larger radii (it says
which and why).

Random starts are drawn with ``torch.rand``/``torch.randn`` from the global generator,
so a seed fixes them and the contract's CPU/CUDA check draws the same numbers on both.
The gradient is taken with ``torch.autograd.grad`` with respect to the input alone: the
model's parameter gradients are left untouched, and the attack runs under
``torch.no_grad()`` too (it enables gradients for itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.losses import at_least_float32
from reference_impls.common.training import logits_of
from reference_impls.common.validation import at_least, labelled_batch, non_negative, one_of

Start = Literal["uniform", "normal", "none"]
STARTS: tuple[str, ...] = ("uniform", "normal", "none")
Objective = Callable[[torch.Tensor], torch.Tensor]
"""What the attack maximises: the model's logits on the perturbed batch → a scalar."""


@dataclass(frozen=True)
class PixelScale:
    """How a model's inputs relate to pixels in $[0, 1]$: ``input = (pixel - mean) / std``.

    The default (``mean=0, std=1``) is the identity: inputs are pixels, as in the
    authors' CIFAR code.
    """

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise ValueError(f"std must be positive, got {self.std}")

    def distance(self, pixels: float) -> float:
        """A radius or step of ``pixels`` pixel units, in input units."""
        return pixels / self.std

    @property
    def bounds(self) -> tuple[float, float]:
        """The input values of the darkest (0) and brightest (1) pixel."""
        return (0.0 - self.mean) / self.std, (1.0 - self.mean) / self.std


DIGITS_PIXELS = PixelScale(mean=0.3, std=0.4)
"""The standardisation of :func:`~reference_impls.common.data.load_digits_split`."""


def uniform_in_ball(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Noise uniform in $[-r, r]$, shaped like ``x``: the numbers of ``empty_like(x).uniform_(-r, r)``.

    Drawn with ``torch.rand`` (so the contract's CPU/CUDA check can draw it on the CPU)
    and transformed with the arithmetic of torch's ``uniform_``: the bounds rounded to
    ``x``'s dtype, then ``u * (hi - lo) + lo`` fused in double precision. Under one seed it
    is the authors' start to the bit, in float32 and float64.
    """
    uniform = torch.rand(x.shape, dtype=x.dtype, device=x.device).double()
    low = torch.tensor(-radius, dtype=x.dtype, device=x.device).double()
    width = torch.tensor(radius, dtype=x.dtype, device=x.device).double() - low
    return torch.addcmul(low.expand_as(uniform), uniform, width).to(x.dtype)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    objective: Objective,
    *,
    epsilon: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    start: Start = "uniform",
    start_std: float = 0.001,
    scale: PixelScale = PixelScale(),
) -> torch.Tensor:
    """The PGD point of ``x`` that maximises ``objective(model(x'))``, detached.

    Args:
        model: returns logits (or a ``ModelOutput``); used in the mode it is in.
        x: the clean batch ``[B, ...]``, in input units.
        objective: logits ``[B, C]`` → scalar to increase (its reduction does not
            matter: only the gradient's sign is used).
        epsilon: $\\ell_\\infty$ radius, in pixel units (authors: 8/255).
        step_size: $\\alpha$ per step, in pixel units (authors: 2/255).
        steps: number of gradient steps $K$ (authors' training attacks: 10); ``0`` gives the
            (projected) start.
        start: ``"uniform"`` in the ball (ARD), ``"normal"`` with ``start_std`` (RSLAD) or
            ``"none"`` (start at ``x``). The start is not clamped before the first step,
            as in both authors' training attacks.
        start_std: standard deviation of the ``"normal"`` start, pixel units (RSLAD: 0.001).
        scale: how inputs relate to $[0, 1]$ pixels (default: inputs are pixels).

    The result always lies in the ball and in the pixel range.
    """
    non_negative("epsilon", epsilon)
    non_negative("step_size", step_size)
    at_least("steps", steps, 0)
    one_of("start", start, STARTS)
    non_negative("start_std", start_std)
    radius, step = scale.distance(epsilon), scale.distance(step_size)
    low, high = scale.bounds
    x = x.detach()

    def project(point: torch.Tensor) -> torch.Tensor:
        inside_ball = torch.minimum(torch.maximum(point, x - radius), x + radius)
        return inside_ball.clamp(low, high)

    if start == "uniform":
        noise = uniform_in_ball(x, radius)
    elif start == "normal":  # drawn in the default dtype, as the authors' `torch.randn(x.shape)`
        noise = scale.distance(start_std) * torch.randn(x.shape, device=x.device).to(x.dtype)
    else:
        noise = torch.zeros_like(x)
    adversarial = x + noise
    for _ in range(steps):
        adversarial.requires_grad_(True)
        with torch.enable_grad():
            value = objective(logits_of(model(adversarial)))
        (gradient,) = torch.autograd.grad(value, [adversarial], allow_unused=True)
        if gradient is None:  # a model that ignores its input: nothing to climb
            gradient = torch.zeros_like(adversarial)
        adversarial = project(adversarial.detach() + step * gradient.sign())
    return project(adversarial.detach())


def cross_entropy_objective(target: torch.Tensor) -> Objective:
    """The model's summed cross-entropy on ``target``: the usual untargeted attack (ARD's)."""
    return lambda logits: F.cross_entropy(at_least_float32(logits), target, reduction="sum")


@torch.no_grad()
def pgd_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    epsilon: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    scale: PixelScale = PixelScale(),
    batch_size: int = 512,
) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on PGD examples that raise its cross-entropy.

    The authors' evaluation: a uniform start in the ball and PGD on the model's own
    cross-entropy (ARD's test: 10 steps of 2/255; RSLAD's: 20 steps of 0.003; both
    $\\epsilon = 8/255$). The model's mode is restored afterwards.
    """
    labelled_batch(x, target)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for first in range(0, len(x), batch_size):
            images, labels = x[first : first + batch_size], target[first : first + batch_size]
            attacked = pgd(
                model,
                images,
                cross_entropy_objective(labels),
                epsilon=epsilon,
                step_size=step_size,
                steps=steps,
                scale=scale,
            )
            correct += (logits_of(model(attacked)).argmax(1) == labels).sum().item()
    finally:
        model.train(was_training)
    return correct / len(x)


__all__ = [
    "DIGITS_PIXELS",
    "STARTS",
    "Objective",
    "PixelScale",
    "cross_entropy_objective",
    "pgd",
    "pgd_accuracy",
    "uniform_in_ball",
]
