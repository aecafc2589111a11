"""The terms a PID reports, their printed labels, and the plain-text table they are printed in.

One source for every printout of a decomposition (``PIDResult``, ``EstimateResult``,
``SweepResult``, the audit, the command line), so a term is named and labelled the same way
everywhere.
"""

from __future__ import annotations

#: The reported terms (fields of :class:`~infodistill.pid.PIDResult`), in table order.
TERMS = ("redundancy", "unique_t", "unique_s", "synergy", "mi_t", "mi_s", "mi_joint")

#: The four atoms of the decomposition; they sum to ``mi_joint``.
ATOMS = TERMS[:4]

#: Printed label of each term (Y the target, T and S the two sources).
LABELS = {
    "redundancy": "Red(Y:T,S)",
    "unique_t": "Uni(Y:T\\S)",
    "unique_s": "Uni(Y:S\\T)",
    "synergy": "Syn(Y:T,S)",
    "mi_t": "I(Y;T)",
    "mi_s": "I(Y;S)",
    "mi_joint": "I(Y;T,S)",
}


def format_table(cols: list, rows: list) -> str:
    """Left-aligned columns two spaces apart, each as wide as its widest cell, a dashed rule under
    the header; trailing blanks stripped. ``rows`` are lists of strings."""
    widths = [max([len(str(c)), *(len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
