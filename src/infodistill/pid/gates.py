"""The canonical gates: Y = f(T, S) for uniform bits T and S, with their exact BROJA decomposition.

Ground truth for the solver, shared by ``infodistill demo``, the tests and the benchmarks. T and S
are independent except in RDN (T = S). The values are the gates' closed forms (Bertschinger, Rauh,
Olbrich, Jost & Ay, *Quantifying unique information*, Entropy 2014).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Red(Y:T,S) of Y = T AND S, in bits: I(Y;T) = h(1/4) − 1/2 = 0.311278 (Syn = 0.5, Uni = 0).
AND_RED = 1.5 - 0.75 * math.log2(3.0)


@dataclass(frozen=True)
class Gate:
    """One gate: ``f`` maps the bits (t, s) to y; ``pid`` holds the exact atoms in bits."""

    name: str
    definition: str
    f: Callable[[int, int], int]
    pid: dict
    #: T = S (RDN) instead of independent bits
    copied: bool = False

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """The (t, s) pairs of positive probability, each equally likely."""
        return [(0, 0), (1, 1)] if self.copied else [(0, 0), (0, 1), (1, 0), (1, 1)]

    def counts(self) -> np.ndarray:
        """Histogram c[y, t, s] with one count per pair."""
        ys = [self.f(t, s) for t, s in self.pairs]
        c = np.zeros((max(ys) + 1, 2, 2))
        for (t, s), y in zip(self.pairs, ys, strict=True):
            c[y, t, s] += 1.0
        return c

    def joint(self) -> np.ndarray:
        """The joint p[y, t, s]."""
        ys = [self.f(t, s) for t, s in self.pairs]
        p = np.zeros((max(ys) + 1, 2, 2))
        for (t, s), y in zip(self.pairs, ys, strict=True):
            p[y, t, s] += 1.0 / len(self.pairs)
        return p


def _pid(red: float, uni_t: float, uni_s: float, syn: float) -> dict:
    return dict(redundancy=red, unique_t=uni_t, unique_s=uni_s, synergy=syn)


#: name -> gate, in the order the demo prints them.
GATES = {
    g.name: g
    for g in (
        Gate("RDN", "Y = T = S", lambda t, s: t, _pid(1.0, 0.0, 0.0, 0.0), copied=True),
        Gate("UNQ", "Y = T", lambda t, s: t, _pid(0.0, 1.0, 0.0, 0.0)),
        Gate("XOR", "Y = T xor S", lambda t, s: t ^ s, _pid(0.0, 0.0, 0.0, 1.0)),
        Gate("AND", "Y = T and S", lambda t, s: t & s, _pid(AND_RED, 0.0, 0.0, 0.5)),
        Gate("SUM", "Y = T + S", lambda t, s: t + s, _pid(0.5, 0.0, 0.0, 1.0)),
        Gate("COPY", "Y = (T, S)", lambda t, s: 2 * t + s, _pid(0.0, 1.0, 1.0, 0.0)),
    )
}
