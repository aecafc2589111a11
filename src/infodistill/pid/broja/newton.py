"""The interior-point method's Newton matrix in (λ, μ) and its factorisations: the Schur complement
in μ (one SYRK in single or double precision, the general product, or the structured sums for many
labels), its sparse form, and pair space (Woodbury); solves refined against the exact product, the
memory each route needs, and the step down to a more robust variant when a solve loses accuracy.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, sparse
from scipy.linalg import lapack
from scipy.sparse import linalg as splinalg

from .problem import DENSE_MAX_Y, _Problem, coupling_nnz, is_sparse


def _block_diagonal(blocks: np.ndarray):
    """A sparse block-diagonal matrix from dense blocks (n, k, k), built directly as BSR."""
    n, k, _ = blocks.shape
    return sparse.bsr_matrix((blocks, np.arange(n), np.arange(n + 1)), shape=(n * k, n * k)).tocsr()


#: The floor of a Schur complement's diagonal C − (coupling) relative to C's own diagonal in its
#: equilibration: below it the difference is rounding, not signal, in float64. Late on skewed and
#: many-label joints the difference cancels to zero or below in some columns; a floor of 1e-300 then
#: scaled those rows by 1e150 (entries of 1e290, overflow) and the factorisation solved noise.
CANCEL_FLOOR = 1e-13


def floor(c_diag: np.ndarray) -> np.ndarray:
    """The equilibration's floor for a Schur complement whose C has diagonal ``c_diag``."""
    return np.maximum(CANCEL_FLOOR * c_diag, 1e-300)


