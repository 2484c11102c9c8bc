r"""Jacobian matching: the student's input-gradients are made parallel to the teacher's.

Citation: ``srinivas2018knowledge`` (Srinivas and Fleuret, ICML 2018), "Knowledge Transfer
with Jacobian Matching". Authors' code: none released (none linked from the paper, the
authors' pages or Papers with Code; the public repositories that cite the paper are
third-party re-implementations). This file follows the paper's equations; the tests check it
against the equation evaluated independently, per sample, with
``torch.autograd.functional.jacobian``. On CIFAR-sized inputs (``student_cnn`` and
``teacher_cnn``, 3x32x32, eval mode, batch 8) the value and the gradients on every student
parameter agree for ``"target"`` and ``"teacher"`` (100 classes) and ``"all"`` (10
classes): values to 7e-15 (float64) and 2e-6 (float32) absolute, gradients to 6e-15
(float64) and 2e-6 (float32) relative to their largest entry.

A first-order Taylor expansion shows that distilling with Gaussian input noise adds a
penalty on the difference of the input-output Jacobians of teacher $T$ and student $S$
(the paper's Section 3); for the cross-entropy family of distillation losses the paper
argues for comparing the Jacobians after $\ell_2$ normalisation, which also removes the
scale difference between two networks. For outputs $i \in \mathcal{I}_b$ of sample $x_b$,
with $g^{i}(x) = \nabla_x f^{i}(x)$ flattened over the input's pixels,

$$
\mathcal{L} = \lambda_{\mathrm{CE}}\,\mathrm{CE}\big(y, S(x)\big)
  + \lambda_{\mathrm{KD}}\,\tau^{2}\,\mathrm{KL}\big(p^{T,\tau} \,\|\, p^{S,\tau}\big)
  + \beta\,\frac{1}{B}\sum_{b=1}^{B}\sum_{i \in \mathcal{I}_b}
    \Big\lVert \frac{g_T^{i}(x_b)}{\lVert g_T^{i}(x_b)\rVert_2}
             - \frac{g_S^{i}(x_b)}{\lVert g_S^{i}(x_b)\rVert_2} \Big\rVert_2^{2}.
$$

$f^i$ is the $i$-th logit. The student's term needs the gradient of a gradient (double
backward): its input-gradients are computed with ``create_graph=True`` and then
differentiated with respect to its weights. The teacher's are plain gradients, detached.

Which outputs ($\mathcal{I}_b$, ``output``): the derivation sums over every output
(``"all"``: one backward pass per class); the full Jacobian of $K$ classes costs $K$
backward passes, so the default matches one output per sample, the labelled class
(``"target"``: the gradient that a saliency map of $x_b$ shows); ``"teacher"`` takes the
teacher's predicted class instead (no label needed for that term).

Defaults (ours; no released code to take them from): the paper's "CE + match Jacobians"
row, i.e. $\lambda_{\mathrm{CE}} = 1$, no activation matching ($\lambda_{\mathrm{KD}} = 0$)
and $\beta = 1$ (a normalised difference lies in $[0, 4]$, so the term starts on the scale of
the cross-entropy); ``kd_weight > 0`` adds Hinton's softened KL at temperature $\tau$
(default 4) for the "match {activations + Jacobians}" row. The paper tunes its weights per
experiment; tune $\beta$ for your models.

Deviations and notes:

* Activation matching uses this package's softened KL (``softened_kl``), one of the
  losses the paper's analysis covers; the paper also studies the squared error.
* In training mode batch normalisation couples the samples of a batch, so the gradient of
  the summed selected logits with respect to $x_b$ also holds the (order $1/B$) paths
  through the batch statistics. In eval mode (the teacher, always) the gradients are
  exactly per sample. Computing them per sample would cost $B$ backward passes.
* A zero gradient (an output that does not depend on the input) is normalised to zero
  rather than divided by zero (``eps = 1e-12``, as ``torch.nn.functional.normalize``).
* The distances are computed in at least float32 (float64 stays float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32, softened_kl
from reference_impls.common.training import freeze, logits_of
from reference_impls.common.validation import class_indices, loss_weights, one_of, positive

OUTPUTS: tuple[str, ...] = ("target", "teacher", "all")


def input_gradients(
    logits: torch.Tensor, x: torch.Tensor, classes: torch.Tensor | None, create_graph: bool
) -> torch.Tensor:
    """$\\nabla_x f^i(x_b)$ flattened: ``[B, 1, D]`` for one class per sample, ``[B, K, D]`` for all.

    ``logits`` ``[B, K]`` must have been computed from ``x`` (which requires grad);
    ``classes``: one class index per sample, or ``None`` for every class.
    ``create_graph``: keep the graph, so that the gradients can be differentiated again.
    """
    if classes is not None:
        selected = logits.gather(1, classes.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(selected, x, create_graph=create_graph)
        return grad.flatten(1).unsqueeze(1)
    grads = []
    for k in range(logits.shape[1]):
        (grad,) = torch.autograd.grad(
            logits[:, k].sum(), x, create_graph=create_graph, retain_graph=True
        )
        grads.append(grad.flatten(1))
    return torch.stack(grads, dim=1)


def jacobian_distance(student_grads: torch.Tensor, teacher_grads: torch.Tensor) -> torch.Tensor:
    """Batch mean of $\\sum_i \\lVert \\hat g_T^i - \\hat g_S^i \\rVert_2^2$ over ``[B, I, D]`` gradients."""
    if student_grads.shape != teacher_grads.shape:
        raise ValueError(
            f"student and teacher input-gradients must have one shape [B, outputs, D], got "
            f"{tuple(student_grads.shape)} and {tuple(teacher_grads.shape)}"
        )
    student = F.normalize(at_least_float32(student_grads), dim=-1)
    teacher = F.normalize(at_least_float32(teacher_grads.detach()), dim=-1).to(student.dtype)
    return (student - teacher).pow(2).sum(dim=(1, 2)).mean()


class JacobianMatching(DistillationProcedure):
    """A student trained with cross-entropy and the teacher's normalised input-gradients.

    Args:
        student: the network trained (returns logits or a ``ModelOutput``).
        teacher: the trained network, frozen here (the same kind of output, same classes).
        beta: weight $\\beta$ of the Jacobian term (ours: 1).
        output: whose input-gradients are matched: ``"target"`` (the labelled class),
            ``"teacher"`` (the teacher's predicted class) or ``"all"`` (every class).
        ce_weight: weight of the cross-entropy on the labels.
        kd_weight: weight of the softened KL to the teacher (0: Jacobians alone).
        temperature: temperature $\\tau$ of that KL.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        beta: float = 1.0,
        output: str = "target",
        ce_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
    ) -> None:
        super().__init__()
        loss_weights(beta=beta, ce_weight=ce_weight, kd_weight=kd_weight)
        self.beta = beta
        self.ce_weight = ce_weight
        self.kd_weight = kd_weight
        self.output = one_of("output", output, OUTPUTS)
        self.temperature = positive("temperature", temperature)
        self.student = student
        self.teacher = freeze(teacher)

    def train(self, mode: bool = True) -> JacobianMatching:
        super().train(mode)
        self.teacher.eval()  # the teacher's batch-norm statistics never move
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point input to differentiate, got {x.dtype}")
        with torch.enable_grad():  # input-gradients are needed even if called under no_grad
            x_teacher = x.detach().requires_grad_(True)
            teacher_logits = logits_of(self.teacher(x_teacher))
            student_x = x.detach().requires_grad_(True)
            student_logits = logits_of(self.student(student_x))
            if student_logits.shape != teacher_logits.shape:
                raise ValueError(
                    f"student logits have shape {tuple(student_logits.shape)} but the teacher's "
                    f"{tuple(teacher_logits.shape)}; both must predict the same classes"
                )
            class_indices(y, student_logits)
            classes = {"target": y, "teacher": teacher_logits.detach().argmax(dim=1), "all": None}
            chosen = classes[self.output]
            teacher_grads = input_gradients(teacher_logits, x_teacher, chosen, create_graph=False)
            student_grads = input_gradients(student_logits, student_x, chosen, create_graph=True)
        jacobian = jacobian_distance(student_grads, teacher_grads.detach())
        ce = F.cross_entropy(student_logits, y)
        total = self.ce_weight * ce + self.beta * jacobian
        terms = {"ce": ce.detach(), "jacobian": jacobian.detach()}
        if self.kd_weight > 0:
            kd = softened_kl(student_logits, teacher_logits.detach(), self.temperature)
            total = total + self.kd_weight * kd
            terms["kd"] = kd.detach()
        return {"loss": total, **terms}

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, output={self.output!r}, ce_weight={self.ce_weight}, "
            f"kd_weight={self.kd_weight}, temperature={self.temperature}"
        )
