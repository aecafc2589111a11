"""Near the optimum: the active-set Newton finish (the optimality conditions restricted to the pairs
that carry mass, solved exactly, the working set updated between rounds) and the alternating-
minimisation polish of the primal. Nothing here is trusted: the callers certify every result on the
full problem.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from .newton import _Factor, _pair_gram, _spd_inverse
from .problem import _Problem


def _active_components(prob: _Problem, tp: np.ndarray, sp: np.ndarray):
    """Pins of the restricted problem on the pairs (tp, sp): one μ(y, s) per connected component of
    each label's bipartite graph (support rows t and s of y, joined by the working pairs whose cell
    (y, t, s) is in the support). Returns (pin_y, pin_k) with k = T + s, or None when some support
    row has no working pair (it could not carry its mass: the restricted problem is infeasible).
    """
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    n = T + S
    cell = prob.support[:, tp, sp]  # (Y, P)
    y_idx, p_idx = np.nonzero(cell)
    rows, cols = y_idx * n + tp[p_idx], y_idx * n + T + sp[p_idx]
    graph = sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(Y * n, Y * n))
    n_comp, labels = csgraph.connected_components(graph, directed=False)
    used = np.concatenate([prob.m_yt, prob.m_ys], axis=1).reshape(-1)
    degree = np.bincount(rows, minlength=Y * n) + np.bincount(cols, minlength=Y * n)
    if np.any(used & (degree == 0)):
        return None
    # The first μ node of every component that holds one (node order is y-major, t before s).
    is_mu = np.zeros((Y, n), bool)
    is_mu[:, T:] = True
    mu_nodes = np.flatnonzero(is_mu.reshape(-1) & used)
    comp_of = labels[mu_nodes]
    _, first = np.unique(comp_of, return_index=True)
    pins = mu_nodes[first]
    return pins // n, pins % n


def _working_set(prob: _Problem, r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The pairs an interior-point iterate marks active: r > s. On the central path r·s = μ̄ for
    every pair, so this is r > √μ̄, which holds for the pairs with mass at the optimum (r → r* > 0,
    s → 0) and fails for the others (r → 0) once μ̄ ≪ min(r*², s*²). Every support row (y, t) and
    (y, s) also keeps its pair of largest r/s, or the restricted problem could not carry its mass.
    """
    ratio = np.where(prob.pairs, r / s, 0.0)
    active = prob.pairs & (ratio > 1.0)
    score = np.where(prob.support, ratio[None], -1.0)  # (Y, T, S)
    covered_t = (prob.support & active[None]).any(axis=2)
    y, t = np.nonzero(prob.m_yt & ~covered_t)
    active[t, np.argmax(score[y, t, :], axis=1)] = True
    covered_s = (prob.support & active[None]).any(axis=1)
    y, s_ = np.nonzero(prob.m_ys & ~covered_s)
    active[np.argmax(score[y, :, s_], axis=1), s_] = True
    return active


