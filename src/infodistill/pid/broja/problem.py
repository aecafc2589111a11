"""The BROJA problem as the solver holds it: the marginals P(y,t), P(y,s), their support cells
grouped by pair (t, s), the dual constraint c(t,s) and the primal π(y|t,s) at a dual point, the
certified dual bound, and which route the Newton systems take for the problem's shape (dense Schur
complement, sparse Schur complement or pair space; the systems themselves are in ``newton``).
"""

from __future__ import annotations

import numpy as np

from .certificates import EPS, sum_error_factor


class _Problem:
    """Dual of the BROJA problem for marginals P(y,t), P(y,s) in which every symbol is used."""

    def __init__(self, p_yt: np.ndarray, p_ys: np.ndarray):
        self.p_yt, self.p_ys = p_yt, p_ys
        self.m_yt, self.m_ys = p_yt > 0, p_ys > 0
        self.support = self.m_yt[:, :, None] & self.m_ys[:, None, :]
        self.pairs = self.support.any(axis=0)
        #: Every (y, t, s) cell in the support.
        self.full = bool(self.m_yt.all() and self.m_ys.all())
        self.n_pairs = int(self.pairs.sum())
        self.pair_t, self.pair_s = np.nonzero(self.pairs)  # sorted by t, then s
        Y = p_yt.shape[0]
        # One μ(y, s) per label is pinned: (λ(y,·)+a_y, μ(y,·)−a_y) leaves every c(t,s) unchanged.
        self.pin = np.argmax(self.m_ys, axis=1) * Y + np.arange(Y)
        self._coupling_pattern = None
        self._cells = None
        self._schur_index = None
        self._sparse = None
        self._pair_space = None
        #: Never the sparse Schur complement (a restart's route, see ``_solve_broja``).
        self.dense_only = False

    @property
    def pair_space(self) -> bool:
        if self._pair_space is None:
            self._pair_space = _pair_space(self)
        return self._pair_space

    def support_cells(self):
        """The support cells (y, t, s) grouped by pair (t, s), the index where each pair's run of
        cells starts, and each cell's pair number; computed once per problem."""
        if self._cells is None:
            t, s, y = np.nonzero(self.support.transpose(1, 2, 0))
            starts = np.flatnonzero(np.r_[True, (t[1:] != t[:-1]) | (s[1:] != s[:-1])])
            which = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, y.size]))
            self._cells = (y, t, s, starts, which)
        return self._cells

    def coupling_pattern(self):
        """Nonzeros of the (T·Y)×(S·Y) block B: (y, z) ∈ support labels of the same pair (t, s).

        Returned as cell indices (into the support cells listed in (t, s, y) order) for the row
        and column of each nonzero, plus the B row/column indices; computed once per problem.
        """
        if self._coupling_pattern is None:
            Y = self.p_yt.shape[0]
            S = self.p_ys.shape[1]
            y, t, s, _, _ = self.support_cells()
            pair = t * S + s
            k = np.bincount(pair, minlength=self.pairs.size)[pair]  # labels in each cell's pair
            first = np.searchsorted(pair, pair)  # index of the pair's first cell
            row = np.repeat(np.arange(pair.size), k)
            within = np.arange(row.size) - np.repeat(np.cumsum(k) - k, k)
            col = first[row] + within
            self._coupling_pattern = (
                (y, t, s),
                row,
                col,
                t[row] * Y + y[row],
                s[col] * Y + y[col],
            )
        return self._coupling_pattern

    def schur_index(self):
        """For the Schur complement in μ solved on the used, unpinned μ only: the rows (t, y) of
        R = L⁻¹B with P(y, t) > 0, the μ indices (s, z)-flat with P(z, s) > 0 that are not pinned,
        and the entries of C's diagonal blocks among them: compressed positions (i, j) and their
        source (s, y, z) in C (S, Y, Y). Computed once per problem."""
        if self._schur_index is None:
            Y = self.p_yt.shape[0]
            rows = np.flatnonzero(self.m_yt.T.reshape(-1))
            free = self.m_ys.T.reshape(-1).copy()
            free[self.pin] = False
            cols = np.flatnonzero(free)
            s_of = cols // Y
            n_s = np.bincount(s_of, minlength=self.p_ys.shape[1])
            start = np.cumsum(n_s) - n_s
            k = n_s[s_of]  # entries of each compressed row in its diagonal block
            ci = np.repeat(np.arange(cols.size), k)
            cj = start[s_of][ci] + np.arange(ci.size) - np.repeat(np.cumsum(k) - k, k)
            self._schur_index = (rows, cols, (ci, cj, s_of[ci], cols[ci] % Y, cols[cj] % Y))
        return self._schur_index

    #: Below this fill of the (y, t, s) grid, c and π are computed on the support cells only.
    SPARSE_EVAL_DENSITY = 0.3

    def evaluate(self, lam: np.ndarray, mu: np.ndarray):
        """c(t,s) = LSE_y(λ+μ) (−inf off the pairs) and π(y|t,s) = softmax_y(λ+μ)."""
        y, t, s, starts, which = self.support_cells()
        if y.size < self.SPARSE_EVAL_DENSITY * self.support.size:
            z = lam[y, t] + mu[y, s]
            zmax = np.maximum.reduceat(z, starts)
            e = np.exp(z - zmax[which])
            tot = np.add.reduceat(e, starts)
            c = np.full(self.pairs.shape, -np.inf)
            c[t[starts], s[starts]] = zmax + np.log(tot)
            pi = np.zeros(self.support.shape)
            vals = e / tot[which]
            vals[vals < 1e-250] = 0.0
            pi[y, t, s] = vals
            return c, pi
        if self.full:
            # Every cell in the support (dense joints): the same arithmetic without the masks.
            z = lam[:, :, None] + mu[:, None, :]
            zmax = z.max(axis=0)
            z -= zmax
            e = np.exp(z, out=z)
            tot = e.sum(axis=0)
            c = zmax + np.log(tot)
            e /= tot
            e[e < 1e-250] = 0.0
            return c, e
        z = np.where(self.support, lam[:, :, None] + mu[:, None, :], -np.inf)
        zmax = np.where(self.pairs, z.max(axis=0), 0.0)
        e = np.exp(z - zmax)
        tot = np.where(self.pairs, e.sum(axis=0), 1.0)
        c = np.where(self.pairs, zmax + np.log(tot), -np.inf)
        pi = e / tot
        pi[pi < 1e-250] = 0.0  # keep denormals out of the linear algebra
        return c, pi

    def linear(self, lam, mu) -> float:
        return float((self.p_yt * lam).sum() + (self.p_ys * mu).sum())

    def lower_bound(self, lam, mu, c) -> float:
        """The certified dual bound D(λ, μ) − max c, less the rounding error of evaluating it: the
        two sums (γ_n·Σ|P·λ|, ``sum_error_factor``) and max c, a log-sum-exp whose error is a few
        ulps of |max z| + log(terms) (z = λ + μ)."""
        a, b = self.p_yt * lam, self.p_ys * mu
        c_max = float(c[self.pairs].max())
        n = a.size + b.size
        err = sum_error_factor(n) * float(np.abs(a).sum() + np.abs(b).sum() + abs(c_max))
        z_big = float(np.abs(lam[self.m_yt]).max(initial=0.0) + np.abs(mu[self.m_ys]).max(initial=0.0))
        err += 8 * EPS * (z_big + np.log(self.p_yt.shape[0]) + 1.0)
        return float(a.sum() + b.sum()) - c_max - err


