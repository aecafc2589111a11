"""Memory budget of the PID engine: every array sized from user data is checked against it first.

A histogram with very many labels or clusters is a valid joint, but the solver's systems grow with
its sides (the Schur complement's label blocks with T·Y², the pair-space system with the number of
(t, s) pairs squared): without a check, numpy fails mid-solve with "Unable to allocate 2.91 TiB".
The budget is explicit, ``MEMORY_BUDGET_BYTES`` (4 GiB), overridable with the environment variable
``INFODISTILL_PID_MEMORY_GB`` (a number of GiB, e.g. ``16``); a problem whose estimated peak is
above it is refused with a ValueError naming the size and the fix.
"""

from __future__ import annotations

import os

#: Default budget for the arrays of one decomposition (bytes).
MEMORY_BUDGET_BYTES = 4 * 2**30

#: Environment variable overriding the budget, in GiB.
MEMORY_ENV = "INFODISTILL_PID_MEMORY_GB"

#: float64 arrays of the joint's full size (Y·T·S) alive at once in ``decompose`` and the solver:
#: the input and its normalised copy, the support, π, q, the log-sum-exp temporaries, the rounding's
#: copies and Newton products (counted on the code, rounded up).
JOINT_COPIES = 16

FIX = "use fewer labels or fewer clusters (k, k_t, k_s; --k on the command line)"


def memory_budget() -> int:
    """The budget in bytes: ``INFODISTILL_PID_MEMORY_GB`` if set, else ``MEMORY_BUDGET_BYTES``."""
    raw = os.environ.get(MEMORY_ENV)
    if raw is None or raw.strip() == "":
        return MEMORY_BUDGET_BYTES
    try:
        gib = float(raw)
    except ValueError:
        raise ValueError(f"{MEMORY_ENV}={raw!r} is not a number of GiB (e.g. {MEMORY_ENV}=16)") from None
    if not gib > 0:
        raise ValueError(f"{MEMORY_ENV}={raw!r} must be a positive number of GiB")
    return int(gib * 2**30)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def check_bytes(nbytes: float, what: str) -> None:
    """Raise ValueError (one line: the size, the budget, the fix) if ``nbytes`` exceeds the budget."""
    budget = memory_budget()
    if nbytes > budget:
        raise ValueError(
            f"{what} would need about {format_bytes(nbytes)}, above the PID memory budget of "
            f"{format_bytes(budget)} (set {MEMORY_ENV} to raise it); {FIX}"
        )


def check_joint(shape) -> None:
    """The arrays of the joint's full size (``JOINT_COPIES`` float64 copies of Y·T·S)."""
    Y, T, S = (int(n) for n in shape)
    what = f"the PID of a {Y} x {T} x {S} joint (labels x teacher x student)"
    check_bytes(8.0 * JOINT_COPIES * Y * T * S, what)
