"""Benchmark: how the PID solver, representation PID and a training step scale with problem size.

Usage::

    OMP_WAIT_POLICY=PASSIVE python bench/scaling.py                  # all three sections, full grid
    OMP_WAIT_POLICY=PASSIVE python bench/scaling.py --quick          # reduced grid, < 1 min
    python bench/scaling.py --solver --ys 10 100 --ks 8 16 32 --cap 10
    python bench/scaling.py --estimate --ns 1000 10000 --ds 64 512 --json scaling.json
    python bench/scaling.py --train --batches 32 64 128 --threads 1 2

With no section flag every section runs. Each prints a markdown table of times and of ratios to a
reference cell measured in the same run (absolute times on a shared machine move with the load;
ratios measured side by side move much less). A header line names the machine.

``--solver``: :func:`infodistill.pid.decompose` on joints of shape (|Y|, k, k), |Y| in ``--ys``
(2, 10, 32, 100) and k = |T| = |S| in ``--ks`` (8, 16, 32, 64, 128), of two kinds:

- ``dense``: a flat Dirichlet(1, ..., 1) joint, every cell positive (the solver's worst case: the
  Schur complement is a dense (k·|Y|)² matrix);
- ``hist``: the sparse histogram of 10 000 correlated (y, t, s) samples of ``bench/pid_solver.py``
  (``make_hist``), like the (label, teacher cluster, student cluster) counts of representation PID.

A cell's time is the median of 5 runs when one run takes under 1 s, of 3 under 5 s, else one run.
Cells are run by increasing k along a row; before each, its time is predicted from the row's last
measured cell as t_last · (k / k_last)^e, with e the row's last local exponent clamped to [2, 3]
(the dense Newton system costs O(|Y|²·k³) per iteration; small cells are dominated by fixed
costs, which makes their local exponent an underestimate), and from the cell at the same k one
|Y| smaller as t · (|Y| / |Y|_prev) (at least linear in |Y|). A cell predicted above ``--cap``
seconds (default 30), and every larger cell of its row, is printed as "skipped (> cap)". The ratio
is to the smallest k of the row; "exponent" is log(ratio) / log(k / k_min) of the largest measured
cell, "local" the slope of log time against log k between the two largest measured cells.

``--estimate``: :func:`infodistill.pid.estimate` with its defaults (10 classes, k = 10, PCA to 5
dims, L2 normalisation, 5 label permutations for the bias baseline, no bootstrap) on synthetic
float32 features, n in ``--ns`` (1k, 10k, 50k) and d in ``--ds`` (64, 512, 2048): class means
plus Gaussian noise and a nuisance component shared by teacher and student (the model of
``bench/pid_estimate.py``). ``estimate`` exposes no timings, so its internal steps are wrapped by
timers for the duration of the call (input checks, normalisation + PCA, k-means, histogram, the
main decomposition, the permutation baseline; "other" is the rest of the total). Median of 3 runs
when one takes under 2 s, else one run; ratio to the smallest (n, d).

``--train``: the trainer's step (:class:`infodistill.training.task.Supervised`: forward,
cross-entropy, ``zero_grad(set_to_none=True)``, backward, SGD with the trainer's defaults lr 0.05,
momentum 0.9, weight decay 5e-4) of ``cnn-small`` (width 16, the students of the Fashion-MNIST
configs) on 1×28×28 and ``wrn-16-1`` on 3×32×32, batch in ``--batches`` (32, 64, 128, 256),
``torch.set_num_threads`` in ``--threads`` (1, 2), on one fixed random batch. Timing as in
``bench/train_step.py``: warm-up steps, then rounds; a round times every (batch, threads) cell once
for a chunk of steps lasting at least ``--min-time`` seconds, in a rotating order, with the weights
and momentum buffers restored before each chunk. ms/step is the median over rounds; the ratios are
medians over rounds of the per-round ratio to the cell (batch 64, 1 thread), which cancels most of
the drift they share. Set ``OMP_WAIT_POLICY=PASSIVE`` before Python starts for steady timings.

Full run: about 5 minutes on the project's 2-core machine (307 s measured with other jobs running:
solver ~3 min, estimate ~1 min, training ~1 min; each section prints its own wall time);
``--quick`` about 25 s. Exit status 0; a usage mistake is a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from infodistill.pid import decompose
from infodistill.pid import estimate as estimate_fn
from infodistill.pid.decompose import DEFAULT_TOL_BITS
from infodistill.pid.estimate import ESTIMATE_STAGES

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402
from benchkit import fmt_s, md_table, median_ratio  # noqa: E402
from pid_solver import make_hist  # noqa: E402

SOLVER_YS = (2, 10, 32, 100)
SOLVER_KS = (8, 16, 32, 64, 128)
SOLVER_KINDS = ("dense", "hist")
SOLVER_CAP_S = 30.0
QUICK_SOLVER_YS = (2, 10)
QUICK_SOLVER_KS = (8, 16, 32)
QUICK_SOLVER_CAP_S = 5.0

EST_NS = (1_000, 10_000, 50_000)
EST_DS = (64, 512, 2048)
QUICK_EST_NS = (1_000, 10_000)
QUICK_EST_DS = (64, 512)
EST_CLASSES = 10
EST_K = 10
EST_PCA = 5

TRAIN_BATCHES = (32, 64, 128, 256)
TRAIN_THREADS = (1, 2)
QUICK_TRAIN_BATCHES = (32, 128)
TRAIN_MODELS = (
    # (registry name, architecture options, input shape)
    ("cnn-small", {"width": 16}, (1, 28, 28)),
    ("wrn-16-1", {}, (3, 32, 32)),
)
TRAIN_REF = (64, 1)  # (batch, threads) of the reference cell

# Grid options of each section (an option of a section that is not run is a mistake).
SECTION_OPTIONS = {
    "solver": ("--ys", "--ks", "--kinds", "--cap"),
    "estimate": ("--ns", "--ds"),
    "train": ("--batches", "--threads", "--models", "--rounds", "--min-time"),
}

# The stages estimate() times itself (EstimateResult.timings).
EST_STAGES = ESTIMATE_STAGES


# ---------------------------------------------------------------------------------------------
# PID solver


def make_dirichlet(shape, seed: int) -> np.ndarray:
    """A joint drawn from the flat Dirichlet(1, ..., 1) on the simplex: normalised Exp(1) draws."""
    p = np.random.default_rng(seed).standard_exponential(shape)
    return p / p.sum()


def solver_input(kind: str, ny: int, k: int, seed: int) -> np.ndarray:
    if kind == "dense":
        return make_dirichlet((ny, k, k), seed)
    if kind == "hist":
        return make_hist((ny, k, k), seed)
    raise ValueError(f"unknown solver input kind {kind!r}; use 'dense' or 'hist'")


def predict_time(row_cells: list[dict], prev_row_cell: dict | None, k: int, ny: int) -> float:
    """Predicted seconds of cell (ny, k) from the cells already measured (see the module doc)."""
    pred = 0.0
    measured = [c for c in row_cells if c["time_s"] is not None]
    if measured:
        last = measured[-1]
        e = 2.0
        if len(measured) >= 2:
            prev = measured[-2]
            local = math.log(last["time_s"] / prev["time_s"]) / math.log(last["k"] / prev["k"])
            e = min(max(local, 2.0), 3.0)
        pred = last["time_s"] * (k / last["k"]) ** e
    if prev_row_cell is not None:
        if prev_row_cell["time_s"] is None:
            return math.inf  # the same k at a smaller |Y| was already skipped
        pred = max(pred, prev_row_cell["time_s"] * ny / prev_row_cell["ny"])
    return pred


def run_solver(
    ys=SOLVER_YS,
    ks=SOLVER_KS,
    kinds=SOLVER_KINDS,
    *,
    cap_s: float = SOLVER_CAP_S,
    max_reps: int = 5,
    seed: int = 0,
    log=print,
) -> list[dict]:
    """Time ``decompose`` on every (kind, |Y|, k) cell; returns one dict per cell, skipped included."""
    ys, ks = sorted(set(ys)), sorted(set(ks))
    for kind in kinds:
        # First-call imports, caches and code paths are not timed: solve each kind's smallest cell once.
        decompose(solver_input(kind, ys[0], ks[0], seed))
    cells = []
    for kind in kinds:
        above: dict[int, dict] = {}
        for ny in ys:
            row: list[dict] = []
            skipping = False
            for k in ks:
                cell = dict(kind=kind, ny=ny, k=k, time_s=None, reps=0, gap_bits=None, predicted_s=None)
                cell["predicted_s"] = predict_time(row, above.get(k), k, ny)
                skipping = skipping or cell["predicted_s"] > cap_s
                if not skipping:
                    cell_seed = seed + 7919 * ny + 31 * k + (1 if kind == "hist" else 0)
                    p = solver_input(kind, ny, k, cell_seed)
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", RuntimeWarning)
                        t, reps, outs = benchkit.median_time(
                            lambda p=p: decompose(p), fast_s=1.0, medium_s=5.0, max_reps=max_reps
                        )
                    res = outs[-1]
                    cell.update(
                        time_s=t,
                        reps=reps,
                        gap_bits=float(max(r.gap for r in outs)),
                        support_cells=int((p > 0).sum()),
                        iterations=res.solver.get("iterations"),
                        redundancy_bits=float(res.redundancy),
                        warnings=[str(w.message) for w in caught],
                    )
                    log(
                        f"  solver {kind} {ny}x{k}x{k}: {t:.4f} s (median of {reps}), "
                        f"gap {cell['gap_bits']:.1e} bits"
                    )
                row.append(cell)
                above[k] = cell
            cells += row
    return cells


def _row_exponents(row: list[dict]) -> tuple[float | None, float | None]:
    measured = [c for c in row if c["time_s"] is not None]
    if len(measured) < 2:
        return None, None
    first, prev, last = measured[0], measured[-2], measured[-1]
    overall = math.log(last["time_s"] / first["time_s"]) / math.log(last["k"] / first["k"])
    local = math.log(last["time_s"] / prev["time_s"]) / math.log(last["k"] / prev["k"])
    return overall, local


def solver_tables(cells: list[dict], cap_s: float) -> str:
    out = []
    for kind in dict.fromkeys(c["kind"] for c in cells):
        kc = [c for c in cells if c["kind"] == kind]
        ks = sorted({c["k"] for c in kc})
        ys = sorted({c["ny"] for c in kc})
        title = (
            "dense Dirichlet(1) joints"
            if kind == "dense"
            else "sparse histograms of 10 000 samples (bench/pid_solver.py make_hist)"
        )
        out.append(
            f"### decompose, {title}: seconds (ratio to the row's smallest k); certified gap in bits\n"
        )
        rows = []
        for ny in ys:
            row = sorted((c for c in kc if c["ny"] == ny), key=lambda c: c["k"])
            ref = next((c["time_s"] for c in row if c["time_s"] is not None), None)
            cols = [str(ny)]
            for c in row:
                if c["time_s"] is None:
                    cols.append(f"skipped (> {cap_s:g} s cap)")
                else:
                    flag = " †" if c["gap_bits"] > DEFAULT_TOL_BITS else ""
                    cols.append(f"{fmt_s(c['time_s'])} (×{fmt_s(c['time_s'] / ref)}){flag}")
            overall, local = _row_exponents(row)
            gaps = [c["gap_bits"] for c in row if c["gap_bits"] is not None]
            cols += [
                "—" if overall is None else f"{overall:.2f}",
                "—" if local is None else f"{local:.2f}",
                "—" if not gaps else f"{max(gaps):.1e}",
            ]
            rows.append(cols)
        header = ["\\|Y\\|"] + [f"k={k}" for k in ks] + ["exponent", "local exp.", "max gap (bits)"]
        out.append(md_table(header, rows, ["---"] + ["---:"] * (len(ks) + 3)))
        out.append("")
    note = (
        f"Time: median of up to 5 runs; k = |T| = |S|; † marks a certified gap above the default "
        f"tolerance {DEFAULT_TOL_BITS:g} bits (decompose warned; its terms are exact to the gap). "
        "exponent = log(ratio) / log(k / k_min) at the largest measured k; "
        "local exp. = slope between the two largest measured k."
    )
    out.append(note)
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Representation PID


def make_features(n: int, dim: int, n_classes: int = EST_CLASSES, seed: int = 0):
    """Labels and float32 teacher/student features: class means + noise + a shared nuisance term
    (the model of bench/pid_estimate.py, drawn in float32 in place to keep 50k x 2048 affordable)."""
    rng = np.random.default_rng([seed, n, dim])
    y = rng.integers(0, n_classes, n)
    mean_t = rng.standard_normal((n_classes, dim), dtype=np.float32)
    mean_s = rng.standard_normal((n_classes, dim), dtype=np.float32)
    shared = rng.standard_normal((n, dim), dtype=np.float32)
    shared *= 0.5
    t = rng.standard_normal((n, dim), dtype=np.float32)
    t += shared
    t += np.float32(0.15) * mean_t[y]  # the student sees the class about half as clearly
    s = rng.standard_normal((n, dim), dtype=np.float32)
    s += shared
    s += np.float32(0.08) * mean_s[y]
    return y, t, s


def run_estimate(ns=EST_NS, ds=EST_DS, *, max_reps: int = 3, seed: int = 0, log=print) -> list[dict]:
    """Time ``estimate`` (defaults, k = 10, PCA 5) on every (n, d); one dict per cell."""
    ns, ds = sorted(set(ns)), sorted(set(ds))
    # First-call imports and thread-pool start-up are not timed: run the smallest cell once.
    estimate_fn(*make_features(ns[0], ds[0], seed=seed), k=EST_K, pca=EST_PCA, seed=seed)
    cells = []
    for n in ns:
        for d in ds:
            y, t, s = make_features(n, d, seed=seed)
            runs: list[tuple[float, dict | None, object]] = []

            def once(y=y, t=t, s=s, runs=runs):
                t0 = time.perf_counter()
                res = estimate_fn(y, t, s, k=EST_K, pca=EST_PCA, seed=seed)
                total = time.perf_counter() - t0
                runs.append((total, dict(res.timings), res))
                return res

            _, reps, _ = benchkit.median_time(once, fast_s=2.0 / 3.0, medium_s=2.0, max_reps=max_reps)
            # The call's own clock, without the wrapper set-up around it.
            total = statistics.median(r[0] for r in runs)
            res = runs[-1][2]
            cell = dict(
                n=n,
                d=d,
                time_s=total,
                reps=reps,
                gap_bits=float(max(r[2].pid.gap for r in runs)),
                pca_solver=res.settings["pca_solver_t"],
                mi_joint_bits=float(res.pid.mi_joint),
                stages_s=None,
            )
            if runs[0][1] is not None:
                for r in runs:
                    r[1]["other"] = r[0] - sum(r[1].values())
                cell["stages_s"] = {
                    st: statistics.median(r[1][st] for r in runs) for st in (*EST_STAGES, "other")
                }
            cells.append(cell)
            log(f"  estimate n={n} d={d}: {total:.3f} s (median of {reps})")
            del y, t, s
    return cells


def estimate_table(cells: list[dict]) -> str:
    ref = min(cells, key=lambda c: (c["n"], c["d"]))
    has_stages = all(c["stages_s"] is not None for c in cells)
    header = ["n", "d", "total (s)", f"ratio to n={ref['n']}, d={ref['d']}"]
    if has_stages:
        header += [f"{st} (ms)" for st in (*EST_STAGES, "other")]
    header += ["PCA solver", "gap (bits)"]
    rows = []
    for c in cells:
        r = [f"{c['n']:,}", str(c["d"]), fmt_s(c["time_s"]), f"{fmt_s(c['time_s'] / ref['time_s'])}×"]
        if has_stages:
            r += [fmt_s(1e3 * c["stages_s"][st]) for st in (*EST_STAGES, "other")]
        r += [str(c["pca_solver"]), f"{c['gap_bits']:.1e}"]
        rows.append(r)
    head = (
        f"### estimate: {EST_CLASSES} classes, k = {EST_K}, PCA {EST_PCA}, 5 label permutations, "
        "float32 features; median of up to 3 runs (each column its own median)\n\n"
    )
    note = "" if has_stages else "\n(estimate's internal steps were not found; only the total is reported)"
    return head + md_table(header, rows, ["---:"] * len(header)) + note


# ---------------------------------------------------------------------------------------------
# Training step


class _TrainCell:
    """One (model, batch, threads) cell: a fixed batch and the model's shared step."""

    def __init__(self, bench: _ModelBench, batch: int, threads: int):
        import torch

        self.bench, self.batch, self.threads = bench, batch, threads
        g = torch.Generator().manual_seed(1000 + batch)
        self.x = torch.randn((batch, *bench.input_shape), generator=g)
        self.y = torch.randint(0, 10, (batch,), generator=g)