# ---------------------------------------------------------------- the route of the Newton systems
# Here rather than in ``newton``: ``_Problem.pair_space`` needs it, and ``newton`` needs ``_Problem``.

#: Largest |Y| for which the single-product assembly is used (measured crossover on 2 cores).
DENSE_MAX_Y = 16
#: Below this fill of the coupling block, it is assembled as a sparse product (histograms of
#: clustered representations have few labels per (t, s) pair).
SPARSE_MAX_DENSITY = 0.05

#: The pair-space system is chosen when its modelled work is below this fraction of the Schur
#: complement's (the Schur complement's kernels are the more efficient ones).
PAIR_SPACE_ADVANTAGE = 0.7


def coupling_nnz(prob: _Problem) -> int:
    """Nonzeros of the coupling block B: (support labels of the pair)² summed over pairs."""
    k = prob.support.sum(axis=0)
    return int((k * k).sum())


#: A problem whose coupling block is sparse still takes the dense Schur complement (SYRK route,
#: solved on its used, unpinned μ only: ``_NewtonSystem._factor_syrk``) while that product's work,
#: rows × columns², is at most this: hist-10x128x128 (430 × 390²) took 0.35 s there against 0.54 s
#: in the sparse route (17 iterations each, 2-core Xeon).
COMPRESSED_DENSE_MAX_WORK = 2e8