def active_set_newton(prob: _Problem, lam, mu, r, active, max_steps: int = 4):
    """Newton's method on the optimality conditions restricted to an active set of pairs.

    Once an interior-point iterate has identified the pairs that carry mass at the optimum (r ≫ s
    there, r ≪ s elsewhere), the optimum solves the smooth square system

        Σ_{s:(t,s)∈A} r π = P(y,t),  Σ_{t:(t,s)∈A} r π = P(y,s),  c(t,s) = 0 for (t,s) ∈ A,

    in (λ, μ, r_A), to which Newton's method converges quadratically. Its Jacobian system
    [[D − U R Uᵀ, U], [Uᵀ, 0]] (D = Σ_A Jᵀ diag(q) J, block diagonal over labels; U's columns J_pᵀ π_p)
    reduces with r' = Δr − R UᵀΔ to D Δ + U r' = g, UᵀΔ = −c_A, i.e.

        (Uᵀ D⁻¹ U) r' = Uᵀ D⁻¹ g + c_A,   Δ = D⁻¹ (g − U r'),   Δr = r' + R UᵀΔ,

    one |A|×|A| positive definite solve per step (|A| is a fraction of the pairs). The gauge of
    each connected component of a label's graph of active pairs is pinned. Nothing here is trusted:
    the caller certifies the result on the full problem (exact rounding of r·π onto Δ_P, and
    (λ, μ) shifted by max c over all pairs), so a wrong active set only costs the attempt.

    Returns (λ, μ, r) with r zero off A, or None when the restricted system is singular or the
    last Newton correction is still above ``NEWTON_CONVERGED`` (no quadratic convergence yet).
    """
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    n = T + S
    tp, sp = np.nonzero(active & prob.pairs)
    if tp.size == 0:
        return None
    pins = _active_components(prob, tp, sp)
    if pins is None:
        return None
    pin_y, pin_k = pins
    r_a = r[tp, sp].copy()
    lam, mu = lam.copy(), mu.copy()
    free = np.concatenate([prob.m_yt, prob.m_ys], axis=1)
    free[pin_y, pin_k] = False
    size = np.inf
    for _ in range(max_steps):
        c, pi = prob.evaluate(lam, mu)
        pp = pi[:, tp, sp]  # (Y, P)
        q = np.zeros((Y, T, S))
        q[:, tp, sp] = r_a * pp
        g = np.concatenate([prob.p_yt - q.sum(axis=2), prob.p_ys - q.sum(axis=1)], axis=1)
        g[~free] = 0.0
        c_a = c[tp, sp]
        D = np.zeros((Y, n, n))
        D[:, :T, T:] = q
        D[:, T:, :T] = q.transpose(0, 2, 1)
        D[:, np.arange(T), np.arange(T)] = q.sum(axis=2)
        D[:, T + np.arange(S), T + np.arange(S)] = q.sum(axis=1)
        D *= free[:, :, None] & free[:, None, :]
        D[:, np.arange(n), np.arange(n)] += ~free
        try:
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                Dinv = _spd_inverse(D)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(Dinv)):
            # numpy's batched inverse of a label block of masses ~1e-300 (skewed joints) can
            # come out inf/nan without raising (seed-0 joint 7859): the restricted system is
            # singular in working precision.
            return None
        Dinv *= free[:, :, None] & free[:, None, :]
        K = _pair_gram(Dinv, pp, tp, sp, T, S)
        h = np.einsum("ykl,yl->yk", Dinv, g)
        v = (pp * (h[:, tp] + h[:, T + sp])).sum(axis=0) + c_a
        fac = _Factor(K)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            r_new = fac.solve(v)
        if not np.all(np.isfinite(r_new)):
            return None  # the restricted system is singular in working precision (skewed masses)
        u = np.zeros((Y, T, S))
        u[:, tp, sp] = pp * r_new
        step = h - np.einsum("ykl,yl->yk", Dinv, np.concatenate([u.sum(axis=2), u.sum(axis=1)], axis=1))
        d_c = (pp * (step[:, tp] + step[:, T + sp])).sum(axis=0)
        lam = lam + np.where(prob.m_yt, step[:, :T], 0.0)
        mu = mu + np.where(prob.m_ys, step[:, T:], 0.0)
        r_a = r_a + r_new + r_a * d_c
        # Quadratic convergence: stop at round-off level, or when the corrections stop shrinking.
        size, last = float(np.abs(step).max()), size
        if size < 1e-11 or size > last:
            break
    if not size < NEWTON_CONVERGED:
        return None  # still far from the restricted optimum: the set (or the start) is off
    r_full = np.zeros_like(r)
    r_full[tp, sp] = r_a
    return lam, mu, r_full


