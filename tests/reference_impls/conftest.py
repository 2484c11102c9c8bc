"""Fixtures shared by the reference implementation tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from reference_impls.common.testing import exact_cuda_matmuls


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight random digit-shaped images ``[8, 1, 8, 8]`` and labels, seeded."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 8, 8, generator=generator), torch.randint(0, 10, (8,))


@pytest.fixture
def full_precision_cuda() -> Iterator[None]:
    """TF32 off for the test, so CUDA results can be compared with the CPU's."""
    with exact_cuda_matmuls():
        yield
