"""What every benchmark script in bench/ reports the same way: the machine it ran on, times of
repeated runs (medians, best-of, interleaved rounds), ratio and spread statistics of per-round
samples, markdown and plain-text tables, and the JSON file of its measurements.

bench/ is not a package. ``python bench/X.py`` puts bench/ first on ``sys.path``, so a script's
``import benchkit`` finds this file; a script loaded by path (the tests do) adds its own folder
there first, with the same three lines in every script.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infodistill.atomic import atomic_write

__all__ = [
    "Rounds",
    "best_time",
    "cpu_model",
    "fmt_or_dash",
    "fmt_s",
    "machine_info",
    "machine_line",
    "md_table",
    "median_ratio",
    "median_time",
    "spread",
    "text_table",
    "time_rounds",
    "write_json",
]


# ---------------------------------------------------------------------------------------------
# Machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _plural(n, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def machine_info(*, torch: bool = True, packages: Sequence[str] = ()) -> dict:
    """The machine, libraries and thread settings a measurement depends on.

    ``torch=False`` for scripts that never import torch: importing it only to report its version
    would load its OpenMP runtime next to numpy's BLAS in the measured process. ``packages``: other
    modules whose ``__version__`` matters to the script (cvxpy for the solver reference)."""
    info = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "date": datetime.date.today().isoformat(),
    }
    with contextlib.suppress(OSError, AttributeError):
        info["load_avg_1min"] = round(os.getloadavg()[0], 2)
    with contextlib.suppress(OSError):
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
        info["memory_gib"] = round(kb / 2**20, 1)
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            f"{p.get('internal_api')} {p.get('version')} ({_plural(p.get('num_threads'), 'thread')})"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
    except ImportError:
        info["blas"] = []
    if torch:
        try:
            import torch as _torch

            info["torch"] = _torch.__version__
            info["torch_cpu_capability"] = _torch.backends.cpu.get_cpu_capability()
            info["torch_threads"] = _torch.get_num_threads()
        except ImportError:
            info["torch"] = None
    if packages:
        info["packages"] = {}
        for name in packages:
            try:
                info["packages"][name] = getattr(importlib.import_module(name), "__version__", "?")
            except ImportError:
                info["packages"][name] = None
    return info


def machine_line(info: dict) -> str:
    """One line, ``machine: ...``, that every bench script prints first."""
    blas = "; ".join(dict.fromkeys(info["blas"])) or "unknown"
    libs = [f"Python {info['python']}", f"numpy {info['numpy']} (BLAS: {blas})"]
    if "torch" in info:
        libs.append(
            f"torch {info['torch']} ({info['torch_cpu_capability']}, "
            f"{_plural(info['torch_threads'], 'intra-op thread')})"
            if info["torch"]
            else "torch not installed"
        )
    extra = "".join(
        f", {name} {version or 'not installed'}" for name, version in info.get("packages", {}).items()
    )
    mem = f", {info['memory_gib']} GiB" if "memory_gib" in info else ""
    load = f", load avg {info['load_avg_1min']}" if "load_avg_1min" in info else ""
    return (
        f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs ({info['usable_cpus']} usable){mem}, "
        f"{info['os']}; {', '.join(libs)}{extra}; "
        f"OMP_NUM_THREADS={info['OMP_NUM_THREADS'] or 'unset'}, "
        f"OMP_WAIT_POLICY={info['OMP_WAIT_POLICY'] or 'unset'}{load}; {info['date']}"
    )


# ---------------------------------------------------------------------------------------------
# Timing


def median_time(fn: Callable, *, fast_s: float, medium_s: float, max_reps: int):
    """Run ``fn`` once; repeat up to 5 times if that took < fast_s, 3 if < medium_s (capped at
    max_reps). Returns (median seconds, reps, per-run outputs)."""
    outs, times = [], []
    t0 = time.perf_counter()
    outs.append(fn())
    times.append(time.perf_counter() - t0)
    reps = 5 if times[0] < fast_s else 3 if times[0] < medium_s else 1
    for _ in range(min(reps, max(max_reps, 1)) - 1):
        t0 = time.perf_counter()
        outs.append(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times), outs


def best_time(fn: Callable, repeat: int):
    """(best seconds over ``repeat`` runs, the last run's output)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


@dataclass
class Rounds:
    """One timed item: seconds per step in each round, the steps of its chunk, and what the last
    step of each chunk returned."""

    samples: list[float] = field(default_factory=list)
    steps_per_chunk: int = 1
    outputs: list = field(default_factory=list)


def time_rounds(
    items: Sequence,
    step: Callable,
    *,
    prepare: Callable = lambda item: None,
    warmup: int,
    rounds: int,
    min_time: float,
) -> list[Rounds]:
    """Warm up each item (``warmup`` steps, the last one timed to size its chunk to ``min_time``
    seconds), then ``rounds`` rounds that time every item's chunk once, in an order rotated by one
    each round. ``prepare(item)`` runs untimed before the warm-up and before every chunk.

    Short chunks finely interleaved spread bursts of load from other processes over all items
    alike, so per-round ratios between items (``median_ratio``) cancel most of the drift."""
    out = [Rounds() for _ in items]
    for item, rec in zip(items, out, strict=True):
        prepare(item)
        for _ in range(max(warmup - 1, 0)):
            step(item)
        t0 = time.perf_counter()
        step(item)
        rec.steps_per_chunk = max(1, math.ceil(min_time / max(time.perf_counter() - t0, 1e-6)))
    order = list(zip(items, out, strict=True))
    for r in range(rounds):
        shift = r % len(order)
        for item, rec in order[shift:] + order[:shift]:
            prepare(item)
            t0 = time.perf_counter()
            for _ in range(rec.steps_per_chunk):
                result = step(item)
            rec.samples.append((time.perf_counter() - t0) / rec.steps_per_chunk)
            rec.outputs.append(result)
    return out


# ---------------------------------------------------------------------------------------------
# Statistics of per-round samples


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of num / den of the same round."""
    return statistics.median(n / d for n, d in zip(num, den, strict=True))


def spread(samples: Sequence[float]) -> float:
    """(max - min) / median of per-round times."""
    return (max(samples) - min(samples)) / statistics.median(samples)


# ---------------------------------------------------------------------------------------------
# Tables


def fmt_s(x: float) -> str:
    """Three significant digits, never in exponent notation (0.00515, 7.66, 123)."""
    return np.format_float_positional(x, precision=3, unique=False, fractional=False, trim="-")


def fmt_or_dash(x, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A markdown table; ``align`` holds each column's separator cell (``---``, ``---:``)."""
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart (the look of ``EstimateResult.table``)."""
    all_rows = [tuple(header), *map(tuple, rows)]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in all_rows)


# ---------------------------------------------------------------------------------------------
# Output


def write_json(path: str | os.PathLike, payload: dict, *, indent: int = 2) -> None:
    """Save ``payload`` so that an interrupted run leaves the old file or the new one, never half."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # numpy scalars in a measurement are plain numbers to a reader
    atomic_write(target, json.dumps(payload, indent=indent, default=float))


# --------------------------------------------------------------------------------------------------
# The distillation benches (auto_pairs.py, rank_teachers.py): their shared arguments and set-up


def add_distill_arguments(ap, methods: Sequence[str]) -> None:
    """The arguments of a bench that trains MNIST-1D teachers and distils students from them."""
    ap.add_argument("--teacher-epochs", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=10, help="distillation epochs (default 10)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(methods))
    ap.add_argument("--subset", type=int, default=None, help="train/test subset (tiny runs)")
    ap.add_argument("--out", metavar="DIR", help="run directories (default: a temporary one)")
    ap.add_argument("--json", metavar="PATH", help="write the measurements as JSON")


@contextlib.contextmanager
def distill_bench(args):
    """One thread for torch, the machine line printed, and ``(out, subset, info)``: the folder of
    the runs (``--out``, or a temporary one removed at the end), the config overrides of
    ``--subset`` and the machine (:func:`machine_info`)."""
    import tempfile

    import torch

    torch.set_num_threads(1)
    info = machine_info()
    print(machine_line(info))
    subset = (
        [] if args.subset is None else [f"data.train_subset={args.subset}", f"data.test_subset={args.subset}"]
    )
    if args.out:
        yield Path(args.out), subset, info
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp), subset, info
