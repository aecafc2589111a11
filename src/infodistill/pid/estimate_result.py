"""What :func:`~infodistill.pid.estimate.estimate` and :func:`~infodistill.pid.estimate.sweep`
return: the terms, intervals, settings and timings, with their text tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .decompose import PIDResult
from .terms import LABELS as _LABELS
from .terms import TERMS
from .terms import format_table as _format_table


@dataclass(frozen=True)
class EstimateResult:
    """Estimated PID of (labels, teacher features, student features); see :func:`estimate`.

    Attributes
    ----------
    pid : the BROJA decomposition of the counted histogram (:class:`PIDResult`, in ``unit``).
    ci : ``{term: (low, high)}`` percentile bootstrap intervals at level ``settings['ci_level']``,
        or None when ``n_boot == 0``.
    settings : every choice made (pooling, normalisation, PCA, k, discretisers, split sizes, seed,
        k-means settings, solver tolerance, ...), JSON-serialisable.
    counts : the histogram counts[y, cluster_t, cluster_s] (int64) that was decomposed.
    bias : the permutation baseline ``{'method', 'n_perm', 'mean': {term: v}, 'sd': {term: v}}``
        (values of each term with the labels shuffled; the true value of every term is then 0), or
        None when ``n_perm == 0``.
    boot_shift : ``{term: mean(bootstrap values) - point estimate}`` or None: the bootstrap's own
        estimate of the plug-in bias. When it exceeds the interval's half-width the percentile
        interval can exclude the point estimate; then the histogram is too fine for n (fewer
        clusters or more samples).
    boot : the bootstrap values, shape (n_boot, 7), columns in the order of ``TERMS``; or None.
    split : ``{'fit': indices, 'count': indices}`` into the input samples (identical arrays when
        ``fit_fraction`` is None).
    timings : seconds per stage (``ESTIMATE_STAGES``: checks, normalise+PCA, k-means, histogram,
        decompose, perm baseline, bootstrap); not part of ``as_dict()`` or equality, since they
        differ between runs. In a :func:`sweep` every result carries the one shared preparation.
    """

    pid: PIDResult
    ci: dict | None
    settings: dict = field(repr=False)
    counts: np.ndarray = field(repr=False, compare=False)
    bias: dict | None = field(default=None, repr=False)
    boot_shift: dict | None = field(default=None, repr=False)
    boot: np.ndarray | None = field(default=None, repr=False, compare=False)
    split: dict = field(default_factory=dict, repr=False, compare=False)
    timings: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def terms(self) -> dict:
        """``{term: value}`` for the seven reported terms, in ``settings['unit']``."""
        return {t: float(getattr(self.pid, t)) for t in TERMS}

    def as_dict(self) -> dict:
        """JSON-serialisable dict: pid terms, ci, settings, counts (nested lists) and bias."""
        return {
            "pid": self.pid.as_dict(),
            "ci": None if self.ci is None else {t: [float(a), float(b)] for t, (a, b) in self.ci.items()},
            "settings": dict(self.settings),
            "counts": self.counts.tolist(),
            "bias": self.bias,
            "boot_shift": self.boot_shift,
        }

    def table(self) -> str:
        """Readable multi-line text table of the terms (with CIs and the permutation baseline if present)."""
        s = self.settings
        split = (
            f"fit on {s['n_fit']}, counted on {s['n_count']} held-out samples"
            if s["fit_fraction"] is not None
            else f"fit and counted on all {s['n_count']} samples"
        )
        head = [
            f"PID estimate ({s['unit']}); {split}",
            f"T: {_side_summary(s, 't')};  S: {_side_summary(s, 's')};  "
            f"{s['n_classes']} classes, seed {s['seed']}",
        ]
        cols = ["term", "value"]
        if self.ci is not None:
            cols += [f"{100 * s['ci_level']:g}% CI (bootstrap, n={s['n_boot']})", "boot. shift"]
        if self.bias is not None:
            cols.append(f"perm. baseline (n={self.bias['n_perm']})")
        rows, outside = [], False
        for t in TERMS:
            value = getattr(self.pid, t)
            row = [f"{_LABELS[t]:<11} {t}", f"{value:.4f}"]
            if self.ci is not None:
                lo, hi = self.ci[t]
                flag = "" if lo <= value <= hi else " *"
                outside |= bool(flag)
                row += [f"[{lo:.4f}, {hi:.4f}]{flag}", f"{self.boot_shift[t]:+.4f}"]
            if self.bias is not None:
                row.append(f"{self.bias['mean'][t]:.4f}")
            rows.append(row)
        lines = head + [_format_table(cols, rows)]
        if outside:
            lines.append(
                "* estimate outside its bootstrap interval: plug-in bias exceeds sampling noise "
                "at this n and k; use fewer clusters or more samples"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class SweepResult:
    """Estimates for several cluster counts (k_t = k_s = k); see :func:`sweep`.

    ``rows`` is a list of dicts ``{'k': k, term: value, ...}`` (plus ``'<term>_low'`` /
    ``'<term>_high'`` when bootstrapped, and ``'<term>_perm'`` when a permutation baseline was
    computed); ``results`` holds the full :class:`EstimateResult` for each k.
    """

    rows: list
    results: list = field(repr=False, compare=False)

    def as_dict(self) -> dict:
        """JSON-serialisable dict: the rows and each estimate's ``as_dict()``."""
        return {"rows": self.rows, "results": [r.as_dict() for r in self.results]}

    def table(self) -> str:
        """Text table: one line per k, one column per term (CI in brackets when bootstrapped)."""
        if not self.results:
            return "(empty sweep)"
        s0 = self.results[0].settings
        has_ci = self.results[0].ci is not None
        has_bias = self.results[0].bias is not None
        cols = ["k"] + [_LABELS[t] for t in TERMS] + (["I(Y;T,S) perm."] if has_bias else [])
        rows = []
        for row in self.rows:
            cells = [str(row["k"])]
            for t in TERMS:
                cell = f"{row[t]:.4f}"
                if has_ci:
                    cell += f" [{row[t + '_low']:.3f},{row[t + '_high']:.3f}]"
                cells.append(cell)
            if has_bias:
                cells.append(f"{row['mi_joint_perm']:.4f}")
            rows.append(cells)
        head = f"PID sweep over k ({s0['unit']}); n_count={s0['n_count']}, pca={s0['pca']}, seed {s0['seed']}"
        return head + "\n" + _format_table(cols, rows)


def _side_summary(s: dict, side: str) -> str:
    if s[f"discretize_{side}"] == "argmax":
        return f"argmax over {s[f'dim_{side}']} columns"
    pca = s["pca"] if s["pca"] else "none"
    return (
        f"k-means k={s[f'k_{side}']} ({s[f'clusters_used_{side}']} used), pca={pca}, "
        f"normalize={s['normalize']}, pool={s['pool']}, dim={s[f'dim_{side}']}"
    )