class _ModelBench:
    """A model, its optimiser and the trainer's step function; ``reset`` restores the initial
    weights, BatchNorm statistics and momentum buffers so that every chunk starts from the same
    operating point."""

    def __init__(self, name: str, kwargs: dict, input_shape: tuple[int, int, int], seed: int = 0):
        import torch

        from infodistill.models import build_model
        from infodistill.training.config import OptimConfig
        from infodistill.training.task import Supervised
        from infodistill.training.trainer import make_optimizer

        self.name, self.kwargs, self.input_shape = name, kwargs, input_shape
        self.model = build_model(name, 10, input_shape[0], seed=seed, **kwargs).train()
        self.opt = make_optimizer(self.model.parameters(), OptimConfig())
        self.step_fn = Supervised(self.model).step
        self._init = copy.deepcopy(self.model.state_dict())
        self._torch = torch

    @property
    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.kwargs.items())
        return f"{self.name}{extra} ({'×'.join(map(str, self.input_shape))})"

    def reset(self) -> None:
        with self._torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(self._init[k])
        for st in self.opt.state.values():
            buf = st.get("momentum_buffer")
            if buf is not None:
                buf.zero_()

    def step(self, x, y):
        """The trainer's inner loop body for one batch (without its bookkeeping)."""
        out = self.step_fn(x, y, 0)
        total = sum(out.losses.values())
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        return total.detach()


