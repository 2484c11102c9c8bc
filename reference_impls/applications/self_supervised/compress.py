r"""CompRess: the student mimics the teacher's similarities to a memory bank of anchor samples.

Citation: ``koohpayegani2020compress`` (Koohpayegani, Tejankar and Pirsiavash,
NeurIPS 2020).
Authors' code: https://github.com/UMBCvision/CompRess, commit
``c5e57edce75da96482fd36eac484c5aca9676945``: ``nn/compress_loss.py``, classes
``CompReSSMomentum`` (the loss of ``train_student.py``, the paper's main "CompRess-2q"
with a momentum student), ``SampleSimilarities``, ``SampleSimilaritiesMomentum`` and
``KLD``; ``train_student.py`` ``train_student`` and ``moment_update`` (the momentum copy).

Two memory banks hold the l2-normalised embeddings of the last $K$ samples: the
teacher's, $\{t_k\}$, and a slowly moving copy of the student's, $\{s_k\}$ (the
momentum student's, so that the bank does not go stale as the student changes). A
sample's similarities to the anchors become distributions at temperature $\tau$, and
the student minimises the KL divergence from the teacher's to its own:

$$
p^T_k = \frac{\exp(z^{T\top} t_k/\tau)}{\sum_j \exp(z^{T\top} t_j/\tau)},\qquad
p^S_k = \frac{\exp(z^{S\top} s_k/\tau)}{\sum_j \exp(z^{S\top} s_j/\tau)},\qquad
\mathcal{L} = \frac{1}{B}\sum_b \mathrm{KL}\big(p^T_b \,\big\|\, p^S_b\big).
$$

After the loss, the banks take the batch's teacher embeddings and the momentum
student's (whose weights follow the student, $\xi \leftarrow \alpha\xi + (1-\alpha)\theta$
after each step, $\alpha = 0.999$). Unlike SEED, neither distribution includes the
sample itself, and the student's anchors are its own embeddings, so teacher and
student may have different widths (no head).

Defaults are the authors' code's: ``--compress_t`` 0.04, ``--alpha`` 0.999, both banks
initialised uniformly in $\pm 1/\sqrt{D/3}$ (their ``SampleSimilarities``); their bank of
128,000 is scaled down to 512 for the 1,348 training digits. The KL is theirs
(``F.kl_div(log_softmax(student), softmax(teacher), reduction="batchmean")``),
computed here by :func:`reference_impls.common.losses.kl_divergence`.

Deviations: their bank's write position is a Python attribute (lost by ``state_dict``);
ours is a buffer. The banks move in training mode only. The momentum student is
updated at the start of the next training forward (the training loop has no hook after
the optimiser step), so the update after the very last step is not made. Their momentum
student runs with its batch norm in training mode (``set_bn_train``), as ours (the
procedure's mode). Their teacher's features may be cached per image
(``--cache_teacher``); ours are computed on the same view as the student's.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.augmentations import ViewSettings, augment, embedding_of
from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import at_least_float32, kl_divergence
from reference_impls.common.validation import at_least, in_unit_interval, positive


class MemoryBank(nn.Module):
    """The last ``size`` l2-normalised embeddings, and a sample's tempered similarities to them."""

    def __init__(self, dim: int, size: int, temperature: float) -> None:
        super().__init__()
        self.dim, self.size = at_least("dim", dim, 1), at_least("queue_size", size, 1)
        self.temperature = positive("temperature", temperature)
        bound = 1.0 / math.sqrt(dim / 3)  # their initialisation
        self.register_buffer("memory", torch.rand(size, dim) * 2 * bound - bound)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def similarities(self, embedding: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` similarities to the bank over the temperature, in at least float32."""
        with torch.autocast(embedding.device.type, enabled=False):
            embedding = at_least_float32(embedding)
            memory = self.memory.clone().to(embedding.dtype)  # written into after the loss
            return embedding @ memory.T / self.temperature

    @torch.no_grad()
    def write(self, keys: torch.Tensor) -> None:
        keys = keys[-self.size :]
        positions = (int(self.ptr) + torch.arange(len(keys), device=keys.device)) % self.size
        self.memory[positions] = keys.to(self.memory.dtype)
        self.ptr.fill_((int(self.ptr) + len(keys)) % self.size)


class CompRess(DistillationProcedure):
    """CompRess-2q with a momentum student: ``student`` learns from a frozen ``teacher``; labels unused.

    Args:
        student, teacher: networks returning a ``ModelOutput`` with an ``embedding``.
        student_dim, teacher_dim: their embedding widths.
        queue_size: $K$ anchors per bank (theirs 128000; 512 for digits).
        temperature: $\\tau$ of both distributions (their ``--compress_t`` 0.04).
        momentum: $\\alpha$ of the momentum student (their ``--alpha`` 0.999).
        view: how the one view per image (the same for all three networks) is drawn.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        student_dim: int,
        teacher_dim: int,
        queue_size: int = 512,
        temperature: float = 0.04,
        momentum: float = 0.999,
        view: ViewSettings | None = None,
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.student_key = copy.deepcopy(student)
        for parameter in [*self.teacher.parameters(), *self.student_key.parameters()]:
            parameter.requires_grad_(False)
        self.student_bank = MemoryBank(student_dim, queue_size, temperature)
        self.teacher_bank = MemoryBank(teacher_dim, queue_size, temperature)
        self.momentum = in_unit_interval("momentum", momentum)
        self.view = view if view is not None else ViewSettings()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update_student_key(self) -> None:
        """Their ``moment_update``: key $\\leftarrow \\alpha$ key $+ (1 - \\alpha)$ student."""
        for online, key in zip(
            self.student.parameters(), self.student_key.parameters(), strict=True
        ):
            key.mul_(self.momentum).add_(online.detach(), alpha=1 - self.momentum)

    def loss(
        self,
        student_embedding: torch.Tensor,
        teacher_embedding: torch.Tensor,
        student_key_embedding: torch.Tensor,
    ) -> torch.Tensor:
        """Their ``CompReSSMomentum.forward``: the KL, then both banks take the batch."""
        for name, value, bank in (
            ("student_embedding", student_embedding, self.student_bank),
            ("teacher_embedding", teacher_embedding, self.teacher_bank),
            ("student_key_embedding", student_key_embedding, self.student_bank),
        ):
            if value.dim() != 2 or value.shape[1] != bank.dim:
                raise ValueError(
                    f"{name} must have shape [B, {bank.dim}], got shape {tuple(value.shape)}"
                )
        teacher = F.normalize(at_least_float32(teacher_embedding.detach()), dim=1)
        student = F.normalize(at_least_float32(student_embedding), dim=1)
        key = F.normalize(at_least_float32(student_key_embedding.detach()), dim=1)
        log_p_student = F.log_softmax(self.student_bank.similarities(student), dim=1)
        log_p_teacher = F.log_softmax(self.teacher_bank.similarities(teacher), dim=1)
        loss = kl_divergence(log_p_student, log_p_teacher)  # KL(teacher || student), batch mean
        if self.training:
            self.student_bank.write(key)
            self.teacher_bank.write(teacher)
        return loss

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.training:
            if int(self.step) > 0:
                self.update_student_key()  # after the optimiser step of the previous call
            self.step += 1
        views = augment(x, self.view)
        self.teacher.eval()
        self.student_key.train(self.training)  # their set_bn_train: batch statistics
        with torch.no_grad():
            teacher_embedding = embedding_of(self.teacher(views))
            key_embedding = embedding_of(self.student_key(views))
        loss = self.loss(embedding_of(self.student(views)), teacher_embedding, key_embedding)
        return {"loss": loss, "compress": loss.detach()}
