"""The AND gate, shared by the tests that need a joint with a known PID (imported as ``gates``)."""

import math

import numpy as np

#: Red(Y:T,S) of Y = T AND S for two independent fair bits, in bits (Syn = 0.5, Uni = 0)
AND_RED = 1.5 - 0.75 * math.log2(3.0)


def and_counts() -> np.ndarray:
    """Count histogram c[y, t, s] of Y = T AND S, one count per (t, s)."""
    c = np.zeros((2, 2, 2))
    for t in (0, 1):
        for s in (0, 1):
            c[t & s, t, s] = 1.0
    return c
