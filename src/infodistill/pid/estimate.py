"""PID of neural representations: discretise features, count (y, cluster_T, cluster_S), decompose.

The pipeline follows the evaluation of [PID-KD] (Dissanayake, Hamman, Halder, Sucholutsky, Zhang,
Dutta, *Quantifying Knowledge Distillation Using Partial Information Decomposition*, AISTATS 2025):
flatten each sample's feature map, L2-normalise the rows, reduce with PCA to a few dimensions, cluster
with k-means, build the histogram of (label, teacher cluster, student cluster) and solve the BROJA
decomposition of it (:func:`infodistill.pid.decompose`). Every choice is an explicit argument and is
recorded in the result, and the module adds what a plug-in estimate needs to be read honestly:

- a held-out mode (``fit_fraction``): PCA and k-means are fitted on one random split and the
  histogram is counted on the disjoint rest;
- a plug-in bias indicator: the same decomposition on label-permuted data (the permutation baseline);
- bootstrap confidence intervals over samples;
- :func:`sweep` over the number of clusters, because plug-in terms grow with k and a conclusion that
  holds at one k only is not a conclusion.

This module imports numpy, scipy and scikit-learn only (never torch).
"""

from __future__ import annotations

import inspect
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from .decompose import DEFAULT_TOL_BITS, PIDResult, decompose
from .limits import check_joint
from .measures import UNITS, convert_units
from .terms import LABELS as _LABELS
from .terms import TERMS
from .terms import format_table as _format_table

__all__ = ["Discretized", "EstimateResult", "SweepResult", "discretize", "estimate", "sweep"]

#: Certified tolerance (bits) for the resampled decompositions (bootstrap and permutation baseline).
#: Their spread is orders of magnitude larger, and the solver needs ~3x fewer Newton steps than at
#: the 1e-8 default, which is what keeps ``n_boot=100`` within a few seconds.
RESAMPLE_TOL_BITS = 1e-6

#: The stages of one estimate, as timed in ``EstimateResult.timings``.
ESTIMATE_STAGES = (
    "checks",
    "normalise+PCA",
    "k-means",
    "histogram",
    "decompose",
    "perm baseline",
    "bootstrap",
)

#: Feature dimension above which PCA uses the randomized SVD (with ``random_state=seed``).
RANDOMIZED_PCA_MIN_DIM = 500