def is_sparse(prob: _Problem) -> bool:
    """Whether the Schur complement is assembled and factorised as a sparse matrix (computed once
    per problem)."""
    if prob.dense_only:
        return False
    if prob._sparse is None:
        Y, T = prob.p_yt.shape
        S = prob.p_ys.shape[1]
        sparse = coupling_nnz(prob) < SPARSE_MAX_DENSITY * (T * Y) * (S * Y)
        if sparse and Y <= DENSE_MAX_Y:
            rows, cols, _ = prob.schur_index()
            sparse = rows.size * cols.size**2 > COMPRESSED_DENSE_MAX_WORK
        prob._sparse = sparse
    return prob._sparse


def pair_space_work(prob: _Problem) -> float:
    """Modelled work (flops) of one pair-space factorisation (see ``_PairSystem``): the system
    (2/3)·P³ (pivoted LU: it is indefinite while some W < 0), 2·Y·P² to assemble it and Y·(T+S)³
    for the label blocks, for P pairs."""
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    P = prob.n_pairs
    return 2 * P**3 / 3 + 2 * Y * P**2 + 2 * Y * (T + S) ** 3 + 20 * Y * (T + S) * P


def cells_work(prob: _Problem) -> float:
    """Modelled work (flops) of one factorisation on the support cells (``cells.solve_cells``): the
    SYRK of R (used λ × free μ), the Cholesky of the Schur complement on the free μ and the
    label blocks, T·K³ (K: the most labels one t uses, the blocks' width there)."""
    rows, cols, _ = prob.schur_index()
    Y, T = prob.p_yt.shape
    K = int(np.bincount(rows // Y, minlength=T).max(initial=0))
    return rows.size * cols.size**2 + cols.size**3 / 3 + T * K**3


def _pair_space(prob: _Problem) -> bool:
    """Whether the Newton systems of this problem are solved in pair space (see ``_PairSystem``).

    Work model (flops): the Schur complement in μ costs (S·Y)³/3 to factorise plus its assembly,
    Y³·T·S² as one SYRK for few labels, ~12·Y²·T·S² for the structured sums (their kernels are
    less efficient); pair space ``pair_space_work``. A sparse support's dense alternative is the
    Schur complement on its free μ (``cells_work``, the cell route's): pair space where it is
    cheaper than that (many labels on few pairs: a 100×20×20 histogram 0.21 s in pair space
    against 0.66 s on the cells and 1.5 s in the sparse Schur complement), else the sparse route.
    """
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    pair_cost = pair_space_work(prob)
    if is_sparse(prob):
        return pair_cost < PAIR_SPACE_ADVANTAGE * cells_work(prob)
    assembly = Y**3 * T * S**2 if Y <= DENSE_MAX_Y else 12 * Y**2 * T * S**2
    schur_cost = (S * Y) ** 3 / 3 + assembly
    return pair_cost < PAIR_SPACE_ADVANTAGE * schur_cost
