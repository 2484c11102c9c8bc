r"""Embedding cosine: a small sentence encoder reproduces a pretrained one's directions.

Citation: ``reimers2020making`` (the embedding-distillation setting of Reimers and
Gurevych, EMNLP 2020, with the cosine distance their library offers beside the MSE).

With teacher $T$, student $S$ and projection $W$ as in :mod:`embedding_mse`:

$$
\mathcal{L}_{\cos} = \frac{1}{B} \sum_{i=1}^{B} \Big(1 - \cos\big(W S(s_i),\, T(s_i)\big)\Big).
$$

It keeps only the directions, which is all a cosine-similarity search reads.

Authors' code: https://github.com/UKPLab/sentence-transformers (now
huggingface/sentence-transformers; commit cad211983f36ce458e9b3360f3e11b29fc54cbd8),
``sentence_transformers/sentence_transformer/losses/embed_distill.py``,
``EmbedDistillLoss.compute_loss_from_embeddings`` with ``distance_metric="cosine"`` (the library's default metric``;
its optional ``projection_dim`` adds ``nn.Linear(student_dim, projection_dim)`` applied to
the student, as our ``projection`` (built when ``student_dim != teacher_dim``). Defaults:
no weight (1). The library averages over the input text columns; with one column that
is the identity. Teacher embeddings are detached (the library's are labels).

Deviations: none (value and gradients equal to that function in float64 and float32, with
a 128 -> 384 projection: ``tests/official_runs/embedding-cosine.json``). The foundation-models notebook
distils all-MiniLM-L6-v2 with it and scores the student by Spearman's rho of held-out
pairwise similarities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference_impls.applications.foundation_models._embedding_matching import EmbeddingMatching


class EmbeddingCosineLoss(EmbeddingMatching):
    """One minus the cosine of student and teacher embeddings, batch mean (``distance_metric="cosine"``).

    Arguments as :class:`EmbeddingMSELoss`.
    """

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        projected, target = self._pair(student, teacher)
        return self.weight * (1 - F.cosine_similarity(projected, target, dim=-1)).mean()


__all__ = ["EmbeddingCosineLoss"]
