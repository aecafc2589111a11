"""``decompose``: the BROJA partial information decomposition of a joint array p[y, t, s]."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .broja import solve_broja
from .limits import check_joint
from .measures import LN2, _check_unit, _h, as_joint, convert_units
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
    if isinstance(p, np.ndarray) and p.ndim == 3:
        check_joint(p.shape)
    p = as_joint(p, ndim=3, counts=counts)
    check_joint(p.shape)
    tol_nats = DEFAULT_TOL_BITS * LN2 if tol is None else convert_units(float(tol), unit, "nats")
    if not 0 < tol_nats < np.inf:
        raise ValueError(f"tol must be a positive finite number, got {tol}")

    # Drop unused symbols: they carry no mass in any Q of Δ_P.
    used = [p.sum(axis=tuple(j for j in range(3) if j != i)) > 0 for i in range(3)]
    sub = p[np.ix_(*used)]
    p_yt, p_ys = sub.sum(axis=2), sub.sum(axis=1)
    h_y = _h(sub.sum(axis=(1, 2)))
    mi_t = max(h_y + _h(p_yt.sum(axis=0)) - _h(p_yt), 0.0)
    mi_s = max(h_y + _h(p_ys.sum(axis=0)) - _h(p_ys), 0.0)
    mi_joint = max(h_y + _h(sub.sum(axis=0)) - _h(sub), 0.0)

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
    min_mi = h_y + f_up  # an upper bound on min I_Q(Y;T,S); the optimum is within gap below it
    # The optimum can't be below max(I(Y;T), I(Y;S)) nor above I(Y;T,S); clamp the round-off.
    min_mi = min(max(min_mi, mi_t, mi_s), mi_joint)

    def snap(x: float) -> float:
        return 0.0 if abs(x) <= gap + 1e-12 else x

    terms = dict(
        unique_t=snap(min_mi - mi_s),
        unique_s=snap(min_mi - mi_t),
        synergy=snap(mi_joint - min_mi),
    )
    terms["redundancy"] = snap(mi_t - terms["unique_t"])
    q = np.zeros_like(p)
    q[np.ix_(*used)] = q_sub
    res = PIDResult(
        **terms,
        mi_t=mi_t,
        mi_s=mi_s,
        mi_joint=mi_joint,
        min_mi=min_mi,
        gap=gap,
        unit="nats",
        q=q,
        solver=dict(info),
    )
    return res if unit == "nats" else res.to_unit(unit)
