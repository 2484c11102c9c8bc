"""What the tests of this folder share: padded character batches, and the short distillation
run of the token-level losses."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from reference_impls.common.language_models import (
    BOS,
    PAD,
    VOCAB_SIZE,
    LMDistiller,
    fit_language_model,
    load_docstrings,
    student_lm,
    teacher_lm,
    token_kl,
)


def kl_to_teacher_after_training(make_loss: Callable[[], nn.Module]) -> dict[str, float]:
    """The mean per-token KL to a tiny teacher of a student trained 40 steps on the docstrings.

    Returns ``{"data alone": ..., "distilled": ...}``: the same student (same seed) fitted
    to the data alone, and distilled with ``LMDistiller(student, teacher, make_loss())``
    (the loss alone, ``ce_weight=0``). The teacher's head is scaled by 8, a peaked,
    data-independent "language" the data alone does not teach.
    """
    torch.manual_seed(0)
    teacher = teacher_lm()
    with torch.no_grad():
        teacher.head.weight.mul_(8)
    corpus = load_docstrings().train_subset(64)
    test = corpus.test_tokens[:32], corpus.test_mask[:32]
    kls = {}
    for name in ("data alone", "distilled"):
        torch.manual_seed(1)
        student = student_lm()
        distiller = LMDistiller(student, teacher, make_loss())

        def loss_of_batch(tokens, mask, rows, distiller=distiller):
            return distiller(tokens, mask)["loss"]

        custom = None if name == "data alone" else loss_of_batch
        fit_language_model(student, corpus, custom, steps=40, batch_size=16, lr=1e-2)
        kls[name] = float(token_kl(student, teacher, *test).sum() / test[1][:, 1:].sum())
    return kls


@pytest.fixture(scope="session")
def distillation_run() -> Callable[[Callable[[], nn.Module]], dict[str, float]]:
    """:func:`kl_to_teacher_after_training`, for the tests of this folder."""
    return kl_to_teacher_after_training


def padded_character_batch(
    rows: int, length: int = 24, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random character sequences ``[rows, length]`` after ``<bos>``, the second row padded
    from position 20; and their mask (True at a real token)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, VOCAB_SIZE, (rows, length), generator=generator)
    tokens[:, 0] = BOS
    tokens[1, 20:] = PAD
    return tokens, tokens != PAD


@pytest.fixture
def character_batch() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """:func:`padded_character_batch`, for the tests of this folder."""
    return padded_character_batch
