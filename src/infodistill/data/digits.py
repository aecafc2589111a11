"""scikit-learn's bundled 8x8 ``load_digits``, with a seeded stratified split."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from .array_dataset import ArrayDataset, _stratified_split


def load_digits_dataset(seed: int = 0, test_size: float = 0.25) -> tuple[ArrayDataset, ArrayDataset]:
    """scikit-learn's bundled 8x8 digits: x (N, 1, 8, 8) in [0, 1] (pixel counts 0..16 / 16).

    A stratified split (``sklearn.model_selection.train_test_split`` with ``random_state=seed``)
    gives 1347 training and 450 test examples at the default ``test_size=0.25``.
    """
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = _stratified_split(y, test_size, seed, "digits")
    x = torch.from_numpy(images)[:, None]
    classes = tuple(str(d) for d in range(10))
    return (
        ArrayDataset(x[train_idx], y[train_idx], 10, "digits", classes, "train"),
        ArrayDataset(x[test_idx], y[test_idx], 10, "digits", classes, "test"),
    )
