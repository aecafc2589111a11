"""``solve_broja``, the solver's entry point: the memory check, the BLAS thread count, and the
restarts that run when the first path ends above the tolerance (another central path, the dense
Schur route, a cautious step limit, the long polish, T and S exchanged); the best primal and the
best dual bound of all runs combine.
"""

from __future__ import annotations

import numpy as np

from ..blas_threads import blas_threads
from ..limits import check_bytes, memory_budget
from .cells import cells_route, solve_cells
from .certificates import objective_bound, round_to_feasible
from .finish import _working_set, active_set_rounds, scaling_sweeps
from .interior_point import CAUTIOUS_DUAL_MOVE, SolverInfo, _InteriorPoint, _solve_path
from .newton import solver_bytes
from .problem import _Problem, is_sparse
from .small import small_route, solve_small

#: Newton systems up to this size are solved with one BLAS thread: on the 2-core machines this
#: project targets, threading overhead made every size measured up to (S·Y) = 1280 slower
#: (10×32×32: 0.06 s with one thread, 0.10–0.23 s with two).
SINGLE_THREAD_MAX_N = 2048


#: Central paths of the restarts, in order, when a solve ends above the tolerance (see
#: ``_InteriorPoint``): the weighted path first, then the plain path r·s = μ̄, then weights ∝ √Q0.
#: Measured on the fuzz sweep's skewed joints (masses over up to 15 orders of magnitude): where one
#: path's iterates collapse (a label's π on a pair falls to 1e-20, its curvature with it, and the
#: next Newton direction is a near-null gauge move of 1e12: no step is accepted) or stall at a
#: complementarity gap of ~1e-6, another path reaches the tolerance. Bounds from every run are
#: certified on the full problem, so the best primal and the best dual bound of all runs combine.
RESTART_PATHS = ("weighted", "plain", "sqrt")


#: The plain path comes first (the weighted one becomes its first restart) when the positive
#: entries of P(y,t) and P(y,s) span at most this ratio. The weighting is for masses over many
#: orders of magnitude; on joints of a narrow range, histograms of samples above all (a range of at
#: most the sample count), the plain path is as fast or faster, and on sparse histograms the weighted
#: one is many times slower: weights ∝ Q0(t,s) pin pairs that carry mass at the optimum but little
#: under Q0 to the boundary early, and the steps stay short (hist-10x128x128: 100+ iterations
#: against 17; hist-10x32x32: 24 against 13). Measured on the first 400 joints of the seed-0 fuzz
#: sweep: below a range of 1e4.5 both paths converge on every joint, within ±1 iteration of each other
#: but for one (skewed joint 378, 10^4.7: 2 weighted against 100 plain), and above it the plain path
#: fails or crawls on 21 joints.
PLAIN_FIRST_MAX_RANGE = 10**4.5


def first_path(p_yt: np.ndarray, p_ys: np.ndarray) -> str:
    """The central path of the first run: "plain" on joints of a narrow mass range (see
    ``PLAIN_FIRST_MAX_RANGE``), "weighted" otherwise."""
    v = np.concatenate([p_yt[p_yt > 0], p_ys[p_ys > 0]])
    if v.size and float(v.max()) <= PLAIN_FIRST_MAX_RANGE * float(v.min()):
        return "plain"
    return "weighted"


def _combine(seed, run, path: str, tol: float):
    """The certified bounds of the runs so far, (q, f_upper, d_lower, info), and one more ``run``
    on ``path``: the best upper bound with its q, the best lower bound, the first run's ``info``
    with ``paths``, ``iterations`` and float32 steps summed and ``gap``/``converged`` for the
    combination (each bound is certified on the same problem, so they combine)."""
    q, f, d, more = run
    if seed is None:
        more["paths"] = [path]
        return q, f, d, more
    best_q, best_f, best_d, info = seed
    if f < best_f:
        best_q, best_f = q, f
    best_d = max(best_d, d)
    info["paths"].append(path)
    info["iterations"] += more["iterations"]
    info["single_precision_steps"] += more["single_precision_steps"]
    info["gap"] = best_f - best_d
    info["converged"] = bool(best_f - best_d <= tol)
    return best_q, best_f, best_d, info


def _split_label(split: bool) -> str:
    """The suffix of a run's label in ``SolverInfo.paths`` when its steps were split."""
    return " split" if split else ""


