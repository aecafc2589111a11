"""The feasible primal-dual interior-point method on the dual (Mehrotra predictor-corrector): its
state and step (``_InteriorPoint``), and one run along a central path (``_solve_path``), which
certifies the iterates once they are close, polishes the primal, tries the active-set finish where
the systems are solved in pair space, and the garbling certificate when progress stalls.
"""

from __future__ import annotations

import numpy as np

from .certificates import (
    EPS,
    _conditional_entropy,
    garbling_coupling,
    objective_bound,
    round_to_feasible,
    sum_error_factor,
)
from .finish import FINISH_RETRY, FINISH_STABLE, _working_set, active_set_rounds, scaling_polish
from .newton import _newton_system, _NewtonBase
from .problem import _Problem, is_sparse


class SolverInfo(dict):
    """Diagnostics of one solve: iterations, converged, gap, and which garbling certified it."""


#: Largest change of any λ or μ in one step (nats); the cautious restart's (``_solve_broja``).
MAX_DUAL_MOVE = 20.0
CAUTIOUS_DUAL_MOVE = 5.0


class _InteriorPoint:
    """State of the primal-dual iteration: dual (λ, μ), pair masses r, and c, π at (λ, μ)."""

    def __init__(
        self, prob: _Problem, path: str = "weighted", max_move: float | None = None, split: bool = False
    ):
        self.prob = prob
        self.max_move = MAX_DUAL_MOVE if max_move is None else max_move
        self.split = split
        p_yt, p_ys = prob.p_yt, prob.p_ys
        # Start from the conditionally independent coupling Q0 = P(y,t) P(y,s) / P(y), which lies
        # in Δ_P with the right support: λ + μ = log Q0 + κ gives softmax_y = Q0(y|t,s) and
        # c(t,s) = log Q0(t,s) + κ, with κ chosen so that every c ≤ −1.
        p_y = p_yt.sum(axis=1)
        log_yt = np.log(np.where(prob.m_yt, p_yt, 1.0))
        log_ys = np.log(np.where(prob.m_ys, p_ys, 1.0))
        self.r = np.einsum("yt,ys->ts", p_yt, p_ys / p_y[:, None])
        kappa = -1.0 - float(np.log(self.r.max()))
        self.lam = np.where(prob.m_yt, log_yt - np.log(p_y)[:, None] + kappa, 0.0)
        self.mu = np.where(prob.m_ys, log_ys, 0.0)
        self.c, self.pi = prob.evaluate(self.lam, self.mu)
        # Weighted central path r·s = μ̄·w with w ∝ Q0(t,s) (mean 1 over the pairs). With the plain
        # path r·s = μ̄, a pair whose mass is orders of magnitude below the rest (skewed joints,
        # symbols of mass 1e-10) needs a slack −c ≈ μ̄/r in the thousands; the iteration drives c
        # there by moving λ(·,t) unevenly over y, π of that pair collapses onto one label (1e-33),
        # its λ block loses all curvature and the next direction is garbage (steps of 1e28, no
        # progress: seen on a 9×2×23 joint). Weighting by the starting mass keeps every slack O(1)
        # and the start (r·s = Q0·(1 + log(max Q0/Q0))) close to the path; the optimum is the same.
        q0 = np.where(prob.pairs, self.r, 0.0)
        self.weight = np.where(prob.pairs, q0 / max(float(q0[prob.pairs].mean()), 1e-300), 0.0)
        if path == "plain":
            self.weight = np.where(prob.pairs, 1.0, 0.0)
        elif path == "sqrt":
            w = np.sqrt(self.weight)
            self.weight = np.where(prob.pairs, w / max(float(w[prob.pairs].mean()), 1e-300), 0.0)

    @property
    def slack(self) -> np.ndarray:
        return np.where(self.prob.pairs, -self.c, 1.0)

    def direction(self, system: _NewtonBase, target: np.ndarray, refine: int = 1):
        """Newton direction towards r·(−c) = target on every pair."""
        prob, pi, r = self.prob, self.pi, self.r
        s = self.slack
        w = np.where(prob.pairs, 1.0 / s, 0.0)
        g_lam = np.where(prob.m_yt, prob.p_yt - np.einsum("ts,yts->yt", target * w, pi), 0.0)
        g_mu = np.where(prob.m_ys, prob.p_ys - np.einsum("ts,yts->ys", target * w, pi), 0.0)
        d_lam, d_mu = system.solve(g_lam, g_mu, refine)
        dc = np.einsum("yts,yts->ts", pi, d_lam[:, :, None] + d_mu[:, None, :])
        d_r = np.where(prob.pairs, (target - r * s + r * dc) * w, 0.0)
        return d_lam, d_mu, dc, d_r

    def max_step(self, d_r: np.ndarray) -> float:
        neg = self.prob.pairs & (d_r < 0)
        return min(1.0, float(np.min(-self.r[neg] / d_r[neg]))) if neg.any() else 1.0

    def feasible_step(self, d_lam, d_mu, d_r, dc, bound_r: bool = True):
        """Largest α (backtracking) keeping r > 0 (unless not ``bound_r``) and −c ≥ 1% of its value
        on every pair.

        c is convex, so its linearisation c + α·Δc bounds it from below: the α at which the
        linearisation reaches the 1% limit is an upper bound and the backtracking starts there.
        """
        pairs = self.prob.pairs
        alpha = 0.99 * (self.max_step(d_r) if bound_r else 1.0)
        big = max(float(np.abs(d_lam).max()), float(np.abs(d_mu).max()))
        if big * alpha > self.max_move:
            alpha = self.max_move / big
        rising = pairs & (dc > 0)
        if rising.any():
            alpha = min(alpha, float(np.min(-0.99 * self.c[rising] / dc[rising])))
        while alpha > 1e-12:
            c_new, pi_new = self.prob.evaluate(self.lam + alpha * d_lam, self.mu + alpha * d_mu)
            if np.all(c_new[pairs] <= 0.01 * self.c[pairs]):
                return alpha, c_new, pi_new
            alpha *= 0.9
        return 0.0, self.c, self.pi

    #: The variant of the Newton factorisation in use (see ``_newton_system``); it only goes up, the
    #: first time a solve with the current one misses its accuracy (conditioning only worsens).
    level = 0
    #: Steps taken with a single-precision factorisation.
    single_steps = 0

    def step(self) -> bool:
        """One Mehrotra predictor-corrector step; False when no progress is possible."""
        prob, r, s = self.prob, self.r, self.slack
        w = np.where(prob.pairs, 1.0 / s, 0.0)
        while True:
            try:
                system = _newton_system(prob, self.pi, r, r * (w - 1.0), self.level)
                d_lam, d_mu, dc, d_r = self._direction(system)
            except (np.linalg.LinAlgError, RuntimeError, ValueError):
                # Singular to working precision (splu, inv): the iterate is as far as this
                # factorisation gets; the caller certifies what it has.
                if self.level >= 2:
                    return False
                self.level = 2
                continue
            if not (np.all(np.isfinite(d_lam)) and np.all(np.isfinite(d_mu)) and np.all(np.isfinite(d_r))):
                if self.level >= 2:
                    return False
                self.level = 2
                continue
            if system.accurate or self.level >= 2:
                self.single_steps += system.single
                if system.single and system.refined >= system.SINGLE_MAX_REFINE:
                    # float32 only just held (the refinement contracts ~10× a step less each
                    # iteration): the next step would miss it and be redone; go to float64 now.
                    self.level = max(self.level, 1)
                break
            self.level = 2 if not system.single else 1
        # ``split``: the pair masses r take their own step to the boundary, (λ, μ) theirs (the
        # primal and dual step lengths of LP interior-point methods); see ``_solve_broja``.
        alpha, c_new, pi_new = self.feasible_step(d_lam, d_mu, d_r, dc, bound_r=not self.split)
        if alpha == 0.0:
            return False
        a_r = 0.99 * self.max_step(d_r) if self.split else alpha
        self.lam, self.mu, self.r = self.lam + alpha * d_lam, self.mu + alpha * d_mu, r + a_r * d_r
        self.c, self.pi = c_new, pi_new
        return True

    def _direction(self, system: _NewtonBase):
        """The Mehrotra predictor-corrector direction (Δλ, Δμ, Δc, Δr) from one factorisation."""
        prob, r, s = self.prob, self.r, self.slack
        pairs, m = prob.pairs, max(prob.n_pairs, 1)
        gap_mu = float((r * s)[pairs].sum()) / m
        # Predictor (affine scaling); its step length is measured on the true, nonlinear constraints.
        dl_a, dm_a, dc_a, dr_a = self.direction(system, np.zeros_like(r), refine=0)
        a_aff, c_aff, _ = self.feasible_step(dl_a, dm_a, dr_a, dc_a)
        # (The pair masses' own step in μ_aff, as the small and cell routes take it on the plain
        # path (``small.affine_r_step``), was measured here too: dense 10×128×128 14 → 13
        # iterations, but hist-10x32x32 5 % slower at the same 13 (more backtracking), and on the
        # weighted path two skewed fuzz joints uncertified (seed 0: 5940, 8011); not taken.)
        mu_aff = float(((r + a_aff * dr_a) * np.where(pairs, -c_aff, 0.0))[pairs].sum()) / m
        sigma = min(1.0, (mu_aff / gap_mu) ** 2) if gap_mu > 0 else 0.0
        # Corrector: centring σμ plus the second-order terms of (r + Δr)(s + Δs) = σμ, where the
        # slack's true change is Δs = −Δc − κ with κ ≥ 0 the curvature of c along the step (c is
        # convex: the linearisation overestimates the slack). κ is measured on the predictor,
        # scaled to a full step as a quadratic, κ ≈ (c(α) − c − αΔc)/α², and enters as
        # Δr_aff·(Δc_aff + κ) + r·κ: the corrector anticipates how far the slack really falls.
        kappa = np.zeros_like(r)
        if a_aff > 0:
            ok = pairs & np.isfinite(c_aff)
            kappa[ok] = np.maximum((c_aff[ok] - self.c[ok] - a_aff * dc_a[ok]) / a_aff**2, 0.0)
        second = dr_a * (dc_a + kappa) + r * kappa
        w = self.weight
        target = np.where(pairs, np.maximum(sigma * gap_mu * w + second, 0.1 * sigma * gap_mu * w), 0.0)
        return self.direction(system, target)


