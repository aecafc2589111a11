"""Independent reference solver for the BROJA problem, via cvxpy (exponential cone, Clarabel).

Used by the tests and the benchmark to cross-check :func:`infodistill.pid.decompose`. It shares no
code with the package's own solver or with :mod:`infodistill.pid.measures`: the entropies are
recomputed here with plain numpy, and the convex problem

    min_{Q ∈ Δ_P} I_Q(Y; T, S) = H(Y) + min Σ Q(y,t,s) log(Q(y,t,s) / Q(t,s))

is written directly with ``cvxpy.rel_entr``, with variables only on the allowed support
{(y,t,s) : P(y,t) > 0 and P(y,s) > 0}, the two marginal equality constraints and Q ≥ 0.

cvxpy is an optional (test) dependency: ``pip install infodistill[test]``.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from scipy import sparse

__all__ = ["reference_min_mi", "reference_decompose"]

_LN2 = math.log(2.0)

#: Tight Clarabel settings: the reference has to be accurate to ~1e-8 bits.
CLARABEL_OPTS = dict(
    tol_gap_abs=1e-11,
    tol_gap_rel=1e-11,
    tol_feas=1e-11,
    tol_infeas_abs=1e-11,
    tol_infeas_rel=1e-11,
    tol_ktratio=1e-9,
    max_iter=500,
    # Shorter steps than Clarabel's default 0.99: with 0.99 the exponential-cone iterations often stall
    # ("AlmostSolved") ~1e-7 bits from the optimum on BROJA problems; 0.95 reaches ~1e-10.
    max_step_fraction=0.95,
)

#: If the certified gap (nats) of a Clarabel solve is above this (or it fails), retry with shorter
#: steps and keep the best-certified result.
RETRY_GAP_NATS = 1e-9
RETRY_STEP_FRACTIONS = (0.8,)
#: The solver's variables are x = VARIABLE_SCALE · n · Q (n = number of variables).
VARIABLE_SCALE = 0.1


def _import_cvxpy():
    try:
        import cvxpy as cp  # an optional dependency (the test extra)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the reference PID solver needs cvxpy (with Clarabel): pip install infodistill[test]"
        ) from exc
    return cp


def _validate(p) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"p must be a 3-D array p[y, t, s], got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"p is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("p must be finite and non-negative")
    total = float(arr.sum())
    if not total > 0:
        raise ValueError("p sums to 0")
    return arr / total


def _plogp_sum(x: np.ndarray) -> float:
    """Σ x log x (nats) over the positive entries."""
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x[x > 0]
    return float(np.sum(x * np.log(x)))


def _entropy_nats(x: np.ndarray) -> float:
    return -_plogp_sum(x)


def _to_unit(v: float, unit: str) -> float:
    if unit == "bits":
        return v / _LN2
    if unit == "nats":
        return v
    raise ValueError(f"unknown unit {unit!r}: use 'bits' or 'nats'")


def _dual_lower_bound(lam, mu, yt_inv, ys_inv, ts_inv, b_t, b_s) -> float:
    """A valid lower bound on min Σ Q log Q(y|t,s) from (approximate) multipliers λ(y,t), μ(y,s).

    The Lagrange dual of the problem is max Σ P(y,t)λ(y,t) + Σ P(y,s)μ(y,s) subject to
    c(t,s) = log Σ_y exp(λ(y,t) + μ(y,s)) ≤ 0 (sum over the support). Any λ, μ become feasible after
    λ ← λ − max c, which lowers the dual objective by max c (Σ P(y,t) = 1), so
    D(λ, μ) − max_{t,s} c(t,s) ≤ min f for every λ, μ. cvxpy's sign convention for equality duals is
    not relied on: both signs are tried and the better bound is kept. Returns -inf if unavailable.
    """
    if lam is None or mu is None:
        return -np.inf
    lam = np.asarray(lam, dtype=np.float64).ravel()
    mu = np.asarray(mu, dtype=np.float64).ravel()
    best = -np.inf
    for sign in (1.0, -1.0):
        z = sign * (lam[yt_inv.ravel()] + mu[ys_inv.ravel()])  # λ + μ on every support entry
        zmax = np.full(int(ts_inv.max()) + 1, -np.inf)
        np.maximum.at(zmax, ts_inv.ravel(), z)
        tot = np.zeros_like(zmax)
        np.add.at(tot, ts_inv.ravel(), np.exp(z - zmax[ts_inv.ravel()]))
        c_max = float(np.max(zmax + np.log(tot)))
        bound = sign * float(b_t @ lam + b_s @ mu) - c_max
        if np.isfinite(bound):
            best = max(best, bound)
    return best


def _min_cond_term_nats(p: np.ndarray, solver: str, **solver_opts) -> tuple[float, dict]:
    """min_{Q∈Δ_P} Σ Q log(Q(y,t,s)/Q(t,s)) in nats (= −max H_Q(Y|T,S)), and solver info.

    With Clarabel (and no user-given ``max_step_fraction``), a solve whose certified gap is above
    :data:`RETRY_GAP_NATS` is retried with shorter steps and the better-certified result is kept.
    """
    attempts = [{}]
    if solver.upper() == "CLARABEL" and "max_step_fraction" not in solver_opts:
        attempts += [dict(max_step_fraction=f) for f in RETRY_STEP_FRACTIONS]
    best, errors = None, []
    n_solves, times = 0, []
    for extra in attempts:
        n_solves += 1
        t0 = time.perf_counter()
        try:
            value, info = _solve_once(p, solver, **solver_opts, **extra)
        except (RuntimeError, _cp_error()) as exc:
            times.append(time.perf_counter() - t0)
            errors.append(f"{extra or 'default'}: {exc}")
            continue
        times.append(time.perf_counter() - t0)
        info["attempt"] = extra or "default"
        if best is None or value - info["lower_bound"] < best[0] - best[1]["lower_bound"]:
            best = (value, info)
        if best[0] - best[1]["lower_bound"] <= RETRY_GAP_NATS:
            break
    if best is None:
        raise RuntimeError(f"reference solver {solver} failed: " + "; ".join(errors))
    best[1]["failed_attempts"] = errors
    best[1]["n_solves"] = n_solves
    best[1]["attempt_times"] = times  # wall seconds of each cvxpy solve (compile + solver)
    return best


def _cp_error():
    """cvxpy's SolverError class (cvxpy imported lazily)."""
    return _import_cvxpy().error.SolverError


