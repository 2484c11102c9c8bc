"""``DataSplit.with_train_subset``: the first n labelled training images, the same test set."""

from __future__ import annotations

import pytest
import torch

from reference_impls.common import DataSplit


@pytest.fixture
def split() -> DataSplit:
    x_train = torch.arange(10.0).reshape(10, 1)
    return DataSplit(x_train, torch.arange(10) % 3, torch.ones(4, 1), torch.zeros(4).long(), 3)


def test_with_train_subset_keeps_the_first_n_training_examples_and_the_whole_test_set(split):
    subset = split.with_train_subset(4)
    assert torch.equal(subset.x_train, split.x_train[:4])
    assert torch.equal(subset.y_train, torch.tensor([0, 1, 2, 0]))
    assert subset.x_test is split.x_test and subset.y_test is split.y_test
    assert subset.num_classes == 3
    assert len(split.x_train) == 10  # the original is not changed


@pytest.mark.parametrize("n", [0, 11, -1])
def test_with_train_subset_rejects_sizes_outside_the_training_set(split, n):
    with pytest.raises(ValueError, match="between 1 and 10"):
        split.with_train_subset(n)
