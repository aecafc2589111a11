"""Checks shared by the tests of the solver's fast routes (the small route and the cell route,
tests/pid/test_solver_small.py and test_solver_cells.py; imported as ``fast_routes``): each route
against the general route, against the cvxpy reference, and handed back when it cannot certify."""

from __future__ import annotations

import pytest

from infodistill.pid import decompose
from infodistill.pid.broja import _Problem, solve_broja
from infodistill.pid.broja import solve as solve_mod
from infodistill.pid.broja.solve import _solve_broja

__all__ = ["TERMS", "assert_decompose_agrees_without", "assert_handed_back", "assert_matches_reference"]

TERMS = ("redundancy", "unique_t", "unique_s", "synergy")


def assert_decompose_agrees_without(monkeypatch, p, route: str, switch: str, tol: float = 1e-9) -> None:
    """``decompose(p)`` takes ``route`` and agrees, within the two certified gaps, with the run in
    which ``solve.<switch>`` (the route's test) says no."""
    fast = decompose(p, tol=tol)
    assert fast.solver["newton"] == route and fast.solver["converged"]
    monkeypatch.setattr(solve_mod, switch, lambda *args: False)
    slow = decompose(p, tol=tol)
    assert slow.solver["newton"] != route
    for k in TERMS:
        assert abs(getattr(fast, k) - getattr(slow, k)) <= fast.gap + slow.gap + 1e-12


def assert_matches_reference(p, route: str) -> None:
    """``decompose(p)`` takes ``route`` and agrees with cvxpy + Clarabel within both gaps."""
    pytest.importorskip("cvxpy")
    pytest.importorskip("clarabel")
    from infodistill.pid.reference import reference_decompose  # the test extra

    ours = decompose(p)
    assert ours.solver["newton"] == route
    ref = reference_decompose(p)
    for k in TERMS:
        assert abs(getattr(ours, k) - ref[k]) <= ours.gap + ref["gap"] + 1e-6


def assert_handed_back(monkeypatch, p_yt, p_ys, route: str, solver_name: str, two_steps, tol: float) -> None:
    """With ``solve.<solver_name>`` replaced by ``two_steps`` (the route's solver stopped after two
    iterations, appending whether it converged to ``two_steps.calls``), ``solve_broja`` hands the
    run back to the full method, which certifies the same optimum as a run without the route."""
    monkeypatch.setattr(solve_mod, solver_name, two_steps)
    q, f, d, info = solve_broja(p_yt, p_ys, tol)
    assert two_steps.calls == [False]
    assert info["converged"] and info[route] == "handed back" and info["newton"] != route
    assert 0 <= f - d <= tol
    _, f_ref, d_ref, _ = _solve_broja(_Problem(p_yt, p_ys), tol, 100)
    assert abs(f - f_ref) <= (f - d) + (f_ref - d_ref) + 1e-12