#: The dense Schur-complement restart of a pair-space or sparse problem is tried up to this size
#: S·Y of its Newton system (100×32×32: 3200, ~0.5 s a step on 2 cores).
RESTART_DENSE_MAX_N = 3200


#: The long alternating-minimisation polish of a run that ends above the tolerance after its
#: active-set finish (``_solve_broja``): at most this many sweeps, certified every
#: ``FINAL_POLISH_EVERY``. Measured on the seed-0 joints it closes (1241, 5358, 7381, 8427): 500 to
#: 10 000 sweeps, ~0.01 s per 1000 on their sizes.
FINAL_POLISH_SWEEPS = 20000
FINAL_POLISH_EVERY = 500
FINAL_POLISH_STALL = 4


def solve_broja(
    p_yt: np.ndarray,
    p_ys: np.ndarray,
    tol: float = 1e-9,
    max_iter: int = 100,
) -> tuple[np.ndarray, float, float, SolverInfo]:
    """See ``_solve_broja``; runs it with the BLAS thread count chosen for the size of the Newton
    system it factorises (S·Y, or the number of pairs in pair space).

    Small problems (``small_route``) first run the same interior-point method on the first path
    in ``small.solve_small`` (one dense Newton matrix over the support cells, a fraction of the
    numpy calls per iteration); if that run does not certify within ``tol``, ``_solve_broja`` runs
    in full, starting from its bounds. Likewise joints whose support fills little of the Y·T·S grid
    (``cells_route``: histograms of clustered representations) first run it in
    ``cells.solve_cells``, on the support cells with the Schur complement in μ."""
    seed = None
    if small_route(p_yt, p_ys):
        path = first_path(p_yt, p_ys)
        q, f, d, info = solve_small(p_yt, p_ys, tol, path, max_iter)
        info["paths"] = [path]
        if info["converged"]:
            info["single_precision_steps"] = 0
            return q, f, d, info
        seed = (q, f, d, info)
    prob = _Problem(p_yt, p_ys)
    (Y, T), S = p_yt.shape, p_ys.shape[1]
    path = first_path(p_yt, p_ys)
    general_sparse = is_sparse(prob) and not prob.pair_space
    if seed is None and (path == "plain" or general_sparse) and cells_route(prob):
        # Sparse supports of a narrow mass range (histograms of samples): the same method on the
        # support cells first (``cells.solve_cells``). On the weighted path (skewed masses) the
        # general route's polish and finish close joints the cell run stalls on (sparse sweep:
        # 3 of 60 joints handed back, all skewed), so those start there, unless the general
        # route would take the sparse Schur complement: there the cells are tried first on the
        # weighted path too (many-label sweep, seed 0, joint 120, a 65×94×33 histogram reweighted
        # over orders of magnitude: certified on the cells in 4 s, left at 1.2e-7 bits after
        # 216 s by the sparse route). Its Newton system is the Schur complement on the free μ,
        # whatever S·Y is.
        # Where the first run is plain and the general route would be the sparse one, the cells
        # also run the weighted path (the general route's first restart) before handing back:
        # many-label sweep, seed 0, joint 93 (81×37×74, reweighted): the plain run stalls at a
        # gap of 2 nats (steps of 0.03), the weighted one certifies in 22 iterations (2 s), and the
        # sparse route took 225 iterations (128 s) to certify it.
        n_mu = prob.schur_index()[1].size
        cell_paths = [path, "weighted"] if path == "plain" and general_sparse else [path]
        with blas_threads(1 if n_mu <= SINGLE_THREAD_MAX_N else None):
            for run_path in cell_paths:
                q, f, d, more = solve_cells(prob, tol, run_path, max_iter)
                seed = _combine(seed, (q, f, d, more), run_path, tol)
                if seed[3]["converged"]:
                    return seed
    # The general route's memory is checked here, once the cells (whose own arrays ``cells_route``
    # checked) have not certified: a joint they certify never needs the general route's system.
    route = "pair space" if prob.pair_space else ("sparse" if is_sparse(prob) else "Schur")
    check_bytes(solver_bytes(prob), f"the BROJA solver's Newton system for a {Y} x {T} x {S} joint ({route})")
    n = prob.n_pairs if prob.pair_space else p_ys.size
    with blas_threads(1 if n <= SINGLE_THREAD_MAX_N else None):
        return _solve_broja(prob, tol, max_iter, seed)


