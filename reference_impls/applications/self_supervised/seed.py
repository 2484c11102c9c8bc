r"""SEED: self-supervised distillation by matching similarity distributions over a queue.

Citation: ``fang2021seed`` (Fang, Wang, Wang, Zhang, Yang and Liu, ICLR 2021).
Authors' code: https://github.com/jacobswan1/SEED, commit
``f236cac7c7fe41c74237097e5cf0d89a664c7a09``: ``seed/builder.py``, class ``SEED``
(``forward`` and ``_dequeue_and_enqueue``), and ``main.py`` ``soft_cross_entropy``
(the criterion); defaults in ``tools/opts.py``.

A frozen self-supervised teacher $f^T$ and a student $f^S$ (with an MLP projection
head) embed the same image; both embeddings are l2-normalised, $z^T, z^S$. A queue
$D = [d_1 \dots d_K]$ holds the teacher embeddings of past batches. Each side's
similarities to the teacher embedding itself and to the queue become a distribution,

$$
p^S_j = \frac{\exp(z^{S\top} d_j / \tau_S)}{\sum_{d \in D^+} \exp(z^{S\top} d / \tau_S)},\qquad
p^T_j = \frac{\exp(z^{T\top} d_j / \tau_T)}{\sum_{d \in D^+} \exp(z^{T\top} d / \tau_T)},\qquad
D^+ = [z^T, d_1, \dots, d_K],
$$

and the student minimises the cross-entropy $\mathcal{L} = \frac{1}{B}\sum_b
-\sum_j p^T_{b,j} \log p^S_{b,j}$; then the batch's teacher embeddings replace the
oldest in the queue (gathered from every process under DDP). With a small $\tau_T$
the teacher's distribution is nearly one-hot on $z^T$ and SEED becomes a contrastive
loss with the teacher's embedding as the positive; a larger $\tau_T$ also transfers
how the teacher ranks the other samples.

Defaults are the authors' code's: the student temperature ``--temp`` 0.2 (the
``SEED`` class's own default is 0.07, but ``main.py`` passes ``args.temp``), the
teacher's ``--distill-t`` 1e-4, and the student's MLP head ``--student_mlp True``
(``Linear(d, d)``, ReLU, ``Linear(d, dim)`` replacing the student's classifier). Their
128-d embedding (``--dim``) is the teacher's width here, and the queue of 65,536 is
scaled down to 512 for the 1,347 training digits (a queue longer than the data set
would hold several stale copies of each image).

Deviations: their queue asserts that its length is a multiple of the global batch
(``K % batch_size == 0``); ours wraps around, so any batch size fits (equal to theirs
whenever theirs runs). The queue moves in training mode only (they have no
evaluation pass through this module). Their queue starts as l2-normalised Gaussian
noise, as ours. The similarities are computed in at least float32 even under
``torch.autocast``: with $\tau_T = 10^{-4}$ a bfloat16 similarity (3 significant
digits) would turn the teacher's distribution into noise.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from reference_impls.common.augmentations import ViewSettings, augment, embedding_of
from reference_impls.common.interfaces import DistillationLoss, DistillationProcedure
from reference_impls.common.losses import at_least_float32
from reference_impls.common.validation import at_least, positive


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's rows, in rank order (their ``concat_all_gather``); the rows on one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


class SEEDLoss(DistillationLoss):
    """Cross-entropy between the teacher's and the student's similarity distributions over a queue.

    Called ``loss(student_embedding, teacher_embedding)`` with ``[B, student_dim]`` and
    ``[B, teacher_dim]``; the student's embedding goes through the loss's MLP head (to
    ``teacher_dim``) first, as their student's ``fc`` does.

    Args:
        student_dim, teacher_dim: the embeddings' widths.
        queue_size: $K$, teacher embeddings kept (theirs 65536; 512 for digits).
        student_temperature: $\\tau_S$ (their ``--temp`` 0.2).
        teacher_temperature: $\\tau_T$ (their ``--distill-t`` 1e-4).
        mlp: the student's two-layer head (theirs, ``--student_mlp``); ``False``: one
            linear layer, or none when the widths are equal.
    """

    inputs = "embeddings"

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        queue_size: int = 512,
        student_temperature: float = 0.2,
        teacher_temperature: float = 1e-4,
        mlp: bool = True,
    ) -> None:
        super().__init__()
        self.student_dim = at_least("student_dim", student_dim, 1)
        self.teacher_dim = at_least("teacher_dim", teacher_dim, 1)
        self.queue_size = at_least("queue_size", queue_size, 1)
        self.student_temperature = positive("student_temperature", student_temperature)
        self.teacher_temperature = positive("teacher_temperature", teacher_temperature)
        if mlp:
            self.head: nn.Module = nn.Sequential(
                nn.Linear(student_dim, student_dim),
                nn.ReLU(),
                nn.Linear(student_dim, teacher_dim),
            )
        elif student_dim != teacher_dim:
            self.head = nn.Linear(student_dim, teacher_dim)
        else:
            self.head = nn.Identity()
        # their layout: one column per queued embedding, [dim, K]
        self.register_buffer("queue", F.normalize(torch.randn(teacher_dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def _check(self, student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> None:
        for name, value, width in (
            ("student_embedding", student_embedding, self.student_dim),
            ("teacher_embedding", teacher_embedding, self.teacher_dim),
        ):
            if value.dim() != 2 or value.shape[1] != width:
                raise ValueError(
                    f"{name} must have shape [B, {width}], got shape {tuple(value.shape)}"
                )
        if student_embedding.shape[0] != teacher_embedding.shape[0]:
            raise ValueError(
                f"student_embedding and teacher_embedding must embed the same images, got "
                f"{student_embedding.shape[0]} and {teacher_embedding.shape[0]} rows"
            )

    def logits(
        self, student_embedding: torch.Tensor, teacher_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's tempered similarities and the teacher's distribution, ``[B, 1 + K]``."""
        self._check(student_embedding, teacher_embedding)
        student = at_least_float32(self.head(student_embedding))
        teacher = at_least_float32(teacher_embedding.detach())
        with torch.autocast(student.device.type, enabled=False):
            student = F.normalize(student, dim=1)
            teacher = F.normalize(teacher, dim=1)
            queue = self.queue.clone().to(teacher.dtype)  # enqueue writes into the buffer later
            student_logits = torch.cat(
                [(student * teacher).sum(1, keepdim=True), student @ queue], dim=1
            )
            teacher_logits = torch.cat(
                [(teacher * teacher).sum(1, keepdim=True), teacher @ queue], dim=1
            )
            teacher_probs = F.softmax(teacher_logits / self.teacher_temperature, dim=1)
        return student_logits / self.student_temperature, teacher_probs

    def forward(
        self, student_embedding: torch.Tensor, teacher_embedding: torch.Tensor
    ) -> torch.Tensor:
        student_logits, teacher_probs = self.logits(student_embedding, teacher_embedding)
        # their soft_cross_entropy: summed over the 1 + K entries, averaged over the batch
        loss = -(teacher_probs * F.log_softmax(student_logits, dim=1)).sum() / len(student_logits)
        if self.training:
            self.enqueue(F.normalize(at_least_float32(teacher_embedding.detach()), dim=1))
        return loss

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """The batch's (all processes') teacher embeddings replace the oldest queued ones."""
        keys = _gather(keys)[-self.queue_size :]  # a batch longer than the queue keeps its last
        ptr = int(self.queue_ptr)
        positions = (ptr + torch.arange(len(keys), device=keys.device)) % self.queue_size
        self.queue[:, positions] = keys.T.to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + len(keys)) % self.queue_size

    def extra_repr(self) -> str:
        return (
            f"queue_size={self.queue_size}, student_temperature={self.student_temperature}, "
            f"teacher_temperature={self.teacher_temperature}"
        )


class SEED(DistillationProcedure):
    """SEED training of ``student`` from a frozen self-supervised ``teacher``; labels unused.

    Student and teacher see the same random view of each image (their ``forward`` feeds
    one augmented batch to both), read as their pooled ``embedding``.

    Args:
        student, teacher: networks returning a ``ModelOutput`` with an ``embedding``.
        student_dim, teacher_dim: their embedding widths.
        view: how the view is drawn (a global crop with jitter, blur and noise).
        loss_options: passed to :class:`SEEDLoss` (queue size, temperatures, head).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        student_dim: int,
        teacher_dim: int,
        view: ViewSettings | None = None,
        **loss_options: float,
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.view = view if view is not None else ViewSettings()
        self.loss = SEEDLoss(student_dim, teacher_dim, **loss_options)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        views = augment(x, self.view)
        self.teacher.eval()  # their key encoder is kept in eval mode (frozen batch norm)
        with torch.no_grad():
            teacher_embedding = embedding_of(self.teacher(views))
        loss = self.loss(embedding_of(self.student(views)), teacher_embedding)
        return {"loss": loss, "seed": loss.detach()}
