r"""Graph-less neural networks: distil a GNN into an MLP that reads node features alone.

Citation: ``zhang2022graph`` (Zhang, Liu, Sun and Shah, ICLR 2022).
Authors' code: https://github.com/snap-research/graphless-neural-networks (commit
``80d0f8e``): ``train_student.py`` (``criterion_l = NLLLoss()``, ``criterion_t =
KLDivLoss(reduction="batchmean", log_target=True)``, ``--lamb`` default 0) and
``train_and_eval.py`` (``distill_run_transductive``, ``train_mini_batch``); the soft
labels are the teacher's ``log_softmax`` outputs that ``train_teacher.py`` saves.

A GNN teacher is trained on the graph; its predictions $z_v$ on every node become soft
labels for an MLP student that sees only the node's features $x_v$, so that at
inference the student needs no graph, no neighbour fetching and no message passing.
With $\hat y_v = \mathrm{softmax}(\mathrm{MLP}(x_v))$, the labelled nodes
$\mathcal V_L$ and all nodes $\mathcal V$ (transductive setting: the soft labels of
the validation and test nodes are used too), the student minimises

$$
\mathcal L_{\mathrm{GLNN}} = \lambda\,\frac{1}{|\mathcal V_L|}\sum_{v \in \mathcal V_L}
  \mathrm{CE}(\hat y_v, y_v)
  + (1 - \lambda)\,\frac{1}{|\mathcal V|}\sum_{v \in \mathcal V}
  \mathrm{KL}\!\left(z_v \,\middle\|\, \hat y_v\right).
$$

The code's reductions are these: ``NLLLoss`` averages over the labelled nodes of a
mini-batch, ``KLDivLoss(reduction="batchmean")`` sums over classes and averages over
the nodes of a mini-batch.

Defaults (the authors' code): $\lambda = 0$ (``--lamb`` defaults to 0 and none of the
released experiment scripts sets it, so the released GLNN students learn from the
teacher's soft labels alone; the paper tunes $\lambda$ in $[0, 1]$); no temperature
($\tau = 1$: the soft labels are the teacher's plain ``log_softmax``); teacher
GraphSAGE; student MLP (``train.conf.yaml`` for Cora: 2 layers, width 128, dropout 0.6,
Adam with learning rate 0.01 and weight decay 0.005, mini-batches of 512 nodes).

Deviations:

* The code takes two passes per epoch (``train_mini_batch`` twice): mini-batches of
  the labelled nodes with loss $\lambda\,\mathrm{NLL}$, then mini-batches of all nodes
  with loss $(1-\lambda)\,\mathrm{KL}$, an optimiser step after each (each pass draws
  ``N // batch_size`` batches and leaves the remainder out). We add the two terms into
  one loss over the rows a call is given, so one step sees both: on the same nodes and
  weights, its gradient is the sum of the two passes' gradients. How nodes are batched
  is the caller's. The code's label pass at $\lambda = 0$ still steps Adam, with weight
  decay alone; that belongs to the training loop, not to the loss.
* ``temperature`` is our extension (default 1, the code's): $\tau \neq 1$ softens both
  sides and scales the term by $\tau^2$, through the shared ``softened_kl``.
* ``labelled`` selects the rows with labels; ``None`` means every row is labelled
  (then the loss also serves a plain classifier batch). With $\lambda = 0$ the labels
  are not read.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from reference_impls.common.interfaces import DistillationLoss
from reference_impls.common.losses import at_least_float32, softened_kl
from reference_impls.common.validation import (
    class_indices,
    in_unit_interval,
    logit_pair,
    positive,
    row_mask,
)


class GLNNLoss(DistillationLoss):
    """GLNN: cross-entropy on the labelled nodes mixed with KL to a GNN teacher on all nodes.

    Called as ``loss(student_logits, teacher_logits, target, labelled=None)``: ``[N, C]``
    logits of the MLP student and of the GNN teacher on the same ``N`` nodes, ``[N]``
    class indices (only the labelled rows are read), and a boolean ``[N]`` mask of the
    labelled nodes (``None``: all).

    Args:
        label_weight: $\\lambda$, the weight of the label term; the teacher term gets
            $1 - \\lambda$ (authors' ``--lamb``, default 0).
        temperature: softening temperature of the teacher term (the code's: 1).
    """

    inputs: ClassVar[str] = "logits"
    needs_target: ClassVar[bool] = True

    def __init__(self, label_weight: float = 0.0, temperature: float = 1.0) -> None:
        super().__init__()
        self.label_weight = in_unit_interval("label_weight", label_weight)
        self.temperature = positive("temperature", temperature)

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        target: torch.Tensor,
        labelled: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logit_pair(student_logits, teacher_logits)
        class_indices(target, student_logits)
        loss = (1 - self.label_weight) * softened_kl(
            student_logits, teacher_logits, self.temperature
        )
        if self.label_weight == 0:
            return loss
        if labelled is not None:
            row_mask("labelled", labelled, student_logits.shape[0])
            if not labelled.any():
                raise ValueError(
                    f"labelled selects no node, but label_weight={self.label_weight} weights "
                    "a cross-entropy on the labelled nodes; pass label_weight=0 to train on "
                    "the teacher alone"
                )
            student_logits, target = student_logits[labelled], target[labelled]
        cross_entropy = F.cross_entropy(at_least_float32(student_logits), target)
        return loss + self.label_weight * cross_entropy

    def extra_repr(self) -> str:
        return f"label_weight={self.label_weight}, temperature={self.temperature}"