def _solve_once(p: np.ndarray, solver: str, **solver_opts) -> tuple[float, dict]:
    """One cvxpy solve of the problem; see :func:`_min_cond_term_nats`."""
    cp = _import_cvxpy()
    p_yt = p.sum(axis=2)
    p_ys = p.sum(axis=1)
    support = (p_yt > 0)[:, :, None] & (p_ys > 0)[:, None, :]
    ys, ts, ss = np.nonzero(support)
    n = ys.size
    Y, T, S = p.shape

    # Marginal constraints, one row per positive P(y,t) and per positive P(y,s).
    yt_idx = ys * T + ts
    ys_idx = ys * S + ss
    yt_rows, yt_inv = np.unique(yt_idx, return_inverse=True)
    ys_rows, ys_inv = np.unique(ys_idx, return_inverse=True)
    cols = np.arange(n)
    A_t = sparse.csr_matrix((np.ones(n), (yt_inv.ravel(), cols)), shape=(yt_rows.size, n))
    A_s = sparse.csr_matrix((np.ones(n), (ys_inv.ravel(), cols)), shape=(ys_rows.size, n))
    b_t = p_yt.ravel()[yt_rows]
    b_s = p_ys.ravel()[ys_rows]

    # r = Q(t,s) for each support entry: M sums entries sharing (t, s); M^T spreads back.
    ts_idx = ts * S + ss
    ts_rows, ts_inv = np.unique(ts_idx, return_inverse=True)
    M = sparse.csr_matrix((np.ones(n), (ts_inv.ravel(), cols)), shape=(ts_rows.size, n))

    # The objective is positively homogeneous in Q, so solve for x = scale·Q. Unscaled (entries ~1/n)
    # Clarabel stalls near 1e-9 relative accuracy; x of mean 0.1 was the most reliable of the scales
    # tried (n/1000 .. 10 n) on dense, sparse and histogram problems.
    scale = VARIABLE_SCALE * float(n)
    # An auxiliary variable w(t,s) = Σ_y x(y,t,s) keeps the cone constraints sparse (each exponential
    # cone touches one x and one w) instead of coupling every entry to all |Y| entries of its pair.
    x = cp.Variable(n, nonneg=True)
    w = cp.Variable(ts_rows.size, nonneg=True)
    objective = cp.Minimize(cp.sum(cp.rel_entr(x, M.T @ w)))
    constraints = [A_t @ x == scale * b_t, A_s @ x == scale * b_s, M @ x == w]
    prob = cp.Problem(objective, constraints)

    opts = dict(solver_opts)
    if solver.upper() == "CLARABEL":
        opts = {**CLARABEL_OPTS, **opts}
    with warnings.catch_warnings():
        # "Solution may be inaccurate": the status is reported in info, with a certified gap.
        warnings.filterwarnings("ignore", message="Solution may be inaccurate", category=UserWarning)
        prob.solve(solver=solver, **opts)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"reference solver {solver} failed: status {prob.status}")

    # Re-evaluate the objective at the returned point (clipped to q ≥ 0) with numpy.
    qv = np.maximum(np.asarray(x.value, dtype=np.float64), 0.0) / scale
    rv = M.T @ (M @ qv)
    pos = qv > 0
    value = float(np.sum(qv[pos] * np.log(qv[pos] / rv[pos])))
    q_full = np.zeros_like(p)
    q_full[ys, ts, ss] = qv
    lower = _dual_lower_bound(
        constraints[0].dual_value, constraints[1].dual_value, yt_inv, ys_inv, ts_inv, b_t, b_s
    )
    info = dict(
        lower_bound=lower,
        status=prob.status,
        solver=solver,
        solver_value=float(prob.value) / scale,
        n_variables=int(n),
        solve_time=getattr(prob.solver_stats, "solve_time", None),
        max_marginal_violation=float(
            max(np.abs(A_t @ qv - b_t).max(initial=0.0), np.abs(A_s @ qv - b_s).max(initial=0.0))
        ),
        q=q_full,
    )
    return value, info


