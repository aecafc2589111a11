"""BROJA partial information decomposition with a certified optimality gap.

The BROJA decomposition [Bertschinger et al., Entropy 2014] of p(y, t, s) needs

    min_{Q in Δ_P} I_Q(Y; T, S),   Δ_P = {Q : Q(y,t) = P(y,t), Q(y,s) = P(y,s)}.

Since H(Y) is fixed on Δ_P this is min f(Q) with f(Q) = Σ Q(y,t,s) log Q(y|t,s) = −H_Q(Y|T,S),
a convex problem. Its Lagrange dual (derived in docs/solver.md) is

    max_{λ, μ}  D(λ, μ) = Σ P(y,t) λ(y,t) + Σ P(y,s) μ(y,s)
    s.t.        c(t,s) = log Σ_y exp(λ(y,t) + μ(y,s)) ≤ 0   for every pair (t, s),

where the sum over y runs over labels with P(y,t) > 0 and P(y,s) > 0 (exactly the support a Q in
Δ_P may use). For any primal-feasible Q and dual-feasible (λ, μ), f(Q) − D(λ, μ) ≥ 0 by Gibbs'
inequality; that difference is the certificate reported as ``gap``.

Solver (details in docs/solver.md): a feasible primal-dual interior-point method (Mehrotra
predictor-corrector, with the slack's curvature in the corrector) on the dual, whose constraint
multipliers r(t,s) are the primal pair masses, Q(y,t,s) = r(t,s)·softmax_y(λ(y,t) + μ(y,s)). The
Newton matrix in (λ, μ) is factorised one of three ways, chosen by a work model: for few labels
the Schur complement in μ, (S·Y)×(S·Y) (T and S are swapped so that S ≤ T), assembled as one SYRK
(in float32 while the iteration is well conditioned, refined in float64); for many labels in pair
space by Woodbury (pairs × pairs); for sparse supports as a sparse Schur complement. Every
iteration the primal point is rounded onto Δ_P exactly (scale down over-full rows and columns, then
add the rank-one deficit; Altschuler, Weed & Rigollet 2017) and the gap evaluated; near the optimum
alternating-minimisation sweeps polish the primal, an active-set Newton method (pair space) solves
the optimality conditions restricted to the pairs that carry mass, and degenerate problems (one
source a Blackwell garbling of the other) are certified exactly by a linear program. Every
candidate is certified on the full problem; the method stops when the certified gap is at most the
tolerance.

The modules, lowest first (each imports only those above it):

- ``certificates``: rounding-error bounds, the exact projection onto Δ_P, the garbling LP;
- ``problem``: the marginals, support cells, c and π at a dual point, the dual bound, the route;
- ``newton``: the Newton matrix and its factorisations (Schur, sparse Schur, pair space);
- ``finish``: the active-set Newton finish and the alternating-minimisation polish;
- ``interior_point``: the predictor-corrector iteration and one run along a central path;
- ``small``, ``cells``: the same iteration for small problems (one dense Newton matrix) and for
  sparse supports (on the support cells, Schur complement in μ), handed back when they do not
  certify;
- ``solve``: ``solve_broja`` and its restarts.

The tunable constants live in the module that reads them (patch them there, not here).
"""

# The solver was one module: the names other modules, tests and benchmarks import from it stay
# importable here (``X as X`` marks a re-export).
from .certificates import _conditional_entropy as _conditional_entropy
from .certificates import garbling_coupling as garbling_coupling
from .certificates import objective as objective
from .certificates import objective_bound as objective_bound
from .certificates import round_to_feasible as round_to_feasible
from .certificates import sum_error_factor as sum_error_factor
from .finish import _working_set as _working_set
from .finish import active_set_newton as active_set_newton
from .finish import active_set_rounds as active_set_rounds
from .finish import scaling_polish as scaling_polish
from .finish import scaling_sweeps as scaling_sweeps
from .interior_point import SolverInfo as SolverInfo
from .interior_point import _InteriorPoint as _InteriorPoint
from .newton import _Factor as _Factor
from .newton import _NewtonBase as _NewtonBase
from .newton import _NewtonSystem as _NewtonSystem
from .newton import _pair_gram as _pair_gram
from .newton import _PairSystem as _PairSystem
from .newton import _spd_inverse as _spd_inverse
from .newton import solver_bytes as solver_bytes
from .problem import _Problem as _Problem
from .solve import solve_broja

__all__ = ["solve_broja"]
