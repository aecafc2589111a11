"""``decompose``: the BROJA partial information decomposition of a joint array p[y, t, s]."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np

from .blas_threads import blas_threads
from .broja import solve_broja
from .broja.batch import WARM_START_MIN_BATCH, solve_broja_batch, warm_start
from .limits import check_joint
from .measures import LN2, NORMALISATION_TOL, _check_unit, as_joint, convert_units
from .terms import LABELS, TERMS, format_table

#: Default certified tolerance on the optimum, in bits.
DEFAULT_TOL_BITS = 1e-7

#: The tightest tolerance the solver is asked for (nats): the limit of double precision.
MIN_SOLVER_TOL_NATS = 1e-12


@dataclass(frozen=True)
class PIDResult:
    """BROJA decomposition of I(Y; T, S).

    Identities (exact up to ``gap``): mi_joint = redundancy + unique_t + unique_s + synergy,
    mi_t = redundancy + unique_t, mi_s = redundancy + unique_s.

    ``gap`` is a certified bound: the true min_{Q∈Δ_P} I_Q(Y;T,S) lies in
    [min_mi − gap, min_mi]; every term is therefore exact to within ``gap`` (same unit).
    ``q`` is the optimal joint Q*[y, t, s] (exactly in Δ_P), on the input's full index grid.
    """

    redundancy: float
    unique_t: float
    unique_s: float
    synergy: float
    mi_t: float
    mi_s: float
    mi_joint: float
    min_mi: float
    gap: float
    unit: str
    q: np.ndarray = field(repr=False, compare=False)
    solver: dict = field(default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict:
        """Plain dict of the scalar terms (JSON-serialisable)."""
        d = {k: float(getattr(self, k)) for k in (*TERMS, "min_mi", "gap")}
        d["unit"] = self.unit
        return d

    def to_unit(self, unit: str) -> PIDResult:
        """The same result in 'bits' or 'nats'."""
        _check_unit(unit)
        vals = {k: convert_units(getattr(self, k), self.unit, unit) for k in (*TERMS, "min_mi", "gap")}
        return PIDResult(**vals, unit=unit, q=self.q, solver=self.solver)

    def table(self) -> str:
        """Readable text table of the seven terms, with the unit and the certified gap."""
        head = f"BROJA PID ({self.unit}); certified gap {self.gap:.1e}: every term is exact to within it"
        rows = [[f"{LABELS[t]:<11} {t}", f"{getattr(self, t):.4f}"] for t in TERMS]
        return head + "\n" + format_table(["term", "value"], rows)


def _entropy_list(*arrays: np.ndarray) -> list[float]:
    """H in nats of each array (0 log 0 = 0), in one pass over their concatenation (``_h`` of each,
    for the fixed cost of a few numpy calls)."""
    flat = np.concatenate([a.ravel() for a in arrays])
    pos = flat > 0
    terms = np.zeros_like(flat)
    terms[pos] = flat[pos] * np.log(flat[pos])
    starts = list(itertools.accumulate((a.size for a in arrays[:-1]), initial=0))
    return (-np.add.reduceat(terms, starts)).tolist()


def decompose(p, unit: str = "bits", counts: bool = False, tol: float | None = None) -> PIDResult:
    """BROJA PID of the joint distribution p[y, t, s] (Y the target, T and S the two sources).

    Parameters
    ----------
    p : array (|Y|, |T|, |S|), non-negative, summing to 1 (a relative slack of 1e-6 is accepted and
        renormalised). With ``counts=True`` any non-negative histogram is accepted and normalised.
    unit : 'bits' (default) or 'nats'.
    tol : certified tolerance on the optimum, in ``unit`` (default 1e-7 bits). The solver stops
        when its duality gap is at most ``tol``; the achieved gap is reported in ``result.gap``.
        Double precision limits the certificate to about 1e-8..1e-7 bits on dense problems; a
        tighter request that cannot be met gives a RuntimeWarning with the gap that was reached.

    Terms smaller in magnitude than the certified gap are reported as 0 rather than as a tiny
    negative number.
    """
    _check_unit(unit)
    # Sized before as_joint's float64 copy; anything not yet an array is validated there first.
    sized = isinstance(p, np.ndarray) and p.ndim == 3
    if sized:
        check_joint(p.shape)
    p = as_joint(p, ndim=3, counts=counts)
    if not sized:
        check_joint(p.shape)
    tol_nats = DEFAULT_TOL_BITS * LN2 if tol is None else convert_units(float(tol), unit, "nats")
    if not 0 < tol_nats < np.inf:
        raise ValueError(f"tol must be a positive finite number, got {tol}")

    # Drop unused symbols: they carry no mass in any Q of Δ_P. The marginals of the used symbols
    # are those of p restricted to them (the dropped entries are zeros), and so are the entropies.
    p_yt, p_ys = p.sum(axis=2), p.sum(axis=1)
    p_t, p_s = p_yt.sum(axis=0), p_ys.sum(axis=0)
    used = [p_yt.sum(axis=1) > 0, p_t > 0, p_s > 0]
    every = all(u.all() for u in used)
    if not every:
        p_yt, p_ys = p_yt[np.ix_(used[0], used[1])], p_ys[np.ix_(used[0], used[2])]
        p_t, p_s = p_t[used[1]], p_s[used[2]]
    h_y, h_t, h_yt, h_s, h_ys, h_ts, h_yts = _entropy_list(
        p_yt.sum(axis=1), p_t, p_yt, p_s, p_ys, p.sum(axis=0), p
    )
    mi_t = max(h_y + h_t - h_yt, 0.0)
    mi_s = max(h_y + h_s - h_ys, 0.0)
    mi_joint = max(h_y + h_ts - h_yts, 0.0)

    # Swap so the solver eliminates the larger source (the problem is symmetric in T, S).
    swap = p_ys.shape[1] > p_yt.shape[1]
    if swap:
        p_yt, p_ys = p_ys, p_yt
    # Below ~1e-12 nats the Newton systems are singular to working precision and the solver would
    # step until it fails, so it is never asked for less; a tighter request gets the warning below.
    # Near that floor their scaling can overflow: such a step is rejected by the feasibility test
    # and the reported gap comes from an exactly feasible point and a dual bound, so the floating-
    # point warning is noise to the user.
    with np.errstate(over="ignore"):
        q_sub, f_up, d_low, info = solve_broja(p_yt, p_ys, tol=max(tol_nats, MIN_SOLVER_TOL_NATS))
    if swap:
        q_sub = q_sub.transpose(0, 2, 1)
    gap = max(f_up - d_low, 0.0)
    if gap > tol_nats:
        # Reached the limit of double precision (dense problems certify to ~1e-8 bits) or max_iter.
        warnings.warn(
            f"BROJA solver certified a gap of {convert_units(gap, 'nats', unit):.3g} {unit}, above the "
            f"requested tol {convert_units(tol_nats, 'nats', unit):.3g}; the terms are exact to the gap",
            RuntimeWarning,
            stacklevel=2,
        )
    if every:
        q = np.ascontiguousarray(q_sub)
    else:
        q = np.zeros_like(p)
        q[np.ix_(*used)] = q_sub
    return _result(q, f_up, d_low, dict(info), h_y, mi_t, mi_s, mi_joint, unit)


def _result(q, f_up, d_low, info, h_y, mi_t, mi_s, mi_joint, unit) -> PIDResult:
    """The PIDResult of a solved problem: min_mi = H(Y) + f_upper (clamped to its range), the
    terms from it (snapped to 0 within the gap), in ``unit``."""
    gap = max(f_up - d_low, 0.0)
    min_mi = h_y + f_up  # an upper bound on min I_Q(Y;T,S); the optimum is within gap below it
    # The optimum can't be below max(I(Y;T), I(Y;S)) nor above I(Y;T,S); clamp the round-off.
    min_mi = min(max(min_mi, mi_t, mi_s), mi_joint)

    def snap(x: float) -> float:
        return 0.0 if abs(x) <= gap + 1e-12 else x

    unique_t = snap(min_mi - mi_s)
    vals = dict(
        redundancy=snap(mi_t - unique_t),
        unique_t=unique_t,
        unique_s=snap(min_mi - mi_t),
        synergy=snap(mi_joint - min_mi),
        mi_t=mi_t,
        mi_s=mi_s,
        mi_joint=mi_joint,
        min_mi=min_mi,
        gap=gap,
    )
    if unit != "nats":  # as ``PIDResult.to_unit`` (``convert_units``), without a second result
        vals = {k: v / LN2 for k, v in vals.items()}
    return PIDResult(**vals, unit=unit, q=q, solver=info)


#: ``decompose_batch`` solves joints in one batch while a joint's largest batched array, the
#: T·S·Y² entries of its coupling block, stays at most this big (10×5×5: 2 500; 10×14×14: 19 600);
#: larger joints are decomposed one by one (their Newton systems are where the time goes, and the
#: scalar solver's routes are the faster ones there).
BATCH_MAX_COUPLING = 20_000

#: Problems per batch: at most this many coupling entries in all (~64 MB of float64 per array).
BATCH_MAX_ENTRIES = 8_000_000


def _entropies(x: np.ndarray) -> np.ndarray:
    """H in nats of each row of x (B, n) (0 log 0 = 0)."""
    t = np.where(x > 0, x, 1.0)
    return -(x * np.log(t)).sum(axis=1)


def _solve_chunk(a: np.ndarray, b: np.ndarray, tol: float):
    """``solve_broja_batch`` on a chunk, warm-started (``broja.batch.warm_start``) where it has at
    least ``WARM_START_MIN_BATCH`` problems; the problems the warm run does not certify are run again
    from their own start before any is handed back."""
    start = warm_start(a, b, tol) if a.shape[0] >= WARM_START_MIN_BATCH else None
    if start is None:
        return solve_broja_batch(a, b, tol)
    q, f_up, d_low, ok, its = solve_broja_batch(a, b, tol, start=start)
    if not ok.all():
        again = np.flatnonzero(~ok)
        q2, f2, d2, ok2, its2 = solve_broja_batch(a[again], b[again], tol)
        q[again], f_up[again], d_low[again], ok[again] = q2, f2, d2, ok2
        its[again] += its2
    return q, f_up, d_low, ok, its


def decompose_batch(
    ps, unit: str = "bits", counts: bool = False, tol: float | None = None
) -> list[PIDResult]:
    """BROJA PID of each joint of a stack p[b, y, t, s] of one shape, e.g. bootstrap resamples of a
    histogram: the same results as ``[decompose(p_b, unit, counts, tol) for p_b in ps]``, each with
    its own certified ``gap`` (at most ``tol``; every term exact to within it), in a fraction of
    the time for small joints.

    Small joints (see ``BATCH_MAX_COUPLING``) are solved together by the batched interior-point
    method (``broja.batch.solve_broja_batch``): the fixed cost of the numpy calls of one iteration is
    shared by the whole batch. A batch of at least ``WARM_START_MIN_BATCH`` joints starts from the
    iterate of the same method on their mean (``broja.batch.warm_start``; resamples of one histogram
    lie close to it: ~2 iterations fewer each), and the joints that start does not certify run again
    from their own start. A joint it does not certify within ``tol`` (it hands back the ones
    whose progress stalls) is decomposed again by ``decompose``, with its restarts and polishes, as
    are all joints of larger shapes. ``result.solver["batch"]`` says which route certified it.
    """
    _check_unit(unit)
    arr = np.asarray(ps)
    if arr.ndim != 4:
        raise ValueError(f"ps must be a 4-D array p[b, y, t, s] (a stack of joints), got shape {arr.shape}")
    if arr.shape[0] == 0:
        return []
    check_joint(arr.shape[1:])
    # The checks of as_joint (numbers, finite, non-negative) on the whole stack, then each joint's
    # own total: normalised (counts) or within NORMALISATION_TOL of 1.
    as_joint(arr, ndim=4, counts=True, name="ps")
    raw = np.asarray(ps, dtype=np.float64)
    totals = raw.reshape(raw.shape[0], -1).sum(axis=1)
    if counts:
        if np.any(totals <= 0):
            raise ValueError(f"ps[{int(np.argmax(totals <= 0))}] is a count histogram with total 0")
        if np.all(np.isfinite(totals)):
            arr = raw / totals[:, None, None, None]
        else:  # overflowing counts: as decompose, one by one
            arr = np.stack([as_joint(p, ndim=3, counts=True) for p in raw])
    else:
        bad = np.abs(totals - 1.0) > NORMALISATION_TOL
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"ps[{i}] sums to {totals[i]:.9g}, not 1 (tolerance {NORMALISATION_TOL:g}); "
                "normalise it, or pass counts=True for count histograms"
            )
        arr = raw / totals[:, None, None, None]
    tol_nats = DEFAULT_TOL_BITS * LN2 if tol is None else convert_units(float(tol), unit, "nats")
    if not 0 < tol_nats < np.inf:
        raise ValueError(f"tol must be a positive finite number, got {tol}")
    B, Y, T, S = arr.shape
    if T * S * Y * Y > BATCH_MAX_COUPLING:
        return [decompose(p, unit="nats", tol=tol_nats).to_unit(unit) for p in arr]

    p_yt, p_ys = arr.sum(axis=3), arr.sum(axis=2)
    h_y = _entropies(arr.sum(axis=(2, 3)))
    mi_t = np.maximum(h_y + _entropies(p_yt.sum(axis=1)) - _entropies(p_yt.reshape(B, -1)), 0.0)
    mi_s = np.maximum(h_y + _entropies(p_ys.sum(axis=1)) - _entropies(p_ys.reshape(B, -1)), 0.0)
    mi_joint = np.maximum(
        h_y + _entropies(arr.sum(axis=1).reshape(B, -1)) - _entropies(arr.reshape(B, -1)), 0.0
    )
    # Swap so the solver eliminates the larger source, as decompose.
    swap = S > T
    a, b = (p_ys, p_yt) if swap else (p_yt, p_ys)
    chunk = max(1, BATCH_MAX_ENTRIES // (T * S * Y * Y))
    solver_tol = max(tol_nats, MIN_SOLVER_TOL_NATS)
    out = []
    for lo in range(0, B, chunk):
        hi = min(B, lo + chunk)
        # One BLAS thread, as solve_broja for small systems (the batch's matrices are tiny).
        with blas_threads(1):
            q, f_up, d_low, ok, its = _solve_chunk(a[lo:hi], b[lo:hi], solver_tol)
        if swap:
            q = q.transpose(0, 1, 3, 2)
        for i in range(hi - lo):
            k = lo + i
            if not ok[i]:
                res = decompose(arr[k], unit="nats", tol=tol_nats)
                res.solver["batch"] = "handed back: decompose"
                out.append(res.to_unit(unit))
                continue
            info = dict(
                iterations=int(its[i]),
                converged=True,
                gap=float(f_up[i] - d_low[i]),
                garbling=None,
                newton="batch",
                paths=["plain (batch)"],
                batch="batch",
            )
            out.append(
                _result(
                    q[i], float(f_up[i]), float(d_low[i]), info, h_y[k], mi_t[k], mi_s[k], mi_joint[k], unit
                )
            )
    return out
