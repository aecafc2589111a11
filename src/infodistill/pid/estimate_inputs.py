"""The options of :func:`~infodistill.pid.estimate.estimate` and :func:`discretize`, checked once
(one-line ValueErrors naming the argument), and the checks of the labels and feature arrays.

Imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .measures import UNITS

_POOLS = ("flatten", "avg")
_DISCRETIZERS = ("kmeans", "argmax")


@dataclass(frozen=True)
class _Options:
    pca: int | None
    k_t: int
    k_s: int
    normalize: bool
    pool: str
    discretize_t: str
    discretize_s: str
    fit_fraction: float | None
    n_boot: int
    ci: float
    n_perm: int
    seed: int
    unit: str
    n_init: int
    max_iter: int
    tol: float | None


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_int(name: str, value, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _options(
    *,
    pca,
    k,
    k_t,
    k_s,
    normalize,
    pool,
    discretize,
    fit_fraction,
    n_boot,
    ci,
    n_perm,
    seed,
    unit,
    n_init,
    max_iter,
    tol,
) -> _Options:
    k = _check_int("k", k, 1)
    k_t = k if k_t is None else _check_int("k_t", k_t, 1)
    k_s = k if k_s is None else _check_int("k_s", k_s, 1)
    if pca is not None and pca != 0:
        pca = _check_int("pca", pca, 1)
    else:
        pca = None
    if pool not in _POOLS:
        raise ValueError(f"pool must be 'flatten' or 'avg', got {pool!r}")
    if isinstance(discretize, str):
        discretize = (discretize, discretize)
    if not (isinstance(discretize, (tuple, list)) and len(discretize) == 2) or any(
        d not in _DISCRETIZERS for d in discretize
    ):
        raise ValueError(
            f"discretize must be 'kmeans', 'argmax' or a (teacher, student) pair of them, got {discretize!r}"
        )
    if fit_fraction is not None:
        if isinstance(fit_fraction, bool) or not isinstance(fit_fraction, (int, float, np.floating)):
            raise ValueError(f"fit_fraction must be None or a number in (0, 1), got {fit_fraction!r}")
        if not 0.0 < float(fit_fraction) < 1.0:
            raise ValueError(f"fit_fraction must be in (0, 1) (e.g. 0.5), got {fit_fraction!r}")
        fit_fraction = float(fit_fraction)
    n_boot = _check_int("n_boot", n_boot, 0)
    n_perm = _check_int("n_perm", n_perm, 0)
    if isinstance(ci, bool) or not isinstance(ci, (int, float, np.floating)) or not 0.0 < float(ci) < 1.0:
        raise ValueError(f"ci must be a confidence level in (0, 1) (e.g. 0.95), got {ci!r}")
    seed = _check_int("seed", seed, 0)
    if seed >= 2**32:
        raise ValueError(f"seed must be < 2**32 (scikit-learn's random_state range), got {seed}")
    if unit not in UNITS:
        raise ValueError(f"unit must be 'bits' or 'nats', got {unit!r}")
    n_init = _check_int("n_init", n_init, 1)
    max_iter = _check_int("max_iter", max_iter, 1)
    if tol is not None and not (isinstance(tol, (int, float, np.floating)) and tol > 0):
        raise ValueError(f"tol must be None or a positive number, got {tol!r}")
    if not isinstance(normalize, (bool, np.bool_)):
        raise ValueError(f"normalize must be True or False, got {normalize!r}")
    return _Options(
        pca=pca,
        k_t=k_t,
        k_s=k_s,
        normalize=bool(normalize),
        pool=pool,
        discretize_t=discretize[0],
        discretize_s=discretize[1],
        fit_fraction=fit_fraction,
        n_boot=n_boot,
        ci=float(ci),
        n_perm=n_perm,
        seed=seed,
        unit=unit,
        n_init=n_init,
        max_iter=max_iter,
        tol=None if tol is None else float(tol),
    )


def _check_labels(labels) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D array of class ids (n,), got shape {y.shape}; use labels.ravel()"
        )
    if y.size == 0:
        raise ValueError("labels is empty: need at least one sample")
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    elif y.dtype.kind == "f":
        # Labels that went through a float array (CSV, torch .float()) are fine if they are whole numbers.
        if not (np.all(np.isfinite(y)) and np.all(y == np.round(y))):
            raise ValueError("labels must be integer class ids; got non-integer floats (use y.astype(int))")
        # Kept as floats: a cast of whole numbers beyond 2**63 would merge distinct classes.
    elif y.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class ids, got dtype {y.dtype}; map them to integers first")
    classes, codes = np.unique(y, return_inverse=True)
    return codes.reshape(-1).astype(np.int64), classes


def _check_features(x, name: str, n: int, pool: str) -> tuple[np.ndarray, tuple]:
    """Validate one feature array and return it as a 2-D (n, D) float array, plus its sample shape."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a numeric array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3, 4):
        raise ValueError(
            f"{name} must be 2-D (n, D), 3-D (n, C, L) or 4-D (n, C, H, W), got shape {arr.shape}"
            + ("; use x.reshape(-1, 1) for one feature per sample" if arr.ndim == 1 else "")
        )
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} samples but labels has {n}: lengths must match")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}): every sample needs at least one feature")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.all(np.isfinite(arr.reshape(n, -1)), axis=1)))
        raise ValueError(
            f"{name} contains NaN or infinite values (in {bad} of {n} samples); drop or impute them"
        )
    peak = float(np.max(np.abs(arr)))
    lo, hi = np.finfo(arr.dtype).tiny ** 0.25, np.finfo(arr.dtype).max ** 0.25
    if peak > hi or 0 < peak < lo:
        # Squared distances (normalisation, PCA, k-means) would overflow or underflow. Every step is
        # equivariant under one positive scale, and a power of two rescales exactly, so the
        # clusters are those of the input; pass the features in a sane unit to avoid the copy.
        arr = np.ldexp(arr, -np.frexp(peak)[1])
    sample_shape = arr.shape[1:]
    if arr.ndim > 2 and pool == "avg":
        arr = arr.mean(axis=tuple(range(2, arr.ndim)))
    return arr.reshape(n, -1), sample_shape