class _Factor:
    """Cholesky (LAPACK potrf/potrs) of a symmetric matrix, or pivoted LU where it is not numerically
    positive definite. The matrix is symmetrically equilibrated first (diagonal scaled to 1): late
    in the iteration its diagonal spans many orders of magnitude. ``floor``: the least |diagonal|
    the equilibration divides by (a Schur complement's is cancellation where it falls below
    ``newton.floor``). ``scale``: the matrix was already equilibrated with it. A float32 matrix is
    factorised in single precision (half the time); solves take and return float64. The matrix is
    overwritten."""

    def __init__(
        self,
        a: np.ndarray,
        spd: bool = True,
        scale: np.ndarray | None = None,
        floor: np.ndarray | float = 1e-300,
    ):
        n = a.shape[0]
        potrf, getrf = lapack.get_lapack_funcs(("potrf", "getrf"), (a,))
        if scale is None:
            scale = 1.0 / np.sqrt(np.maximum(np.abs(np.diag(a)), floor))
            a *= scale[:, None]
            a *= scale[None, :]
        self.scale = scale.astype(a.dtype)
        if spd:
            # A C-ordered symmetric matrix is its own Fortran-ordered transpose, so potrf works in
            # place on a.T; it writes one triangle and the diagonal, and a failure is undone from
            # the other triangle.
            diag = np.diag(a).copy()
            c, info = potrf(a.T, lower=1, clean=0, overwrite_a=1)
            if info == 0:
                self.kind, self.fac = "chol", c
                return
            upper = np.triu_indices(n, 1)
            a[upper] = a.T[upper]
            a[np.arange(n), np.arange(n)] = diag + 1e-14
        lu, piv, info = getrf(a.T, overwrite_a=1)
        self.kind, self.fac = "lu", (lu, piv)

    @classmethod
    def cholesky_lower(cls, low: np.ndarray, scale: np.ndarray) -> _Factor | None:
        """Cholesky in place of an equilibrated Fortran-ordered matrix whose lower triangle holds
        it (``scale`` its equilibration); None if it is not positive definite."""
        (potrf,) = lapack.get_lapack_funcs(("potrf",), (low,))
        c, info = potrf(low, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            return None
        self = cls.__new__(cls)
        self.scale, self.kind, self.fac = scale.astype(low.dtype), "chol", c
        return self

    def solve(self, b: np.ndarray) -> np.ndarray:
        b = (b * self.scale).astype(self.scale.dtype)
        if self.kind == "chol":
            (potrs,) = lapack.get_lapack_funcs(("potrs",), (self.fac,))
            x, _ = potrs(self.fac, b, lower=1)
        else:
            (getrs,) = lapack.get_lapack_funcs(("getrs",), (self.fac[0],))
            # getrf factorised the Fortran view aᵀ (= a: every matrix here is symmetric).
            x, _ = getrs(self.fac[0], self.fac[1], b, trans=1)
        return x.astype(np.float64) * self.scale


class _NewtonBase:
    """The IPM Newton matrix H = Σ_pairs Jᵀ [u diag π + W π πᵀ] J in (λ, μ), J mapping (λ, μ) to
    z(y,t,s) = λ(y,t) + μ(y,s): its exact product and iteratively refined solves. Subclasses provide
    ``_solve_once``, an approximate (factorised) solve."""

    def matvec(self, d_lam: np.ndarray, d_mu: np.ndarray):
        """The Newton matrix applied to (Δλ, Δμ), straight from its definition Jᵀ G J."""
        prob = self.prob
        dz = d_lam[:, :, None] + d_mu[:, None, :]
        if not prob.full:
            dz = np.where(prob.support, dz, 0.0)
        gz = self.q * dz + self.pi * (self.W * np.einsum("yts,yts->ts", self.pi, dz))[None]
        out_lam = np.where(prob.m_yt, gz.sum(axis=2), d_lam)
        out_mu = np.where(prob.m_ys, gz.sum(axis=1), d_mu)
        return out_lam, out_mu

    #: A solve with a single-precision factorisation takes one refinement step more than a double
    #: one; a checked solve (``refine > 0``, the corrector) then goes on, up to
    #: ``SINGLE_MAX_REFINE`` steps, until its relative residual is below ``SINGLE_MAX_RESIDUAL``.
    #: Double-precision SYRK factorisations are checked too, against ``DOUBLE_MAX_RESIDUAL``, without
    #: extra steps: late, their cancellation C − RᵀR can leave a Cholesky factor that succeeds but
    #: is useless. If a check fails, ``accurate`` turns False and the caller redoes the step with the
    #: next, more robust factorisation. (The accuracy of a direction only affects the speed of the
    #: method: every bound reported is computed from the iterate itself.)
    SINGLE_MAX_RESIDUAL = 1e-8
    SINGLE_MAX_REFINE = 4
    DOUBLE_MAX_RESIDUAL = 1e-6

    single = False
    checked = False
    accurate = True
    #: The most refinement steps a checked solve needed (``_InteriorPoint.step`` leaves single
    #: precision once a step needs ``SINGLE_MAX_REFINE``).
    refined = 0

    def solve(self, g_lam: np.ndarray, g_mu: np.ndarray, refine: int = 1):
        """Solve the Newton system for right-hand sides given as (Y,T), (Y,S) arrays.

        Late iterations make the system very ill-conditioned; steps of iterative refinement against
        the exact matrix-vector product keep the direction accurate. A single-precision
        factorisation (error ~1e-7 per solve early on) is refined further, see above.
        """
        d_lam, d_mu = self._solve_once(g_lam, g_mu)
        steps = refine + self.single
        check = self.checked and refine > 0
        most = self.SINGLE_MAX_REFINE if self.single else steps
        limit = self.SINGLE_MAX_RESIDUAL if self.single else self.DOUBLE_MAX_RESIDUAL
        limit *= np.sqrt((g_lam**2).sum() + (g_mu**2).sum()) if check else 0.0
        k = 0
        while True:
            if k >= steps and not check:
                return d_lam, d_mu
            h_lam, h_mu = self.matvec(d_lam, d_mu)
            r_lam, r_mu = g_lam - h_lam, g_mu - h_mu
            if k >= steps and np.sqrt((r_lam**2).sum() + (r_mu**2).sum()) <= limit:
                self.refined = max(self.refined, k)
                return d_lam, d_mu
            if k >= most:
                self.accurate = False
                return d_lam, d_mu
            c_lam, c_mu = self._solve_once(r_lam, r_mu)
            d_lam, d_mu = d_lam + c_lam, d_mu + c_mu
            k += 1


class _NewtonSystem(_NewtonBase):
    """Factorised Newton matrix Σ_pairs [u diag π + W π πᵀ] (in λ(·,t), μ(·,s)) of the IPM.

    λ is eliminated block by block (T blocks A_t of Y×Y), leaving a Schur complement in μ of size
    S·Y. Its coupling part Σ_t B_tᵀ A_t⁻¹ B_t is assembled one of three ways (the same matrix):
    for few labels as Rᵀ R with R = L⁻¹ B (A_t = L_t L_tᵀ), one symmetric rank-k product (SYRK, half
    the work of a general product), O(Y³·T·S²) but a single efficient BLAS call, in float32 with
    ``single``; for many labels from its four structured terms, O(Y²·T·S²) in batched products; for
    sparse supports as a sparse product. ``syrk=False`` (the last resort, late in the iteration):
    the general product Σ_t B_tᵀ (A_t⁻¹ B_t), factorised by Cholesky or, where that fails, pivoted LU.
    """

    @staticmethod
    def _coupling_sparse(prob: _Problem, A_inv, pi, q, W) -> np.ndarray:
        """The same matrix as ``_coupling_dense`` (as a sparse (S·Y)×(S·Y) matrix), with B and the
        block-diagonal A⁻¹ kept sparse."""
        Y, T, S = pi.shape
        (y, t, s), row, col, b_row, b_col = prob.coupling_pattern()
        pi_c, q_c = pi[y, t, s], q[y, t, s]
        vals = W[t[row], s[row]] * pi_c[row] * pi_c[col] + np.where(row == col, q_c[row], 0.0)
        B = sparse.csr_matrix((vals, (b_row, b_col)), shape=(T * Y, S * Y))
        return B.T @ (_block_diagonal(A_inv) @ B)

    def __init__(
        self,
        prob: _Problem,
        pi: np.ndarray,
        u: np.ndarray,
        W: np.ndarray,
        single: bool = False,
        syrk: bool = True,
    ):
        Y, T = prob.p_yt.shape
        S = prob.p_ys.shape[1]
        self.prob, self.pi, self.W = prob, pi, W
        q = u[None] * pi
        self.q = q
        idx = np.arange(Y)
        Wpi = W[None] * pi
        A = np.einsum("yts,zts->tyz", Wpi, pi)
        A[:, idx, idx] += q.sum(axis=2).T + (~prob.m_yt).T
        C = np.einsum("yts,zts->syz", Wpi, pi)
        C[:, idx, idx] += q.sum(axis=1).T + (~prob.m_ys).T
        # A_t is positive definite (each pair block is ⪰ r(diag π − π πᵀ) + (r/s) π πᵀ); its
        # Cholesky factor gives the symmetric assembly below.
        try:
            L_inv = np.linalg.inv(np.linalg.cholesky(A))
            self.A_inv = A_inv = np.matmul(L_inv.transpose(0, 2, 1), L_inv)  # (T, Y, Y)
        except np.linalg.LinAlgError:
            L_inv, self.A_inv = None, np.linalg.inv(A)
            A_inv = self.A_inv
        self.shape = (Y, T, S)
        n = S * Y
        keep = np.ones(n)
        keep[prob.pin] = 0.0
        if is_sparse(prob):
            schur = (_block_diagonal(C) - self._coupling_sparse(prob, A_inv, pi, q, W)).tocoo()
            # Pin the gauge rows/columns to the identity and equilibrate, as in the dense branch
            # below, by scaling the stored entries (no sparse products).
            schur.data *= keep[schur.row] * keep[schur.col]
            schur = (schur + sparse.diags(1.0 - keep)).tocoo()
            c_diag = C[:, idx, idx].reshape(-1)
            self.scale = 1.0 / np.sqrt(np.maximum(schur.diagonal(), floor(c_diag)))
            schur.data *= self.scale[schur.row] * self.scale[schur.col]
            self.factor = splinalg.splu(schur.tocsc())
            return
        if syrk and Y <= DENSE_MAX_Y and L_inv is not None:
            self.factor = self._factor_syrk(L_inv, C, single)
            if self.factor is not None:
                self.checked = True
                return
            self.single = False  # not positive definite in working precision: pivoted LU below
        if Y <= DENSE_MAX_Y:
            schur = self._coupling_dense(A_inv, pi, q, W)
        else:
            schur = self._coupling_structured(A_inv, pi, q, W)
        np.negative(schur, out=schur)
        schur[np.arange(S), :, np.arange(S), :] += C
        schur = schur.reshape(n, n)
        schur *= keep[:, None]
        schur *= keep[None, :]
        schur[prob.pin, prob.pin] = 1.0
        self.factor = _Factor(schur, floor=floor(C[:, idx, idx].reshape(-1)))

    #: The μ of the Schur complement factorised by the SYRK route (indices into the (s, z)-flat μ),
    #: when it is solved on the used, unpinned μ only (``_Problem.schur_index``); None: all of them.
    cols = None

    def _factor_syrk(self, L_inv, C, single: bool) -> _Factor | None:
        """Schur complement C − Rᵀ R, equilibrated and Cholesky-factorised, with few passes.

        Only the μ(z, s) with P(z, s) > 0 that are not pinned take part (``_Problem.schur_index``):
        the others are identity rows with a zero right-hand side, and R's rows of unused λ are
        zero, so both are dropped before the product (histograms: 20–70 % of each). The
        equilibration D = diag(C − Rᵀ R)^−½ is applied to R's columns before the product
        ((R D)ᵀ (R D) = D Rᵀ R D); the product is one BLAS SYRK, which fills only the lower triangle
        that the Cholesky factorisation reads, so the matrix is touched only by the product, one
        negation and the factorisation. ``single``: product and factorisation in float32, the
        scaling folded into the cast. None if the matrix is not numerically positive definite.
        """
        prob = self.prob
        Y, T, S = self.shape
        idx = np.arange(Y)
        rows, cols, (ci, cj, cs, cy, cz) = prob.schur_index()
        compress = compressed(prob)
        if compress:
            R = self._r_columns(L_inv, self.pi, self.q, self.W, cols)
            if rows.size < R.shape[0]:
                R = R[rows]
        else:
            # (nearly) dense: all μ, the pinned ones as identity rows. R is formed scaled and in the
            # factorisation's precision in one pass (``_r_scaled``), its column norms from A⁻¹.
            # Its columns, and the Schur complement, are in (z, s) order (``cols``: the (s, z)-flat
            # μ of each), so that the broadcasts run over s, not over the few labels.
            Rs, scale = self._r_scaled(L_inv, C, single)
            cols = (np.arange(S)[None, :] * Y + np.arange(Y)[:, None]).reshape(-1)
            pin = (prob.pin % Y) * S + prob.pin // Y
            ci, cj = np.arange(Y)[None, :, None] * S, np.arange(Y)[None, None, :] * S
            ci, cj = ci + np.arange(S)[:, None, None], cj + np.arange(S)[:, None, None]
            cs, cy, cz = np.arange(S)[:, None, None], np.arange(Y)[None, :, None], np.arange(Y)[None, None, :]
        if compress:
            c_diag = C[:, idx, idx].reshape(-1)[cols]
            scale = 1.0 / np.sqrt(np.maximum(c_diag - np.einsum("ij,ij->j", R, R), floor(c_diag)))
            Rs = np.multiply(R, scale, dtype=np.float32 if single else np.float64)
        self.single = single
        (syrk,) = linalg.get_blas_funcs(("syrk",), (Rs,))
        low = syrk(1.0, Rs.T, trans=0, lower=1)  # Fortran order: (R D)ᵀ (R D), lower triangle
        np.negative(low, out=low)
        schur = low.T  # C-ordered view: its upper triangle holds the matrix
        schur[ci, cj] += C[cs, cy, cz] * scale[ci] * scale[cj]
        if not compress:
            schur[pin, :] = 0.0
            schur[:, pin] = 0.0
            schur[pin, pin] = 1.0
            scale[pin] = 1.0
        factor = _Factor.cholesky_lower(low, scale)
        if factor is not None:
            self.cols = cols
        return factor

    def _r_scaled(self, L_inv, C, single: bool):
        """R D = blockdiag(L_t⁻¹) B D as a C-ordered (T·Y)×(Y·S) array, columns in (z, s) order, in
        float32 (``single``) or float64, and D = diag(C − Rᵀ R)^−½ ((z, s) order, 0 on the pinned
        μ), without forming B or R:

            R_t[y, (s, z)] = L_t⁻¹[y, z] q[z,t,s] + (L_t⁻¹ π_ts)[y] W[t,s] π[z,t,s],

        and the column norms of R are those of B in the A_t⁻¹ inner product,

            Σ_{t,y} R² = Σ_t q_z² A_t⁻¹[z,z] + 2 q_z W π_z (A_t⁻¹ π_ts)[z] + W² π_z² π_tsᵀ A_t⁻¹ π_ts

        (z, q_z = q[z,t,s], π_z = π[z,t,s], W = W[t,s]), O(T·S·Y²). Two broadcast passes write the
        result straight into a buffer kept with the problem (no page faults, no float64 copy)."""
        prob = self.prob
        Y, T, S = self.shape
        idx = np.arange(Y)
        pi_t = self.pi.transpose(1, 0, 2)  # (T, Y, S)
        q_t = self.q.transpose(1, 0, 2)
        W = self.W
        G = np.matmul(L_inv, pi_t)  # (T, Y, S): L_t⁻¹ π_ts
        A_pi = np.matmul(L_inv.transpose(0, 2, 1), G)  # A_t⁻¹ π_ts
        p_a_p = np.einsum("tys,tys->ts", G, G)
        Wz = W[:, None, :] * pi_t  # (T, Y, S): W[t,s] π[z,t,s]
        norms = q_t * (q_t * self.A_inv[:, idx, idx][:, :, None] + 2.0 * Wz * A_pi)
        norms += Wz * Wz * p_a_p[:, None, :]
        c_diag = C[:, idx, idx].T
        diag = c_diag - norms.sum(axis=0)  # (Y, S): (z, s)-flat
        scale = 1.0 / np.sqrt(np.maximum(diag, floor(c_diag)))
        scale[np.arange(Y), prob.pin // Y] = 0.0  # pinned rows and columns: identity, set by the caller
        dtype = np.float32 if single else np.float64
        buffers = prob.__dict__.setdefault("_r_buffers", {})
        if dtype not in buffers:
            buffers[dtype] = (np.empty((T, Y, Y, S), dtype), np.empty((T, Y, Y, S), dtype))
        Rs, tmp = buffers[dtype]
        qs = (q_t * scale[None]).astype(dtype)  # (T, Y, S): q[z,t,s] D[z,s]
        ws = (Wz * scale[None]).astype(dtype)  # W π[z,t,s] D[z,s]
        np.multiply(L_inv.astype(dtype)[:, :, :, None], qs[:, None, :, :], out=Rs)
        np.multiply(G.astype(dtype)[:, :, None, :], ws[:, None, :, :], out=tmp)
        Rs += tmp
        return Rs.reshape(T * Y, Y * S), scale.reshape(-1)

    @staticmethod
    def _r_blocks(L_inv, pi, q, W) -> np.ndarray:
        """R = blockdiag(L_t⁻¹) B as a (T·Y)×(S·Y) matrix (B from ``_coupling_blocks``), rows
        (t, y) and columns (s, z)."""
        Y, T, S = pi.shape
        return np.matmul(L_inv, _NewtonSystem._coupling_blocks(pi, q, W)).reshape(T * Y, S * Y)

    @staticmethod
    def _r_columns(L_inv, pi, q, W, cols) -> np.ndarray:
        """The columns ``cols`` ((s, z)-flat) of ``_r_blocks``, built from those columns of B alone:
        B_t[y, (s, z)] = q[y,t,s] δ_yz + W[t,s] π[y,t,s] π[z,t,s]."""
        Y, T, S = pi.shape
        s_j, z_j = cols // Y, cols % Y
        pi_t = np.ascontiguousarray(pi.transpose(1, 0, 2))  # (T, Y, S)
        B = np.take(pi_t, s_j, axis=2)  # (T, Y, n): π[y, t, s_j]
        B *= np.take(W, s_j, axis=1)[:, None, :] * pi_t[:, z_j, s_j][:, None, :]  # W[t,s_j] π[z_j,t,s_j]
        B[:, z_j, np.arange(cols.size)] += q.transpose(1, 0, 2)[:, z_j, s_j]
        return np.matmul(L_inv, B).reshape(T * Y, cols.size)

    @staticmethod
    def _coupling_blocks(pi, q, W) -> np.ndarray:
        """B as (T, Y, S·Y): B_t[y, (s, z)] = q[y,t,s] δ_yz + W π_ts[y] π_ts[z]."""
        Y, T, S = pi.shape
        idx = np.arange(Y)
        B = np.empty((T, Y, S, Y))  # C order, so the reshape below is free
        Wpi = (W[None] * pi).transpose(1, 0, 2)
        np.multiply(Wpi[:, :, :, None], pi.transpose(1, 2, 0)[:, None, :, :], out=B)
        B[:, idx, :, idx] += q
        return B.reshape(T, Y, S * Y)

    @staticmethod
    def _coupling_dense(A_inv, pi, q, W) -> np.ndarray:
        """Σ_t B_tᵀ A_t⁻¹ B_t as (s, y, e, z), with B_t[y, (s, z)] = q[y,t,s] δ_yz + W π_ts[y] π_ts[z]."""
        Y, T, S = pi.shape
        B2 = _NewtonSystem._coupling_blocks(pi, q, W)
        X = np.matmul(A_inv, B2)
        return (B2.reshape(T * Y, S * Y).T @ X.reshape(T * Y, S * Y)).reshape(S, Y, S, Y)

    @staticmethod
    def _coupling_syrk(L_inv, pi, q, W) -> np.ndarray:
        """The same matrix as ``_coupling_dense`` given L_t⁻¹ with A_t⁻¹ = L_t⁻ᵀ L_t⁻¹: Rᵀ R for
        R = blockdiag(L_t⁻¹) B (``_r_blocks``), which numpy computes as one symmetric rank-k update."""
        Y, T, S = pi.shape
        R = _NewtonSystem._r_blocks(L_inv, pi, q, W)
        return (R.T @ R).reshape(S, Y, S, Y)

    @staticmethod
    def _coupling_structured(A_inv, pi, q, W) -> np.ndarray:
        """The same matrix as ``_coupling_dense`` from its four structured terms."""
        Y, T, S = pi.shape
        piT = pi.transpose(1, 0, 2)  # (T, Y, S)
        qT = q.transpose(1, 0, 2)
        G = A_inv @ piT  # (T, Y, S): A_t⁻¹ π_ts
        # term1[s,y,e,z] = Σ_t A⁻¹_t[y,z] q[y,t,s] q[z,t,e]
        M1 = A_inv.transpose(1, 2, 0)[:, :, :, None] * qT.transpose(1, 0, 2)[None]  # (y, z, t, e)
        q_yst = np.ascontiguousarray(q.transpose(0, 2, 1))
        t1 = np.matmul(q_yst[:, None], M1).transpose(2, 0, 3, 1)  # (s, y, e, z)
        # term2[s,y,e,z] = Σ_t q[y,t,s] W[t,e] G[t,y,e] π[z,t,e]; term3 is its transpose
        GW = (G * W[:, None, :]).transpose(1, 0, 2)  # (y, t, e)
        M2 = GW[..., None] * pi.transpose(1, 2, 0)[None]  # (y, t, e, z)
        t2 = np.matmul(q_yst, M2.reshape(Y, T, S * Y))
        t2 = t2.reshape(Y, S, S, Y).transpose(1, 0, 2, 3)
        # term4[s,y,e,z] = Σ_t W[t,s] W[t,e] (π_tsᵀ A_t⁻¹ π_te) π[y,t,s] π[z,t,e], in chunks of s
        # so the (s, t, e, z) intermediate stays small.
        P = np.matmul(piT.transpose(0, 2, 1), G)  # (t, s, e)
        N = np.ascontiguousarray((W[:, :, None] * W[:, None, :] * P).transpose(1, 0, 2))  # (s, t, e)
        pi_tez = np.ascontiguousarray(pi.transpose(1, 2, 0))  # (t, e, z)
        pi_syt = np.ascontiguousarray(pi.transpose(2, 0, 1))  # (s, y, t)
        schur = np.empty((S, Y, S, Y))
        step = max(1, int(4e6 // (T * S * Y)))
        for a in range(0, S, step):
            b = min(S, a + step)
            M4 = N[a:b, :, :, None] * pi_tez[None]  # (s, t, e, z)
            schur[a:b] = np.matmul(pi_syt[a:b], M4.reshape(b - a, T, S * Y)).reshape(b - a, Y, S, Y)
        schur += t1
        schur += t2
        schur += t2.transpose(2, 3, 0, 1)
        return schur

    def _B(self, d_mu):  # d_mu (S, Y) -> (T, Y)
        pd = np.einsum("yts,sy->ts", self.pi, d_mu)
        return np.einsum("yts,sy->ty", self.q, d_mu) + np.einsum("ts,yts->ty", self.W * pd, self.pi)

    def _Bt(self, v):  # v (T, Y) -> (S, Y)
        pv = np.einsum("yts,ty->ts", self.pi, v)
        return np.einsum("yts,ty->sy", self.q, v) + np.einsum("ts,yts->sy", self.W * pv, self.pi)

    def _solve_once(self, g_lam: np.ndarray, g_mu: np.ndarray):
        prob = self.prob
        Ainv_g = np.einsum("tyz,zt->ty", self.A_inv, g_lam)
        rhs = (g_mu.T - self._Bt(Ainv_g)).reshape(-1)
        rhs[prob.pin] = 0.0
        if self.cols is not None:
            d_mu = np.zeros_like(rhs)
            d_mu[self.cols] = self.factor.solve(rhs[self.cols])
        elif isinstance(self.factor, _Factor):
            d_mu = self.factor.solve(rhs)
        else:
            d_mu = self.factor.solve(rhs * self.scale) * self.scale
        d_mu = d_mu.reshape(self.shape[2], self.shape[0])
        d_lam = np.einsum("tyz,tz->ty", self.A_inv, g_lam.T - self._B(d_mu))
        return np.where(prob.m_yt, d_lam.T, 0.0), np.where(prob.m_ys, d_mu.T, 0.0)


def _spd_inverse(D: np.ndarray) -> np.ndarray:
    """Inverses of a stack (Y, n, n) of symmetric positive definite matrices: Cholesky-based
    (LAPACK potrf + potri, half the work of an LU inverse) for large blocks, numpy's batched
    inverse for small ones (where the per-call overhead dominates). Raises LinAlgError."""
    if D.shape[1] < 96:
        return np.linalg.inv(D)
    out = np.empty_like(D)
    for y in range(D.shape[0]):
        c, info = lapack.dpotrf(D[y], lower=1, clean=0)
        if info != 0:
            raise np.linalg.LinAlgError("not positive definite")
        inv, info = lapack.dpotri(c, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("singular")
        out[y] = np.tril(inv) + np.tril(inv, -1).T
    return out


def _pair_gram(Dinv: np.ndarray, pp: np.ndarray, tp: np.ndarray, sp: np.ndarray, T: int, S: int):
    """Uᵀ D⁻¹ U for pairs p = (tp, sp) sorted by t: U's column p is J_pᵀ π_p, with entries π_y(p) in
    rows λ(y, t_p) and μ(y, s_p); D⁻¹ (Y, T+S, T+S) is block diagonal over labels; pp = π[:, tp, sp].

    (Uᵀ D⁻¹ U)[p, p'] = Σ_y π_y(p) π_y(p') (D_y⁻¹[t,t'] + D_y⁻¹[t,s'] + D_y⁻¹[s,t'] + D_y⁻¹[s,s']):
    with X = D⁻¹ U, one (T+S)×P block per label, row p is Σ_y π_y(p) (X_y[t_p] + X_y[s_p]), which
    for the rows of one t (contiguous) or one s is a single matrix product, O(Y·P²) in all.
    """
    P = tp.size
    Dk = np.ascontiguousarray(Dinv.transpose(1, 0, 2))  # (k, y, l)
    X = np.take(Dk, tp, axis=2)  # X[k, y, p] = (D_y⁻¹[k, t_p] + D_y⁻¹[k, T + s_p]) π_y(p)
    X += np.take(Dk, T + sp, axis=2)
    X *= pp[None]
    K = np.empty((P, P))
    bounds = np.searchsorted(tp, np.arange(T + 1))
    for t in range(T):
        a, b = bounds[t], bounds[t + 1]
        if b > a:
            K[a:b] = pp[:, a:b].T @ X[t]
    order = np.argsort(sp, kind="stable")
    bounds = np.searchsorted(sp[order], np.arange(S + 1))
    for s in range(S):
        rows = order[bounds[s] : bounds[s + 1]]
        if rows.size:
            K[rows] += pp[:, rows].T @ X[T + s]
    return K


class _PairSystem(_NewtonBase):
    """The same Newton matrix, factorised in pair space (Woodbury), for many labels.

    H = D + U diag(W) Uᵀ, where D = Σ_pairs Jᵀ diag(q_ts) J does not couple labels: for each y it is
    a (T+S)×(T+S) block [[diag Σ_s q, Q_y], [Q_yᵀ, diag Σ_t q]] with Q_y = q[y] (a bipartite
    signless Laplacian; pinning one μ(y,·) removes its null vector), and U has one column J_tsᵀ π_ts
    per pair. With ω = |W|^½ and E = sign W (W = r(1/s − 1) has either sign),

        H⁻¹ = D⁻¹ − D⁻¹ U ω M⁻¹ ω Uᵀ D⁻¹,   M = E + ω Uᵀ D⁻¹ U ω   (pairs × pairs).

    M costs O(Y·P²) to assemble (``_pair_gram``) and P³ to factorise, against (S·Y)³ for the
    Schur complement in μ: the cheaper route when there are many labels (100×32×32: P = 1024
    against S·Y = 3200). M is positive definite once every W > 0 (Cholesky), indefinite before
    (pivoted LU). Forming D⁻¹ explicitly loses accuracy where D is much smaller than H (late,
    along the active pairs' directions); the refinement against the exact product restores it.
    """

    def __init__(self, prob: _Problem, pi: np.ndarray, u: np.ndarray, W: np.ndarray):
        Y, T = prob.p_yt.shape
        S = prob.p_ys.shape[1]
        n = T + S
        self.prob, self.pi, self.W = prob, pi, W
        self.shape = (Y, T, S)
        q = u[None] * pi
        self.q = q
        iy = np.arange(Y)
        D = np.zeros((Y, n, n))
        D[:, :T, T:] = q
        D[:, T:, :T] = q.transpose(0, 2, 1)
        D[:, np.arange(T), np.arange(T)] = q.sum(axis=2) + ~prob.m_yt
        D[:, T + np.arange(S), T + np.arange(S)] = q.sum(axis=1) + ~prob.m_ys
        pin = T + np.argmax(prob.m_ys, axis=1)
        D[iy, pin, :] = 0.0
        D[iy, :, pin] = 0.0
        D[iy, pin, pin] = 1.0
        Dinv = _spd_inverse(D)
        # The pinned μ stays 0: zero its row and column of D⁻¹ (then U's pinned rows do not matter).
        Dinv[iy, pin, :] = 0.0
        Dinv[iy, :, pin] = 0.0
        self.Dinv = Dinv
        self.tp, self.sp = tp, sp = prob.pair_t, prob.pair_s
        w = W[tp, sp]
        self.E = np.where(w < 0, -1.0, 1.0)
        self.om = np.sqrt(np.abs(w))
        P = tp.size
        K = _pair_gram(Dinv, pi[:, tp, sp], tp, sp, T, S)
        K *= self.om[:, None]
        K *= self.om[None, :]
        K[np.arange(P), np.arange(P)] += self.E
        self.factor = _Factor(K, spd=bool(np.all(self.E > 0)))

    def _solve_once(self, g_lam: np.ndarray, g_mu: np.ndarray):
        prob = self.prob
        Y, T, S = self.shape
        g = np.concatenate([np.where(prob.m_yt, g_lam, 0.0), np.where(prob.m_ys, g_mu, 0.0)], axis=1)
        h = np.einsum("ykl,yl->yk", self.Dinv, g)
        pp = self.pi[:, self.tp, self.sp]
        v = self.om * (pp * (h[:, self.tp] + h[:, T + self.sp])).sum(axis=0)
        z = self.factor.solve(v)
        grid = np.zeros((T, S))
        grid[self.tp, self.sp] = self.om * z
        uz = self.pi * grid[None]
        corr = np.concatenate([uz.sum(axis=2), uz.sum(axis=1)], axis=1)
        h -= np.einsum("ykl,yl->yk", self.Dinv, corr)
        return np.where(prob.m_yt, h[:, :T], 0.0), np.where(prob.m_ys, h[:, T:], 0.0)


def solver_bytes(prob: _Problem) -> float:
    """Peak bytes of the Newton systems of this problem's route, beyond the Y·T·S arrays (those are
    checked in ``decompose``), counted on the code: Schur route, the label blocks A_t, L_t⁻¹, A_t⁻¹
    (T·Y² each), C (S·Y²), B, R and A⁻¹B ((T·Y)×(S·Y) each) and two (S·Y)² matrices; sparse route,
    the label blocks and a few copies of B's nonzeros (sparse LU fill is not modelled); pair space,
    D, D⁻¹ and their copies (Y·(T+S)² each), the products X of ``_pair_gram`` ((T+S)·Y·P) and the
    P×P system with its factor."""
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    if prob.pair_space:
        n, P = T + S, prob.n_pairs
        return 8.0 * (4 * Y * n * n + n * Y * P + 2 * P * P)
    blocks = 3 * T * Y * Y + S * Y * Y
    if is_sparse(prob):
        return 8.0 * (blocks + 6 * coupling_nnz(prob))
    return 8.0 * (blocks + 3 * T * S * Y * Y + 2 * (S * Y) ** 2)


def _newton_system(prob: _Problem, pi, u, W, level: int = 0) -> _NewtonBase:
    """The cheaper factorisation of the Newton matrix for this problem's shape (same matrix).

    ``level`` steps down the Schur complement's variants as they lose accuracy late in the
    iteration: 0 single-precision SYRK (large systems only), 1 double-precision SYRK, 2 the general
    product B_tᵀ (A_t⁻¹ B_t), whose factorisation falls back to pivoted LU when Cholesky fails.
    """
    if prob.pair_space:
        return _PairSystem(prob, pi, u, W)
    n = prob.schur_index()[1].size if compressed(prob) else prob.p_ys.size
    single = level == 0 and n >= SINGLE_MIN_N
    return _NewtonSystem(prob, pi, u, W, single=single, syrk=level < 2)


#: The SYRK route drops R's rows of unused λ and the unused or pinned μ when that leaves less than
#: this fraction of the product's work (rows × columns²); on dense joints the gathers cost more.
COMPRESS_BELOW = 0.9


def compressed(prob: _Problem) -> bool:
    """Whether the SYRK route solves the Schur complement on the used, unpinned μ only (and drops
    R's rows of unused λ): where that leaves less than ``COMPRESS_BELOW`` of the product's work."""
    Y, T = prob.p_yt.shape
    S = prob.p_ys.shape[1]
    rows, cols, _ = prob.schur_index()
    if cols.size == 0 or rows.size == 0:
        return False  # every μ pinned (one student symbol): nothing to factorise there
    return rows.size * cols.size**2 < COMPRESS_BELOW * (T * Y) * (S * Y) ** 2


#: Dense Schur complements at least this large are assembled and factorised in single precision
#: (with refinement in double) until a refined solve misses ``SINGLE_MAX_RESIDUAL``: float32 halves
#: the two dominant kernels, SYRK and Cholesky.
SINGLE_MIN_N = 512