def _solve_broja(
    prob: _Problem, tol: float, max_iter: int, seed=None
) -> tuple[np.ndarray, float, float, SolverInfo]:
    """``_solve_path`` on the central path ``first_path`` picks (weighted, or plain on joints of a
    narrow mass range); if its certified gap is above ``tol``, again on the other paths of
    ``RESTART_PATHS`` until the combined gap (best upper bound of any run,
    best lower bound of any run) is within ``tol``. ``info`` is the first run's, with ``paths`` (the
    paths run), ``iterations`` summed over them and ``converged``/``gap`` for the combination.
    ``seed``: (q, f_upper, d_lower, info) of a ``solve_small`` run of the same problem that ended
    above ``tol``; its certified bounds combine with the rest."""
    best = [None, np.inf, -np.inf]  # q, its certified f, the best dual bound
    info = None
    iterations = 0
    paths = []
    if seed is not None:
        # A run of ``solve_small`` that ended above the tolerance: its bounds are certified too.
        q, f, d, more = seed
        if q is not None:
            best[:2] = [q, f]
        best[2] = d
        iterations += more["iterations"]
        paths += more["paths"]

    def finish(ipm: _InteriorPoint) -> None:
        """The active-set Newton finish (an exact solve of the optimality conditions on the pairs
        that carry mass) from a run's final iterate, on any route, certified on the full problem."""
        for lam, mu, r_new, c, pi, _ in active_set_rounds(
            prob, ipm.lam, ipm.mu, ipm.r, _working_set(prob, ipm.r, ipm.slack)
        ):
            q = round_to_feasible(np.maximum(r_new, 0.0)[None] * pi, prob.p_yt, prob.p_ys)
            f, err = objective_bound(q)
            if f + err < best[1]:
                best[:2] = [q, f + err]
            best[2] = max(best[2], prob.lower_bound(lam, mu, c))
            if best[1] - best[2] <= tol:
                info["finished_by"] = "active-set Newton"
                return

    def long_polish(ipm: _InteriorPoint) -> None:
        """Alternating-minimisation sweeps from a run's final iterate, much longer than the IPM's
        polish, each chunk's primal and scaling dual certified on the full problem; stops once the
        combined gap is within tol. Where the Newton matrix is singular to working precision or
        the directions are no longer accepted (seed-0 joints 1241, 5358, 7381, 8427), the sweeps,
        which need no linear algebra, keep converging."""
        gaps = []
        for q, bound in scaling_sweeps(prob, ipm.mu, ipm.r, FINAL_POLISH_SWEEPS, FINAL_POLISH_EVERY):
            q = round_to_feasible(q, prob.p_yt, prob.p_ys)
            f, err = objective_bound(q)
            if f + err < best[1]:
                best[:2] = [q, f + err]
            best[2] = max(best[2], bound)
            gaps.append(best[1] - best[2])
            if gaps[-1] <= tol:
                info["finished_by"] = "long polish"
                return
            if len(gaps) > FINAL_POLISH_STALL and gaps[-1] > 0.5 * gaps[-1 - FINAL_POLISH_STALL]:
                return  # not halved in FINAL_POLISH_STALL chunks: linear convergence too slow

    first = first_path(prob.p_yt, prob.p_ys)
    runs = [(prob, path, None, False) for path in RESTART_PATHS]
    # On the weighted path with steps of at most CAUTIOUS_DUAL_MOVE nats in λ, μ: one long step
    # (18 nats) can collapse the π of a pair of tiny mass onto one label, after which the Newton
    # directions are near-null gauge moves of 1e6..1e12 and no step is accepted (seed-0 joints
    # 1546, 1793); shorter steps stay clear of it.
    runs.insert(1, (prob, RESTART_PATHS[0], CAUTIOUS_DUAL_MOVE, False))
    # Then the weighted path with split step lengths, r to its own boundary (``_InteriorPoint``),
    # without and with the cautious limit, before the cautious run: reweighted sparse histograms
    # crawl on the common step, which the pairs of tiny mass leaving the optimum's support cut to
    # 0.1–0.6 (many-label sweep, seed 0, joints 174 and 186; sparse sweep, seed 1, joints 143 and
    # 275: left at 1e-7..1e-5 bits after every path below, certified by one of these two). Some
    # skewed joints of the main sweep need the common step (split on every run: seed 0, joints
    # 403, 436 and 1241 uncertified), so these are restarts.
    runs[1:1] = [(prob, RESTART_PATHS[0], None, True), (prob, RESTART_PATHS[0], CAUTIOUS_DUAL_MOVE, True)]
    if prob.pair_space or is_sparse(prob):
        # Pair space (Woodbury) forms D⁻¹ of the label blocks explicitly; with masses of 1e-14 its
        # cancellation leaves directions the refinement cannot repair (steps of 1e7, none
        # accepted: seed-0 joints 403, 436, 1713), where the Schur complement converges; the
        # sparse route's splu stalls count histograms at Σ r·(−c) ≈ 1e-6 (3542), where the dense
        # one does not. The dense Schur restart comes first, if its Newton systems fit the budget.
        schur = _Problem(prob.p_yt, prob.p_ys)
        schur._pair_space, schur.dense_only = False, True
        if prob.p_ys.size <= RESTART_DENSE_MAX_N and solver_bytes(schur) <= memory_budget():
            runs.insert(1, (schur, RESTART_PATHS[0], None, False))
    if first != RESTART_PATHS[0]:
        # The plain run moves to the front; the weighted one is its first restart.
        runs.remove((prob, first, None, False))
        runs.insert(0, (prob, first, None, False))
    for run_prob, path, move, split in runs:
        q, f, d, more = _solve_path(run_prob, tol, max_iter, path, move, split)
        ipm = more.pop("_ipm")
        route = f" ({more['newton']})" if run_prob is not prob else ""
        paths.append(path + route + (" cautious" if move else "") + _split_label(split))
        iterations += more["iterations"]
        if info is None:
            info = more
        for key in ("garbling", "finished_by"):
            if more.get(key) and not info.get(key):
                info[key] = more[key]
        if f < best[1]:
            best[:2] = [q, f]
        best[2] = max(best[2], d)
        if best[1] - best[2] <= tol:
            break
        # Above the tolerance (a stall near the optimum, or no step possible): finish this run's
        # iterate exactly on its active set, then restart on the next path if that fails too.
        finish(ipm)
        if best[1] - best[2] <= tol:
            break
        long_polish(ipm)
        if best[1] - best[2] <= tol:
            break
    flip = None
    for split in (False, True):
        # Last, the same problem with T and S exchanged (its Newton systems eliminate the other
        # source, so their conditioning differs): seed-0 joint 1241 (22×20×3 after the swap in
        # ``decompose``; the Newton matrix singular to working precision on every path and route)
        # converges as 22×3×20. The result is mapped back and certified on this problem. Then
        # once more with split step lengths (sparse sweep, seed 0, joint 143, a reweighted
        # 9×84×123 histogram: 1.9e-6 bits after every run before, certified by this one).
        if best[1] - best[2] <= tol:
            break
        flip = _Problem(prob.p_ys, prob.p_yt) if flip is None else flip
        if solver_bytes(flip) > memory_budget():
            break
        q, _, d, more = _solve_path(flip, tol, max_iter, RESTART_PATHS[0], split=split)
        ipm = more.pop("_ipm")
        paths.append(RESTART_PATHS[0] + f" ({more['newton']}, T and S exchanged)" + _split_label(split))
        iterations += more["iterations"]
        q = round_to_feasible(q.transpose(0, 2, 1), prob.p_yt, prob.p_ys)
        f, err = objective_bound(q)
        if f + err < best[1]:
            best[:2] = [q, f + err]
        # Its certified bound d (best of the run) bounds the same minimum, which relabelling
        # T and S leaves unchanged; the final iterate is also re-evaluated here.
        lam, mu = ipm.mu, ipm.lam
        c, _ = prob.evaluate(lam, mu)
        best[2] = max(best[2], d, prob.lower_bound(lam, mu, c))
        if best[1] - best[2] <= tol and more.get("finished_by") and not info.get("finished_by"):
            info["finished_by"] = more["finished_by"]
    best_q, best_f, d_low = best
    if seed is not None:
        # The first path was run by ``solve_small`` (or ``solve_cells``) first.
        info[seed[3]["newton"]] = "handed back"
    info["paths"] = paths
    info["iterations"] = iterations
    info["gap"] = best_f - d_low
    info["converged"] = bool(best_f - d_low <= tol)
    return best_q, best_f, d_low, info