def run_train(
    batches=TRAIN_BATCHES,
    threads=TRAIN_THREADS,
    models=TRAIN_MODELS,
    *,
    rounds: int = 7,
    min_time: float = 0.2,
    warmup: int = 2,
    seed: int = 0,
    log=print,
) -> list[dict]:
    """Time the trainer's step on every (model, batch, threads); one dict per cell."""
    import torch

    from infodistill.models import MODEL_NAMES

    batches, threads = sorted(set(batches)), sorted(set(threads))
    ref_key = TRAIN_REF if TRAIN_REF[0] in batches and TRAIN_REF[1] in threads else (batches[0], threads[0])
    saved_threads = torch.get_num_threads()
    out = []
    try:
        for name, kwargs, shape in models:
            if name not in MODEL_NAMES:
                log(f"  train: {name} is not in the models registry; skipped")
                continue
            mb = _ModelBench(name, kwargs, shape, seed=seed)
            cells = [_TrainCell(mb, b, th) for b in batches for th in threads]

            def prepare(c, mb=mb):
                torch.set_num_threads(c.threads)
                mb.reset()

            timed = benchkit.time_rounds(
                cells,
                lambda c, mb=mb: mb.step(c.x, c.y),
                prepare=prepare,
                warmup=warmup,
                rounds=rounds,
                min_time=min_time,
            )
            ref, ref_t = next(
                (c, t) for c, t in zip(cells, timed, strict=True) if (c.batch, c.threads) == ref_key
            )
            for c, t in zip(cells, timed, strict=True):
                ms = 1e3 * statistics.median(t.samples)
                out.append(
                    dict(
                        model=mb.label,
                        batch=c.batch,
                        threads=c.threads,
                        ms_per_step=ms,
                        images_per_s=c.batch / (ms / 1e3),
                        time_ratio=median_ratio(t.samples, ref_t.samples),
                        throughput_ratio=median_ratio(
                            [c.batch / a for a in t.samples], [ref.batch / b for b in ref_t.samples]
                        ),
                        reference=f"batch {ref.batch}, {ref.threads} thread{'s' if ref.threads > 1 else ''}",
                        rounds=len(t.samples),
                        steps_per_round=t.steps_per_chunk,
                        samples_ms=[1e3 * x for x in t.samples],
                        last_loss=float(t.outputs[-1]),
                    )
                )
                log(f"  train {mb.label} B={c.batch} threads={c.threads}: {ms:.1f} ms/step")
    finally:
        torch.set_num_threads(saved_threads)
    return out


