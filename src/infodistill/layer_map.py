"""The layer map: the PID of (Y; teacher layer, student layer) for every pair of layers, the
pairing it suggests, and the ranking of candidate teachers by what a student lacks.

:func:`layer_map` measures, on held-out examples, for every teacher layer T and every student
layer S the [PID-KD] terms Red(Y:T,S), Uni(Y:T\\S), Uni(Y:S\\T), Syn, I(Y;T), I(Y;S), with
bootstrap intervals (bias-centred, as in :mod:`infodistill.audit`) and the label-permutation
baseline of every term. Each layer's features are discretised once
(:func:`infodistill.pid.discretize`: flatten, L2-normalise, PCA, k-means), and each pair only
recombines the two layers' symbols into its (y, t, s) histogram, which
:func:`infodistill.pid.estimate` decomposes, resamples and permutes; a pair's numbers are exactly
those of ``estimate`` on the two layers' features with the same settings.

**The floor.** A pair's permutation floor of Uni(Y:T\\S) is the mean of Uni(Y:T\\S) over label
permutations plus ``FLOOR_SD_FACTOR`` of their standard deviations plus ``FLOOR_MARGIN_BITS``
(the audit's "no information" rule, applied to Uni): what a term with no true value reads at this
n and k. A pair is *at its floor* when the upper end of its (bias-centred) Uni(Y:T\\S) interval is
at most the floor: nothing left to distil from T into S that the estimate can tell from bias. A
teacher layer is *uninformative* when the lower end of its I(Y;T) interval is at most the
permutation floor of I(Y;T) (:mod:`infodistill.pid.floor`, the audit's rule).

**The pairing rule** (:func:`suggest_pairing`). Teacher and student layers are taken in the order
given (shallow to deep; the stages are). What matters for the task is what the student *as a
whole* lacks, which its deepest mapped layer S_last measures. A teacher layer T is *worth
distilling* when it is informative and Uni(Y:T\\S_last) is above its floor (the point estimate,
and so the upper end of the interval: not at the floor); ``MapCell.left`` of that cell is the bits
left for the student. A pair (T, S) is *usable* when T is worth distilling and the pair is not at
its floor (S does not already hold what T has for the label: a student layer that copies T, or is
a function of it, is not paired with it). The suggested pairing is a set of usable pairs, each
layer used at most once and monotone in depth (if S_i is paired with T_a and S_j with T_b, i < j
implies a < b), chosen lexicographically by (1) the most pairs: every teacher layer with something
left is distilled, as far as the student has layers for them in depth order; (2) the most
Red(Y:T,S) in total: each teacher layer goes to the student layer that already shares the most of
its label information, the information-theoretic counterpart of aligning depths; (3) the most
bits left. It is a dynamic programme over the two orders (the alignment of two sequences). Student
layers without a pair stay unpaired; teacher layers that are uninformative are listed as skipped.

**The teacher ranking** (:func:`rank_teachers`). Each candidate teacher's layers are mapped
against one student layer (default: the student's last stage, what the student finally knows);
a teacher's score is the largest Uni(Y:T\\S) over its layers (its *best layer*), reported with
that pair's interval and floor; teachers are ranked by it, most left to distil first. A teacher
whose best layer is at its floor has nothing left for this student. Two neighbours in the
ranking whose intervals overlap are not told apart by the estimate (``TeacherRank.tied_with_next``).

The command line imports this module only when a command needs it (``--help`` stays torch-free);
matplotlib is imported only when a heatmap is drawn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .audit import AUDIT_N_PERM, BLAS_THREADS
from .data.loader import TensorPairs, auto_eval_batch, first_examples
from .models import collect_features, validate_layers
from .pid import Discretized, discretize, estimate
from .pid.blas_threads import blas_threads
from .pid.floor import FLOOR_MARGIN_BITS, FLOOR_SD_FACTOR, centred_ci
from .pid.floor import floor as term_floor
from .pid.terms import TERMS, format_table

__all__ = [
    "FLOOR_MARGIN_BITS",
    "FLOOR_SD_FACTOR",
    "LayerMap",
    "MapCell",
    "Pairing",
    "TeacherRank",
    "TeacherRanking",
    "layer_map",
    "map_features",
    "auto_pairs",
    "rank_from_maps",
    "rank_teachers",
    "suggest_pairing",
]

# The floor of a term: permutation mean + FLOOR_SD_FACTOR * permutation sd + FLOOR_MARGIN_BITS
# (infodistill.pid.floor, re-exported here; the audit's constants for "no label information").

#: The terms a map cell reports (those of a PID), and the ones drawn in the heatmap by default.
HEATMAP_TERMS = ("redundancy", "unique_t", "mi_t", "mi_s")
_TITLES = {
    "redundancy": "Red(Y:T,S)",
    "unique_t": "Uni(Y:T\\S): left to distil",
    "unique_s": "Uni(Y:S\\T)",
    "synergy": "Syn(Y:T,S)",
    "mi_t": "I(Y;T)",
    "mi_s": "I(Y;S)",
    "mi_joint": "I(Y;T,S)",
}


@dataclass(frozen=True)
class MapCell:
    """The PID of (Y; teacher layer, student layer), in bits.

    ``ci`` holds bias-centred bootstrap intervals ``{term: (low, high)}`` (the percentile interval
    shifted down by the bootstrap's mean shift, see :mod:`infodistill.audit`), ``ci_raw`` the raw
    percentile intervals, ``bias`` / ``bias_sd`` the label-permutation mean and sd of every term,
    ``gap`` the solver's certified bound (every term is exact to within it). ``floor`` is the
    permutation floor of Uni(Y:T\\S) (module docstring), ``at_floor`` whether the upper end of the
    Uni(Y:T\\S) interval is at most the floor, ``informative`` whether I(Y;T) clears its own floor.
    """

    teacher_layer: str
    student_layer: str
    redundancy: float
    unique_t: float
    unique_s: float
    synergy: float
    mi_t: float
    mi_s: float
    mi_joint: float
    gap: float
    ci: dict
    ci_raw: dict
    bias: dict
    bias_sd: dict
    floor: float
    at_floor: bool
    informative: bool

    @property
    def left(self) -> float:
        """Uni(Y:T\\S) above the floor (bits; negative when below it): the pairing's weight."""
        return self.unique_t - self.floor

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key in ("ci", "ci_raw"):
            d[key] = {t: [float(a), float(b)] for t, (a, b) in getattr(self, key).items()}
        d["left"] = self.left
        return d


@dataclass(frozen=True)
class Pairing:
    """The suggested pairing of :func:`suggest_pairing`: ``pairs`` are ``(student_layer,
    teacher_layer)`` in depth order; for each pair ``left`` holds the bits the student as a whole
    still lacks of the teacher layer (Uni(Y:T\\S) against the deepest mapped student layer, minus
    its floor) and ``shared`` the bits the student layer already shares with it (Red(Y:T,S)).
    ``worth`` lists the teacher layers worth distilling, ``unpaired`` the student layers without a
    pair, ``skipped`` the uninformative teacher layers; ``rule`` states the rule in words."""

    pairs: list
    left: list
    shared: list
    worth: list
    unpaired: list
    skipped: list
    rule: str

    @property
    def total(self) -> float:
        """Bits left over the pairs (the sum of ``left``)."""
        return float(sum(self.left))

    def as_dict(self) -> dict:
        return {
            "pairs": [list(p) for p in self.pairs],
            "left": [float(w) for w in self.left],
            "shared": [float(w) for w in self.shared],
            "total": self.total,
            "worth": list(self.worth),
            "unpaired": list(self.unpaired),
            "skipped": list(self.skipped),
            "rule": self.rule,
        }

    def table(self) -> str:
        lines = [
            "suggested pairing (student layer <- teacher layer: bits the student lacks of it beyond "
            "the floor; bits this student layer already shares with it):"
        ]
        lines += [
            f"  {s} <- {t}: left {w:.3f}, shared {r:.3f}"
            for (s, t), w, r in zip(self.pairs, self.left, self.shared, strict=True)
        ]
        if not self.pairs:
            lines.append("  (none: no teacher layer has anything left above its floor for this student)")
        if self.unpaired:
            lines.append(f"  unpaired student layers: {', '.join(self.unpaired)}")
        if self.skipped:
            lines.append(f"  uninformative teacher layers (skipped): {', '.join(self.skipped)}")
        return "\n".join(lines)


PAIRING_RULE = (
    "teacher layers worth distilling: informative, with Uni(Y:T\\S) against the deepest student layer "
    "above its floor (point estimate and upper end); each goes to a student layer that does not "
    "already hold it (pair not at its floor), monotone in depth, each layer at most once, with "
    "the most pairs, then the most Red(Y:T,S) shared with the student layer, then the most left"
)


@dataclass(frozen=True)
class LayerMap:
    """Result of :func:`layer_map` / :func:`map_features`: ``cells[i][j]`` is the :class:`MapCell`
    of teacher layer ``teacher_layers[i]`` and student layer ``student_layers[j]``. ``settings``
    records every choice (n, k, pca, n_boot, n_perm, ci level, seed, names, floor constants) and
    ``timings`` the seconds spent discretising and decomposing (not part of ``as_dict()``)."""

    teacher_layers: list
    student_layers: list
    cells: list
    settings: dict
    timings: dict = field(default_factory=dict, repr=False, compare=False)

    def cell(self, teacher_layer: str, student_layer: str) -> MapCell:
        for name, names, what in (
            (teacher_layer, self.teacher_layers, "teacher"),
            (student_layer, self.student_layers, "student"),
        ):
            if name not in names:
                raise KeyError(f"no mapped {what} layer {name!r}; mapped: {names}")
        return self.cells[self.teacher_layers.index(teacher_layer)][self.student_layers.index(student_layer)]

    def matrix(self, term: str):
        """(teacher layers, student layers) numpy array of one term (a field of :class:`MapCell`,
        e.g. ``'unique_t'``, ``'floor'``, ``'left'``)."""

        return np.array([[float(getattr(c, term)) for c in row] for row in self.cells])

    def pairing(self) -> Pairing:
        return suggest_pairing(self)

    def as_dict(self) -> dict:
        return {
            "teacher_layers": list(self.teacher_layers),
            "student_layers": list(self.student_layers),
            "cells": [[c.as_dict() for c in row] for row in self.cells],
            "pairing": self.pairing().as_dict(),
            "settings": dict(self.settings),
        }

    def table(self) -> str:
        """Readable text: one block per term (teacher layers down, student layers across), the
        floor of Uni(Y:T\\S), and the suggested pairing."""

        s = self.settings
        lines = [
            f"layer map: {s.get('teacher_name', 'teacher')} (rows) x {s.get('student_name', 'student')} "
            f"(columns)",
            f"{s['n']} examples; k-means k={s['k']}, pca={s['pca']}, seed {s['seed']}; bits; "
            f"{100 * s['ci_level']:g}% bootstrap CI (n={s['n_boot']}, bias-centred); floor = "
            f"label-permutation mean + {FLOOR_SD_FACTOR:g} sd + {FLOOR_MARGIN_BITS:g} bits (n={s['n_perm']})",
        ]
        blocks = (
            ("Uni(Y:T\\S) [CI]", lambda c: _ci_cell(c, "unique_t") + ("  floor" if c.at_floor else "")),
            ("floor of Uni(Y:T\\S)", lambda c: f"{c.floor:.3f}"),
            ("Red(Y:T,S)", lambda c: f"{c.redundancy:.3f}"),
            ("I(Y;T) [CI]", lambda c: _ci_cell(c, "mi_t")),
            ("I(Y;S) [CI]", lambda c: _ci_cell(c, "mi_s")),
        )
        for title, fmt in blocks:
            rows = [
                [t, *(fmt(c) for c in row)] for t, row in zip(self.teacher_layers, self.cells, strict=True)
            ]
            lines += ["", title, format_table(["T \\ S", *self.student_layers], rows)]
        lines += ["", self.pairing().table()]
        return "\n".join(lines)

    def heatmap(self, path, terms=HEATMAP_TERMS) -> None:
        """Write the map as a PNG: one panel per term, two a row (teacher layers down, student layers across),
        each cell annotated with its value; in the Uni(Y:T\\S) panel, cells at their floor are
        marked '*' and the suggested pairs are outlined in red."""
        # matplotlib is loaded only when a heatmap is drawn; the object API, not pyplot: no backend
        # is switched in the caller's process.
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        terms = list(terms)
        for term in terms:
            if term not in _TITLES:
                raise ValueError(f"heatmap term {term!r} is not one of {sorted(_TITLES)}")
        m, n = len(self.teacher_layers), len(self.student_layers)
        w = max(4.0, 0.6 * n + 1.8)
        h = max(2.5, 0.45 * m + 1.4)
        cols = min(len(terms), 2)
        rows = -(-len(terms) // cols)
        fig = Figure(figsize=(w * cols, h * rows))
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax in axes[len(terms) :]:
            ax.set_visible(False)
        pairs = set(self.pairing().pairs)
        for ax, term in zip(axes, terms, strict=False):
            values = self.matrix(term)
            im = ax.imshow(values, cmap="viridis", aspect="auto", vmin=0)
            for i in range(m):
                for j in range(n):
                    mark = "*" if term == "unique_t" and self.cells[i][j].at_floor else ""
                    ax.text(
                        j,
                        i,
                        f"{values[i, j]:.2f}{mark}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if values[i, j] < 0.6 * max(values.max(), 1e-12) else "black",
                    )
                    if term == "unique_t" and (self.student_layers[j], self.teacher_layers[i]) in pairs:
                        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
            ax.set_xticks(range(n), self.student_layers, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(m), self.teacher_layers, fontsize=7)
            ax.set_xlabel("student layer")
            ax.set_ylabel("teacher layer")
            note = "\n* at its floor; red: the suggested pairs" if term == "unique_t" else ""
            ax.set_title(f"{_TITLES[term]} (bits){note}", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        fig.savefig(path, dpi=120)


def _ci_cell(c: MapCell, term: str) -> str:
    lo, hi = c.ci[term]
    return f"{getattr(c, term):.3f} [{lo:.3f}, {hi:.3f}]"


# --------------------------------------------------------------------------------------------------
# The map from features


def _check_features(features, what: str) -> dict:
    if not hasattr(features, "items"):
        raise ValueError(f"{what} must be a mapping {{layer name: features}}, got {type(features).__name__}")
    if not features:
        raise ValueError(f"{what} is empty: give at least one layer's features")
    return dict(features)


def map_features(
    labels,
    teacher_features,
    student_features,
    *,
    k: int = 10,
    pca: int | None = 5,
    n_boot: int = 100,
    n_perm: int = AUDIT_N_PERM,
    ci: float = 0.95,
    seed: int = 0,
    names: tuple[str, str] = ("teacher", "student"),
) -> LayerMap:
    """The layer map of features already collected: ``teacher_features`` and ``student_features``
    map layer names (in depth order) to arrays (n, ...) or to :class:`infodistill.pid.Discretized`
    symbols made with these settings; ``labels`` are the n integer labels.

    Every layer is discretised once (:func:`infodistill.pid.discretize` with ``k``, ``pca``,
    ``seed``); every pair is then :func:`infodistill.pid.estimate` of the two layers' symbols with
    ``n_boot`` bootstrap resamples and ``n_perm`` label permutations, which equals ``estimate`` on
    the two layers' features with the same settings.
    """

    t_feats = _check_features(teacher_features, "teacher_features")
    s_feats = _check_features(student_features, "student_features")
    for arg, value, low in (("n_boot", n_boot, 1), ("n_perm", n_perm, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(
                f"{arg} must be an integer >= {low} (intervals and floor need it), got {value!r}"
            )
    labels = np.asarray(labels).reshape(-1)
    timings = {"discretize": 0.0, "pairs": 0.0}

    def symbols(feats: dict) -> dict:
        out = {}
        for layer, f in feats.items():
            if isinstance(f, Discretized):
                out[layer] = f
                continue
            f = np.asarray(f.detach().cpu().numpy() if hasattr(f, "detach") else f)
            if f.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"layer {layer!r} has {f.shape[0]} examples but labels has {labels.shape[0]}: "
                    "lengths must match"
                )
            try:
                out[layer] = discretize(f, k=k, pca=pca, seed=seed)
            except ValueError as exc:
                raise ValueError(f"layer {layer!r}: {exc}") from None
        return out

    with blas_threads(BLAS_THREADS):
        start = time.perf_counter()
        t_sym, s_sym = symbols(t_feats), symbols(s_feats)
        timings["discretize"] = time.perf_counter() - start
        start = time.perf_counter()
        cells = []
        for t_layer, dt in t_sym.items():
            row = []
            for s_layer, ds in s_sym.items():
                res = estimate(labels, dt, ds, k=k, pca=pca, n_boot=n_boot, n_perm=n_perm, ci=ci, seed=seed)
                row.append(_cell(t_layer, s_layer, res, TERMS))
            cells.append(row)
        timings["pairs"] = time.perf_counter() - start
    settings = {
        "n": int(labels.shape[0]),
        "k": k,
        "pca": pca,
        "n_boot": n_boot,
        "n_perm": n_perm,
        "ci_level": ci,
        "seed": seed,
        "unit": "bits",
        "teacher_name": names[0],
        "student_name": names[1],
        "floor": {"FLOOR_SD_FACTOR": FLOOR_SD_FACTOR, "FLOOR_MARGIN_BITS": FLOOR_MARGIN_BITS},
        "intervals": "percentile bootstrap shifted down by the bootstrap mean shift (bias-centred)",
        "clusters": {
            **{f"teacher:{name}": int(d.alphabet) for name, d in t_sym.items()},
            **{f"student:{name}": int(d.alphabet) for name, d in s_sym.items()},
        },
    }
    return LayerMap(list(t_sym), list(s_sym), cells, settings, timings)


def _cell(t_layer: str, s_layer: str, res, terms) -> MapCell:

    ci_raw = {t: (float(a), float(b)) for t, (a, b) in res.ci.items()}
    ci_c = centred_ci(res)
    bias, bias_sd = dict(res.bias["mean"]), dict(res.bias["sd"])
    floor = term_floor(res, "unique_t")
    mi_floor = term_floor(res, "mi_t")
    values = res.terms
    return MapCell(
        teacher_layer=t_layer,
        student_layer=s_layer,
        **{t: float(values[t]) for t in terms},
        gap=float(res.pid.gap),
        ci=ci_c,
        ci_raw=ci_raw,
        bias=bias,
        bias_sd=bias_sd,
        floor=float(floor),
        at_floor=bool(ci_c["unique_t"][1] <= floor),
        informative=bool(ci_c["mi_t"][0] > mi_floor),
    )


# --------------------------------------------------------------------------------------------------
# The pairing


def suggest_pairing(lmap: LayerMap) -> Pairing:
    """The pairing the map suggests, by the rule of the module docstring (``PAIRING_RULE``)."""
    t_layers, s_layers = lmap.teacher_layers, lmap.student_layers
    m, n = len(t_layers), len(s_layers)
    # I(Y;T) does not depend on S (and neither do its interval and floor: the same symbols,
    # permutations and resamples in every cell of a row); any() reads it off the row.
    informative = [any(c.informative for c in row) for row in lmap.cells]
    last = [row[-1] for row in lmap.cells]  # each teacher layer against the deepest student layer
    worth = [informative[i] and not last[i].at_floor and last[i].left > 0 for i in range(m)]

    def usable(i: int, j: int) -> bool:
        return worth[i] and not lmap.cells[i][j].at_floor

    # best[i][j]: the best (pairs, shared bits, left bits) using teacher layers < i, student layers < j
    def better(a: tuple, b: tuple) -> bool:
        if a[0] != b[0]:
            return a[0] > b[0]
        for x, y in ((a[1], b[1]), (a[2], b[2])):
            if abs(x - y) > 1e-12:
                return x > y
        return False

    best = [[(0, 0.0, 0.0)] * (n + 1) for _ in range(m + 1)]
    move = [[None] * (n + 1) for _ in range(m + 1)]
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            # skip the teacher layer, skip the student layer, or pair them; ties keep the earlier
            choice = (best[i - 1][j], "t")
            if better(best[i][j - 1], choice[0]):
                choice = (best[i][j - 1], "s")
            if usable(i - 1, j - 1):
                count, shared, left = best[i - 1][j - 1]
                c = lmap.cells[i - 1][j - 1]
                option = (count + 1, shared + c.redundancy, left + last[i - 1].left)
                if better(option, choice[0]):
                    choice = (option, "pair")
            best[i][j], move[i][j] = choice
    pairs = []
    i, j = m, n
    while i > 0 and j > 0:
        step = move[i][j]
        if step == "pair":
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif step == "t":
            i -= 1
        else:
            j -= 1
    pairs.reverse()
    paired = {j for _, j in pairs}
    return Pairing(
        pairs=[(s_layers[j], t_layers[i]) for i, j in pairs],
        left=[float(last[i].left) for i, _ in pairs],
        shared=[float(lmap.cells[i][j].redundancy) for i, j in pairs],
        worth=[t for t, ok in zip(t_layers, worth, strict=True) if ok],
        unpaired=[s for j, s in enumerate(s_layers) if j not in paired],
        skipped=[t for t, ok in zip(t_layers, informative, strict=True) if not ok],
        rule=PAIRING_RULE,
    )


# --------------------------------------------------------------------------------------------------
# From models


def _layers(model, given, what: str) -> list:

    if given is None:
        names = getattr(model, "stage_names", None)
        if not names:
            raise ValueError(
                f"the {what} model {type(model).__name__} declares no stage_names; pass its layer names "
                "explicitly (keys of dict(model.named_modules()))"
            )
        return list(names)
    if isinstance(given, str):
        given = [given]
    layers = validate_layers(model, given)
    if not layers:
        raise ValueError(f"{what} layers is empty: name at least one {what} layer")
    return layers


def _inputs(x, y, n: int):

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    x = torch.as_tensor(x)
    y = torch.as_tensor(np.asarray(y)).long().reshape(-1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("no examples to map")
    m = min(n, x.shape[0])
    return x[:m], y[:m]


def _features(model, layers: list, x, batch_size):

    batch = auto_eval_batch(TensorPairs(x, x.new_zeros(x.shape[0])), 1, batch_size)
    _, feats = collect_features(model, layers, x, batch)
    return {name: feats[name].numpy() for name in layers}


def layer_map(
    teacher,
    student,
    x,
    y,
    teacher_layers=None,
    student_layers=None,
    n: int = 2000,
    k: int = 10,
    pca: int | None = 5,
    n_boot: int = 100,
    seed: int = 0,
    *,
    n_perm: int = AUDIT_N_PERM,
    ci: float = 0.95,
    batch_size: int | None = None,
    names: tuple[str, str] = ("teacher", "student"),
) -> LayerMap:
    """The layer map of ``teacher`` against ``student`` on the first ``min(n, N)`` of the held-out
    examples ``x`` (N, ...) with integer labels ``y`` (N,).

    ``teacher_layers`` / ``student_layers`` are module names (keys of ``dict(model.named_modules())``)
    in depth order, default: each model's ``stage_names``; they are checked before any forward pass.
    Features are read by forward hooks on the unmodified models (eval mode, no grad; training flags
    restored). ``k``, ``pca``, ``n_boot``, ``seed``, ``n_perm``, ``ci``: as :func:`map_features`.
    """
    t_layers = _layers(teacher, teacher_layers, "teacher")
    s_layers = _layers(student, student_layers, "student")
    x, y = _inputs(x, y, n)
    t_feats = _features(teacher, t_layers, x, batch_size)
    s_feats = _features(student, s_layers, x, batch_size)
    return map_features(
        y.numpy(), t_feats, s_feats, k=k, pca=pca, n_boot=n_boot, n_perm=n_perm, ci=ci, seed=seed, names=names
    )


# --------------------------------------------------------------------------------------------------
# method.pairs: auto

#: Training examples the map of ``method.pairs: auto`` reads (at most), its bootstrap resamples and
#: label permutations (the audit's).
AUTO_N = 2000
AUTO_BOOT = 100


def auto_pairs(teacher, student, train, cfg) -> tuple[list, dict]:
    """``method.pairs: auto`` of a distillation run (the ``pair_resolver`` of
    :func:`infodistill.training.runs.distill`): the pairing :func:`suggest_pairing` reads off the
    layer map of the teacher's stages against the student's, as built for the run (the student at
    its initialisation), on the first ``AUTO_N`` *training* examples (never the test examples the
    run reports), with the run's ``pid.k``, ``pid.pca`` and seed. Returns ``(pairs, record)``; the
    record goes into the run's config.json as ``method.auto_pairs``."""

    for model, what in ((teacher, "teacher"), (student, "student")):
        if not getattr(model, "stage_names", None):
            raise ValueError(
                f"method.pairs: auto maps the models' stages, but the {what} model "
                f"{type(model).__name__} declares no stage_names: name the pairs"
            )
    n = min(AUTO_N, len(train))
    x, y = first_examples(train, n)
    lmap = layer_map(
        teacher, student, x, y, n=n, k=cfg.pid.k, pca=cfg.pid.pca, n_boot=AUTO_BOOT, seed=cfg.run.seed
    )
    pairing = lmap.pairing()
    record = {
        "chosen_by": "infodistill.layer_map.suggest_pairing",
        "examples": f"the first {n} training examples",
        "k": cfg.pid.k,
        "pca": cfg.pid.pca,
        "n_boot": AUTO_BOOT,
        "n_perm": lmap.settings["n_perm"],
        "seed": cfg.run.seed,
        "teacher_layers": list(lmap.teacher_layers),
        "student_layers": list(lmap.student_layers),
        "left_bits": [round(v, 4) for v in pairing.left],
        "rule": pairing.rule,
    }
    if not pairing.pairs:
        record["why"] = (
            "no teacher stage has anything left above its floor for this student"
            if not pairing.worth
            else "no worth-distilling teacher stage has a student stage that lacks it"
        )
    return [[s, t] for s, t in pairing.pairs], record


# --------------------------------------------------------------------------------------------------
# Teacher ranking


@dataclass(frozen=True)
class TeacherRank:
    """One candidate teacher in a :class:`TeacherRanking`: its best layer (largest Uni(Y:T\\S)
    against the student layer), that pair's :class:`MapCell`, and whether its interval overlaps
    the next teacher's (the estimate does not tell the two apart)."""

    rank: int
    name: str
    best_layer: str
    cell: MapCell
    tied_with_next: bool

    @property
    def unique_t(self) -> float:
        return self.cell.unique_t

    def as_dict(self) -> dict:
        return {
            "rank": self.rank,
            "name": self.name,
            "best_layer": self.best_layer,
            "unique_t": self.cell.unique_t,
            "ci": list(self.cell.ci["unique_t"]),
            "floor": self.cell.floor,
            "at_floor": self.cell.at_floor,
            "mi_t": self.cell.mi_t,
            "tied_with_next": self.tied_with_next,
            "cell": self.cell.as_dict(),
        }


@dataclass(frozen=True)
class TeacherRanking:
    """Result of :func:`rank_teachers`: ``ranks`` most left to distil first, ``maps`` each
    teacher's :class:`LayerMap` against the student layer (by teacher name)."""

    ranks: list
    student_layer: str
    maps: dict = field(repr=False)
    settings: dict = field(default_factory=dict)

    def rank(self, name: str) -> TeacherRank:
        for r in self.ranks:
            if r.name == name:
                return r
        raise KeyError(f"no ranked teacher {name!r}; ranked: {[r.name for r in self.ranks]}")

    def as_dict(self) -> dict:
        return {
            "student_layer": self.student_layer,
            "ranks": [r.as_dict() for r in self.ranks],
            "maps": {name: m.as_dict() for name, m in self.maps.items()},
            "settings": dict(self.settings),
        }

    def table(self) -> str:

        s = self.settings
        head = [
            f"teachers ranked by what student {s.get('student_name', 'student')} (layer "
            f"{self.student_layer!r}) lacks: Uni(Y:T\\S) at each teacher's best layer",
            f"{s['n']} examples; k-means k={s['k']}, pca={s['pca']}, seed {s['seed']}; bits; "
            f"{100 * s['ci_level']:g}% bootstrap CI (n={s['n_boot']}, bias-centred)",
        ]
        rows = []
        for r in self.ranks:
            lo, hi = r.cell.ci["unique_t"]
            rows.append(
                [
                    str(r.rank),
                    r.name,
                    r.best_layer,
                    f"{r.cell.unique_t:.3f} [{lo:.3f}, {hi:.3f}]",
                    f"{r.cell.floor:.3f}" + (" (at floor)" if r.cell.at_floor else ""),
                    f"{r.cell.mi_t:.3f}",
                    "overlaps next" if r.tied_with_next else "",
                ]
            )
        cols = ["rank", "teacher", "best layer", "Uni(Y:T\\S) [CI]", "floor", "I(Y;T)", ""]
        return "\n".join(head + [format_table(cols, rows)])


def rank_from_maps(maps: dict, student_layer: str, settings: dict | None = None) -> TeacherRanking:
    """Rank teachers from their maps (``{name: LayerMap}``, each holding ``student_layer``)."""
    best = {}
    for name, lmap in maps.items():
        column = [lmap.cell(t, student_layer) for t in lmap.teacher_layers]
        best[name] = max(column, key=lambda c: c.unique_t)
    order = sorted(best, key=lambda name: -best[name].unique_t)
    ranks = []
    for i, name in enumerate(order):
        cell = best[name]
        tied = False
        if i + 1 < len(order):
            nxt = best[order[i + 1]]
            tied = bool(cell.ci["unique_t"][0] <= nxt.ci["unique_t"][1])
        ranks.append(TeacherRank(i + 1, name, cell.teacher_layer, cell, tied))
    return TeacherRanking(ranks, student_layer, dict(maps), dict(settings or {}))


def rank_teachers(
    teachers: dict,
    student,
    x,
    y,
    teacher_layers=None,
    student_layer: str | None = None,
    n: int = 2000,
    k: int = 10,
    pca: int | None = 5,
    n_boot: int = 100,
    seed: int = 0,
    *,
    n_perm: int = AUDIT_N_PERM,
    ci: float = 0.95,
    batch_size: int | None = None,
    student_name: str = "student",
) -> TeacherRanking:
    """Rank candidate teachers ``{name: model}`` by what ``student`` lacks: Uni(Y:T\\S) at each
    teacher's best layer against ``student_layer`` (default: the student's last stage), on the first
    ``min(n, N)`` held-out examples. ``teacher_layers``: one list for every teacher, a dict
    ``{name: list}``, or None (each teacher's ``stage_names``). The student layer is discretised
    once for all teachers."""

    if not hasattr(teachers, "items") or not teachers:
        raise ValueError("teachers must be a non-empty mapping {name: model}")
    s_layer = _layers(student, None if student_layer is None else [student_layer], "student")[-1]
    per_teacher = {}
    for name, model in teachers.items():
        given = teacher_layers.get(name) if isinstance(teacher_layers, dict) else teacher_layers
        per_teacher[name] = _layers(model, given, f"teacher {name!r}")
    x, y = _inputs(x, y, n)
    labels = y.numpy()
    s_feat = _features(student, [s_layer], x, batch_size)[s_layer]
    with blas_threads(BLAS_THREADS):
        s_sym = {s_layer: discretize(s_feat, k=k, pca=pca, seed=seed)}
    maps = {}
    for name, model in teachers.items():
        t_feats = _features(model, per_teacher[name], x, batch_size)
        maps[name] = map_features(
            labels,
            t_feats,
            s_sym,
            k=k,
            pca=pca,
            n_boot=n_boot,
            n_perm=n_perm,
            ci=ci,
            seed=seed,
            names=(name, student_name),
        )
    first = next(iter(maps.values())).settings
    settings = {key: first[key] for key in ("n", "k", "pca", "n_boot", "n_perm", "ci_level", "seed", "unit")}
    settings["student_name"] = student_name
    settings["rule"] = "largest Uni(Y:T\\S) over each teacher's layers against the student layer"
    return rank_from_maps(maps, s_layer, settings)
