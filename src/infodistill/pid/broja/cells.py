"""``solve_cells``: the interior-point method of ``interior_point`` on the support cells, with the
Schur complement in μ, for joints whose support fills little of the Y·T·S grid (histograms of
clustered representations: ~11 % of the grid on hist-10x128x128), with any number of labels
(``cells_route``): where the general route would assemble the Schur complement from its structured
sums (more than ``DENSE_MAX_Y`` labels) or as a sparse matrix, the dense Schur complement on the
free μ alone is the smaller one.

The general route holds π on the full grid: its right-hand sides, the exact products of the
refinement, the label blocks and the trial steps' log-sum-exp are einsums and masks over all Y·T·S
cells, ~60 % of a hist-10x128x128 solve although only the support cells can carry mass. Here every
per-cell quantity is a vector over the support cells (in (t, s, y) order, so a pair's cells are
contiguous), as in ``small.solve_small``, and the Newton matrix is factorised as the general
route's compressed SYRK route does (``_NewtonSystem._factor_syrk``), assembled from the cells:

* the unknowns are λ(y,t) with P(y,t) > 0 and the free μ(y,s) (P(y,s) > 0, one μ per label
  pinned); with G the (cell, cell') entries of one pair, G = W_p π π' + δ q (the pair blocks of H),
  the label blocks A_t (Y×Y, identity on unused labels), the coupling B (T, Y, free μ) and C's
  entries among the free μ are scatters of G's values (fixed positions, computed once);
* A_t = L_t L_tᵀ (batched), R = L⁻¹B on the used λ rows, and the Schur complement C − RᵀR is one
  SYRK of R with the equilibration folded into its columns, factorised by Cholesky (LAPACK potrf),
  in float32 while the refined solves stay accurate (from ``SINGLE_MIN_N`` free μ, as the general
  route) and in float64 after; where the float64 matrix is not numerically positive definite (the
  cancellation in C − RᵀR, late on joints with many labels), by pivoted LU, its solves refined one
  step more;
* a solve is dμ = S⁻¹(g_μ − Rᵀ L⁻¹ g_λ), dλ = L⁻ᵀ(L⁻¹ g_λ − R dμ), refined against the exact
  product H·x = Jᵀ(q ∘ Jx) + Vᵀ(W ∘ Vx) on the cells (three bincounts).

Sums over each pair's cells are ``np.bincount(which, x, minlength=pairs)``: 4.5× faster than
``np.add.reduceat(x, starts)`` on hist-10x128x128's 17 128 cells (25 against 112 µs, 2-core Xeon).

The iteration (start, central path, Mehrotra predictor-corrector with the curvature term, step
rule, certificates on the cells) is ``solve_small``'s; a run that does not certify (stall, no step,
a matrix not numerically positive definite) is handed back to ``_solve_broja`` with its bounds, as
the small route's is.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from ..limits import memory_budget
from .certificates import EPS, sum_error_factor
from .newton import _Factor, floor
from .problem import (
    DENSE_MAX_Y,
    PAIR_SPACE_ADVANTAGE,
    _Problem,
    cells_work,
    coupling_nnz,
    pair_space_work,
)
from .small import step_length

#: The cell route is taken when the support fills at most this fraction of the Y·T·S grid, for
#: at most ``DENSE_MAX_Y`` labels: measured (2-core Xeon, 2026-12-07; joints whose labels each use a
#: random part of the T and S symbols) against the general route's Schur complement, the cells were
#: as fast or faster up to a fill of 0.53 (10×32×32 at 0.53: 29 against 40 ms; 16×16×16: 16 against
#: 24 ms) and slower above 0.6 on larger systems (10×64×64 at 0.63: 204 against 170 ms). Denser
#: supports gain little from gathers over broadcasts.
CELLS_MAX_FILL = 0.5
#: ... and for more labels, where the general route's dense Schur complement is assembled from the
#: structured sums (slower kernels): 20×24×24 at fills 0.22 / 0.47 / 0.61 / 0.81: 27 / 43 / 56 /
#: 100 ms on the cells against 136 / 100 / 149 / 99 ms.
CELLS_MAX_FILL_MANY_LABELS = 0.8

#: The cell route's dense Schur complement is factorised up to this many free μ (~1 s a float32
#: factorisation on 2 cores above it); larger sparse supports take the sparse Schur complement,
#: whose factorisation grows with its fill rather than with the cube of its size (not measured at
#: that size: the largest joint measured, a 200×64×64 histogram with 1 348 free μ, took 3.2 s on
#: the cells against 10.4 s in the sparse route).
CELLS_MAX_MU = 4000

#: R = L⁻¹B is formed by a dense batched product when its multiply-adds are below this multiple of
#: the scatter's terms (see ``_Cells``).
R_DENSE_ADVANTAGE = 8.0

#: The free μ from which the Schur complement is factorised in float32 first (as the general
#: route's ``SINGLE_MIN_N``).
SINGLE_MIN_N = 512

#: Certificates are evaluated once Σ r·(−c) is at most this multiple of the tolerance (each costs a
#: rounding and an objective on the cells, ~1 % of an iteration).
CERTIFY_BELOW = 30.0

#: A run whose Σ r·(−c) has not halved in ``STALL_SPAN`` iterations, after ``STALL_AFTER``, is
#: handed back.
STALL_AFTER = 25
STALL_SPAN = 5

#: The largest change of any λ, μ in one step (nats), as ``interior_point.MAX_DUAL_MOVE``.
MAX_MOVE = 20.0

#: Refinement of the corrector's solve: a float32 factorisation is refined until the relative
#: residual is below ``SINGLE_MAX_RESIDUAL`` (at most ``SINGLE_MAX_REFINE`` steps), else the step
#: is redone in float64 and so are all later ones (as ``_NewtonBase.solve``).
SINGLE_MAX_RESIDUAL = 1e-8
SINGLE_MAX_REFINE = 3

#: Refinement steps of the corrector's solve in float64 (on the bench's and the tests' histograms one
#: step changed no iteration count and no certified gap).
CORRECTOR_REFINE = 0


def cells_bytes(prob: _Problem) -> float:
    """The memory of the cell route's arrays, counted on the code: R and its scaled float64 and
    float32 copies (used λ × free μ), the Schur complement in both precisions and a pivoted-LU copy,
    B's dense buffer (at most T·Y × free μ: T·K of its rows), the pair blocks' entries and the
    per-cell vectors."""
    rows, cols, _ = prob.schur_index()
    n_lam, n_mu = rows.size, cols.size
    Y, T = prob.p_yt.shape
    n_cells = prob.support_cells()[0].size
    return 8.0 * (2.5 * n_lam * n_mu + 3.5 * n_mu**2 + T * Y * n_mu + 12 * coupling_nnz(prob) + 30 * n_cells)


def cells_route(prob: _Problem) -> bool:
    """Whether ``solve_cells`` is tried first for this problem: its support fills at most
    ``CELLS_MAX_FILL`` of the grid (``CELLS_MAX_FILL_MANY_LABELS`` above ``DENSE_MAX_Y`` labels), the
    pair-space system is not the cheaper one (``problem.pair_space_work`` against
    ``problem.cells_work``, as the general route weighs pair space against its Schur complement:
    a 100×10×10 histogram, 100 pairs, 58 ms in pair space against 676 ms on the cells), and the dense
    Schur complement on its free μ has at most ``CELLS_MAX_MU`` of them and fits the memory budget.

    Sparse supports with many labels come here too: a 50×128×128 histogram of 10 000 samples took
    0.45 s on the cells against 4.6 s in the sparse Schur complement, 30×1024×1024 2.3 s against
    194 s (which ended uncertified)."""
    Y = prob.p_yt.shape[0]
    if prob.n_pairs == 0:
        return False
    rows, cols, _ = prob.schur_index()
    if rows.size == 0 or cols.size == 0 or cols.size > CELLS_MAX_MU:
        return False
    fill = prob.support_cells()[0].size / prob.support.size
    if fill > (CELLS_MAX_FILL if Y <= DENSE_MAX_Y else CELLS_MAX_FILL_MANY_LABELS):
        return False
    if pair_space_work(prob) < PAIR_SPACE_ADVANTAGE * cells_work(prob):
        return False
    return cells_bytes(prob) <= memory_budget()


class _Cells:
    """Index structure of one problem on its support cells: the unknowns, the pinned μ, and the
    scatter positions of the Newton matrix's blocks."""

    def __init__(self, prob: _Problem):
        p_yt, p_ys = prob.p_yt, prob.p_ys
        Y, T = p_yt.shape
        S = p_ys.shape[1]
        self.shape = (Y, T, S)
        y, t, s, starts, which = prob.support_cells()
        self.y, self.t, self.s, self.starts, self.which = y, t, s, starts, which
        self.n_pairs = starts.size
        self.grid = (y * T + t) * S + s
        rows, cols, _ = prob.schur_index()  # used λ (t, y)-flat; free μ (s, z)-flat
        self.rows, self.cols = rows, cols
        n_lam, n_mu = rows.size, cols.size
        self.n_lam, self.n_x = n_lam, n_lam + n_mu
        # Slots: λ (t,y)-order, free μ (s,z)-order, then the pinned μ (one per label).
        lam_slot = np.full(T * Y, -1)
        lam_slot[rows] = np.arange(n_lam)
        mu_slot = np.full(S * Y, -1)
        mu_slot[cols] = n_lam + np.arange(n_mu)
        pin = prob.pin  # (s, z)-flat of each label's pinned μ (P(z, s) > 0 for every label)
        mu_slot[pin] = self.n_x + np.arange(Y)
        self.m = self.n_x + Y
        self.cl, self.cm = lam_slot[t * Y + y], mu_slot[s * Y + y]
        self.hx_index = np.concatenate([self.cl, self.cm])
        self.lam_t, self.lam_y = rows // Y, rows % Y
        # The label blocks A_t hold only the labels t uses (P(y, t) > 0), in label order, padded
        # with the identity to the widest block K: the others are identity rows and columns of the
        # full Y×Y block, which its Cholesky and inverse would carry at O(Y³) per t (50×128×128
        # histograms: at most 9 of 50 labels per t, the (128, 50, 50) inverse 40 % of the solve).
        per_t = np.bincount(self.lam_t, minlength=T)
        row_start = np.cumsum(per_t) - per_t
        K = max(int(per_t.max(initial=0)), 1)
        self.K = K
        rank = np.arange(n_lam) - row_start[self.lam_t]  # place of each used λ in its block
        lam_rank = np.full(T * Y, -1)
        lam_rank[rows] = rank
        self.lam_pos = self.lam_t * K + rank  # each used λ's row in the (T, K) blocks
        self.mu_s, self.mu_y = cols // Y, cols % Y
        self.pin_s, self.pin_y = pin // Y, pin % Y
        # Entries (i, j) of G: cells of the same pair, i's label first.
        k = np.diff(np.r_[starts, y.size])[which]  # labels of each cell's pair
        first = starts[which]
        ei = np.repeat(np.arange(y.size), k)
        ej = first[ei] + np.arange(ei.size) - np.repeat(np.cumsum(k) - k, k)
        self.ei, self.ej, self.ep = ei, ej, which[ei]
        self.diag_e = ei == ej
        # A (T, K, K): every entry (a pair's cells use their labels' λ at its t).
        self.a_index = (t[ei] * K + lam_rank[t[ei] * Y + y[ei]]) * K + lam_rank[t[ej] * Y + y[ej]]
        # B (T, K, n_mu): entries whose column μ(y_j, s) is free (no two share a position).
        free_j = (self.cm[ej] >= n_lam) & (self.cm[ej] < self.n_x)
        self.b_sel = np.flatnonzero(free_j)
        self.b_pos = self.lam_pos[self.cl[ei[free_j]]] * n_mu + (self.cm[ej[free_j]] - n_lam)
        # R = L⁻¹B on the used λ rows, as a scatter: B's entry (t, z, column) meets L_t⁻¹[y, z]
        # for the used labels y ≥ z of block t (L_t⁻¹ is lower triangular): Σ over B's entries of
        # the used labels of their t, instead of a dense (T, K, K)·(T, K, free μ) product.
        b_t = t[ei[free_j]]
        b_rank = rank[self.cl[ei[free_j]]]  # z's place in block t
        b_col = self.cm[ej[free_j]] - n_lam
        # The scatter costs ~Σ_entries (used labels of the block)/2 bincount terms; a dense batched
        # product T·K²·(free μ) multiply-adds at BLAS speed (~10× cheaper per term): dense joints
        # take the product, with B kept in a buffer whose nonzero positions never change.
        scatter_terms = 0.5 * float(per_t[b_t].sum())
        self.r_dense = T * K * K * n_mu < R_DENSE_ADVANTAGE * scatter_terms
        if self.r_dense:
            self.b_buf = np.zeros(T * K * n_mu)
        self.r_size = n_lam * n_mu
        # For each rank k within its block, the B entries whose block has a k-th used label.
        parts_e, parts_r = [], []
        for k in range(0 if self.r_dense else int(per_t.max(initial=0))):
            e_k = np.flatnonzero(per_t[b_t] > k)
            r_k = row_start[b_t[e_k]] + k
            keep = k >= b_rank[e_k]
            parts_e.append(e_k[keep])
            parts_r.append(r_k[keep])
        e = np.concatenate(parts_e) if parts_e else np.zeros(0, int)
        r_of = np.concatenate(parts_r) if parts_r else np.zeros(0, int)
        self.r_entry = self.b_sel[e]  # into G's entries
        self.r_linv = (b_t[e] * K + rank[r_of]) * K + b_rank[e]  # into L⁻¹ (T, K, K) flat
        self.r_target = r_of * n_mu + b_col[e]  # into R (used λ, free μ) flat
        # Work buffers of the factorisation (reused every iteration: no page faults).
        self.buf_rs = {np.float64: np.empty((n_lam, n_mu)), np.float32: np.empty((n_lam, n_mu), np.float32)}
        self.buf_low = {
            np.float64: np.zeros((n_mu, n_mu), order="F"),
            np.float32: np.zeros((n_mu, n_mu), np.float32, order="F"),
        }
        # C among the free μ: entries with both μ free, summed over t into unique positions.
        free_i = (self.cm[ei] >= n_lam) & (self.cm[ei] < self.n_x)
        both = free_i & free_j
        self.c_sel = np.flatnonzero(both)
        key = (self.cm[ei[both]] - n_lam) * n_mu + (self.cm[ej[both]] - n_lam)
        mark = np.zeros(n_mu * n_mu, bool)
        mark[key] = True
        self.c_pos = np.flatnonzero(mark)
        self.c_inv = (np.cumsum(mark) - 1)[key]
        c_i, c_j = self.c_pos // n_mu, self.c_pos % n_mu
        self.c_diag = np.flatnonzero(c_i == c_j)  # C's diagonal among c_pos
        self.c_diag_col = c_i[self.c_diag]
        # Only the triangle that SYRK writes and potrf reads (i ≤ j in the C-ordered view) is
        # updated: the other keeps what the buffer held and is never read.
        self.c_tri = np.flatnonzero(c_i <= c_j)
        self.c_pos_tri, self.c_i, self.c_j = self.c_pos[self.c_tri], c_i[self.c_tri], c_j[self.c_tri]
        # Diagonal positions of A's padding: (t, k, k) flat for k ≥ the labels t uses.
        pad = np.flatnonzero(np.arange(K)[None, :] >= per_t[:, None])
        self.a_unused = (pad // K * K + pad % K) * K + pad % K
        self.ytc, self.ysc = y * T + t, y * S + s  # flat (y,t), (y,s) of each cell


class _Schur:
    """The factorised Newton matrix of one iterate on the cells (see the module docstring)."""

    def __init__(self, cs: _Cells, pi, q, W, single: bool):
        Y, T, S = cs.shape
        n_mu = cs.n_x - cs.n_lam
        self.cs, self.pi, self.q, self.W = cs, pi, q, W
        g = W[cs.ep] * pi[cs.ei] * pi[cs.ej]
        g[cs.diag_e] += q
        K = cs.K
        A = np.bincount(cs.a_index, g, minlength=T * K * K)
        A[cs.a_unused] = 1.0
        A = A.reshape(T, K, K)
        L_inv = np.linalg.inv(np.linalg.cholesky(A))  # LinAlgError: handed back
        self.L_inv = L_inv
        if cs.r_dense:
            cs.b_buf[cs.b_pos] = g[cs.b_sel]
            R = np.matmul(L_inv, cs.b_buf.reshape(T, K, n_mu)).reshape(T * K, n_mu)
            if cs.n_lam < T * K:
                R = np.take(R, cs.lam_pos, axis=0)
        else:
            R = np.bincount(cs.r_target, L_inv.reshape(-1)[cs.r_linv] * g[cs.r_entry], minlength=cs.r_size)
            R = R.reshape(cs.n_lam, n_mu)
        self.R = R
        c_vals = np.bincount(cs.c_inv, g[cs.c_sel], minlength=cs.c_pos.size)
        diag = np.zeros(n_mu)
        diag[cs.c_diag_col] = c_vals[cs.c_diag]
        c_diag = diag.copy()
        diag -= np.einsum("ij,ij->j", R, R)
        # (Equilibrated with the floor of ``newton.CANCEL_FLOOR`` where C − RᵀR cancels.)
        scale = 1.0 / np.sqrt(np.maximum(diag, floor(c_diag)))
        self.single = single
        dtype = np.float32 if single else np.float64
        Rs = np.multiply(R, scale, out=cs.buf_rs[dtype], casting="unsafe")
        (syrk,) = linalg.get_blas_funcs(("syrk",), (Rs,))

        def assemble():
            """C − RᵀR, equilibrated, in the lower triangle of the buffer (Fortran order)."""
            low = syrk(1.0, Rs.T, trans=0, lower=1, beta=0.0, c=cs.buf_low[dtype], overwrite_c=1)
            np.negative(low, out=low)
            flat = low.T.reshape(-1)  # C-ordered view of the same memory
            flat[cs.c_pos_tri] += c_vals[cs.c_tri] * scale[cs.c_i] * scale[cs.c_j]
            return low

        low = assemble()
        self.scale = scale
        factor = _Factor.cholesky_lower(low, scale)
        if factor is None:
            if single:
                raise np.linalg.LinAlgError("Schur complement not positive definite in float32")
            # Not numerically positive definite (late in the iteration, the cancellation in C − RᵀR
            # on joints with many labels, e.g. 64×128×128 histograms): pivoted LU of the same matrix,
            # assembled again (potrf overwrote part of its triangle).
            low = assemble()
            full = np.ascontiguousarray(np.tril(low) + np.tril(low, -1).T)
            factor = _Factor(full, spd=False, scale=scale)
            if not np.all(np.diagonal(factor.fac[0])):
                raise np.linalg.LinAlgError("Schur complement singular")
        self.factor = factor
        self.pivoted = factor.kind == "lu"

    def solve_once(self, g: np.ndarray) -> np.ndarray:
        """An approximate solve H x = g (g over the unknowns λ, free μ)."""
        cs = self.cs
        Y, T, _ = cs.shape
        n_lam = cs.n_lam
        K = cs.K
        gl = np.zeros(T * K)
        gl[cs.lam_pos] = g[:n_lam]
        u = np.matmul(self.L_inv, gl.reshape(T, K, 1)).reshape(-1)
        rhs = g[n_lam:] - self.R.T @ u[cs.lam_pos]
        d_mu = self.factor.solve(rhs)
        u[cs.lam_pos] -= self.R @ d_mu
        d_lam = np.matmul(self.L_inv.transpose(0, 2, 1), u.reshape(T, K, 1)).reshape(-1)
        return np.concatenate([d_lam[cs.lam_pos], d_mu])

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """The exact product H x on the cells."""
        cs = self.cs
        xs = np.zeros(cs.m)
        xs[: cs.n_x] = x
        dz = xs[cs.cl] + xs[cs.cm]
        v = np.bincount(cs.which, self.pi * dz, minlength=cs.n_pairs)
        gz = self.q * dz + self.pi * (self.W * v)[cs.which]
        out = np.bincount(cs.hx_index, np.concatenate([gz, gz]), minlength=cs.m)
        return out[: cs.n_x]


def _refined_solve(system: _Schur, g: np.ndarray, refine: int, check: bool):
    """Solve H x = g with ``refine`` steps of iterative refinement against the exact product (one
    more in float32); a checked float32 solve goes on, up to ``SINGLE_MAX_REFINE`` steps, until its
    relative residual is below ``SINGLE_MAX_RESIDUAL``. Returns (x, whether that held)."""
    dx = system.solve_once(g)
    steps = refine + system.single + system.pivoted  # one more for a pivoted LU
    limit = (SINGLE_MAX_RESIDUAL if system.single else np.inf) * float(np.sqrt(g @ g))
    most = SINGLE_MAX_REFINE if system.single else steps
    k = 0
    while True:
        if k >= steps and not (check and system.single):
            return dx, True
        res = g - system.matvec(dx)
        if k >= steps and float(np.sqrt(res @ res)) <= limit:
            return dx, True
        if k >= most:
            return dx, False
        dx = dx + system.solve_once(res)
        k += 1


def solve_cells(prob: _Problem, tol: float, path: str = "plain", max_iter: int = 100):
    """The interior-point method of ``_solve_path`` (no polish, finish or garbling LP) on the
    support cells. Returns (q, f_upper, d_lower, info) as ``_solve_path`` does; q is None when no
    candidate was certified, ``info["converged"]`` whether f_upper − d_lower ≤ tol."""
    cs = _Cells(prob)
    p_yt, p_ys = prob.p_yt, prob.p_ys
    Y, T, S = cs.shape
    n_x, n_lam, m = cs.n_x, cs.n_lam, cs.m
    cy, starts, which, n_pairs = cs.y, cs.starts, cs.which, cs.n_pairs
    cl, cm, ytc, ysc = cs.cl, cs.cm, cs.ytc, cs.ysc
    p_yt_f, p_ys_f = p_yt.ravel(), p_ys.ravel()
    reduceat_max, reduceat_add = np.maximum.reduceat, np.add.reduceat
    bincount, exp, log = np.bincount, np.exp, np.log
    hx_index = cs.hx_index
    # Right-hand side P on the unknowns: P(y,t) on the λ, P(y,s) on the free μ.
    p_x = np.concatenate([p_yt[cs.lam_y, cs.lam_t], p_ys[cs.mu_y, cs.mu_s]])

    # Start: Q0 = P(y,t) P(y,s) / P(y), as ``_InteriorPoint``; the pinned μ keep their start value.
    p_y = p_yt.sum(axis=1)
    r = bincount(which, p_yt_f[ytc] * p_ys_f[ysc] / p_y[cy], minlength=n_pairs)
    kappa = -1.0 - float(log(r.max()))
    x = np.empty(m)
    x[:n_lam] = log(p_yt[cs.lam_y, cs.lam_t]) - log(p_y[cs.lam_y]) + kappa
    x[n_lam:n_x] = log(p_ys[cs.mu_y, cs.mu_s])
    mu_pinned = log(p_ys[cs.pin_y, cs.pin_s])
    x[n_x:] = mu_pinned
    pin_terms = p_ys[cs.pin_y, cs.pin_s] * mu_pinned
    pin_abs_mu = float(np.abs(mu_pinned).max(initial=0.0))

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
    err_factor = sum_error_factor(p_yt.size + p_ys.size)
    z_const = 8 * EPS * (np.log(Y) + 1.0)

    def offer(q) -> None:
        """``round_to_feasible`` and ``objective_bound`` of the coupling r·π on the support cells
        (off them it is 0 and stays 0: the same arithmetic as on the grid; ``small.solve_small``)."""
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
        """``_Problem.lower_bound`` on the unknowns (``small.solve_small``)."""
        terms = np.concatenate([p_x * x[:n_x], pin_terms])
        c_max = float(c.max())
        err = err_factor * (float(np.abs(terms).sum()) + abs(c_max))
        z_big = float(np.abs(x[:n_lam]).max(initial=0.0)) + max(
            float(np.abs(x[n_lam:n_x]).max(initial=0.0)), pin_abs_mu
        )
        err += 8 * EPS * z_big + z_const
        return float(terms.sum()) - c_max - err

    d_low = -np.inf
    info = dict(iterations=0, converged=False, garbling=None, newton="cells", single_precision_steps=0)

    def v_apply(pi, dx):
        """Δz = J Δx on the cells and Δc = V Δx (π-weighted sums of Δz per pair)."""
        xs = np.zeros(m)
        xs[:n_x] = dx
        dz = xs[cl] + xs[cm]
        return dz, bincount(which, pi * dz, minlength=n_pairs)

    def vt_apply(pi, v):
        """Vᵀ v over the unknowns."""
        pv = pi * v[which]
        return bincount(hx_index, np.concatenate([pv, pv]), minlength=m)[:n_x]

    single = n_x - n_lam >= SINGLE_MIN_N
    compl_log = []
    certified = False
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
        w = 1.0 / s
        q = r[which] * pi
        W = r * w - r
        gap_mu = compl / n_pairs
        direction = None
        while direction is None:
            try:
                system = _Schur(cs, pi, q, W, single)
            except np.linalg.LinAlgError:
                if single:
                    single = False
                    continue
                break

            # Predictor (affine scaling: target 0).
            dx_a, _ = _refined_solve(system, p_x, 0, False)
            dz_a, dc_a = v_apply(pi, dx_a)
            dr_a = (r * dc_a - rs) * w
            big = float(np.abs(dx_a).max())
            if not big < np.inf:
                if single:
                    single = False
                    continue
                break
            a_aff, c_aff, a_r = step_length(
                r, c, z, dz_a, big, dr_a, dc_a, which, starts, MAX_MOVE, affine=True
            )
            # (See ``small.affine_r_step``; here on the weighted path too: on the 14 reweighted
            # joints of the many-label sweep, seed 0, that start on the cells on that path, 12
            # certified with this estimate and the same 12 with the common step, ±3 iterations.)
            a_r = max(a_aff, a_r)
            mu_aff = float((r + a_r * dr_a) @ -c_aff) / n_pairs
            sigma = min(1.0, (mu_aff / gap_mu) ** 2) if gap_mu > 0 else 0.0
            if a_aff > 0:
                kap = np.maximum((c_aff - c - a_aff * dc_a) / a_aff**2, 0.0)
                second = dr_a * (dc_a + kap) + r * kap
            else:
                second = dr_a * dc_a
            sm = sigma * gap_mu * weight
            target = np.maximum(sm + second, 0.1 * sm)
            dx, ok = _refined_solve(system, p_x - vt_apply(pi, target * w), CORRECTOR_REFINE, True)
            if not ok:
                single = False  # float32 no longer accurate enough: this step and all later
                continue
            direction = dx, target
        if direction is None:
            break
        info["single_precision_steps"] += system.single
        dx, target = direction
        dz, dc = v_apply(pi, dx)
        d_r = (target - rs + r * dc) * w
        big = float(np.abs(dx).max())
        if not (big < np.inf and np.isfinite(d_r).all()):
            break
        alpha, c_new, pi_new = step_length(r, c, z, dz, big, d_r, dc, which, starts, MAX_MOVE)
        if alpha == 0.0:
            break
        x[:n_x] += alpha * dx
        z = z + alpha * dz
        r, c, pi = r + alpha * d_r, c_new, pi_new
    if not certified:
        offer(r[which] * pi)
        d_low = max(d_low, lower_bound(x, c))
    info["gap"] = best[1] - d_low
    info["converged"] = bool(best[1] - d_low <= tol)
    q = best[0]
    if q is not None:
        grid = np.zeros(Y * T * S)
        grid[cs.grid] = q
        q = grid.reshape(Y, T, S)
    return q, best[1], d_low, info
