"""Discretisation: one source's prepared points to symbols (k-means clusters or the argmax of
logits), and :class:`Discretized`, a source discretised once by :func:`discretize` and handed to
:func:`~infodistill.pid.estimate.estimate` in place of its features.

Imports numpy and scikit-learn only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans

from .estimate_inputs import _check_features, _Options, _options
from .preparation import _prepare_side, _Side


@dataclass(frozen=True)
class Discretized:
    """One source turned into symbols by :func:`discretize`, to pass to :func:`estimate` in place
    of its features: a fixed teacher's symbols are then computed once, not at every estimate.

    symbols : (n,) int64 symbol of each sample; alphabet : number of symbols (k, or D for argmax);
    settings : the choices made (mode, k, pca, normalize, pool, seed, n_init, max_iter) and the
    input's dim, sample_shape and PCA solver. :func:`estimate` checks them against its own.
    """

    symbols: np.ndarray = field(repr=False)
    alphabet: int
    settings: dict


def discretize(
    features,
    *,
    k: int = 10,
    pca: int | None = 5,
    normalize: bool = True,
    pool: str = "flatten",
    method: str = "kmeans",
    seed: int = 0,
    n_init: int = 3,
    max_iter: int = 100,
) -> Discretized:
    """Symbols of one source, exactly as :func:`estimate` computes them with the same settings
    (``fit_fraction=None``: PCA and k-means fitted on all samples; ``method`` is the side's
    ``discretize`` entry). ``estimate(y, discretize(t, **kw), s, **kw)`` equals
    ``estimate(y, t, s, **kw)``, and saves the teacher's PCA and k-means when its features do not
    change between estimates (a frozen teacher's features tracked over training epochs).
    """
    opts = _options(
        pca=pca,
        k=k,
        k_t=None,
        k_s=None,
        normalize=normalize,
        pool=pool,
        discretize=method,
        fit_fraction=None,
        n_boot=0,
        ci=0.95,
        n_perm=0,
        seed=seed,
        unit="bits",
        n_init=n_init,
        max_iter=max_iter,
        tol=None,
    )
    try:
        n = len(features)
    except TypeError:
        raise ValueError(
            f"features must be an array with one row per sample, got {type(features).__name__}"
        ) from None
    arr, shape = _check_features(features, "features", n, opts.pool)
    idx = np.arange(n)
    side = _prepare_side(arr, shape, "features", opts.discretize_t, opts.k_t, idx, idx, opts)
    symbols, alphabet = _discretize(side, opts.k_t, opts)
    settings = {
        **_side_choices(opts.discretize_t, opts.k_t, opts),
        "dim": int(side.dim),
        "sample_shape": [int(d) for d in side.sample_shape],
        "pca_solver": side.pca_solver,
    }
    return Discretized(symbols=symbols, alphabet=int(alphabet), settings=settings)


def _side_choices(mode: str, k: int, opts: _Options) -> dict:
    """The choices that decide one side's symbols (None where argmax ignores them): what a
    :class:`Discretized` records and what :func:`estimate` checks it against."""
    kmeans = mode == "kmeans"
    return {
        "mode": mode,
        "k": k if kmeans else None,
        "pca": opts.pca if kmeans else None,
        "normalize": opts.normalize if kmeans else None,
        "pool": opts.pool,
        "seed": opts.seed if kmeans else None,
        "n_init": opts.n_init if kmeans else None,
        "max_iter": opts.max_iter if kmeans else None,
    }


def _given_side(d: Discretized, name: str, mode: str, k: int, n: int, opts: _Options) -> _Side:
    """A side discretised beforehand: its settings must be the ones this estimate records."""
    if opts.fit_fraction is not None:
        raise ValueError(
            f"{name} is a Discretized, which fits and counts on the same samples; "
            "pass the features themselves with fit_fraction, or use fit_fraction=None"
        )
    if len(d.symbols) != n:
        raise ValueError(f"{name} has {len(d.symbols)} samples but labels has {n}: lengths must match")
    for key, want in _side_choices(mode, k, opts).items():
        if d.settings[key] != want:
            raise ValueError(
                f"{name} was discretised with {key}={d.settings[key]!r} but this estimate uses "
                f"{key}={want!r}; discretize it with the estimate's settings"
            )
    codes = d.symbols
    return _Side(
        mode,
        d.settings["dim"],
        tuple(d.settings["sample_shape"]),
        None,
        codes,
        d.settings["pca_solver"],
        given=(codes, d.alphabet),
    )


def _discretize(side: _Side, k: int, opts: _Options) -> tuple[np.ndarray, int]:
    """Symbol of every count-split sample, and the alphabet size."""
    if side.given is not None:
        return side.given
    if side.mode == "argmax":
        return np.argmax(side.z_count, axis=1).astype(np.int64), side.dim
    km = KMeans(n_clusters=k, n_init=opts.n_init, max_iter=opts.max_iter, random_state=opts.seed)
    if side.z_fit is None:
        return km.fit_predict(side.z_count).astype(np.int64), k
    km.fit(side.z_fit)
    return km.predict(side.z_count).astype(np.int64), k
