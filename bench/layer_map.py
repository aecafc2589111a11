"""Benchmark: the layer map (``infodistill.layer_map.map_features``) of a 12-layer teacher against a
12-layer student on 2 000 examples, and the discretise-once map against the naive map that runs
``infodistill.pid.estimate`` on every pair's features (PCA and k-means of both layers per pair).

    python bench/layer_map.py [--n 2000] [--layers 12] [--small 4] [--boot 100] [--perm 20]
                              [--rounds 2] [--json out.json]

Features are synthetic and shaped like a small CNN's stages: teacher layers of 16x16x16, 32x8x8 and
64x4x4 (4096, 2048, 1024 values; ``--layers`` of them, the three shapes in turn from shallow to
deep) and student layers of half the channels; every layer is a class mean (growing with depth)
plus Gaussian noise, 10 classes. Settings are the audit's: k = 10, PCA 5, ``--boot`` bootstrap
resamples and ``--perm`` label permutations per pair.

Reported: the wall time of the full map (``--layers`` x ``--layers``, one run) with its split into
discretising the layers and decomposing the pairs; and, on a ``--small`` x ``--small`` map, the
discretise-once map against the naive one, timed in ``--rounds`` interleaved rounds, with their
ratio (median of the per-round ratios) and the largest difference of any term between the two
(the same symbols give the same histograms, so it is at most the solvers' certified gaps).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from infodistill.layer_map import map_features
from infodistill.pid import estimate
from infodistill.pid.terms import TERMS

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402

#: (channels, side) of the teacher's stages, shallow to deep; the student has half the channels.
SHAPES = ((16, 16), (32, 8), (64, 4))


def make_layers(n: int, layers: int, seed: int = 0, n_classes: int = 10):
    """(labels, teacher {name: (n, C, H, W)}, student {name: ...}) float32, seeded."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)

    def side(prefix: str, shrink: int, strength: float) -> dict:
        out = {}
        for i in range(layers):
            c, h = SHAPES[min(i * len(SHAPES) // layers, len(SHAPES) - 1)]
            shape = (c // shrink, h, h)
            dim = int(np.prod(shape))
            means = rng.standard_normal((n_classes, dim), dtype=np.float32)
            signal = strength * (i + 1) / layers
            x = signal * means[y] + rng.standard_normal((n, dim), dtype=np.float32)
            out[f"{prefix}{i + 1}"] = x.reshape(n, *shape)
        return out

    return y, side("t", 1, 0.3), side("s", 2, 0.2)


def naive_map(y, teacher: dict, student: dict, **kw) -> dict:
    """{(t, s): EstimateResult} of every pair through the whole pipeline."""
    return {(t, s): estimate(y, teacher[t], student[s], **kw) for t in teacher for s in student}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="examples (default 2000)")
    ap.add_argument("--layers", type=int, default=12, help="layers per model, full map (default 12)")
    ap.add_argument("--small", type=int, default=4, help="layers of each model in the comparison (default 4)")
    ap.add_argument("--boot", type=int, default=100, help="bootstrap resamples per pair (default 100)")
    ap.add_argument("--perm", type=int, default=20, help="label permutations per pair (default 20)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the comparison (default 2)")
    ap.add_argument("--json", metavar="PATH", help="write the measurements as JSON")
    args = ap.parse_args(argv)
    info = benchkit.machine_info(torch=False, packages=("sklearn", "scipy"))
    print(benchkit.machine_line(info))
    kw = dict(k=10, pca=5, n_boot=args.boot, n_perm=args.perm, seed=0)

    y, teacher, student = make_layers(args.n, args.layers)
    start = time.perf_counter()
    full = map_features(y, teacher, student, **kw)
    wall = time.perf_counter() - start
    pairs = args.layers * args.layers
    print(
        f"\nfull map: {args.layers} x {args.layers} layers, n = {args.n}, k = 10, pca = 5, "
        f"{args.boot} bootstrap resamples + {args.perm} permutations per pair"
    )
    per_pair = full.timings["pairs"] / pairs
    rows = [
        ["map (one run)", benchkit.fmt_s(wall), f"{wall / 60:.2f} min"],
        ["  discretise 2 x layers", benchkit.fmt_s(full.timings["discretize"]), ""],
        ["  decompose pairs", benchkit.fmt_s(full.timings["pairs"]), f"{per_pair:.3f} s a pair"],
    ]
    print(benchkit.text_table(["part", "time s", ""], rows))

    m = args.small
    y2, t2, s2 = make_layers(args.n, m, seed=1)

    def step(which: str):
        return map_features(y2, t2, s2, **kw) if which == "once" else naive_map(y2, t2, s2, **kw)

    once, naive = benchkit.time_rounds(["once", "naive"], step, warmup=1, rounds=args.rounds, min_time=0.0)
    ratio = benchkit.median_ratio(naive.samples, once.samples)
    lmap, ref = once.outputs[-1], naive.outputs[-1]
    diff = max(
        abs(getattr(lmap.cell(t, s), term) - ref[t, s].terms[term]) for (t, s) in ref for term in TERMS
    )
    gaps = max(lmap.cell(t, s).gap + ref[t, s].pid.gap for (t, s) in ref)
    print(f"\ncomparison on a {m} x {m} map (same settings, {args.rounds} interleaved rounds, median):")
    rows = [
        ["discretise once (map_features)", benchkit.fmt_s(float(np.median(once.samples))), "1.00"],
        ["naive: estimate per pair", benchkit.fmt_s(float(np.median(naive.samples))), f"{ratio:.2f}"],
    ]
    print(benchkit.text_table(["path", "time s", "x once"], rows))
    per_pair_naive = float(np.median(naive.samples)) / (m * m)
    print(
        f"largest difference of any term between the two: {diff:.2e} bits (certified gaps: {gaps:.2e})\n"
        f"naive map of {args.layers} x {args.layers} at its per-pair cost: "
        f"{per_pair_naive * pairs / 60:.2f} min (extrapolated, not run)"
    )
    if args.json:
        benchkit.write_json(
            args.json,
            {
                "machine": info,
                "settings": {**kw, "n": args.n, "layers": args.layers, "small": m, "rounds": args.rounds},
                "full_map_s": wall,
                "full_map_timings": full.timings,
                "once_s": once.samples,
                "naive_s": naive.samples,
                "ratio_naive_over_once": ratio,
                "max_term_difference_bits": diff,
                "max_certified_gaps_bits": gaps,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