def reference_min_mi(p, solver: str = "CLARABEL", unit: str = "bits", **solver_opts) -> float:
    """min_{Q∈Δ_P} I_Q(Y; T, S) for a joint p[y, t, s], solved with cvxpy (default: Clarabel).

    Extra keyword arguments are passed to the cvxpy solver (they override the tight defaults in
    :data:`CLARABEL_OPTS`).
    """
    _to_unit(0.0, unit)
    p = _validate(p)
    h_y = _entropy_nats(p.sum(axis=(1, 2)))
    value, _ = _min_cond_term_nats(p, solver, **solver_opts)
    return _to_unit(h_y + value, unit)


def reference_decompose(p, unit: str = "bits", solver: str = "CLARABEL", **solver_opts) -> dict:
    """BROJA PID terms of p[y, t, s] from the reference solver.

    Returns a dict with redundancy, unique_t, unique_s, synergy, mi_t, mi_s, mi_joint, min_mi and
    gap (all in ``unit``), plus ``unit`` and ``info`` (solver status, marginal violation, dual lower
    bound in nats, optimal q). ``min_mi`` is the objective evaluated at the solver's primal point
    and ``gap`` the distance to a lower bound built from the solver's multipliers, so the true
    minimum lies in [min_mi − gap, min_mi] up to the (reported, ~1e-12) marginal violation. The
    terms are not clipped or snapped: tiny negative values show the solver's accuracy.
    """
    _to_unit(0.0, unit)
    p = _validate(p)
    h_y = _entropy_nats(p.sum(axis=(1, 2)))
    h_t = _entropy_nats(p.sum(axis=(0, 2)))
    h_s = _entropy_nats(p.sum(axis=(0, 1)))
    h_ts = _entropy_nats(p.sum(axis=0))
    mi_t = h_y + h_t - _entropy_nats(p.sum(axis=2))
    mi_s = h_y + h_s - _entropy_nats(p.sum(axis=1))
    mi_joint = h_y + h_ts - _entropy_nats(p)
    value, info = _min_cond_term_nats(p, solver, **solver_opts)
    min_mi = h_y + value
    terms = dict(
        redundancy=mi_t + mi_s - min_mi,
        unique_t=min_mi - mi_s,
        unique_s=min_mi - mi_t,
        synergy=mi_joint - min_mi,
        mi_t=mi_t,
        mi_s=mi_s,
        mi_joint=mi_joint,
        min_mi=min_mi,
    )
    terms["gap"] = max(value - info["lower_bound"], 0.0)
    out = {k: _to_unit(v, unit) for k, v in terms.items()}
    out["unit"] = unit
    out["info"] = info
    return out
