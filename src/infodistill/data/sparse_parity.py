"""Sparse parity (Barak et al., NeurIPS 2022; the sandbox of Panigrahi et al., ICLR 2025): inputs
uniform on {-1, +1}^n, label 1 when the product of the k support coordinates is -1, else 0.
"""

from __future__ import annotations

import torch

from .array_dataset import ArrayDataset
from .errors import DataError


def load_sparse_parity(
    n: int = 40, k: int = 5, train_size: int = 32000, test_size: int = 2000, seed: int = 0
) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) of the (n, k) sparse parity: x (N, 1, n) float32 in {-1, +1}, 2 classes.

    The support is the first k coordinates (the reference code's default ``feature_coordinates``);
    y = 1 when prod_{i < k} x_i = -1 and 0 when it is +1, so each class is the sign of one parity
    (the reference code's ``argmax`` of the scores +prod and -prod). Train and test are independent
    draws from one generator seeded with ``seed`` (train first), so the same arguments give the same
    data on every machine. Bad sizes raise :class:`DataError` (a ValueError) naming the option.
    """
    for name, value, low in (
        ("n", n, 1),
        ("k", k, 1),
        ("train_size", train_size, 1),
        ("test_size", test_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DataError(f"sparse-parity: {name} must be an integer >= {low}, got {value!r}")
    if k > n:
        raise DataError(f"sparse-parity: the support size k ({k}) must be <= the dimension n ({n})")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise DataError(f"sparse-parity: seed must be a non-negative integer, got {seed!r}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for split, size in (("train", train_size), ("test", test_size)):
        x = torch.randint(0, 2, (size, n), generator=gen).to(torch.float32).mul_(2).sub_(1)
        y = (x[:, :k].prod(dim=1) < 0).to(torch.int64)
        out.append(ArrayDataset(x[:, None, :], y, 2, "sparse-parity", ("+1", "-1"), split))
    return out[0], out[1]