#: The certificate is evaluated once the complementarity gap is within this factor of the tolerance.
CERTIFY_BELOW = 1e4


#: A run stops (and the restarts take over) when, before that, its complementarity gap Σ r·(−c) has
#: fallen by less than 0.01 % in ``NO_PROGRESS_SPAN`` steps: every step accepted but of length ~1e-7
#: (many-label sweep, seed 0, joints 174 and 186, reweighted histograms: their plain and √ paths
#: moved Σ r·(−c) by 1e-6..1e-5 of itself per 10 steps, from 3.2 and 3.4, for all 100 iterations).
#: A crawl that later converges moves it far more: joint 186's weighted run spent 50 steps near
#: 9e-4, falling 0.3..4 % per 10 steps, then converged in 25.
NO_PROGRESS_SPAN = 10
NO_PROGRESS_RATIO = 0.9999


#: Sweeps of the one long polish tried when the iteration stalls above the tolerance.
LONG_POLISH_SWEEPS = 1000


#: The primal polish runs once the gap is within this factor of the tolerance (it only needs to
#: close the last stretch, where round-off stalls the interior-point primal).
POLISH_BELOW = 30.0
#: ... and once the certified gap exceeds this multiple of the iterate's own Σ r·(−c), which it
#: equals up to the rounding of the primal onto Δ_P: where it does not, the primal has lost accuracy
#: (the polish's case); where it does, the next step closes the gap (the bench's joints: the polish
#: changed no iteration count and no gap, ~10 % of a 16×16×16 solve).
POLISH_LOSS = 2.0


