"""The sparse parity data set: labels against a count of the support's -1 coordinates."""

from __future__ import annotations

import pytest
import torch

from infodistill.data import DataError, load_dataset, load_sparse_parity


def test_labels_are_the_parity_of_the_support():
    train, test = load_sparse_parity(n=7, k=3, train_size=500, test_size=200, seed=3)
    for d, size in ((train, 500), (test, 200)):
        assert d.x.shape == (size, 1, 7) and d.num_classes == 2
        assert set(d.x.unique().tolist()) == {-1.0, 1.0}
        # an odd number of -1 among x_0, x_1, x_2 makes the product -1: label 1
        odd = (d.x[:, 0, :3] < 0).sum(1) % 2
        assert torch.equal(d.y, odd)
    # the label says nothing about any single coordinate: balanced within each value of x_0
    y0 = train.y[train.x[:, 0, 0] > 0].float().mean()
    assert 0.35 < y0 < 0.65


def test_same_seed_same_data_and_by_name():
    a, _ = load_sparse_parity(n=5, k=2, train_size=50, test_size=10, seed=1)
    b, _ = load_dataset("sparse-parity", n=5, k=2, train_size=50, test_size=10, seed=1)
    c, _ = load_sparse_parity(n=5, k=2, train_size=50, test_size=10, seed=2)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize(
    "kwargs, words",
    [({"k": 6, "n": 5}, "k \\(6\\) must be <= the dimension n"), ({"train_size": 0}, "train_size")],
)
def test_bad_sizes_are_named(kwargs, words):
    # DataError: the CLI reports it as one line
    with pytest.raises(DataError, match=words):
        load_sparse_parity(**kwargs)