def active_set_rounds(
    prob: _Problem, lam, mu, r, active, rounds: int | None = None, steps: int | None = None
):
    """Rounds of ``active_set_newton`` from an iterate, with the working set updated in between:
    pairs whose mass comes out r ≤ 0 leave it, pairs whose constraint comes out violated (c > 0)
    join it, starting again from their mass in ``r`` (column generation in both directions).

    Yields (λ, μ, r, c, π, working set) after each round, for the caller to certify on the full
    problem; stops when the working set no longer changes, the restricted system is singular, or
    after ``rounds``.
    """
    rounds = FINISH_ROUNDS if rounds is None else rounds
    steps = FINISH_STEPS if steps is None else steps
    r_start = r
    for _ in range(rounds):
        out = active_set_newton(prob, lam, mu, r, active, steps)
        if out is None:
            return
        lam, mu, r_new = out
        c, pi = prob.evaluate(lam, mu)
        if not np.all(np.isfinite(c[prob.pairs])):
            return
        yield lam, mu, r_new, c, pi, active
        drop, add = active & (r_new <= 0), prob.pairs & ~active & (c > 0)
        if not (drop.any() or add.any()):
            return
        active = (active & ~drop) | add
        r = np.where(active, np.where(drop | add, r_start, r_new), 0.0)


def scaling_polish(prob: _Problem, lam, mu, r, sweeps: int = 30):
    """Improve a near-optimal primal by alternating minimisation, started from the IPM's state.

    Q = r(t,s) a(y,t) b(y,s) with a = e^λ, b = e^μ is the IPM's primal; each sweep matches the
    (y,t) then the (y,s) marginals (one Sinkhorn step per label) and resets r to the mixture
    Σ_y Q, which cannot increase f [alternating minimisation of Σ_y P(y) KL(Q_y ‖ r)]. Late IPM
    iterates lose primal accuracy to round-off while their dual keeps improving; these sweeps
    recover a primal that matches the dual. Also returns the scaling's own dual bound.
    """
    (last,) = scaling_sweeps(prob, mu, r, sweeps, sweeps)  # one chunk: a single yield
    return last


def scaling_sweeps(prob: _Problem, mu, r, sweeps: int, every: int):
    """The sweeps of ``scaling_polish`` from (μ, r), yielding (Q, its scaling's dual bound) after
    every ``every`` sweeps (and after the last)."""
    p_yt, p_ys = prob.p_yt, prob.p_ys
    b = np.where(prob.m_ys, np.exp(mu), 0.0)
    done = 0
    while done < sweeps:
        for _ in range(min(every, sweeps - done)):
            den = np.einsum("ts,ys->yt", r, b)
            a = np.divide(p_yt, den, out=np.zeros_like(den), where=den > 0)
            den = np.einsum("ts,yt->ys", r, a)
            b = np.divide(p_ys, den, out=np.zeros_like(den), where=den > 0)
            r = r * np.einsum("yt,ys->ts", a, b)
            done += 1
        q = r[None] * a[:, :, None] * b[:, None, :]
        # (log a, log b) shifted by max c is dual feasible: a certified bound of its own. A scaling
        # that underflowed to 0 or overflowed on a support cell has no finite logarithm there and
        # gives no bound (-inf), rather than the NaN of -inf - -inf.
        with np.errstate(divide="ignore", over="ignore"):
            la, lb = np.where(prob.m_yt, np.log(a), 0.0), np.where(prob.m_ys, np.log(b), 0.0)
        if np.isfinite(la).all() and np.isfinite(lb).all():
            c, _ = prob.evaluate(la, lb)
            yield q, prob.lower_bound(la, lb, c)
        else:
            yield q, -np.inf


#: Active-set Newton finish: rounds per attempt, Newton steps per round (at most: a round stops at
#: round-off), the factor by which the complementarity gap must fall before a failed attempt is
#: retried, and the largest change of the working set since the previous iteration (as a fraction
#: of its size) at which an attempt is made. Measured on 2 cores: earlier or more frequent attempts
#: cost more than the iterations they saved.
FINISH_ROUNDS = 3
FINISH_STEPS = 5
FINISH_RETRY = 0.1
FINISH_STABLE = 0.02


#: A restricted Newton solve counts as converged when its last correction (in λ, μ) is below this.
NEWTON_CONVERGED = 1e-8