def train_table(rows: list[dict]) -> str:
    header = [
        "model (input)",
        "batch",
        "threads",
        "ms/step",
        "images/s",
        "step time ratio",
        "throughput ratio",
    ]
    body = [
        [
            r["model"],
            str(r["batch"]),
            str(r["threads"]),
            f"{r['ms_per_step']:.1f}",
            f"{r['images_per_s']:.0f}",
            f"{r['time_ratio']:.3g}×",
            f"{r['throughput_ratio']:.3g}×",
        ]
        for r in rows
    ]
    ref = rows[0]["reference"] if rows else "—"
    head = (
        "### training step (forward, CE, backward, SGD lr 0.05 momentum 0.9 wd 5e-4), fp32; "
        f"ratios: median over rounds of the per-round ratio to {ref} of the same model\n\n"
    )
    return head + md_table(header, body, ["---", "---:", "---:", "---:", "---:", "---:", "---:"])


# ---------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_ints(ap, name: str, values, minimum: int = 1):
    if values is None:
        return None
    bad = [v for v in values if v < minimum]
    if bad:
        ap.error(f"{name} values must be >= {minimum}, got {bad[0]}")
    return values


def main(argv=None, log=print) -> int:
    ap = _Parser(description=__doc__.split("\n")[0])
    ap.add_argument("--solver", action="store_true", help="PID solver time vs |Y| and k")
    ap.add_argument("--estimate", action="store_true", help="representation PID time vs n and d")
    ap.add_argument("--train", action="store_true", help="training step time vs batch and threads")
    ap.add_argument("--quick", action="store_true", help="reduced grids and repeats (< 1 min for all)")
    ap.add_argument("--ys", type=int, nargs="+", metavar="Y", help=f"|Y| values (default {SOLVER_YS})")
    ap.add_argument("--ks", type=int, nargs="+", metavar="K", help=f"k = |T| = |S| (default {SOLVER_KS})")
    ap.add_argument("--kinds", nargs="+", choices=SOLVER_KINDS, help="solver inputs (default: dense hist)")
    ap.add_argument("--cap", type=float, help=f"per-cell solver time cap, s (default {SOLVER_CAP_S:g})")
    ap.add_argument("--ns", type=int, nargs="+", metavar="N", help=f"sample counts (default {EST_NS})")
    ap.add_argument("--ds", type=int, nargs="+", metavar="D", help=f"feature dims (default {EST_DS})")
    ap.add_argument("--batches", type=int, nargs="+", metavar="B", help=f"batches (default {TRAIN_BATCHES})")
    ap.add_argument("--threads", type=int, nargs="+", metavar="T", help=f"threads (default {TRAIN_THREADS})")
    ap.add_argument(
        "--models",
        nargs="+",
        choices=[m[0] for m in TRAIN_MODELS],
        help="training models (default: all)",
    )
    ap.add_argument("--rounds", type=int, help="timed training rounds (default 7; --quick 3)")
    ap.add_argument("--min-time", type=float, help="s per timed training chunk (default 0.2; --quick 0.05)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every input (default 0)")
    ap.add_argument("--json", metavar="PATH", help="also save every measurement as JSON")
    args = ap.parse_args(argv)

    _positive_ints(ap, "--ys", args.ys)
    _positive_ints(ap, "--ks", args.ks)
    _positive_ints(ap, "--ns", args.ns, EST_K)
    _positive_ints(ap, "--ds", args.ds, EST_PCA)
    _positive_ints(ap, "--batches", args.batches)
    _positive_ints(ap, "--threads", args.threads)
    if args.cap is not None and not args.cap > 0:
        ap.error(f"--cap must be a positive number of seconds, got {args.cap:g}")
    if args.rounds is not None and args.rounds < 1:
        ap.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.min_time is not None and not args.min_time > 0:
        ap.error(f"--min-time must be positive, got {args.min_time:g}")
    want_all = not (args.solver or args.estimate or args.train)
    for section, options in SECTION_OPTIONS.items():
        given = [o for o in options if getattr(args, o.lstrip("-").replace("-", "_")) is not None]
        if given and not (want_all or getattr(args, section)):
            ap.error(f"{'/'.join(given)} apply to the --{section} section; add --{section}")
    ns = args.ns or (QUICK_EST_NS if args.quick else EST_NS)
    ds = args.ds or (QUICK_EST_DS if args.quick else EST_DS)
    if args.estimate or want_all:
        # teacher, student and shared float32 arrays plus the two normalised copies
        need = max(ns) * max(ds) * 4 * 5
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > 0.5 * have:
            ap.error(
                f"n={max(ns)}, d={max(ds)} needs about {need / 2**30:.1f} GiB of features, more than half "
                f"of the {have / 2**30:.0f} GiB of memory; use smaller --ns or --ds"
            )

    info = benchkit.machine_info()
    log(benchkit.machine_line(info))
    results: dict = {"machine": info, "args": vars(args)}
    start = time.perf_counter()

    def section_done(name: str, since: float) -> None:
        results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - since, 1)
        log(f"({name} section: {results['section_seconds'][name]} s)")
        log("")

    if args.solver or want_all:
        t_section = time.perf_counter()
        cap = args.cap if args.cap is not None else (QUICK_SOLVER_CAP_S if args.quick else SOLVER_CAP_S)
        cells = run_solver(
            args.ys or (QUICK_SOLVER_YS if args.quick else SOLVER_YS),
            args.ks or (QUICK_SOLVER_KS if args.quick else SOLVER_KS),
            args.kinds or SOLVER_KINDS,
            cap_s=cap,
            max_reps=3 if args.quick else 5,
            seed=args.seed,
            log=log,
        )
        results["solver"] = cells
        log("")
        log(solver_tables(cells, cap))
        log("")
        section_done("solver", t_section)

    if args.estimate or want_all:
        t_section = time.perf_counter()
        cells = run_estimate(
            ns,
            ds,
            max_reps=1 if args.quick else 3,
            seed=args.seed,
            log=log,
        )
        results["estimate"] = cells
        log("")
        log(estimate_table(cells))
        log("")
        section_done("estimate", t_section)

    if args.train or want_all:
        t_section = time.perf_counter()
        try:
            import torch  # noqa: F401
        except ImportError:
            log("training section skipped: torch is not installed (pip install torch==2.13.0)")
        else:
            models = TRAIN_MODELS if not args.models else [m for m in TRAIN_MODELS if m[0] in args.models]
            rows = run_train(
                args.batches or (QUICK_TRAIN_BATCHES if args.quick else TRAIN_BATCHES),
                args.threads or TRAIN_THREADS,
                models,
                rounds=args.rounds or (3 if args.quick else 7),
                min_time=args.min_time or (0.05 if args.quick else 0.2),
                seed=args.seed,
                log=log,
            )
            results["train"] = rows
            log("")
            log(train_table(rows))
            log("")
            section_done("train", t_section)

    results["seconds"] = round(time.perf_counter() - start, 1)
    log(f"total {results['seconds']} s")
    if args.json:
        benchkit.write_json(args.json, results)
        log(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
