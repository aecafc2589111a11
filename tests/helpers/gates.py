"""The AND gate for the tests that need a joint with a known PID (imported as ``gates``); the gates
themselves are library data, :mod:`infodistill.pid.gates`."""

import numpy as np

from infodistill.pid.gates import AND_RED, GATES

__all__ = ["AND_RED", "and_counts"]


def and_counts() -> np.ndarray:
    """Count histogram c[y, t, s] of Y = T AND S, one count per (t, s)."""
    return GATES["AND"].counts()
