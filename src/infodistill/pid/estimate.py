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

The pipeline's parts, each its own module: ``estimate_inputs`` (options and input checks),
``preparation`` (pooling, normalisation, PCA, the fit/count split), ``symbols`` (k-means or argmax,
and :class:`Discretized`), ``resample`` (histogram, bootstrap, permutation baseline) and
``estimate_result`` (the results and their tables). This module runs them in order.

These modules import numpy, scipy and scikit-learn only (never torch).
"""

from __future__ import annotations

import inspect
from dataclasses import replace

import numpy as np

from .decompose import DEFAULT_TOL_BITS, decompose
from .estimate_inputs import _check_features, _check_int, _check_labels, _is_int, _Options, _options
from .estimate_result import EstimateResult, SweepResult
from .limits import check_joint
from .measures import convert_units
from .preparation import RANDOMIZED_PCA_MIN_DIM as RANDOMIZED_PCA_MIN_DIM  # re-exported
from .preparation import _Clock, _prepare_side, _Prepared, _split
from .resample import RESAMPLE_TOL_BITS as RESAMPLE_TOL_BITS  # re-exported
from .resample import _cells, _counts, _resample_tol, _resampled_terms_batch, _term_vector
from .symbols import Discretized, _discretize, _given_side, discretize
from .terms import TERMS

__all__ = ["Discretized", "EstimateResult", "SweepResult", "discretize", "estimate", "sweep"]


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

            def permuted() -> np.ndarray:
                return _counts(_cells(rng.permutation(y), ct, cs, shape), shape)

            vals = _resampled_terms_batch(permuted, opts.n_perm, shape, opts, rtol)
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
            # Decomposed in batches (``decompose_batch``: each resample keeps its own certificate).
            boot = _resampled_terms_batch(
                lambda: _counts(cells[rng.integers(0, n, n)], shape), opts.n_boot, shape, opts, rtol
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
