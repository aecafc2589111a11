"""Seeded sweep of random joints through ``decompose``: every valid joint must come back certified.

Usage::

    python bench/fuzz_decompose.py --n 10000 --seed 0            # the full sweep (summary at the end)
    python bench/fuzz_decompose.py --n 1 --seed 0 --start 4711   # replay joint 4711 of seed 0
    python bench/fuzz_decompose.py --n 500 --symmetry-every 5 --json out.json
    python bench/fuzz_decompose.py --sparse --n 300 --seed 0      # the cell route's sparse joints
    python bench/fuzz_decompose.py --many-labels --n 200 --seed 0 # 17-100 labels

Joint ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])`` alone, so any failure
is replayed by its (seed, index). The generator covers every axis size 1..32 (often one or two tiny
axes, T and S of very different sizes), supports of 5–100 % of the grid, dense float joints, integer
count histograms (``counts=True``) and very skewed masses (cell weights spread over up to 15 orders
of magnitude). Each result is checked against quantities computed here independently of the
solver (mutual informations from the marginals of p, the marginals of the returned Q):

* no exception, no warning, ``gap <= tol`` (the default tolerance) and ``gap >= 0``; a result above
  the tolerance that ``decompose`` reports with its RuntimeWarning is counted apart as
  "uncertified" (and must still pass the checks below within its gap);
* every term ``>= -gap``; Red ≤ min(I(Y;T), I(Y;S)) + gap;
* I(Y;T) = Red + Uni_T, I(Y;S) = Red + Uni_S, I(Y;T,S) = Red + Uni_T + Uni_S + Syn, to within the
  gap plus the rounding of the mutual informations (``slack`` below);
* Q lies in Δ_P and I_Q(Y;T,S) is the reported upper value min_mi;
* on every ``--symmetry-every``-th joint, the decomposition of p with T and S swapped has the same
  terms (Uni_T and Uni_S exchanged) within the two gaps.

It prints the machine, one line per failure (seed, index, shape, kind, what failed) and a summary:
how many joints, how many certified, the largest gap, the slowest joint and the total time.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from infodistill.pid import decompose
from infodistill.pid.decompose import DEFAULT_TOL_BITS

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402

KINDS = ("dense", "counts", "skewed")


def make_joint(seed: int, index: int) -> tuple[np.ndarray, str, bool]:
    """Joint number ``index`` of the sweep ``seed``: (array, kind, counts flag)."""
    rng = np.random.default_rng([seed, index])
    mode = rng.integers(5)
    if mode == 0:  # uniform sizes
        shape = rng.integers(1, 33, size=3)
    elif mode == 1:  # a one-symbol axis somewhere
        shape = rng.integers(1, 33, size=3)
        shape[rng.integers(3)] = 1
    elif mode == 2:  # T and S of very different sizes
        shape = np.array([rng.integers(1, 33), rng.integers(1, 4), rng.integers(20, 33)])
        if rng.random() < 0.5:
            shape[1], shape[2] = shape[2], shape[1]
    elif mode == 3:  # small problems (most degenerate cases live here)
        shape = rng.integers(1, 6, size=3)
    else:  # many labels
        shape = np.array([rng.integers(16, 33), rng.integers(1, 33), rng.integers(1, 33)])
    shape = tuple(int(n) for n in shape)
    kind = KINDS[rng.integers(len(KINDS))]
    density = rng.uniform(0.05, 1.0)
    mask = rng.random(shape) < density
    if not mask.any():
        mask.flat[rng.integers(mask.size)] = True
    if kind == "counts":
        n = int(rng.choice([20, 100, 1000, 100_000]))
        w = rng.dirichlet(np.full(int(mask.sum()), 0.5))
        p = np.zeros(shape, dtype=np.int64)
        p[mask] = rng.multinomial(n, w)
        if p.sum() == 0:
            p.flat[np.flatnonzero(mask)[0]] = 1
        return p, kind, True
    if kind == "skewed":
        w = 10.0 ** rng.uniform(-rng.uniform(1, 15), 0, size=int(mask.sum()))
    else:
        w = rng.random(int(mask.sum()))
    p = np.zeros(shape)
    p[mask] = w
    return p / p.sum(), kind, False


def make_sparse_joint(seed: int, index: int) -> tuple[np.ndarray, str, bool]:
    """Joint number ``index`` of the sparse sweep ``seed`` (``--sparse``): supports filling 1–30 %
    of larger grids (Y 2–16, T and S 16–128), the joints of the solver's cell route
    (``broja.cells``), which the main sweep's sizes rarely reach. Kinds: "hist" (a histogram of
    500–20 000 samples in which each label has a few home clusters in T and S, as in representation
    PID; ``counts=True``), "hist-skewed" (its cells reweighted over up to 8 orders of magnitude) and
    "masked" (uniform weights on part of a random support: each label with its own T and S
    symbols). Drawn from ``default_rng([seed, index, 1])``, a stream of its own."""
    rng = np.random.default_rng([seed, index, 1])
    shape = (int(rng.integers(2, 17)), int(rng.integers(16, 129)), int(rng.integers(16, 129)))
    return _clustered_joint(rng, shape)


def make_many_label_joint(seed: int, index: int) -> tuple[np.ndarray, str, bool]:
    """Joint number ``index`` of the many-label sweep ``seed`` (``--many-labels``): the kinds of the
    sparse sweep with 17–100 labels and T, S 8–96 (histograms of 100-class data, or of 20 classes and
    many clusters), where the cell route, pair space and the sparse Schur complement compete. Drawn
    from ``default_rng([seed, index, 2])``."""
    rng = np.random.default_rng([seed, index, 2])
    shape = (int(rng.integers(17, 101)), int(rng.integers(8, 97)), int(rng.integers(8, 97)))
    return _clustered_joint(rng, shape)


def _clustered_joint(rng: np.random.Generator, shape) -> tuple[np.ndarray, str, bool]:
    """A "hist", "hist-skewed" or "masked" joint of ``shape`` (``make_sparse_joint``)."""
    Y, T, S = shape
    kind = ("hist", "hist-skewed", "masked")[rng.integers(3)]
    if kind == "masked":
        # Each label uses its own random fractions of the T and S symbols (the support of Δ_P is
        # their product per label), and p is positive on part of those cells.
        m_t = rng.random((Y, T)) < rng.uniform(0.05, 0.5)
        m_s = rng.random((Y, S)) < rng.uniform(0.05, 0.5)
        mask = m_t[:, :, None] & m_s[:, None, :] & (rng.random(shape) < rng.uniform(0.3, 1.0))
        if not mask.any():
            mask.flat[rng.integers(mask.size)] = True
        p = np.zeros(shape)
        p[mask] = rng.random(int(mask.sum()))
        return p / p.sum(), kind, False
    n = int(rng.integers(500, 20_001))
    y = rng.integers(Y, size=n)
    k = int(rng.integers(1, 5))
    home_t, home_s = rng.integers(T, size=(Y, k)), rng.integers(S, size=(Y, k))
    at_home = rng.random(n) < rng.uniform(0.8, 1.0)
    t = np.where(at_home, home_t[y, rng.integers(k, size=n)], rng.integers(T, size=n))
    s = np.where(rng.random(n) < rng.uniform(0.3, 1.0), home_s[y, rng.integers(k, size=n)], (t * S) // T)
    s = np.where(rng.random(n) < rng.uniform(0.0, 0.05), rng.integers(S, size=n), s)
    counts = np.zeros(shape, dtype=np.int64)
    np.add.at(counts, (y, t, s), 1)
    if kind == "hist":
        return counts, kind, True
    w = counts * 10.0 ** rng.uniform(-rng.uniform(1, 8), 0, size=shape)
    return w / w.sum(), kind, False


def _mi(p2: np.ndarray) -> float:
    """I(X;Z) in bits of a 2-D joint, computed as Σ p log p/(p_x p_z) (not from entropies).

    The ratio is taken as a difference of logs: a Q cell can be subnormal (1.5e-323) with its
    marginal p_z equally tiny, and the product p_x·p_z then underflows to 0 (an infinite term;
    seen on seed-0 joint 2880, where the solver's result was fine)."""
    px, pz = p2.sum(axis=1, keepdims=True), p2.sum(axis=0, keepdims=True)
    m = p2 > 0
    px, pz = np.broadcast_to(px, p2.shape)[m], np.broadcast_to(pz, p2.shape)[m]
    return float((p2[m] * (np.log2(p2[m]) - np.log2(px) - np.log2(pz))).sum())


def check(p: np.ndarray, counts: bool, symmetry: bool) -> tuple[list[str], float, float]:
    """Decompose p and check the result; returns (problems, gap in bits, seconds).

    A result above the tolerance is a problem unless ``decompose`` said so with its RuntimeWarning;
    such a result must still pass every other check within the gap it reports."""
    tol = DEFAULT_TOL_BITS
    problems: list[str] = []
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = decompose(p, counts=counts)
    except Exception as exc:  # the sweep reports every kind of failure
        return [f"{type(exc).__name__}: {exc}"], float("nan"), time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    warned = False
    for w in caught:
        if issubclass(w.category, RuntimeWarning) and "certified a gap of" in str(w.message):
            warned = True  # an honest report of an uncertified result: counted, then checked below
        else:
            problems.append(f"{w.category.__name__}: {w.message}")
    pn = p / p.sum()
    Y, T, S = pn.shape
    mi_t, mi_s = _mi(pn.sum(axis=2)), _mi(pn.sum(axis=1))
    mi_joint = _mi(pn.reshape(Y, T * S))
    gap = r.gap
    # The three mutual informations above and the solver's are sums of up to Y·T·S terms of size
    # at most -p log p: their rounding is bounded by a few ulps of that many terms.
    slack = gap + 64 * np.finfo(float).eps * max(1.0, np.log2(pn.size + 1)) * (1 + pn.size) ** 0.5
    if not 0.0 <= gap:
        problems.append(f"negative gap {gap!r}")
    if not np.isfinite(gap) or gap > tol and not warned:
        problems.append(f"gap {gap:.3g} bits above tol={tol:.3g} without a warning")
    terms = dict(red=r.redundancy, uni_t=r.unique_t, uni_s=r.unique_s, syn=r.synergy)
    for name, v in terms.items():
        if not v >= -gap:
            problems.append(f"{name} = {v:.3g} < -gap")
    identities = {
        "I(Y;T) = Red + Uni_T": (mi_t, terms["red"] + terms["uni_t"]),
        "I(Y;S) = Red + Uni_S": (mi_s, terms["red"] + terms["uni_s"]),
        "I(Y;T,S) = sum of terms": (mi_joint, sum(terms.values())),
    }
    for name, (want, got) in identities.items():
        if not abs(want - got) <= 4 * slack:
            problems.append(f"{name}: {want!r} vs {got!r}")
    if not terms["red"] <= min(mi_t, mi_s) + slack:
        problems.append(f"Red {terms['red']!r} > min(I(Y;T), I(Y;S)) {min(mi_t, mi_s)!r}")
    q = r.q
    if not (
        np.all(q >= 0)
        and np.allclose(q.sum(axis=2), pn.sum(axis=2), rtol=0, atol=1e-12)
        and np.allclose(q.sum(axis=1), pn.sum(axis=1), rtol=0, atol=1e-12)
    ):
        problems.append("Q is not in Δ_P")
    else:
        i_q = _mi(q.reshape(Y, T * S))
        if not abs(i_q - r.min_mi) <= 4 * slack + 1e-9:
            problems.append(f"I_Q(Y;T,S) {i_q!r} is not min_mi {r.min_mi!r}")
    if symmetry:
        try:
            with warnings.catch_warnings():
                # the swapped problem may be uncertified too (then said so): its gap enters below
                warnings.simplefilter("error")
                warnings.filterwarnings(
                    "ignore", message="BROJA solver certified a gap", category=RuntimeWarning
                )
                rs = decompose(p.transpose(0, 2, 1), counts=counts)
        except Exception as exc:
            problems.append(f"swapped T, S: {type(exc).__name__}: {exc}")
        else:
            both = gap + rs.gap + 2 * slack
            pairs = [
                (r.redundancy, rs.redundancy),
                (r.unique_t, rs.unique_s),
                (r.unique_s, rs.unique_t),
                (r.synergy, rs.synergy),
            ]
            if not all(abs(a - b) <= 2 * both for a, b in pairs):
                problems.append(f"not symmetric in T, S: {pairs}")
    return problems, gap, seconds


#: The summary lists this many of the slowest joints.
SLOWEST_KEPT = 5

#: The sweeps, by name: each draws joint ``index`` of a seed from its own generator.
SWEEPS = {"main": make_joint, "sparse": make_sparse_joint, "many-label": make_many_label_joint}


def sweep(
    n: int,
    seed: int = 0,
    start: int = 0,
    symmetry_every: int = 10,
    out=sys.stdout,
    joints: str = "main",
) -> dict:
    """Run joints start..start+n-1 of ``seed`` of the sweep named ``joints`` (``SWEEPS``); returns the
    summary (and prints failures)."""
    make = SWEEPS[joints]
    failures, uncertified = [], []
    certified = 0
    max_gap, times = 0.0, []
    t0 = time.perf_counter()
    for i in range(start, start + n):
        p, kind, counts = make(seed, i)
        problems, gap, seconds = check(p, counts, symmetry_every > 0 and i % symmetry_every == 0)
        if gap == gap and 0 <= gap <= DEFAULT_TOL_BITS:
            certified += 1
        elif not problems:
            uncertified.append(dict(seed=seed, index=i, shape=list(p.shape), kind=kind, gap_bits=gap))
            if out is not None:
                print(
                    f"UNCERTIFIED (warned) seed={seed} index={i} shape={p.shape} kind={kind}: "
                    f"gap {gap:.3g} bits",
                    file=out,
                )
        if gap == gap:
            max_gap = max(max_gap, gap)
        times.append((seconds, dict(index=i, shape=list(p.shape), kind=kind)))
        if problems:
            failures.append(dict(seed=seed, index=i, shape=list(p.shape), kind=kind, problems=problems))
            if out is not None:
                what = "; ".join(problems)
                print(f"FAIL seed={seed} index={i} shape={p.shape} kind={kind}: {what}", file=out)
                out.flush()
    summary = dict(
        joints=joints,
        n=n,
        seed=seed,
        start=start,
        certified=certified,
        uncertified=len(uncertified),
        failures=len(failures),
        max_gap_bits=max_gap,
        worst_seconds=max(times, key=lambda x: x[0], default=(0.0, None))[0],
        worst_case=max(times, key=lambda x: x[0], default=(0.0, None))[1],
        # The SLOWEST_KEPT slowest joints, slowest first (where the solver's time goes).
        slowest=[dict(seconds=t, **case) for t, case in sorted(times, key=lambda x: -x[0])[:SLOWEST_KEPT]],
        total_seconds=time.perf_counter() - t0,
        failed=failures,
        uncertified_cases=uncertified,
    )
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="number of joints (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first joint index (to replay one: --n 1)")
    ap.add_argument("--symmetry-every", type=int, default=10, help="check T<->S symmetry on every k-th joint")
    ap.add_argument("--json", help="also write the summary as JSON here")
    which = ap.add_mutually_exclusive_group()
    which.add_argument(
        "--sparse",
        dest="joints",
        action="store_const",
        const="sparse",
        default="main",
        help="the sparse sweep (make_sparse_joint: the cell route's joints)",
    )
    which.add_argument(
        "--many-labels",
        dest="joints",
        action="store_const",
        const="many-label",
        help="the many-label sweep (make_many_label_joint)",
    )
    args = ap.parse_args(argv)
    machine = benchkit.machine_info(torch=False)
    print(benchkit.machine_line(machine), flush=True)
    s = sweep(args.n, args.seed, args.start, args.symmetry_every, joints=args.joints)
    s["machine"] = machine
    sweep_name = "" if args.joints == "main" else args.joints + " "
    print(
        f"{s['n']} {sweep_name}joints (seed {s['seed']}, from {s['start']}): "
        f"{s['certified']} certified, "
        f"{s['uncertified']} uncertified (with a warning), {s['failures']} failed; "
        f"max gap {s['max_gap_bits']:.3g} bits; slowest {s['worst_seconds']:.2f} s "
        f"{s['worst_case']}; total {s['total_seconds']:.0f} s"
    )
    slowest = (f"{c['index']} {c['kind']} {c['seconds']:.2f} s" for c in s["slowest"])
    print("slowest joints: " + ", ".join(slowest))
    if args.json:
        benchkit.write_json(args.json, s, indent=1)
    return 1 if s["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
