r"""Embedding MSE: a small sentence encoder regresses a pretrained one's embeddings.

Citation: ``reimers2020making`` (Reimers and Gurevych, Making Monolingual Sentence
Embeddings Multilingual using Knowledge Distillation, EMNLP 2020).

A pretrained sentence encoder $T$ (in the notebook, all-MiniLM-L6-v2) maps a sentence to a
unit vector; a small student $S$ (followed by a learnt linear projection $W$ when the
widths differ) is trained on unlabelled sentences $s_1, \dots, s_B$ to reproduce it:

$$
\mathcal{L}_{\mathrm{MSE}} = \frac{1}{B\,D} \sum_{i=1}^{B} \big\lVert W S(s_i) - T(s_i) \big\rVert_2^2 .
$$

Their Eq. 1 also asks the student to map a translation $t_i$ of $s_i$ to $T(s_i)$; with
one language, $t_i = s_i$.

Authors' code: https://github.com/UKPLab/sentence-transformers (now
huggingface/sentence-transformers; commit cad211983f36ce458e9b3360f3e11b29fc54cbd8),
``sentence_transformers/sentence_transformer/losses/embed_distill.py``,
``EmbedDistillLoss.compute_loss_from_embeddings`` with ``distance_metric="mse"`` (``MSELoss``, the paper's loss``;
its optional ``projection_dim`` adds ``nn.Linear(student_dim, projection_dim)`` applied to
the student, as our ``projection`` (built when ``student_dim != teacher_dim``). Defaults:
no weight (1). The library averages over the input text columns; with one column that
is the identity. Teacher embeddings are detached (the library's are labels).

Deviations: none (value and gradients equal to that function in float64 and float32, with
a 128 -> 384 projection: ``tests/official_runs/embedding-mse.json``). The foundation-models notebook
distils all-MiniLM-L6-v2 with it and scores the student by Spearman's rho of held-out
pairwise similarities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference_impls.applications.foundation_models._embedding_matching import EmbeddingMatching


class EmbeddingMSELoss(EmbeddingMatching):
    """Reimers and Gurevych's embedding MSE (sentence-transformers' ``MSELoss``).

    Args:
        student_dim, teacher_dim: widths of the embeddings; a linear projection of the
            student's is learnt when they differ.
        weight: factor on the loss (1 in the library).

    Called as ``loss(student [B, student_dim], teacher [B, teacher_dim])``.
    """

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        projected, target = self._pair(student, teacher)
        return self.weight * F.mse_loss(projected, target)


__all__ = ["EmbeddingMSELoss"]
