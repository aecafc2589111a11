"""Features to the points that k-means clusters: pooling, L2 normalisation and PCA of one source,
the fit/count split of held-out mode, and a clock of the estimate's stages.

Imports numpy and scikit-learn only.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from sklearn.decomposition import PCA

from .estimate_inputs import _Options

#: Feature dimension above which PCA uses the randomized SVD (with ``random_state=seed``).
RANDOMIZED_PCA_MIN_DIM = 500


@dataclass
class _Side:
    """One source after pooling/normalisation/PCA, ready to be discretised for any k."""

    mode: str
    dim: int
    sample_shape: tuple
    z_fit: np.ndarray | None  # None when the fit and count sets coincide
    z_count: np.ndarray
    pca_solver: str | None
    #: (symbols, alphabet size) of a side passed as :class:`Discretized`, else None
    given: tuple[np.ndarray, int] | None = None


@dataclass
class _Prepared:
    y: np.ndarray  # class codes of the count split
    n_classes: int
    n_samples: int
    fit_idx: np.ndarray
    count_idx: np.ndarray
    t: _Side
    s: _Side
    #: seconds of the preparation stages ("checks", "normalise+PCA")
    timings: dict = field(default_factory=dict)


def _split(n: int, opts: _Options) -> tuple[np.ndarray, np.ndarray]:
    all_idx = np.arange(n)
    if opts.fit_fraction is None:
        return all_idx, all_idx
    n_fit = int(round(opts.fit_fraction * n))
    if n_fit < 1 or n_fit >= n:
        raise ValueError(
            f"fit_fraction={opts.fit_fraction} leaves {n_fit} fit and {n - n_fit} count samples out of {n}; "
            "both splits need at least one sample"
        )
    # Its own stream, so the split does not move when n_boot or n_perm change.
    rng = np.random.default_rng([opts.seed, 1])
    perm = rng.permutation(n)
    return np.sort(perm[:n_fit]), np.sort(perm[n_fit:])


def _prepare_side(
    x: np.ndarray, sample_shape: tuple, name: str, mode: str, k_max: int, fit_idx, count_idx, opts: _Options
) -> _Side:
    dim = x.shape[1]
    same = fit_idx is count_idx
    if mode == "argmax":
        # Argmax of logits/probabilities is itself the symbol: no normalisation, PCA or fitting.
        return _Side(mode, dim, sample_shape, None, x[count_idx], None)
    n_fit = len(fit_idx)
    if k_max > n_fit:
        raise ValueError(
            f"k for {name} is {k_max} but only {n_fit} samples are available to fit the clusters; "
            "use fewer clusters (k, k_t, k_s) or more samples"
        )
    if opts.pca is not None and opts.pca > dim:
        raise ValueError(
            f"pca={opts.pca} exceeds the feature dimension {dim} of {name} (after pool={opts.pool!r}); "
            f"use pca<={dim} or pca=None"
        )
    if opts.pca is not None and opts.pca > n_fit:
        raise ValueError(f"pca={opts.pca} exceeds the {n_fit} samples available to fit it; use a smaller pca")
    if opts.normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        # All-zero rows (dead ReLU maps) stay at the origin instead of becoming NaN.
        x = x / np.where(norms > 0, norms, 1.0).astype(x.dtype, copy=False)
    x_fit = x if same else x[fit_idx]
    solver = None
    if opts.pca is not None:
        # Randomized SVD costs a few passes over the data for a handful of components, against
        # O(n D^2) for the exact solvers; below ~500 dims the exact SVD is cheap and seed-free.
        large = dim > RANDOMIZED_PCA_MIN_DIM and opts.pca < 0.8 * min(n_fit, dim)
        solver = "randomized" if large else "full"
        model = PCA(n_components=opts.pca, svd_solver=solver, random_state=opts.seed if large else None)
        z_fit = model.fit_transform(x_fit)
        z_count = z_fit if same else model.transform(x[count_idx])
    else:
        z_fit, z_count = x_fit, (x_fit if same else x[count_idx])
    return _Side(mode, dim, sample_shape, None if same else z_fit, z_count, solver)


class _Clock:
    """Seconds per named stage, accumulated over ``with clock(stage):`` blocks."""

    def __init__(self, stages=()):
        self.seconds = dict.fromkeys(stages, 0.0)

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0
