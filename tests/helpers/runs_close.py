"""Two runs made by different code paths (in memory vs read per item, workers vs none, torchrun vs
one process, GPU vs CPU, a method at zero weight vs the baseline), compared within the rounding of
their float32 sums.

Why a tolerance: two paths that compute the same quantities may add them in another order (a
batch stacked by a worker vs sliced from memory, DDP's all-reduce, another CPU's vector width:
AVX2 and AVX-512 kernels split a reduction differently). A float32 sum of n terms in another
order differs by at most about n·eps times the sum of the terms' magnitudes (eps = 1.19e-7), and
training carries a step's difference into later steps. The runs these tests compare are a few
epochs of a few hundred examples each (n·eps about 1e-5 for a mean over a hundred terms), so
scalars are compared to RTOL = 1e-4 relative with ATOL = 1e-5 absolute (a KL near zero is a
difference of log-probabilities of magnitude ~1, so its rounding is absolute, not relative to
itself), and tensors as wholes, ||a - b|| <= RTOL ||b|| + ATOL sqrt(numel): an entry that is a sum
of cancelling gradients (a momentum buffer near 0) errs relative to its summands, not to itself.
Anything the comparisons are there to catch (another batch, a missing augmentation, one shard
evaluated instead of the whole set, a wrong gradient scale) moves these by 1e-3 and more.
Counts are compared by what one example can move: accuracy and agreement to within one example of
n, ECE (binned confidences) to within two. Integers, strings and the RNG states are compared exactly.

Where one code path runs twice (a resume after a kill, a rerun with the same seed) the tests
compare exactly, not with these helpers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

RTOL, ATOL = 1e-4, 1e-5
#: the log fields that measure time (an epoch's, its training rate's, the PID tracker's): they
#: differ between any two runs, so every comparison of logs leaves them out
TIMING = ("seconds", "examples_per_s", "extra_seconds")


def read_log(out: Path) -> list[dict]:
    """The run's log.jsonl without the timing fields (they differ between any two runs)."""
    lines = (Path(out) / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def assert_records_close(a, b, rtol: float = RTOL, atol: float = ATOL, where: str = "") -> None:
    """Nested dicts/lists of a log or a report: same keys and structure, floats within the
    tolerance, accuracy/agreement within one example, ECE within two, everything else equal."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and set(a) == set(b), (where, sorted(a), sorted(b))
        n = b.get("n")
        for k, v in b.items():
            if k in TIMING:
                continue
            if isinstance(n, int) and n > 0 and k in ("accuracy", "agreement", "ece"):
                examples = 2 if k == "ece" else 1  # a confidence crossing a bin edge moves ECE < 2/n
                assert abs(a[k] - v) * n <= examples + 1e-9, (f"{where}{k}", a[k], v)
            else:
                assert_records_close(a[k], v, rtol, atol, f"{where}{k}.")
    elif isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_records_close(x, y, rtol, atol, f"{where}{i}.")
    elif isinstance(b, float) and not isinstance(a, bool):
        assert isinstance(a, (int, float)), (where, a, b)
        assert abs(a - b) <= atol + rtol * abs(b), (where.rstrip("."), a, b)
    else:
        assert a == b, (where.rstrip("."), a, b)


def assert_tensors_close(a: dict, b: dict, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Same names; floating tensors within the norm bound, the others (RNG states, counters) equal."""
    assert set(a) == set(b), sorted(set(a) ^ set(b))
    for k, v in b.items():
        assert a[k].shape == v.shape and a[k].dtype == v.dtype, k
        if v.is_floating_point():
            diff, ref = float((a[k].double() - v.double()).norm()), float(v.double().norm())
            bound = rtol * ref + atol * v.numel() ** 0.5
            assert diff <= bound, (k, f"||a-b|| = {diff:.3g}, ||b|| = {ref:.3g}, bound {bound:.3g}")
        else:
            assert torch.equal(a[k], v), k


def checkpoints(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Every kept checkpoint's tensors, by its folder name."""
    return {p.parent.name: load_file(str(p)) for p in sorted(Path(out).glob("epoch-*/tensors.safetensors"))}


def assert_runs_close(out_a: Path, out_b: Path, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Two run directories: the same log lines and the same checkpoints, within the tolerance."""
    assert_records_close(read_log(out_a), read_log(out_b), rtol, atol)
    ca, cb = checkpoints(out_a), checkpoints(out_b)
    assert set(ca) == set(cb) and cb, (sorted(ca), sorted(cb))
    for name in cb:
        assert_tensors_close(ca[name], cb[name], rtol, atol)
