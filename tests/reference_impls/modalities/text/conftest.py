"""A small translation teacher shared by the seq2seq tests of this folder (trained once)."""

from __future__ import annotations

import pytest
import torch

from reference_impls.common.text import (
    Seq2SeqSupervised,
    Seq2SeqTransformer,
    fit,
    load_transduction,
)
from reference_impls.common.training import freeze


@pytest.fixture(scope="session")
def translation():
    """400 training pairs, 50 test sources and a teacher of the student's size fitted to them."""
    data = load_transduction(seed=0, num_train=400, num_test=50)
    torch.manual_seed(0)
    teacher = Seq2SeqTransformer(21, 43, 32, 2, 1, 1, 64)
    fit(Seq2SeqSupervised(teacher), data.src_train, data.tgt_train, epochs=4, lr=3e-3)
    return data, freeze(teacher)