def _solve_path(
    prob: _Problem,
    tol: float,
    max_iter: int,
    path: str = "weighted",
    max_move: float | None = None,
    split: bool = False,
) -> tuple[np.ndarray, float, float, SolverInfo]:
    """Minimise f(Q) = −H_Q(Y|T,S) over Δ_P given the pairwise marginals (all symbols used).

    A feasible primal-dual interior-point method (Mehrotra predictor-corrector) on the dual: the
    dual iterate (λ, μ) stays strictly feasible, the multipliers r(t,s) ≥ 0 of its constraints are
    the pair masses Q(t,s) of the primal point Q(y,t,s) = r(t,s) π(y|t,s). Where its Newton systems
    are solved in pair space, an active-set Newton finish is tried near the end
    (``active_set_rounds``). If it stalls above ``tol`` (degenerate problems: one source a garbling
    of the other), the garbling coupling is tried, certified against the bound
    f ≥ −min(H(Y|T), H(Y|S)). Every candidate is certified on the full problem.

    ``info``: iterations, converged, gap, garbling (which one certified, if any), newton (the
    factorisation: "schur", "pair" or "sparse"), single_precision_steps, finish_attempts, and
    finished_by when the active-set finish closed the gap.

    ``max_move``: the largest change of any λ or μ in one step (``MAX_DUAL_MOVE``); ``split``: the
    pair masses r step to their own boundary, (λ, μ) to theirs, instead of one common step length.

    Returns (q, f_upper, d_lower, info): an exactly feasible q with f(q) ≤ f_upper and a dual
    bound d_lower ≤ min f, both including a bound on their own rounding error (``objective_bound``,
    ``_Problem.lower_bound``), so the optimum lies in [d_lower, f_upper] and f_upper ≥ d_lower
    holds in floating point too; tol is in nats.
    """
    p_yt, p_ys = prob.p_yt, prob.p_ys
    ipm = _InteriorPoint(prob, path, max_move, split)
    info = SolverInfo(iterations=0, converged=False, garbling=None)
    best = [None, np.inf]  # exactly feasible q with the lowest f seen, and that f

    def offer(q: np.ndarray) -> bool:
        q = round_to_feasible(q, p_yt, p_ys)
        f, err = objective_bound(q)
        # An upper bound on the optimum must cover the rounding of f(q) itself; q's marginals
        # match P to a few ulps (round_to_feasible), a perturbation far below that of f.
        f += err
        if f < best[1]:
            best[:] = [q, f]
            return True
        return False

    # I_Q(Y;T,S) ≥ max(I(Y;T), I(Y;S)) on Δ_P, i.e. f ≥ −min(H(Y|T), H(Y|S)): tight exactly when
    # one source is a garbling of the other.
    h_t, h_s = _conditional_entropy(p_yt), _conditional_entropy(p_ys)
    d_low = -min(h_t, h_s) * (1 + sum_error_factor(p_yt.size + p_ys.size)) - 4 * EPS
    gaps: list[float] = []
    tried_garbling = False
    next_finish = np.inf
    info["finish_attempts"] = 0

    def finish(ipm: _InteriorPoint, active: np.ndarray) -> float:
        """Certify the active-set rounds from the IPM iterate: each is offered as a primal and as a
        dual bound. Returns the best dual bound."""
        bound = -np.inf
        for lam, mu, r_new, c, pi, _ in active_set_rounds(prob, ipm.lam, ipm.mu, ipm.r, active):
            offer(np.maximum(r_new, 0.0)[None] * pi)
            bound = max(bound, prob.lower_bound(lam, mu, c))
            if best[1] - bound <= tol:
                info["finished_by"] = "active-set Newton"
                break
        return bound

    # The start Q0 = P(y,t)P(y,s)/P(y) is in Δ_P: even if no step succeeds, a certified pair of
    # bounds (possibly loose, then reported as such) is returned instead of nothing.
    offer(ipm.r[None] * ipm.pi)
    working = None
    compl_log: list[float] = []
    for it in range(max_iter + 1):
        info["iterations"] = it
        compl = float((ipm.r * ipm.slack)[prob.pairs].sum())
        # The active-set finish is tried only where the Newton systems are solved in pair space
        # (many labels), where its restricted systems are much smaller than the IPM's; elsewhere
        # (measured) the attempts cost more than the iterations they save.
        previous, working = working, (_working_set(prob, ipm.r, ipm.slack) if prob.pair_space else None)
        # Certifying (rounding + objective) is pointless while the iterate's own complementarity
        # gap Σ r·(−c) is far above the tolerance: step on.
        compl_log.append(compl)
        if compl > CERTIFY_BELOW * tol and it < max_iter:
            if it >= NO_PROGRESS_SPAN and compl > NO_PROGRESS_RATIO * compl_log[it - NO_PROGRESS_SPAN]:
                break  # steps taken but Σ r·(−c) not moving: the next path or restart, not 100 of these
            if not ipm.step():
                break
            continue
        offer(ipm.r[None] * ipm.pi)
        # Valid lower bound: (λ, μ) shifted by max c (λ − max c is feasible, D falls by max c ≤ 0).
        # Near the end the iterates lose accuracy to round-off, so keep the best bounds seen.
        d_low = max(d_low, prob.lower_bound(ipm.lam, ipm.mu, ipm.c))
        if tol < best[1] - d_low < POLISH_BELOW * max(tol, 1e-9) and best[1] - d_low > POLISH_LOSS * compl:
            q_pol, bound = scaling_polish(prob, ipm.lam, ipm.mu, ipm.r)
            offer(q_pol)
            d_low = max(d_low, bound)
        if (
            working is not None
            and previous is not None
            and best[1] - d_low > tol
            and compl <= next_finish
            and (working ^ previous).sum() <= FINISH_STABLE * working.sum()
        ):
            # Once the working set has settled; a failed attempt is retried only once the
            # iterate has come 10× closer.
            next_finish = FINISH_RETRY * compl
            info["finish_attempts"] += 1
            d_low = max(d_low, finish(ipm, working))
        gaps.append(best[1] - d_low)
        if gaps[-1] <= tol:
            info["converged"] = True
            break
        stalled = gaps[-1] < 1e-4 and len(gaps) > 4 and gaps[-1] >= 0.5 * gaps[-5]
        if stalled and tried_garbling and compl > tol and it < max_iter:
            # The certified gap stalled but the iterate's own complementarity gap Σ r·(−c) is still
            # above the tolerance: not the limit of double precision yet. Skewed joints (masses
            # 1e-9) pass a stretch of short steps and then converge (seed-0 joint 1365: 4 slow
            # iterations at Σ r·(−c) ≈ 5e-5, then 1e-10 in 6 more).
            if not ipm.step():
                break
            continue
        if stalled and not tried_garbling:
            # Slow progress near the optimum is the signature of a degenerate problem: try the
            # garbling couplings, which are optimal (and exact) when one source is a garbling.
            # A garbling is only possible while the lower bound allows optimum = −H(Y|T) (resp. S),
            # which keeps the linear program off non-degenerate problems.
            tried_garbling = True
            # Also a long polish: at a boundary optimum the short one may not close the gap.
            q_pol, bound = scaling_polish(prob, ipm.lam, ipm.mu, ipm.r, sweeps=LONG_POLISH_SWEEPS)
            offer(q_pol)
            d_low = max(d_low, bound)
            if d_low <= -h_t + 1e-12 and (q := garbling_coupling(p_yt, p_ys)) is not None:
                if offer(q):
                    info["garbling"] = "S is a garbling of T"
            if d_low <= -h_s + 1e-12 and (q := garbling_coupling(p_ys, p_yt)) is not None:
                if offer(q.transpose(0, 2, 1)):
                    info["garbling"] = "T is a garbling of S"
            if best[1] - d_low <= tol:
                info["converged"] = True
                break
        elif stalled:
            break  # the limit of double precision
        if it == max_iter or not ipm.step():
            break
    best_q, best_f = best
    info["newton"] = "pair" if prob.pair_space else ("sparse" if is_sparse(prob) else "schur")
    info["single_precision_steps"] = ipm.single_steps
    info["gap"] = best_f - d_low
    info["_ipm"] = ipm
    return best_q, best_f, d_low, info
