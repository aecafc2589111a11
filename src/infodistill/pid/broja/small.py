"""``solve_small``: the interior-point method of ``interior_point`` for small problems (a 10×5×5
bootstrap histogram), written for few numpy calls per iteration.

On a 10×5×5 histogram ``_solve_path`` spends its ~6 ms in the fixed cost of ~150 numpy calls per
iteration on arrays of a few hundred entries (the label-block Schur or pair-space assembly, masks on
the Y·T·S grid, the active-set finish), not in arithmetic. Here the same method (feasible
primal-dual, Mehrotra predictor-corrector with the slack's curvature in the corrector, the same
step rule, on the central path ``first_path`` picks) works on the support cells only and on one
dense Newton matrix over all free dual variables:

* the unknowns are λ(y,t) for P(y,t) > 0 and μ(y,s) for P(y,s) > 0, less one pinned μ per label
  (the gauge; a label's support cells are all its used (t, s), a connected bipartite graph; the
  pinned μ keep their start value);
* with V the (pairs × unknowns) matrix whose row p is Σ_{cells of p} π(cell)·J(cell) (J maps the
  unknowns to z = λ(y,t) + μ(y,s) on a cell), the Newton matrix is
  H = Jᵀ diag(q) J + Vᵀ diag(W) V (one bincount and one product), the right-hand side
  P − Vᵀ(target/s) and Δc = V·Δ; H is factorised by Cholesky (LAPACK potrf; no equilibration,
  Cholesky's rounding does not depend on a diagonal scaling), pivoted LU where it is not
  numerically positive definite;
* a trial step's log-sum-exp is taken relative to the current c, z is updated along the step
  (z + αJΔ), and π is formed only for the accepted trial.

Measured on the bench's 10×5×5 histograms (2-core Xeon, shared): 7–9 iterations, as the scalar
code's plain path, ~1 ms against ~6 ms. Tried and dropped: the active-set Newton finish on the
dense unknowns (from Σ r·(−c) ≤ 1e-2: 8 → 5–6 iterations, but each attempt costs 2–5 LU solves of
the (unknowns + active pairs) KKT system and a wrong working set several rounds: slower overall),
a fixed centring σ without predictor (11–15 iterations), a looser floor for the predictor's step
(no change).

Certificates are those of the scalar code, on the support cells: the candidate r·π is rounded onto
Δ_P by ``round_to_feasible``'s arithmetic (off the support it is 0 and stays 0) and evaluated with
``objective_bound``'s rounding-error bound; the dual bound is ``_Problem.lower_bound`` (D(λ, μ) −
max c, less its rounding-error bound with the error factor of all Y·T + Y·S terms). A run that does
not certify within the tolerance (a stall, no step possible, a singular matrix) is handed back with
its best bounds: ``solve_broja`` then runs its full method (restarts, polishes, garbling LP).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from .certificates import EPS, sum_error_factor

#: The small route is taken while the dense Newton matrix has at most ``SMALL_MAX_UNKNOWNS``
#: unknowns (free λ and μ) and its pair term Vᵀ diag(W) V at most ``SMALL_MAX_WORK`` = pairs ×
#: unknowns² multiply-adds: above that its dense products grow faster than the scalar routes, which
#: exploit the block structure. Measured (decompose, 2-core Xeon, median of 8 joints, small route
#: against the scalar routes): 10×5×5 histograms of 1 000 samples 1.25 against 6.7 ms, dense 10×9×9
#: (81 pairs, 170 unknowns) 6.0 against 9.4 ms, dense 5×16×16 (256 pairs, 155 unknowns) 10.6
#: against 10.1 ms, dense 4×20×20 (400 pairs, 156 unknowns) 14.8 against 12.1 ms.
SMALL_MAX_UNKNOWNS = 200
SMALL_MAX_WORK = 4e6

#: The start's largest c(t,s) is −START_SLACK (``_InteriorPoint`` starts at −1): its Σ r·(−c)
#: is then Σ r·(START_SLACK + log(max r / r)), closer to the tolerance. Measured on 50 histograms
#: of 1 000 samples each (``bench/pid_solver.py``'s generator; 2026-12-07), mean iterations at
#: 1 / 0.3 / 0.1 / 0.03: 10×5×5 7.66 / 7.40 / 7.30 / 7.24, 10×8×8 8.36 / 8.10 / 8.08 / 7.92,
#: 5×5×5 7.94 / 7.82 / 7.78 / 7.68, 3×4×6 7.92 / 7.80 / 7.62 / 7.60 (3: 8.04 on 10×5×5).
START_SLACK = 0.1

#: As in ``interior_point``: the largest change of any λ, μ in one step, the certification
#: threshold (Σ r·(−c) within this factor of the tolerance) and the iteration limit.
SMALL_MAX_MOVE = 20.0

#: The certificate is evaluated once Σ r·(−c) is at most this multiple of the tolerance. On 10×5×5
#: histograms the certified gap of an iterate was 0.6–0.9× its Σ r·(−c) (measured), so the scalar
#: code's earlier start (1e4×) only costs certificates that cannot succeed.
CERTIFY_BELOW = 2.0

#: A run whose Σ r·(−c) has not halved in ``STALL_SPAN`` iterations, after ``STALL_AFTER``, is handed
#: back (as ``batch``'s rule).
STALL_AFTER = 10
STALL_SPAN = 3

#: The corrector's solve is not refined: on the 10×5×5 histograms of the bench, one refinement step
#: against H changed no iteration count (a dense Cholesky of H itself, not of a Schur complement).
REFINE = False

_potrf, _potrs, _getrf, _getrs = lapack.get_lapack_funcs(("potrf", "potrs", "getrf", "getrs"), (np.zeros(1),))


def small_route(p_yt: np.ndarray, p_ys: np.ndarray) -> bool:
    """Whether ``solve_small`` is tried first (see ``SMALL_MAX_UNKNOWNS``, ``SMALL_MAX_WORK``)."""
    m_yt, m_ys = p_yt > 0, p_ys > 0
    n_x = int(m_yt.sum()) + int(m_ys.sum()) - p_yt.shape[0]  # one μ per label pinned
    if n_x > SMALL_MAX_UNKNOWNS:
        return False
    pairs = int(np.count_nonzero(m_yt.T.astype(float) @ m_ys.astype(float)))
    return pairs * n_x * n_x <= SMALL_MAX_WORK


class _SmallProblem:
    """The index structure of one problem: support cells grouped by pair, the unknowns, the
    pinned μ and the scatter indices of the Newton matrix."""

    def __init__(self, p_yt: np.ndarray, p_ys: np.ndarray):
        Y, T = p_yt.shape
        S = p_ys.shape[1]
        self.shape = (Y, T, S)
        self.p_yt, self.p_ys = p_yt, p_ys
        m_yt, m_ys = p_yt > 0, p_ys > 0
        self.m_yt, self.m_ys = m_yt, m_ys
        support = m_yt[:, :, None] & m_ys[:, None, :]
        self.support = support
        # Cells in (t, s, y) order: each pair's cells are contiguous.
        t, s, y = np.nonzero(support.transpose(1, 2, 0))
        self.cell_y, self.cell_t, self.cell_s = y, t, s
        self.grid = (y * T + t) * S + s  # flat index of each cell on the Y×T×S grid
        new_pair = np.empty(y.size, bool)
        new_pair[0] = True
        np.not_equal(t[1:] * S + s[1:], t[:-1] * S + s[:-1], out=new_pair[1:])
        self.starts = np.flatnonzero(new_pair)
        self.which = np.cumsum(new_pair) - 1  # pair number of each cell
        self.pair_t, self.pair_s = t[self.starts], s[self.starts]
        n_pairs = self.starts.size
        self.n_pairs = n_pairs
        # Gauge: (λ(y,·) + a, μ(y,·) − a) changes no z on the support, whose cells of label y are
        # all (t, s) with P(y,t) > 0 and P(y,s) > 0 (a complete bipartite graph, so connected):
        # one μ per label is pinned, its first used s (as ``_Problem.pin``).
        first_s = np.argmax(m_ys, axis=1)
        self.pinned_mu = np.zeros_like(m_ys)
        self.pinned_mu[np.arange(Y), first_s] = m_ys[np.arange(Y), first_s]
        free_mu = m_ys & ~self.pinned_mu
        # Unknowns: λ(y,t) used, then the free μ(y,s); index n_x is a dummy (always 0) that the
        # pinned μ map to.
        lam_idx = np.full((Y, T), -1)
        n_lam = int(m_yt.sum())
        lam_idx[m_yt] = np.arange(n_lam)
        self.n_lam = n_lam
        mu_idx = np.full((Y, S), -1)
        n_x = n_lam + int(free_mu.sum())
        mu_idx[free_mu] = np.arange(n_lam, n_x)
        # The pinned μ follow the unknowns (slots n_x, n_x + 1, …): they keep their start value.
        mu_idx[self.pinned_mu] = np.arange(n_x, n_x + int(self.pinned_mu.sum()))
        self.n_x = n_x
        self.n_slots = n_x + int(self.pinned_mu.sum())
        self.lam_idx, self.mu_idx = lam_idx, mu_idx
        cl, cm = lam_idx[y, t], mu_idx[y, s]
        self.cl, self.cm = cl, cm
        # Jᵀ diag(q) J: entries (cl, cl), (cm, cm), (cl, cm), (cm, cl) of each cell in an
        # n_x × n_x array, those of a pinned μ in one extra bin past its end (dropped), so that the
        # matrix is contiguous (LAPACK takes it without a copy).
        m = self.n_slots
        row, col = np.concatenate([cl, cm, cl, cm]), np.concatenate([cl, cm, cm, cl])
        self.h_index = np.where((row < n_x) & (col < n_x), row * n_x + col, n_x * n_x)
        # V's entries: row (pair), columns cl and cm of each cell (a pinned μ's: one extra entry).
        dump = n_pairs * n_x
        self.v_index = np.concatenate(
            [self.which * n_x + cl, np.where(cm < n_x, self.which * n_x + cm, dump)]
        )
        # Right-hand side: P(y,t) on the λ unknowns, P(y,s) on the free μ.
        self.p_x = np.concatenate([p_yt[m_yt], p_ys[free_mu]])
        # J: the unknowns to z on the cells, dense (cells × unknowns: small here).
        J = np.zeros((y.size, m))
        J[np.arange(y.size), cl] = 1.0
        J[np.arange(y.size), cm] = 1.0
        self.J = np.ascontiguousarray(J[:, :n_x])
        self.free_mu = free_mu
        # Flat (y, t) and (y, s) index of each cell; the flat (y, t) of each λ unknown, the flat
        # (y, s) of each free and of each pinned μ.
        self.ytc, self.ysc = y * T + t, y * S + s
        self.lam_cells = np.flatnonzero(m_yt)
        self.mu_cells = np.flatnonzero(free_mu)
        self.pin_cells = np.flatnonzero(self.pinned_mu)


def solve_small(p_yt: np.ndarray, p_ys: np.ndarray, tol: float, path: str = "plain", max_iter: int = 100):
    """The interior-point method of ``_solve_path`` (no polish, finish or garbling LP) on a small
    problem. Returns (q, f_upper, d_lower, info) as ``_solve_path`` does; q is None when no
    candidate was certified, ``info["converged"]`` whether f_upper − d_lower ≤ tol."""
    sp = _SmallProblem(p_yt, p_ys)
    Y, T, S = sp.shape
    n_x, n_lam = sp.n_x, sp.n_lam
    m = sp.n_slots
    cy = sp.cell_y
    starts, which, n_pairs = sp.starts, sp.which, sp.n_pairs
    cl, cm, ytc, ysc = sp.cl, sp.cm, sp.ytc, sp.ysc
    h_index, J = sp.h_index, sp.J
    # V (pairs × unknowns, contiguous; the pinned μ's entries go to one extra element past its end):
    # its nonzeros are at the same places every iteration, and no two cells share one (a pair's cells
    # have distinct labels), so they are overwritten in place.
    v_flat = np.zeros(n_pairs * n_x + 1)
    v_lam, v_mu = sp.v_index[: cl.size], sp.v_index[cl.size :]
    V = v_flat[:-1].reshape(n_pairs, n_x)
    p_x = sp.p_x
    p_yt_f, p_ys_f = p_yt.ravel(), p_ys.ravel()
    reduceat_max, reduceat_add = np.maximum.reduceat, np.add.reduceat
    bincount, exp, log = np.bincount, np.exp, np.log

    # Start: Q0 = P(y,t) P(y,s) / P(y), the dual chosen so that softmax_y = Q0(y|t,s), every
    # c ≤ −START_SLACK (``_InteriorPoint``: −1). The pinned μ keep their start value.
    p_y = p_yt.sum(axis=1)
    r = bincount(which, p_yt_f[ytc] * p_ys_f[ysc] / p_y[cy], minlength=n_pairs)
    kappa = -START_SLACK - float(log(r.max()))
    x = np.empty(m)
    x[:n_lam] = log(p_yt_f[sp.lam_cells]) - log(p_y[sp.lam_cells // T]) + kappa
    x[n_lam:n_x] = log(p_ys_f[sp.mu_cells])
    mu_pinned = log(p_ys_f[sp.pin_cells])
    x[n_x:] = mu_pinned
    # The pinned μ's share of the dual objective Σ P(y,s) μ(y,s), and of its error bound.
    pin_terms = p_ys_f[sp.pin_cells] * mu_pinned
    pin_abs_mu = float(np.abs(mu_pinned).max(initial=0.0))

    # z = λ(y,t) + μ(y,s) on the cells, then c = LSE_y z per pair and π = softmax_y z.
    z = x[cl] + x[cm]
    zmax = reduceat_max(z, starts)
    e = exp(z - zmax[which])
    tot = bincount(which, e, minlength=n_pairs)
    c = zmax + log(tot)
    pi = e / tot[which]
    pi[pi < 1e-250] = 0.0
    weight = 1.0
    if path != "plain":
        weight = r / r.mean()
        if path == "sqrt":
            weight = np.sqrt(weight)
            weight /= weight.mean()

    best = [None, np.inf]
    n_terms = p_yt.size + p_ys.size
    err_factor = sum_error_factor(n_terms)
    z_const = 8 * EPS * (np.log(Y) + 1.0)

    def offer(q) -> None:
        """``round_to_feasible`` and ``objective_bound`` of the coupling r·π, on the support cells
        (off them it is 0 and stays 0: the same arithmetic as on the grid)."""
        q = np.maximum(q, 0.0)
        rows = bincount(ytc, q, minlength=Y * T)
        fac = np.divide(p_yt_f, rows, out=np.ones_like(rows), where=rows > 0)
        q = q * np.minimum(1.0, fac)[ytc]
        cols = bincount(ysc, q, minlength=Y * S)
        fac = np.divide(p_ys_f, cols, out=np.ones_like(cols), where=cols > 0)
        q = q * np.minimum(1.0, fac)[ysc]
        d_t = np.maximum(p_yt_f - bincount(ytc, q, minlength=Y * T), 0.0)
        d_s = np.maximum(p_ys_f - bincount(ysc, q, minlength=Y * S), 0.0)
        deficit = d_t.reshape(Y, T).sum(axis=1)
        scale = np.divide(1.0, deficit, out=np.zeros_like(deficit), where=deficit > 0)
        q = q + d_t[ytc] * d_s[ysc] * scale[cy]
        tot = reduceat_add(q, starts)[which]
        pos = q > 0
        terms = q[pos] * log(q[pos] / tot[pos])
        f = float(terms.sum())
        err = sum_error_factor(terms.size) * float(np.abs(terms).sum()) + 4 * EPS * float(q.sum())
        if f + err < best[1]:
            best[:] = [q, f + err]

    def lower_bound(x, c) -> float:
        """``_Problem.lower_bound``: D(λ, μ) − max c less its rounding-error bound (the error
        factor for all Y·T + Y·S terms of the grid's sums, as there)."""
        terms = np.concatenate([p_x * x[:n_x], pin_terms])
        c_max = float(c.max())
        err = err_factor * (float(np.abs(terms).sum()) + abs(c_max))
        z_big = float(np.abs(x[:n_lam]).max(initial=0.0)) + max(
            float(np.abs(x[n_lam:n_x]).max(initial=0.0)), pin_abs_mu
        )
        err += 8 * EPS * z_big + z_const
        return float(terms.sum()) - c_max - err

    # (The start Q0 and the bound f ≥ −min(H(Y|T), H(Y|S)) are not offered: a run that does not
    # certify is handed back to ``_solve_broja``, which offers both.)
    d_low = -np.inf
    info = dict(iterations=0, converged=False, garbling=None, newton="small")

    compl_log = []
    certified = False  # whether the current iterate has been offered
    for it in range(max_iter + 1):
        info["iterations"] = it
        s = -c
        rs = r * s
        compl = float(rs.sum())
        compl_log.append(compl)
        certified = compl <= CERTIFY_BELOW * tol or it == max_iter
        if certified:
            offer(r[which] * pi)
            d_low = max(d_low, lower_bound(x, c))
            if best[1] - d_low <= tol or it == max_iter:
                break
        if it >= STALL_AFTER and compl > 0.5 * compl_log[it - STALL_SPAN]:
            break  # Σ r·(−c) not halving: handed back to the full method
        # The Newton matrix H = Jᵀ diag(q) J + Vᵀ diag(W) V on the unknowns; factorised
        # by Cholesky or (not numerically positive definite) pivoted LU.
        w = 1.0 / s
        q = r[which] * pi
        W = r * w - r
        v_flat[v_lam] = pi
        v_flat[v_mu] = pi
        H = bincount(h_index, np.concatenate([q, q, q, q]), minlength=n_x * n_x + 1)[:-1].reshape(n_x, n_x)
        H += (V.T * W) @ V
        # (Cholesky needs no equilibration: its rounding errors do not depend on a diagonal
        # scaling of the matrix.)
        fac, bad = _potrf(H.T, lower=1, clean=0)
        if bad == 0:

            def solve(b, fac=fac):
                return _potrs(fac, b, lower=1)[0]

        else:
            lu, piv, bad = _getrf(H.T)
            if bad != 0:
                break

            def solve(b, lu=lu, piv=piv):
                return _getrs(lu, piv, b, trans=1)[0]

        gap_mu = compl / n_pairs
        # Predictor (affine scaling: target 0, right-hand side P), its step measured on the true,
        # nonlinear constraints.
        dx_a = solve(p_x)
        dc_a = V @ dx_a
        dr_a = (r * dc_a - rs) * w
        big = float(np.abs(dx_a).max())
        if not big < np.inf:
            break
        a_aff, c_aff, a_r = step_length(
            r, c, z, J @ dx_a, big, dr_a, dc_a, which, starts, SMALL_MAX_MOVE, affine=True
        )
        a_r = max(a_aff, a_r) if path == "plain" else a_aff
        mu_aff = float((r + a_r * dr_a) @ -c_aff) / n_pairs
        sigma = min(1.0, (mu_aff / gap_mu) ** 2) if gap_mu > 0 else 0.0
        # Corrector: centring plus the second-order terms, with the curvature κ of c measured on
        # the predictor (``_InteriorPoint._direction``) (``REFINE``: no refinement).
        if a_aff > 0:
            kap = np.maximum((c_aff - c - a_aff * dc_a) / a_aff**2, 0.0)
            second = dr_a * (dc_a + kap) + r * kap
        else:
            second = dr_a * dc_a
        sm = sigma * gap_mu * weight
        target = np.maximum(sm + second, 0.1 * sm)
        g = p_x - V.T @ (target * w)
        dx = solve(g)
        if REFINE:
            dx += solve(g - H @ dx)
        dc = V @ dx
        d_r = (target - rs + r * dc) * w
        big = float(np.abs(dx).max())
        if not (big < np.inf and np.isfinite(d_r).all()):
            break
        dz = J @ dx
        alpha, c_new, pi_new = step_length(r, c, z, dz, big, d_r, dc, which, starts, SMALL_MAX_MOVE)
        if alpha == 0.0:
            break
        x[:n_x] += alpha * dx
        z = z + alpha * dz
        r, c, pi = r + alpha * d_r, c_new, pi_new
    if not certified:
        # Stopped early (a stall, a singular matrix, no step): the last iterate is offered too.
        offer(r[which] * pi)
        d_low = max(d_low, lower_bound(x, c))
    info["gap"] = best[1] - d_low
    info["converged"] = bool(best[1] - d_low <= tol)
    q = best[0]
    if q is not None:
        grid = np.zeros(Y * T * S)
        grid[sp.grid] = q
        q = grid.reshape(Y, T, S)
    return q, best[1], d_low, info


def affine_r_step(lo: float) -> float:
    """The predictor's step on the pair masses alone: 0.99 of the largest α ≤ 1 keeping r + αΔr > 0,
    from lo = min(Δr/r) (``step_length`` with ``affine`` returns it).

    The centring σ = (μ_aff/μ)² of the small and cell routes (and the batch) estimates
    μ_aff = Σ (r + α_r Δr_aff)(−c(α_c))/m
    with the pair masses moved by this step and the dual by its own (``step_length``'s, which the
    convex c usually limits to 0.2–0.5 on large histograms): separate primal and dual step lengths
    in the estimate, as Mehrotra's LP method takes them; on the plain path only (on the weighted
    path of a skewed fuzz joint, seed 0 index 5940, 30×19×7, it stalled the pair-space run). The
    step actually taken is unchanged (one α for both: separate steps there were measured worse,
    16 → 31 iterations on hist-10x128x128).
    Measured (2-core Xeon, 2026-12-07): hist-10x128x128 (cell route) 18 → 16 iterations, 10×5×5
    histograms unchanged (±1 on a few); ``interior_point`` keeps μ_aff at the common step (see
    there)."""
    return 0.99 * (min(1.0, -1.0 / lo) if lo < 0 else 1.0)


def step_length(r, c, z, dz, big, d_r, dc, which, starts, max_move, affine: bool = False):
    """``_InteriorPoint.feasible_step`` on the support cells: the largest α keeping r > 0 and
    −c ≥ 1 % of its value on every pair, backtracking by 0.9 from the ratio test, the largest move
    (``big`` = max |Δλ|, |Δμ|, at most ``max_move``) and the linearisation bound (c is convex:
    c + αΔc bounds it from below). r > 0 and c < 0 here, so the ratio tests are min(Δr/r) and
    min(Δc/c). The trial points' log-sum-exp is taken relative to the current c: z − c ≤ 0 on every
    cell, at least −log(labels) on the largest, and a step moves any z by at most 2·max_move, so the
    exponentials neither overflow nor all underflow. ``which``: each cell's pair; ``starts``: each
    pair's first cell. Returns (α, c at α, π at α), or (0, c, None) when no α above 1e-12 is
    feasible. The small route and the cell route (``cells.solve_cells``) both take their steps here.

    ``affine`` (the predictor, whose π is not used): returns (α, c at α, ``affine_r_step``) from the
    same ratio test, without forming π.
    """
    alpha = 1.0
    lo_r = lo = float((d_r / r).min())
    if lo < -1.0:
        alpha = -1.0 / lo
    alpha *= 0.99
    if big * alpha > max_move:
        alpha = max_move / big
    lo = float((dc / c).min())
    if lo < 0.0:
        alpha = min(alpha, -0.99 / lo)
    # c + log(tot) ≤ 0.01 c, tested as tot ≤ exp(−0.99 c): the log is taken at the accepted α only.
    limit = np.exp(-0.99 * c)
    base = z - c[which]
    while alpha > 1e-12:
        e = np.exp(base + alpha * dz)
        tot = np.bincount(which, e, minlength=starts.size)
        if (tot <= limit).all():
            c_new = c + np.log(tot)
            if affine:
                return alpha, c_new, affine_r_step(lo_r)
            pi = e / tot[which]
            pi[pi < 1e-250] = 0.0
            return alpha, c_new, pi
        alpha *= 0.9
    return 0.0, c, (affine_r_step(lo_r) if affine else None)
