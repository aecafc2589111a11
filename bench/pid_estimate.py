"""Benchmark: end-to-end time of ``infodistill.pid.estimate`` at the size of a 10k test set.

Run ``python bench/pid_estimate.py``. Synthetic 512-dim teacher/student features for 10 classes
(class means plus Gaussian noise, and a shared nuisance component so T and S are dependent beyond
the label); k = 10, PCA to 5 dims (the [PID-KD] pipeline). Targets: < 2 s without bootstrap,
< 10 s with ``n_boot=100``. Each case is timed as the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from infodistill.pid import estimate, sweep

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402


def make_data(n: int = 10_000, dim: int = 512, n_classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    shared = rng.normal(size=(n, dim))
    mean_t = rng.normal(size=(n_classes, dim))
    mean_s = rng.normal(size=(n_classes, dim))
    # The student sees the class about half as clearly as the teacher.
    t = 0.15 * mean_t[y] + rng.normal(size=(n, dim)) + 0.5 * shared
    s = 0.08 * mean_s[y] + rng.normal(size=(n, dim)) + 0.5 * shared
    return y, t.astype(np.float32), s.astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print(benchkit.machine_line(benchkit.machine_info(torch=False, packages=("sklearn",))))
    print()

    y, t, s = make_data()
    cases = [
        ("estimate n=10k d=512 k=10", 2.0, lambda: estimate(y, t, s, k=10)),
        ("estimate + n_boot=100", 10.0, lambda: estimate(y, t, s, k=10, n_boot=100)),
        ("held-out fit_fraction=0.5", 2.0, lambda: estimate(y, t, s, k=10, fit_fraction=0.5)),
        ("sweep k=3,5,10,20", None, lambda: sweep(y, t, s, k=(3, 5, 10, 20))),
    ]
    rows, ok, last = [], True, {}
    for name, target, fn in cases:
        sec, res = benchkit.best_time(fn, args.repeat)
        last[name] = res
        verdict = "-" if target is None else ("pass" if sec < target else "FAIL")
        ok &= verdict != "FAIL"
        rows.append((name, f"{sec:.3f}", "-" if target is None else f"{target:g}", verdict))

    print(benchkit.text_table(("case", "time s", "target s", "result"), rows))
    print()
    print(last["estimate + n_boot=100"].table())
    print()
    print(last["sweep k=3,5,10,20"].table())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
