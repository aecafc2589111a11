"""Plug-in information measures on joint probability arrays.

Every function takes a joint distribution as an n-dimensional array (one axis per variable) and
names variables by axis index, in the style of dit. Axes not named are marginalised out.
Values are in bits unless ``unit="nats"``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

LN2 = float(np.log(2.0))
UNITS = ("bits", "nats")

#: Relative slack accepted on ``sum(p) == 1`` before an array is rejected; within it the array is
#: renormalised (float32 histograms and CSV round-trips land within ~1e-7 of 1).
NORMALISATION_TOL = 1e-6

Axes = int | Iterable[int]


def _check_unit(unit: str) -> None:
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}: use 'bits' or 'nats'")


def convert_units(value, from_unit: str = "nats", to_unit: str = "bits"):
    """Convert an information value (scalar or array) between 'bits' and 'nats'."""
    _check_unit(from_unit)
    _check_unit(to_unit)
    if from_unit == to_unit:
        return value
    return value / LN2 if to_unit == "bits" else value * LN2


def as_joint(p, ndim: int | None = None, counts: bool = False, name: str = "p") -> np.ndarray:
    """Validate a joint distribution (or a count histogram with ``counts=True``); return float64 p.

    Raises ValueError naming the problem. A total within ``NORMALISATION_TOL`` of 1 is renormalised;
    a count histogram (non-negative, positive total) is divided by its total.
    """
    try:
        arr = np.asarray(p)
        if arr.dtype.kind in "cUSVMm":
            # A float64 cast would drop imaginary parts or parse strings: refuse rather than guess.
            raise TypeError(f"got dtype {arr.dtype}, not real numbers")
        arr = arr.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array ({exc})") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array p[y, t, s], got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}): every axis needs at least one symbol")
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.add.reduce(arr, axis=None))
    # A finite total and a non-negative minimum leave no NaN, infinite or negative entry (a NaN
    # makes the minimum NaN); otherwise the entries are looked at one check at a time.
    if not (np.isfinite(total) and np.minimum.reduce(arr, axis=None) >= 0):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite entries")
        if np.any(arr < 0):
            raise ValueError(f"{name} has negative entries (min {arr.min():.3g}); probabilities must be >= 0")
    if counts:
        if total <= 0:
            raise ValueError(f"{name} is a count histogram with total 0: there is nothing to normalise")
        if not np.isfinite(total):
            # Counts near the float64 maximum overflow in the sum: scale by the largest first.
            arr = arr / arr.max()
            total = float(arr.sum())
        return arr / total
    if abs(total - 1.0) > NORMALISATION_TOL:
        raise ValueError(
            f"{name} sums to {total:.9g}, not 1 (tolerance {NORMALISATION_TOL:g}); "
            "normalise it, or pass counts=True for a count histogram"
        )
    return arr / total


def _axes(a: Axes) -> tuple[int, ...]:
    return (a,) if isinstance(a, (int, np.integer)) else tuple(int(x) for x in a)


def marginal(p: np.ndarray, keep: Axes) -> np.ndarray:
    """Marginal of ``p`` over the axes in ``keep`` (kept in increasing axis order)."""
    keep = _axes(keep)
    drop = tuple(i for i in range(p.ndim) if i not in keep)
    return p.sum(axis=drop)


def _h(x: np.ndarray) -> float:
    x = x[x > 0]
    return float(-(x * np.log(x)).sum())


def entropy(p, axes: Axes | None = None, unit: str = "bits") -> float:
    """Joint entropy H of the variables on ``axes`` (all axes if None)."""
    _check_unit(unit)
    p = as_joint(p)
    m = p if axes is None else marginal(p, axes)
    return convert_units(_h(m), "nats", unit)


def conditional_entropy(p, a: Axes, given: Axes, unit: str = "bits") -> float:
    """H(A | C) = H(A, C) − H(C)."""
    _check_unit(unit)
    p = as_joint(p)
    a, c = _axes(a), _axes(given)
    v = _h(marginal(p, a + c)) - _h(marginal(p, c))
    return convert_units(v, "nats", unit)


def mutual_information(p, a: Axes, b: Axes, unit: str = "bits") -> float:
    """I(A; B) = H(A) + H(B) − H(A, B); A and B are sets of axes of the joint array."""
    _check_unit(unit)
    p = as_joint(p)
    a, b = _axes(a), _axes(b)
    v = _h(marginal(p, a)) + _h(marginal(p, b)) - _h(marginal(p, a + b))
    return convert_units(max(v, 0.0), "nats", unit)


def conditional_mutual_information(p, a: Axes, b: Axes, given: Axes, unit: str = "bits") -> float:
    """I(A; B | C) = H(A, C) + H(B, C) − H(A, B, C) − H(C)."""
    _check_unit(unit)
    p = as_joint(p)
    a, b, c = _axes(a), _axes(b), _axes(given)
    v = _h(marginal(p, a + c)) + _h(marginal(p, b + c)) - _h(marginal(p, a + b + c)) - _h(marginal(p, c))
    return convert_units(max(v, 0.0), "nats", unit)


def co_information(p, a: Axes, b: Axes, c: Axes, unit: str = "bits") -> float:
    """Co-information I(A; B; C) = I(A; B) − I(A; B | C) (can be negative: synergy dominates)."""
    return mutual_information(p, a, b, unit) - conditional_mutual_information(p, a, b, c, unit)
