r"""Deep mutual learning: a cohort of students, each taught by the others while all train.

Citation: ``zhang2018deep`` (Zhang, Xiang, Hospedales and Lu, CVPR 2018).
Authors' code: https://github.com/YingZhangDUT/Deep-Mutual-Learning (TensorFlow).

There is no pre-trained teacher. $K \ge 2$ networks $\Theta_1, \dots, \Theta_K$
train together; each minimises its own cross-entropy plus the KL divergences
from the other students' predictions $p_l$ to its own $p_k$, summed over the
peers as in the authors' code:

$$
\mathcal{L}_{\Theta_k} = \mathrm{CE}\big(y, p_k\big)
  + \sum_{l \ne k} \mathrm{KL}\!\left(p_l \,\middle\|\, p_k\right).
$$

Code and paper differ here for $K > 2$: Eq. 10 of the paper averages the peers'
KLs (factor $\frac{1}{K-1}$), while the authors' ``train_models.py``
(``_tower_loss``) adds ``kl_loss_compute`` of every peer to the network's loss
without that factor, for any ``--num_networks``. We follow the code, so for
$K$ students the mimicry term is $K-1$ times the paper's; for $K = 2$ (the only
cohort size of the authors' scripts) the two agree.

The paper also tries one teacher per student, the ensemble of the others
(Eq. 11, "DML_e"), $\mathrm{KL}(p_{\mathrm{avg}} \| p_k)$ with
$p_{\mathrm{avg}} = \frac{1}{K-1}\sum_{l\ne k} p_l$, and finds it slightly worse;
``ensemble_peers=True`` selects it (one KL, so no sum). For $K = 2$ both are the
same loss.

The probabilities are plain softmaxes: the paper uses no temperature
($\tau = 1$, the default). A $\tau \neq 1$ softens both sides and scales the KL by
$\tau^2$, as in KD. The peers' predictions are detached inside each
$\mathcal{L}_{\Theta_k}$, so the sum returned under ``"loss"`` gives every student exactly
the gradient of its own objective; every peer trains, none is frozen.

Deviation: the paper updates the students in turn, recomputing the
predictions after each update (Algorithm 1), and so does the authors' code
(one ``sess.run`` of each network's train op in turn). We compute all predictions once
per mini-batch and update every student together (one backward of the summed
losses), as most public re-implementations do; with small learning rates the
two differ by one step of staleness in the peers' targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.common.interfaces import DistillationProcedure
from reference_impls.common.losses import kl_divergence, softened_log_probs
from reference_impls.common.training import logits_of
from reference_impls.common.validation import at_least, positive


def mutual_kl(
    log_probs: Sequence[torch.Tensor], ensemble_peers: bool = False
) -> list[torch.Tensor]:
    """For each student $k$, the batch-mean KLs from its (detached) peers to it, summed."""
    terms = []
    for k, log_p_k in enumerate(log_probs):
        peers = [log_p.detach() for peer, log_p in enumerate(log_probs) if peer != k]
        if ensemble_peers:
            # log of the average of the peers' probabilities
            log_mean = torch.logsumexp(torch.stack(peers), dim=0) - torch.log(
                torch.tensor(float(len(peers)), device=log_p_k.device)
            )
            peers = [log_mean]
        kls = [kl_divergence(log_p_k, log_p_l) for log_p_l in peers]
        terms.append(torch.stack(kls).sum())  # summed over peers, as the authors' code
    return terms


class DML(DistillationProcedure):
    """A cohort of students trained with cross-entropy and mutual KL.

    Args:
        students: the $K \\ge 2$ networks (any architectures with the same classes).
        temperature: softmax temperature $\\tau$ of the mimicry term (paper: 1).
        ensemble_peers: use KL from the averaged peers (Eq. 11) instead of the
            sum of the KLs (authors' code, default; Eq. 10 averages them).
    """

    def __init__(
        self,
        students: Sequence[nn.Module],
        temperature: float = 1.0,
        ensemble_peers: bool = False,
    ) -> None:
        super().__init__()
        at_least("number of students", len(students), 2)
        self.students = nn.ModuleList(students)
        self.temperature = positive("temperature", temperature)
        self.ensemble_peers = ensemble_peers

    @property
    def student(self) -> nn.Module:
        """The first student (what ``reference_impls.common.train`` evaluates)."""
        return self.students[0]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = [logits_of(student(x)) for student in self.students]
        log_probs = [softened_log_probs(z, self.temperature) for z in logits]
        kls = mutual_kl(log_probs, self.ensemble_peers)
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=x.device)
        for k, (z, kl) in enumerate(zip(logits, kls, strict=True)):
            ce = F.cross_entropy(z, y)
            total = total + ce + self.temperature**2 * kl
            terms[f"ce_{k}"] = ce.detach()
            terms[f"kl_{k}"] = kl.detach()
        terms["loss"] = total
        return terms

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, ensemble_peers={self.ensemble_peers}"