_POOLS = ("flatten", "avg")
_DISCRETIZERS = ("kmeans", "argmax")


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class EstimateResult:
    """Estimated PID of (labels, teacher features, student features); see :func:`estimate`.

    Attributes
    ----------
    pid : the BROJA decomposition of the counted histogram (:class:`PIDResult`, in ``unit``).
    ci : ``{term: (low, high)}`` percentile bootstrap intervals at level ``settings['ci_level']``,
        or None when ``n_boot == 0``.
    settings : every choice made (pooling, normalisation, PCA, k, discretisers, split sizes, seed,
        k-means settings, solver tolerance, ...), JSON-serialisable.
    counts : the histogram counts[y, cluster_t, cluster_s] (int64) that was decomposed.
    bias : the permutation baseline ``{'method', 'n_perm', 'mean': {term: v}, 'sd': {term: v}}``
        (values of each term with the labels shuffled; the true value of every term is then 0), or
        None when ``n_perm == 0``.
    boot_shift : ``{term: mean(bootstrap values) - point estimate}`` or None: the bootstrap's own
        estimate of the plug-in bias. When it exceeds the interval's half-width the percentile
        interval can exclude the point estimate; then the histogram is too fine for n (fewer
        clusters or more samples).
    boot : the bootstrap values, shape (n_boot, 7), columns in the order of ``TERMS``; or None.
    split : ``{'fit': indices, 'count': indices}`` into the input samples (identical arrays when
        ``fit_fraction`` is None).
    timings : seconds per stage (``ESTIMATE_STAGES``: checks, normalise+PCA, k-means, histogram,
        decompose, perm baseline, bootstrap); not part of ``as_dict()`` or equality, since they
        differ between runs. In a :func:`sweep` every result carries the one shared preparation.
    """

    pid: PIDResult
    ci: dict | None
    settings: dict = field(repr=False)
    counts: np.ndarray = field(repr=False, compare=False)
    bias: dict | None = field(default=None, repr=False)
    boot_shift: dict | None = field(default=None, repr=False)
    boot: np.ndarray | None = field(default=None, repr=False, compare=False)
    split: dict = field(default_factory=dict, repr=False, compare=False)
    timings: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def terms(self) -> dict:
        """``{term: value}`` for the seven reported terms, in ``settings['unit']``."""
        return {t: float(getattr(self.pid, t)) for t in TERMS}

    def as_dict(self) -> dict:
        """JSON-serialisable dict: pid terms, ci, settings, counts (nested lists) and bias."""
        return {
            "pid": self.pid.as_dict(),
            "ci": None if self.ci is None else {t: [float(a), float(b)] for t, (a, b) in self.ci.items()},
            "settings": dict(self.settings),
            "counts": self.counts.tolist(),
            "bias": self.bias,
            "boot_shift": self.boot_shift,
        }

    def table(self) -> str:
        """Readable multi-line text table of the terms (with CIs and the permutation baseline if present)."""
        s = self.settings
        split = (
            f"fit on {s['n_fit']}, counted on {s['n_count']} held-out samples"
            if s["fit_fraction"] is not None
            else f"fit and counted on all {s['n_count']} samples"
        )
        head = [
            f"PID estimate ({s['unit']}); {split}",
            f"T: {_side_summary(s, 't')};  S: {_side_summary(s, 's')};  "
            f"{s['n_classes']} classes, seed {s['seed']}",
        ]
        cols = ["term", "value"]
        if self.ci is not None:
            cols += [f"{100 * s['ci_level']:g}% CI (bootstrap, n={s['n_boot']})", "boot. shift"]
        if self.bias is not None:
            cols.append(f"perm. baseline (n={self.bias['n_perm']})")
        rows, outside = [], False
        for t in TERMS:
            value = getattr(self.pid, t)
            row = [f"{_LABELS[t]:<11} {t}", f"{value:.4f}"]
            if self.ci is not None:
                lo, hi = self.ci[t]
                flag = "" if lo <= value <= hi else " *"
                outside |= bool(flag)
                row += [f"[{lo:.4f}, {hi:.4f}]{flag}", f"{self.boot_shift[t]:+.4f}"]
            if self.bias is not None:
                row.append(f"{self.bias['mean'][t]:.4f}")
            rows.append(row)
        lines = head + [_format_table(cols, rows)]
        if outside:
            lines.append(
                "* estimate outside its bootstrap interval: plug-in bias exceeds sampling noise "
                "at this n and k; use fewer clusters or more samples"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class SweepResult:
    """Estimates for several cluster counts (k_t = k_s = k); see :func:`sweep`.

    ``rows`` is a list of dicts ``{'k': k, term: value, ...}`` (plus ``'<term>_low'`` /
    ``'<term>_high'`` when bootstrapped, and ``'<term>_perm'`` when a permutation baseline was
    computed); ``results`` holds the full :class:`EstimateResult` for each k.
    """

    rows: list
    results: list = field(repr=False, compare=False)

    def as_dict(self) -> dict:
        """JSON-serialisable dict: the rows and each estimate's ``as_dict()``."""
        return {"rows": self.rows, "results": [r.as_dict() for r in self.results]}

    def table(self) -> str:
        """Text table: one line per k, one column per term (CI in brackets when bootstrapped)."""
        if not self.results:
            return "(empty sweep)"
        s0 = self.results[0].settings
        has_ci = self.results[0].ci is not None
        has_bias = self.results[0].bias is not None
        cols = ["k"] + [_LABELS[t] for t in TERMS] + (["I(Y;T,S) perm."] if has_bias else [])
        rows = []
        for row in self.rows:
            cells = [str(row["k"])]
            for t in TERMS:
                cell = f"{row[t]:.4f}"
                if has_ci:
                    cell += f" [{row[t + '_low']:.3f},{row[t + '_high']:.3f}]"
                cells.append(cell)
            if has_bias:
                cells.append(f"{row['mi_joint_perm']:.4f}")
            rows.append(cells)
        head = f"PID sweep over k ({s0['unit']}); n_count={s0['n_count']}, pca={s0['pca']}, seed {s0['seed']}"
        return head + "\n" + _format_table(cols, rows)


def _side_summary(s: dict, side: str) -> str:
    if s[f"discretize_{side}"] == "argmax":
        return f"argmax over {s[f'dim_{side}']} columns"
    pca = s["pca"] if s["pca"] else "none"
    return (
        f"k-means k={s[f'k_{side}']} ({s[f'clusters_used_{side}']} used), pca={pca}, "
        f"normalize={s['normalize']}, pool={s['pool']}, dim={s[f'dim_{side}']}"
    )


# --------------------------------------------------------------------------------------------------
# Input checking


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


# --------------------------------------------------------------------------------------------------
# Pipeline


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


def _prepare(
    labels, teacher_features, student_features, opts: _Options, k_t_max: int, k_s_max: int
) -> _Prepared:
    clock = _Clock()
    with clock("checks"):
        codes, classes = _check_labels(labels)
    n = codes.shape[0]
    fit_idx, count_idx = _split(n, opts)
    sides = []
    for x, name, mode, k_max, k in (
        (teacher_features, "teacher_features", opts.discretize_t, k_t_max, opts.k_t),
        (student_features, "student_features", opts.discretize_s, k_s_max, opts.k_s),
    ):
        if isinstance(x, Discretized):
            with clock("checks"):
                sides.append(_given_side(x, name, mode, k, n, opts))
            continue
        with clock("checks"):
            arr, shape = _check_features(x, name, n, opts.pool)
        with clock("normalise+PCA"):
            sides.append(_prepare_side(arr, shape, name, mode, k_max, fit_idx, count_idx, opts))
    return _Prepared(codes[count_idx], len(classes), n, fit_idx, count_idx, *sides, timings=clock.seconds)


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


def _cells(y, ct, cs, shape) -> np.ndarray:
    """Flat histogram cell of every (y, cluster_t, cluster_s) triple."""
    return (y * shape[1] + ct) * shape[2] + cs


def _counts(cells: np.ndarray, shape) -> np.ndarray:
    return np.bincount(cells, minlength=shape[0] * shape[1] * shape[2]).reshape(shape)


def _resample_tol(opts: _Options) -> float:
    tol_bits = RESAMPLE_TOL_BITS
    if opts.tol is not None:
        tol_bits = max(tol_bits, convert_units(opts.tol, opts.unit, "bits"))
    return convert_units(tol_bits, "bits", opts.unit)


def _term_vector(res: PIDResult) -> np.ndarray:
    return np.array([getattr(res, t) for t in TERMS])


def _resampled_terms(counts: np.ndarray, opts: _Options, tol: float) -> np.ndarray:
    return _term_vector(decompose(counts, unit=opts.unit, counts=True, tol=tol))


def _estimate_prepared(prep: _Prepared, opts: _Options) -> EstimateResult:
    # Sized before k-means and the histogram: too many labels or clusters is refused up front.
    kt = prep.t.dim if prep.t.mode == "argmax" else opts.k_t
    ks = prep.s.dim if prep.s.mode == "argmax" else opts.k_s
    check_joint((prep.n_classes, kt, ks))
    clock = _Clock(ESTIMATE_STAGES)
    clock.seconds.update(prep.timings)
    with clock("k-means"):
        ct, kt = _discretize(prep.t, opts.k_t, opts)
        cs, ks = _discretize(prep.s, opts.k_s, opts)
    y = prep.y
    shape = (prep.n_classes, kt, ks)
    with clock("histogram"):
        cells = _cells(y, ct, cs, shape)
        counts = _counts(cells, shape)
    with clock("decompose"):
        pid = decompose(counts, unit=opts.unit, counts=True, tol=opts.tol)
    rtol = _resample_tol(opts)
    n = len(y)

    bias = None
    with clock("perm baseline"):
        if opts.n_perm:
            # k-means never sees the labels, so shuffling y over the fixed clusters is exactly the whole
            # pipeline run on label-permuted data; every true term is then 0 and what remains is bias.
            rng = np.random.default_rng([opts.seed, 2])
            vals = np.array(
                [
                    _resampled_terms(_counts(_cells(rng.permutation(y), ct, cs, shape), shape), opts, rtol)
                    for _ in range(opts.n_perm)
                ]
            )
            sd = vals.std(axis=0, ddof=1) if opts.n_perm > 1 else np.zeros(len(TERMS))
            bias = {
                "method": "label_permutation",
                "n_perm": opts.n_perm,
                "mean": dict(zip(TERMS, map(float, vals.mean(axis=0)), strict=True)),
                "sd": dict(zip(TERMS, map(float, sd), strict=True)),
            }

    ci = boot = boot_shift = None
    with clock("bootstrap"):
        if opts.n_boot:
            rng = np.random.default_rng([opts.seed, 3])
            # Resampling triples with replacement = resampling their histogram cells.
            boot = np.array(
                [
                    _resampled_terms(_counts(cells[rng.integers(0, n, n)], shape), opts, rtol)
                    for _ in range(opts.n_boot)
                ]
            )
            alpha = (1.0 - opts.ci) / 2.0
            lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
            ci = {t: (float(a), float(b)) for t, a, b in zip(TERMS, lo, hi, strict=True)}
            shift = boot.mean(axis=0) - _term_vector(pid)
            boot_shift = dict(zip(TERMS, map(float, shift), strict=True))

    settings = {
        "pca": opts.pca,
        "k_t": opts.k_t if opts.discretize_t == "kmeans" else None,
        "k_s": opts.k_s if opts.discretize_s == "kmeans" else None,
        "discretize_t": opts.discretize_t,
        "discretize_s": opts.discretize_s,
        "normalize": opts.normalize,
        "pool": opts.pool,
        "fit_fraction": opts.fit_fraction,
        "n_samples": int(prep.n_samples),
        "n_fit": int(len(prep.fit_idx)),
        "n_count": int(n),
        "n_classes": int(prep.n_classes),
        "seed": opts.seed,
        "n_boot": opts.n_boot,
        "ci_level": opts.ci,
        "n_perm": opts.n_perm,
        "unit": opts.unit,
        "shape_t": [int(d) for d in prep.t.sample_shape],
        "shape_s": [int(d) for d in prep.s.sample_shape],
        "dim_t": int(prep.t.dim),
        "dim_s": int(prep.s.dim),
        "pca_solver_t": prep.t.pca_solver,
        "pca_solver_s": prep.s.pca_solver,
        "kmeans": {
            "n_init": opts.n_init,
            "max_iter": opts.max_iter,
            "init": "k-means++",
            "random_state": opts.seed,
        },
        "clusters_used_t": int(np.count_nonzero(counts.sum(axis=(0, 2)))),
        "clusters_used_s": int(np.count_nonzero(counts.sum(axis=(0, 1)))),
        "tol": opts.tol if opts.tol is not None else convert_units(DEFAULT_TOL_BITS, "bits", opts.unit),
        "resample_tol": rtol,
    }
    return EstimateResult(
        pid=pid,
        ci=ci,
        settings=settings,
        counts=counts,
        bias=bias,
        boot_shift=boot_shift,
        boot=boot,
        split={"fit": prep.fit_idx, "count": prep.count_idx},
        timings=clock.seconds,
    )


# --------------------------------------------------------------------------------------------------
# Public API


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


def estimate(
    labels,
    teacher_features,
    student_features,
    *,
    pca: int | None = 5,
    k: int = 10,
    k_t: int | None = None,
    k_s: int | None = None,
    normalize: bool = True,
    pool: str = "flatten",
    discretize: str | tuple = "kmeans",
    fit_fraction: float | None = None,
    n_boot: int = 0,
    ci: float = 0.95,
    n_perm: int = 5,
    seed: int = 0,
    unit: str = "bits",
    n_init: int = 3,
    max_iter: int = 100,
    tol: float | None = None,
) -> EstimateResult:
    """Estimate the BROJA PID of (Y; T, S) from labels and teacher/student representations.

    Method (the evaluation pipeline of [PID-KD], Dissanayake et al., AISTATS 2025, with every
    choice explicit): for each source separately,

    1. reshape: 2-D features (n, D) are used as is; feature maps (n, C, L) or (n, C, H, W) are
       flattened (``pool='flatten'``, the paper's choice) or averaged over the spatial axes
       (``pool='avg'``, giving (n, C));
    2. L2-normalise each row (``normalize=True``, the paper's default; all-zero rows stay zero);
    3. PCA to ``pca`` dimensions (None or 0: no PCA). Above 500 input dimensions the randomized
       SVD is used (``random_state=seed``), otherwise the exact one; ``pca`` larger than the feature
       dimension (after pooling) is an error, not silently clipped, so that the recorded setting is
       the one applied;
    4. k-means (scikit-learn ``KMeans``, k-means++ init, ``n_init`` restarts, ``max_iter``,
       ``random_state=seed``) with ``k_t`` clusters for the teacher and ``k_s`` for the student
       (both default to ``k``). Full-batch KMeans is used: after PCA it takes tens of milliseconds
       at n = 10k, faster than MiniBatchKMeans needs to be accurate.

    With ``discretize='argmax'`` (or a (teacher, student) pair such as ``('argmax', 'kmeans')``)
    a side's symbol is instead the argmax over its columns, for logits or class probabilities;
    steps 2-4 are skipped for that side and its alphabet has D symbols. To cluster the probability
    simplex instead, pass probabilities with ``discretize='kmeans', normalize=False, pca=None``.

    The histogram of (label, teacher cluster, student cluster) is decomposed by
    :func:`infodistill.pid.decompose` (labels are remapped to 0..C-1).

    Held-out mode: with ``fit_fraction=f`` a random fraction f of the samples (seeded) fits PCA and
    k-means and the histogram is counted on the disjoint remainder, so the clusters cannot adapt to
    the counted samples. It does not remove the plug-in bias of the histogram itself.

    Bias indicator (always reported unless ``n_perm=0``): the permutation baseline, i.e. the mean
    (and sd) over ``n_perm`` label shuffles of each term computed on the same clusters. Because the
    clustering never sees the labels, this equals running the whole pipeline on label-permuted data.
    Every true term is then 0, so the baseline shows how much a term can read from finite-sample
    noise at this n and k (for the mutual informations it is about (|Y|-1)(K-1)/(2n ln 2) bits,
    the Miller-Madow bias). It is an indicator: it is not subtracted from the estimate.

    Bootstrap (``n_boot > 0``): the (y, cluster_t, cluster_s) triples of the count split are
    resampled with replacement ``n_boot`` times and each resampled histogram is decomposed; ``ci``
    holds percentile intervals at level ``ci`` for every term. The discretisation (PCA and k-means)
    is kept fixed, so the intervals cover sampling noise of the histogram, not the variability of
    the clustering (use :func:`sweep` and different seeds for that). Resampled decompositions are
    solved to a certified tolerance of 1e-6 bits (or ``tol`` if looser). Plug-in terms are biased
    upwards and a resample's histogram is noisier than the sample's, so the bootstrap values sit
    above the estimate by roughly that bias; ``boot_shift`` reports it, and when it is larger than
    the sampling spread the percentile interval excludes the estimate (``table()`` marks this).

    Parameters
    ----------
    labels : 1-D integer array (n,) of class ids (any integer values; whole-number floats accepted).
    teacher_features, student_features : arrays (n, D), (n, C, L) or (n, C, H, W), finite. Values
        whose squares would overflow or underflow (|x| beyond ~1e77 or below ~1e-77 in float64) are
        rescaled by a power of two first, which is exact and leaves the clusters unchanged. Either
        may instead be a :class:`Discretized` from :func:`discretize` with this call's settings
        (``fit_fraction=None`` only): the same result without redoing that side's PCA and k-means.
    pca, k, k_t, k_s, normalize, pool, discretize, fit_fraction : see above.
    n_boot : bootstrap resamples (0: no intervals). ci : interval level in (0, 1).
    n_perm : label permutations for the bias indicator (0: none).
    seed : seeds the split, PCA, k-means, permutations and bootstrap (same seed, same result).
    unit : 'bits' or 'nats' for every reported value.
    n_init, max_iter : k-means restarts and iteration cap.
    tol : certified tolerance of the main decomposition, in ``unit`` (default: decompose's, 1e-7 bits).

    Returns
    -------
    EstimateResult with ``pid``, ``ci``, ``settings``, ``counts``, ``bias`` (and ``boot``, ``split``).

    Raises
    ------
    ValueError with a one-line message naming the argument at fault: mismatched lengths, non-integer
    labels, NaN/inf features, fewer samples than clusters, k < 1, pca above the feature dimension,
    empty arrays, unsupported array dimensions, or an invalid option.
    """
    opts = _options(
        pca=pca,
        k=k,
        k_t=k_t,
        k_s=k_s,
        normalize=normalize,
        pool=pool,
        discretize=discretize,
        fit_fraction=fit_fraction,
        n_boot=n_boot,
        ci=ci,
        n_perm=n_perm,
        seed=seed,
        unit=unit,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
    )
    prep = _prepare(labels, teacher_features, student_features, opts, opts.k_t, opts.k_s)
    return _estimate_prepared(prep, opts)


def sweep(labels, teacher_features, student_features, k=(3, 5, 10, 20), **estimate_kwargs) -> SweepResult:
    """Run :func:`estimate` for each cluster count in ``k`` (k_t = k_s = k) on the same data.

    Plug-in PID terms grow with the number of clusters (finite-sample bias, finer partitions);
    reporting them across k shows which conclusions are stable [PID-KD]. Pooling, normalisation
    and PCA (and the fit/count split) do not depend on k and are computed once; each row equals a
    separate ``estimate(..., k=k, **estimate_kwargs)`` call. ``estimate_kwargs`` are the keyword
    arguments of :func:`estimate` except ``k``, ``k_t`` and ``k_s``.
    """
    for bad in ("k_t", "k_s"):
        if bad in estimate_kwargs:
            raise ValueError(f"sweep sets k_t = k_s = k for every k; do not pass {bad}")
    if isinstance(teacher_features, Discretized) or isinstance(student_features, Discretized):
        raise ValueError("sweep clusters each source for every k: pass the features, not a Discretized")
    try:
        ks = [k] if _is_int(k) else list(k)
    except TypeError:
        raise ValueError(f"k must be a cluster count or a list of them, e.g. (3, 5, 10), got {k!r}") from None
    if not ks:
        raise ValueError("k must list at least one cluster count, e.g. k=(3, 5, 10, 20)")
    ks = [_check_int("k", kk, 1) for kk in ks]
    # Bind against estimate's signature so defaults live in one place and typos raise TypeError.
    bound = inspect.signature(estimate).bind(None, None, None, k=max(ks), **estimate_kwargs)
    bound.apply_defaults()
    kw = {
        name: v
        for name, v in bound.arguments.items()
        if name not in ("labels", "teacher_features", "student_features")
    }
    opts = _options(**kw)
    prep = _prepare(labels, teacher_features, student_features, opts, opts.k_t, opts.k_s)
    results, rows = [], []
    for kk in ks:
        res = _estimate_prepared(prep, replace(opts, k_t=kk, k_s=kk))
        results.append(res)
        row = {"k": kk, **res.terms}
        if res.ci is not None:
            for t, (lo, hi) in res.ci.items():
                row[t + "_low"], row[t + "_high"] = lo, hi
        if res.bias is not None:
            for t, v in res.bias["mean"].items():
                row[t + "_perm"] = v
        rows.append(row)
    return SweepResult(rows=rows, results=results)
