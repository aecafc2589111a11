"""Benchmark: infodistill's BROJA solver (``decompose``) against the cvxpy + Clarabel reference.

Usage::

    python bench/pid_solver.py                 # the default cases below
    python bench/pid_solver.py --quick         # small cases only, one repeat
    python bench/pid_solver.py --sizes 10x32x32 hist-10x128x128 --json results.json
    git show 6a6a099:src/infodistill/pid/broja.py > /tmp/old_broja.py
    python bench/pid_solver.py --baseline /tmp/old_broja.py   # also time another solver version
    git archive HEAD~1 src/infodistill/pid/broja | tar -x -C /tmp/old   # a version of the package
    python bench/pid_solver.py --baseline /tmp/old/src/infodistill/pid/broja

A case is ``YxTxS`` (dense random joint, entries uniform on [0, 1) then normalised) or
``hist-YxTxS`` (a sparse histogram of 10000 samples of correlated (Y, T, S), like the histograms of
label × teacher cluster × student cluster built in representation PID), or one of the two small-
joint cases of a bootstrap: ``small-YxTxS`` times ``decompose`` on ``--small-n`` histograms of 1000
samples each (the median per joint is reported) and ``boot-YxTxS`` times ``decompose_batch`` on
``--boot-n`` bootstrap resamples of one such histogram (the median over ``--repeats`` runs of the
time per resample; what ``estimate``'s bootstrap does), with ``decompose`` one by one on the same
resamples alongside (``one by one`` in the note). Inputs are seeded and deterministic. For each
other case it times ``decompose`` after one untimed warm-up call (best of ``--repeats`` runs
where the joint has at most ``--repeat-max-cells`` cells) and, in the same run, the cvxpy +
Clarabel reference on the same p, its first solve (skipped, with a note, when its problem would
have more than ``--reference-max-cells`` variables: that is where it takes more than about a
minute). ``--baseline PATH`` loads another version of the
solver (a trusted file or package of this repository's history: it is executed; ``broja.py`` until
the solver became the package ``broja/``) and times ``decompose`` with it too, alternating with the
current solver, so that a speed-up is measured in the same run under the same load. Times are
wall-clock, with the process CPU time alongside (on a shared machine the CPU time is the steadier
of the two). It prints a markdown table and checks the targets:

- every dense or histogram case the reference solves: ``decompose`` at least 100× faster than
  Clarabel;
- 10×128×128: ``decompose`` under 1 s;
- 100×32×32: ``decompose`` under 2 s;
- small joints: a certified decompose of a 10×5×5 histogram under 1 ms median (``small-``: one by
  one; ``boot-``: per resample of a batch);
- every certified gap at most 1e-6 bits.

With ``--baseline``, ``small-`` and ``boot-`` cases time the baseline's ``decompose`` one joint at a
time (a baseline has no batch): for ``boot-`` that is what ``estimate``'s bootstrap did before.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from infodistill.pid import decompose, decompose_batch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402
from benchkit import fmt_or_dash, md_table  # noqa: E402

TERMS = ("redundancy", "unique_t", "unique_s", "synergy")
DEFAULT_CASES = (
    "10x32x32",
    "16x16x16",
    "10x128x128",
    "100x32x32",
    "hist-10x32x32",
    "hist-10x128x128",
    "hist-20x64x64",
    "hist-50x128x128",
    "small-10x5x5",
    "boot-10x5x5",
)
QUICK_CASES = ("10x32x32", "16x16x16", "hist-10x32x32", "boot-10x5x5")
N_SAMPLES = 10_000
#: Samples of a small-joint histogram (a bootstrap-sized E1 histogram: 1000 test samples).
N_SMALL_SAMPLES = 1_000
#: Tolerance of the small-joint cases: ``estimate``'s for its resamples (RESAMPLE_TOL_BITS).
SMALL_TOL_BITS = 1e-6
SMALL_TARGET_S = 1e-3
GAP_TARGET_BITS = 1e-6


def parse_case(name: str) -> tuple[str, tuple[int, int, int]]:
    m = re.fullmatch(r"(hist-|dense-|small-|boot-)?(\d+)x(\d+)x(\d+)", name.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(
            f"bad case {name!r}: use YxTxS, hist-YxTxS, small-YxTxS or boot-YxTxS, e.g. 10x32x32"
        )
    kind = (m.group(1) or "dense-")[:-1]
    shape = tuple(int(m.group(i)) for i in (2, 3, 4))
    if min(shape) < 1:
        raise argparse.ArgumentTypeError(f"bad case {name!r}: every size must be at least 1")
    return kind, shape


def make_dense(shape, seed: int) -> np.ndarray:
    p = np.random.default_rng(seed).random(shape)
    return p / p.sum()


def make_hist(shape, seed: int, n: int = N_SAMPLES) -> np.ndarray:
    """Counts of n samples of (Y, T, S): T and S are noisy cluster assignments that depend on Y and
    on each other, so many cells are empty and the support constraints matter."""
    rng = np.random.default_rng(seed)
    ny, nt, ns = shape
    y = rng.integers(ny, size=n)
    # Each label owns a few preferred clusters; with some probability a sample lands anywhere.
    home_t = rng.integers(nt, size=(ny, 3))
    home_s = rng.integers(ns, size=(ny, 3))
    t = np.where(rng.random(n) < 0.95, home_t[y, rng.integers(3, size=n)], rng.integers(nt, size=n))
    s = np.where(rng.random(n) < 0.7, home_s[y, rng.integers(3, size=n)], (t * ns) // nt)
    s = np.where(rng.random(n) < 0.03, rng.integers(ns, size=n), s)
    counts = np.zeros(shape)
    np.add.at(counts, (y, t, s), 1.0)
    return counts / counts.sum()


def support_size(p: np.ndarray) -> int:
    """Number of variables of the reference problem: cells with P(y,t) > 0 and P(y,s) > 0."""
    p_yt, p_ys = p.sum(axis=2) > 0, p.sum(axis=1) > 0
    return int((p_yt[:, :, None] & p_ys[:, None, :]).sum())


def load_baseline(path: str):
    """Another version of the solver (the module broja.py, or the package directory broja/) as a
    module of the infodistill.pid package (so that its relative imports resolve), for timing
    against the current one."""
    name = "infodistill.pid._baseline_broja"
    if os.path.isdir(path):
        init = os.path.join(path, "__init__.py")
        if not os.path.isfile(init):
            raise argparse.ArgumentTypeError(f"--baseline {path!r}: a directory without __init__.py")
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[path])
    elif os.path.isfile(path):
        spec = importlib.util.spec_from_file_location(name, path)
    else:
        raise argparse.ArgumentTypeError(f"--baseline {path!r}: no such file or directory")
    module = importlib.util.module_from_spec(spec)
    # a package's submodules import each other through sys.modules under this name
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "solve_broja", None)):
        raise argparse.ArgumentTypeError(f"--baseline {path!r}: defines no solve_broja")
    return module


@contextlib.contextmanager
def solver(module):
    """Run ``decompose`` with ``module.solve_broja`` (None: the current solver)."""
    # the package exports the function decompose, which shadows its module
    decompose_module = importlib.import_module("infodistill.pid.decompose")

    saved = decompose_module.solve_broja
    if module is not None:
        decompose_module.solve_broja = module.solve_broja
    try:
        yield
    finally:
        decompose_module.solve_broja = saved


def time_decompose(p: np.ndarray, repeats: int, baseline=None):
    """Best wall-clock and CPU time of ``decompose(p)`` over ``repeats`` runs, and the result; with
    a baseline module, the same for it, the two run alternately. Each solver first runs once
    untimed: a joint above ``--repeat-max-cells`` is timed once, and that one run, the current
    solver's first, paid the first call's page faults and set-up (an identical copy of the solver
    as baseline measured 0.87-0.91x on hist-10x128x128 without this warm-up)."""
    modules = [None] if baseline is None else [None, baseline]
    wall, cpu, res = {}, {}, {}
    for module in modules:
        with solver(module):
            decompose(p)
    for _ in range(max(repeats, 1)):
        for key, module in enumerate(modules):
            with solver(module):
                t0, c0 = time.perf_counter(), time.process_time()
                res[key] = decompose(p)
                w, c = time.perf_counter() - t0, time.process_time() - c0
            wall[key], cpu[key] = min(wall.get(key, np.inf), w), min(cpu.get(key, np.inf), c)
    return wall, cpu, res


def small_histograms(shape, seed: int, n: int) -> list[np.ndarray]:
    """n count histograms of N_SMALL_SAMPLES samples (``make_hist``'s generator), seeded."""
    return [make_hist(shape, seed + i, N_SMALL_SAMPLES) * N_SMALL_SAMPLES for i in range(n)]


def bootstrap_resamples(counts: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n bootstrap resamples of a count histogram (its samples drawn with replacement)."""
    cells = np.repeat(np.arange(counts.size), np.rint(counts).astype(int).ravel())
    rng = np.random.default_rng(seed)
    draws = [
        np.bincount(cells[rng.integers(0, cells.size, cells.size)], minlength=counts.size) for _ in range(n)
    ]
    return np.array(draws, dtype=float).reshape(n, *counts.shape)


def _one_by_one(ps, module=None):
    """Per-joint wall and CPU times of ``decompose`` (counts, SMALL_TOL_BITS) and the results."""
    wall, cpu, res = [], [], []
    with solver(module):
        for p in ps:
            t0, c0 = time.perf_counter(), time.process_time()
            res.append(decompose(p, counts=True, tol=SMALL_TOL_BITS))
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return np.array(wall), np.array(cpu), res


def run_small_case(kind: str, shape, args) -> dict:
    """``small-``: decompose one by one on --small-n histograms (median per joint); ``boot-``:
    decompose_batch on --boot-n resamples of one histogram (median over --repeats runs of the time
    per resample), with decompose one by one on the same resamples for comparison."""
    seed = args.seed + sum(shape) + 2000
    note = ""
    if kind == "small":
        ps = small_histograms(shape, seed, args.small_n)
        wall, cpu, res = _one_by_one(ps)
        ours, ours_cpu = float(np.median(wall)), float(np.median(cpu))
        repeats = len(ps)
        note = f"median of {len(ps)} histograms of {N_SMALL_SAMPLES} samples"
    else:
        ps = bootstrap_resamples(small_histograms(shape, seed, 1)[0], args.boot_n, seed + 1)
        walls, cpus = [], []
        for _ in range(max(args.repeats, 1)):
            t0, c0 = time.perf_counter(), time.process_time()
            res = decompose_batch(ps, counts=True, tol=SMALL_TOL_BITS)
            walls.append((time.perf_counter() - t0) / len(ps))
            cpus.append((time.process_time() - c0) / len(ps))
        ours, ours_cpu = float(np.median(walls)), float(np.median(cpus))
        repeats = max(args.repeats, 1)
        single_wall, _, single = _one_by_one(ps)
        handed = sum(r.solver.get("batch") != "batch" for r in res)
        diff = max(
            abs(getattr(a, k) - getattr(b, k)) - a.gap - b.gap
            for a, b in zip(res, single, strict=True)
            for k in TERMS
        )
        note = (
            f"per resample of {len(ps)} (batch, median of {repeats} runs; "
            f"{handed} handed back to decompose); "
            f"one by one: {np.median(single_wall) * 1e3:.2f} ms median; "
            f"max |Δ term| − gaps vs one by one: {diff:.1e} bits"
        )
    row = dict(
        case=f"{kind}-{'x'.join(map(str, shape))}",
        kind=kind,
        shape=list(shape),
        nonzero_cells=int(np.median([(p > 0).sum() for p in ps])),
        support_cells=int(np.median([support_size(p) for p in ps])),
        ours_s=ours,
        ours_cpu_s=ours_cpu,
        ours_repeats=repeats,
        gap_bits=float(max(r.gap for r in res)),
        terms_bits={
            k: float(np.median([getattr(r, k) for r in res])) for k in (*TERMS, "mi_t", "mi_s", "mi_joint")
        },
        solver_info=dict(iterations=int(np.median([r.solver.get("iterations", 0) for r in res]))),
        baseline_s=None,
        baseline_cpu_s=None,
        baseline_gap_bits=None,
        baseline_iterations=None,
        baseline_speedup=None,
        baseline_max_abs_diff_bits=None,
        ref_s=None,
        ref_status=None,
        ref_gap_bits=None,
        speedup=None,
        max_abs_diff_bits=None,
        note=note,
    )
    if args.baseline_module is not None:
        b_wall, b_cpu, b_res = _one_by_one(ps, args.baseline_module)
        row.update(
            baseline_s=float(np.median(b_wall)),
            baseline_cpu_s=float(np.median(b_cpu)),
            baseline_gap_bits=float(max(r.gap for r in b_res)),
            baseline_iterations=int(np.median([r.solver.get("iterations", 0) for r in b_res])),
            baseline_max_abs_diff_bits=float(
                max(
                    abs(getattr(a, k) - getattr(b, k)) for a, b in zip(res, b_res, strict=True) for k in TERMS
                )
            ),
        )
        row["baseline_speedup"] = row["baseline_s"] / ours
    if not args.no_reference:
        from infodistill.pid.reference import reference_decompose

        # One Clarabel solve of the first joint, against our median per joint.
        p0 = ps[0] / ps[0].sum()
        t0 = time.perf_counter()
        ref = reference_decompose(p0)
        row["ref_s"] = ref["info"].get("attempt_times", [time.perf_counter() - t0])[0]
        row["ref_status"] = ref["info"]["status"]
        row["ref_gap_bits"] = float(ref["gap"])
        row["speedup"] = row["ref_s"] / ours
        row["max_abs_diff_bits"] = float(max(abs(getattr(res[0], k) - ref[k]) for k in TERMS))
    return row


def run_case(name: str, args) -> dict:
    kind, shape = parse_case(name)
    if kind in ("small", "boot"):
        return run_small_case(kind, shape, args)
    seed = args.seed + sum(shape) + (1000 if kind == "hist" else 0)
    p = make_hist(shape, seed) if kind == "hist" else make_dense(shape, seed)
    cells = int(np.prod(shape))
    n_support = support_size(p)
    repeats = args.repeats if cells <= args.repeat_max_cells else 1
    wall, cpu, results = time_decompose(p, repeats, args.baseline_module)
    res = results[0]
    row = dict(
        case=f"{kind}-{'x'.join(map(str, shape))}",
        kind=kind,
        shape=list(shape),
        nonzero_cells=int((p > 0).sum()),
        support_cells=n_support,
        ours_s=wall[0],
        ours_cpu_s=cpu[0],
        ours_repeats=repeats,
        gap_bits=float(res.gap),
        terms_bits={k: float(getattr(res, k)) for k in (*TERMS, "mi_t", "mi_s", "mi_joint")},
        solver_info={k: v for k, v in res.solver.items() if isinstance(v, (int, float, str, bool))},
        baseline_s=wall.get(1),
        baseline_cpu_s=cpu.get(1),
        baseline_gap_bits=float(results[1].gap) if 1 in results else None,
        baseline_iterations=results[1].solver.get("iterations") if 1 in results else None,
        baseline_speedup=wall[1] / wall[0] if 1 in wall else None,
        baseline_max_abs_diff_bits=(
            float(max(abs(getattr(res, k) - getattr(results[1], k)) for k in TERMS)) if 1 in results else None
        ),
        ref_s=None,
        ref_status=None,
        ref_gap_bits=None,
        speedup=None,
        max_abs_diff_bits=None,
        note="",
    )
    if args.no_reference:
        row["note"] = "reference not run (--no-reference)"
    elif n_support > args.reference_max_cells:
        row["note"] = (
            f"reference skipped: {n_support} variables > --reference-max-cells {args.reference_max_cells}"
        )
    else:
        from infodistill.pid.reference import reference_decompose

        t0 = time.perf_counter()
        try:
            ref = reference_decompose(p)
        except RuntimeError as exc:
            row["note"] = f"reference failed after {time.perf_counter() - t0:.1f} s: {exc}"
            return row
        total = time.perf_counter() - t0
        # Speed is compared with ONE cvxpy+Clarabel solve (the first, default settings); a retry for
        # accuracy is reported but not counted.
        row["ref_s"] = ref["info"].get("attempt_times", [total])[0]
        row["ref_total_s"] = total
        row["ref_status"] = ref["info"]["status"]
        row["ref_solves"] = ref["info"].get("n_solves", 1)
        if row["ref_solves"] > 1:
            row["note"] = (
                f"reference retried (gap of first solve above 1e-9 nats, or it failed): "
                f"{row['ref_solves']} solves, {total:.1f} s in all, kept {ref['info']['attempt']}"
            )
        row["ref_gap_bits"] = float(ref["gap"])
        row["speedup"] = row["ref_s"] / row["ours_s"] if row["ours_s"] > 0 else float("inf")
        row["max_abs_diff_bits"] = float(max(abs(getattr(res, k) - ref[k]) for k in TERMS))
    return row


def evaluate_targets(rows: list[dict]) -> list[dict]:
    """The issue's targets; 'n/a' where the case was not run (or had no reference)."""

    def by_shape(shape):
        return [r for r in rows if tuple(r["shape"]) == shape]

    out = []
    # One row per dense or histogram case the reference solved (the small joints have their own
    # target below; their speed-up is in the table).
    for r in [r for r in rows if r["speedup"] is not None and r["kind"] in ("dense", "hist")]:
        out.append(
            dict(
                target=f"{r['case']}: >= 100x faster than cvxpy+Clarabel",
                holds=r["speedup"] >= 100,
                detail=f"{r['speedup']:.1f}x",
            )
        )
    for shape, limit in (((10, 128, 128), 1.0), ((100, 32, 32), 2.0)):
        cases = [r for r in by_shape(shape) if r["kind"] in ("dense", "hist")]
        out.append(
            dict(
                target=f"{'x'.join(map(str, shape))}: < {limit:g} s",
                holds=all(r["ours_s"] < limit for r in cases) if cases else None,
                detail=", ".join(f"{r['case']}: {r['ours_s']:.3f} s" for r in cases) or "not measured",
            )
        )
    for r in [r for r in rows if r["kind"] in ("small", "boot") and tuple(r["shape"]) == (10, 5, 5)]:
        how = "one by one" if r["kind"] == "small" else "per resample, decompose_batch"
        out.append(
            dict(
                target=f"{r['case']} ({how}): certified decompose < {SMALL_TARGET_S * 1e3:g} ms median",
                holds=r["ours_s"] < SMALL_TARGET_S,
                detail=f"{r['ours_s'] * 1e3:.3f} ms",
            )
        )
    out.append(
        dict(
            target=f"all certified gaps <= {GAP_TARGET_BITS:g} bits",
            holds=all(r["gap_bits"] <= GAP_TARGET_BITS for r in rows) if rows else None,
            detail=f"max gap {max(r['gap_bits'] for r in rows):.2e} bits" if rows else "not measured",
        )
    )
    return out


def _speedup(x) -> str:
    return "—" if x is None else format(x, ".1f") + "×"


def markdown(rows: list[dict], targets: list[dict]) -> str:
    header = [
        "case",
        "\\|Y\\|×\\|T\\|×\\|S\\|",
        "support cells",
        "ours (s)",
        "ours CPU (s)",
        "reference (s)",
        "speed-up",
        "max \\|Δ term\\| (bits)",
        "our gap (bits)",
        "ref gap (bits)",
        "note",
    ]
    body = []
    for r in rows:
        note = r["note"]
        if r["ref_status"] and r["ref_status"] != "optimal":
            note = (note + "; " if note else "") + f"reference status {r['ref_status']}"
        if r["ours_repeats"] > 1:
            note = (note + "; " if note else "") + f"ours best of {r['ours_repeats']}"
        body.append(
            [
                r["case"],
                "×".join(map(str, r["shape"])),
                str(r["support_cells"]),
                f"{r['ours_s']:.4f}",
                f"{r['ours_cpu_s']:.4f}",
                fmt_or_dash(r["ref_s"], ".3f"),
                _speedup(r["speedup"]),
                fmt_or_dash(r["max_abs_diff_bits"], ".1e"),
                f"{r['gap_bits']:.1e}",
                fmt_or_dash(r["ref_gap_bits"], ".1e"),
                note,
            ]
        )
    parts = [md_table(header, body)]
    if any(r["baseline_s"] is not None for r in rows):
        header = [
            "case",
            "ours (s)",
            "baseline (s)",
            "speed-up",
            "ours CPU (s)",
            "baseline CPU (s)",
            "speed-up (CPU)",
            "iterations (ours / baseline)",
            "float32 steps",
            "baseline gap (bits)",
            "max \\|Δ term\\| (bits)",
        ]
        body = [
            [
                r["case"],
                f"{r['ours_s']:.4f}",
                f"{r['baseline_s']:.4f}",
                f"{r['baseline_speedup']:.2f}×",
                f"{r['ours_cpu_s']:.4f}",
                f"{r['baseline_cpu_s']:.4f}",
                f"{r['baseline_cpu_s'] / r['ours_cpu_s']:.2f}×",
                f"{r['solver_info'].get('iterations', '—')} / {r['baseline_iterations']}",
                str(r["solver_info"].get("single_precision_steps", "—")),
                f"{r['baseline_gap_bits']:.1e}",
                f"{r['baseline_max_abs_diff_bits']:.1e}",
            ]
            for r in rows
            if r["baseline_s"] is not None
        ]
        parts.append(md_table(header, body))
    body = [
        [t["target"], "n/a" if t["holds"] is None else ("yes" if t["holds"] else "**NO**"), t["detail"]]
        for t in targets
    ]
    parts.append(md_table(["target", "holds", "measured"], body))
    return "\n\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_CASES)}; one repeat")
    ap.add_argument(
        "--sizes",
        nargs="+",
        metavar="CASE",
        help=f"YxTxS (dense), hist-YxTxS, small-YxTxS or boot-YxTxS; default: {' '.join(DEFAULT_CASES)}",
    )
    ap.add_argument("--repeats", type=int, default=3, help="repeats of decompose on small cases (best kept)")
    ap.add_argument(
        "--repeat-max-cells",
        type=int,
        default=20_000,
        help="repeat decompose only on joints with at most this many cells (default 20000)",
    )
    ap.add_argument(
        "--reference-max-cells",
        type=int,
        default=30_000,
        help="skip the cvxpy reference when its problem has more variables than this (default 30000, "
        "about a minute of Clarabel)",
    )
    ap.add_argument("--no-reference", action="store_true", help="do not run the cvxpy reference at all")
    ap.add_argument("--seed", type=int, default=0, help="base seed of the inputs (default 0)")
    ap.add_argument("--small-n", type=int, default=50, help="histograms of a small- case (default 50)")
    ap.add_argument(
        "--boot-n", type=int, default=100, help="bootstrap resamples of a boot- case (default 100)"
    )
    ap.add_argument(
        "--baseline",
        metavar="PATH",
        help="another version of the solver, broja.py or the broja/ package (e.g. from `git show`), "
        "to time alongside",
    )
    ap.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    args = ap.parse_args(argv)

    if args.sizes:
        names = args.sizes
        for n in names:
            try:
                parse_case(n)
            except argparse.ArgumentTypeError as exc:
                ap.error(str(exc))
    else:
        names = list(QUICK_CASES if args.quick else DEFAULT_CASES)
    if args.quick:
        args.repeats = 1
    args.baseline_module = None
    if args.baseline:
        try:
            args.baseline_module = load_baseline(args.baseline)
        except argparse.ArgumentTypeError as exc:
            ap.error(str(exc))

    meta = dict(seed=args.seed, n_samples_hist=N_SAMPLES)
    try:
        import clarabel  # noqa: F401
        import cvxpy  # noqa: F401
    except ImportError:
        if not args.no_reference:
            print("cvxpy/clarabel missing: pip install infodistill[test]; running with --no-reference")
            args.no_reference = True
    meta["machine"] = benchkit.machine_info(torch=False, packages=("cvxpy", "clarabel"))
    print(benchkit.machine_line(meta["machine"]), flush=True)

    rows = []
    for name in names:
        row = run_case(name, args)
        rows.append(row)
        ref = "" if row["ref_s"] is None else f", reference {row['ref_s']:.2f} s"
        base = "" if row["baseline_s"] is None else f", baseline {row['baseline_s']:.4f} s"
        print(
            f"  {row['case']}: ours {row['ours_s']:.4f} s (gap {row['gap_bits']:.1e} bits){base}{ref}",
            flush=True,
        )
    targets = evaluate_targets(rows)
    print()
    print(markdown(rows, targets))
    if args.json:
        benchkit.write_json(args.json, dict(meta=meta, rows=rows, targets=targets))
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
