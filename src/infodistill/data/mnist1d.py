"""MNIST-1D (Greydanus 2020), generated procedurally by the ``mnist1d`` package's
``mnist1d.data.make_dataset`` (never its ``get_dataset``, which downloads a pickle).
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from .array_dataset import ArrayDataset
from .errors import DataError

_MNIST1D_FIXED = ("num_samples", "seed", "train_split", "url")


def load_mnist1d(
    n_samples: int = 5000, seed: int = 42, train_split: float = 0.8, **generator_args: Any
) -> tuple[ArrayDataset, ArrayDataset]:
    """MNIST-1D generated procedurally: x (N, 1, 40) float32, 10 classes.

    Calls ``mnist1d.data.make_dataset`` with the package's ``get_dataset_args()`` defaults
    (5000 samples, 80/20 split, sequence length 40, seed 42 -- the published data set) and the given
    overrides; extra keyword arguments override other generator fields (``final_seq_length``,
    ``iid_noise_scale``, ``shuffle_seq``, ...). The generator reseeds numpy's and Python's global
    RNGs; their states are restored afterwards. ``n_samples`` must be a multiple of 10 because the
    generator makes ``n_samples // 10`` examples per class. The signals are standardised by the
    generator (zero mean, unit std over the whole set), not scaled to [0, 1].
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset  # optional (the data extra)
    except ImportError as exc:
        raise DataError(f"MNIST-1D needs the mnist1d package ({exc}): pip install mnist1d") from None
    if n_samples < 10 or n_samples % 10:
        raise ValueError(f"n_samples must be a positive multiple of 10, got {n_samples}")
    if not 0.0 < train_split < 1.0:
        raise ValueError(f"train_split must be in (0, 1), got {train_split}")
    args = get_dataset_args(as_dict=True)
    allowed = sorted(set(args) - set(_MNIST1D_FIXED))
    unknown = sorted(set(generator_args) - set(allowed))
    if unknown:
        raise ValueError(f"unknown mnist1d generator argument(s) {unknown}; allowed: {allowed}")
    args.update(generator_args, num_samples=int(n_samples), seed=int(seed), train_split=float(train_split))
    # The generator seeds and draws from numpy's legacy global RNG, so that is what must be saved.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        data = make_dataset(SimpleNamespace(**args))
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    classes = tuple(str(d) for d in range(10))
    out = []
    for split, xk, yk in (("train", "x", "y"), ("test", "x_test", "y_test")):
        x = torch.from_numpy(np.asarray(data[xk], dtype=np.float32))[:, None, :]
        y = np.asarray(data[yk], dtype=np.int64)
        if x.shape[0] == 0:
            raise ValueError(
                f"n_samples={n_samples} with train_split={train_split} leaves the {split} split empty"
            )
        out.append(ArrayDataset(x, y, 10, "mnist1d", classes, split))
    return out[0], out[1]
