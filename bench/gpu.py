"""Benchmark on a CUDA GPU: training throughput of WRN-40-2 -> WRN-16-1 at 3x32x32, and one epoch of
E1's CIFAR-10 setting, on synthetic data, through the real ``distill`` code path.

Usage::

    python bench/gpu.py                  # about 3-5 minutes on one GPU (sized for < 8)
    python bench/gpu.py --quick          # smaller runs, about a minute
    python bench/gpu.py --json out.json  # also write the numbers
    python bench/gpu.py --smoke          # tiny sizes on whatever device there is (a check of the
                                         # script for the test suite; its numbers mean nothing)

Without CUDA (and without ``--smoke``) it prints why and exits with status 2: nothing is measured.

Table 1, throughput: examples/s of the training steps (forward, loss, backward, SGD step; what
each epoch's log record holds as ``examples_per_s``) for the student WRN-16-1 distilled from an
untrained WRN-40-2 (only the cost matters) on ``--train`` synthetic 3x32x32 images (Gaussian
pixels, random labels), batch ``--batch``:

- ``baseline``: cross-entropy only (no teacher forward);
- ``kd cached``: KD with the teacher's logits cached once before training (no teacher forward);
- ``vid`` and ``rid``: E1's settings ([PID-KD], ``experiments/rid/presets.py``): the three stage
  pairs, the teacher forward every step; RID's second epoch of two is its student phase (phase 2;
  the first, the filter phase, trains no student);

each in fp32 (``run.amp=none``) and bf16 autocast (``run.amp=bf16``). Every row is a 2-epoch run
and reports its second epoch (the first carries cuDNN's algorithm search and allocator warm-up).
The ratio is the row's examples/s over the fp32 baseline's, measured in the same run.

Table 2: one epoch of E1's ``cifar10`` preset (VID row: three pairs, lambda = 100, PID tracking of
the three pairs on 1000 test examples, batch 128) on 50 000 + 10 000 synthetic CIFAR-shaped
images, fp32 and bf16: the training steps, the whole epoch (training, test-set evaluation, PID on
the CPU) and the run's wall time (building and the teacher's forward included), with the 200-epoch
time the epoch implies (x 200, an extrapolation, not a measurement).

The data come in through a ``data.factory`` naming this file's :func:`synthetic`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from infodistill.data import ArrayDataset
from infodistill.experiments.rid.presets import PRESETS, distill_config
from infodistill.training.config import DistillConfig, from_dict, to_dict
from infodistill.training.runs import distill

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402

THROUGHPUT_METHODS = ("baseline", "kd", "vid", "rid")
LABELS = {"baseline": "baseline", "kd": "kd cached", "vid": "vid (3 pairs)", "rid": "rid phase 2 (3 pairs)"}
AMPS = ("none", "bf16")
NO_CUDA = (
    "bench/gpu.py measures on a CUDA GPU, and torch.cuda.is_available() is False on this machine: "
    "nothing was measured (bench/train_step.py times the CPU; --smoke checks this script)"
)


def synthetic(n_train: int, n_test: int, seed: int = 0, size: int = 32):
    """CIFAR-shaped data: standard-normal 3 x size x size images, uniform labels of 10 classes."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return (
        ArrayDataset(x[:n_train], y[:n_train], 10, "synthetic-cifar", split="train"),
        ArrayDataset(x[n_train:], y[n_train:], 10, "synthetic-cifar", split="test"),
    )


def _config(
    smoke: bool,
    method: str,
    amp: str,
    device: str,
    out: Path,
    n_train: int,
    n_test: int,
    batch: int,
    epochs: int,
    pid: bool,
) -> DistillConfig:
    """E1's cifar10 config of ``method`` (untrained teacher), on the synthetic data."""
    cfg = to_dict(distill_config(PRESETS["cifar10"], out, "untrained", method, 0, out))
    cfg["data"].update(
        name=None,
        root=None,
        factory=f"{Path(__file__).resolve()}:synthetic",
        kwargs={"n_train": n_train, "n_test": n_test},
        batch_size=batch,
        eval_batch_size=1000,
    )
    cfg["optim"]["epochs"] = epochs
    cfg["run"].update(device=device, amp=amp, out_dir=str(out), threads=None)
    if not pid:
        cfg["pid"]["pairs"] = []
    # 8192 examples' teacher features would fit the cache (50 000 of E1 do not): feature methods
    # run the teacher every step, as in E1; KD's cached logits are its row.
    cfg["run"]["cache_teacher"] = method in ("baseline", "kd")
    if smoke:  # the same code on the smallest WRNs, without bootstrap: seconds on a CPU
        cfg["student"]["name"] = cfg["teacher"]["model"]["name"] = "wrn-10-1"
        cfg["pid"]["n_boot"] = 0
    return from_dict(DistillConfig, cfg)


def run(cfg: DistillConfig) -> tuple[dict, float]:
    t0 = time.perf_counter()
    final = distill(cfg, progress=False)
    return final, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on any device: checks the script only")
    ap.add_argument("--train", type=int, default=8192, help="training examples of a throughput row")
    ap.add_argument("--batch", type=int, default=128, help="batch size of the throughput rows")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print(NO_CUDA, file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    n_train, n_test, batch, e1_train, e1_test = args.train, 1000, args.batch, 50_000, 10_000
    if args.quick:
        n_train, e1_train, e1_test = 2048, 10_000, 2000
    if args.smoke:
        n_train, n_test, batch, e1_train, e1_test = 32, 16, 16, 32, 16
    machine = benchkit.machine_info()
    where = torch.cuda.get_device_name() if cuda else f"CPU ({machine['cpu']})"
    print(benchkit.machine_line(machine))
    print(f"# bench/gpu.py on {where}" + (" (smoke: numbers mean nothing)" if args.smoke else ""))

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for amp in AMPS:
            for method in THROUGHPUT_METHODS:
                out = Path(tmp) / f"{method}-{amp}"
                cfg = _config(args.smoke, method, amp, device, out, n_train, n_test, batch, 2, pid=False)
                final, wall = run(cfg)
                rows.append(
                    {
                        "method": method,
                        "amp": amp,
                        "examples_per_s": final["examples_per_s"],
                        "wall_s": round(wall, 2),
                    }
                )
        base = next(r["examples_per_s"] for r in rows if r["method"] == "baseline" and r["amp"] == "none")
        for r in rows:
            r["ratio"] = r["examples_per_s"] / base

        e1 = []
        for amp in AMPS:
            out = Path(tmp) / f"e1-{amp}"
            cfg = _config(
                args.smoke,
                "vid",
                amp,
                device,
                out,
                e1_train,
                e1_test,
                128 if not args.smoke else batch,
                1,
                pid=True,
            )
            final, wall = run(cfg)
            train_s = e1_train / final["examples_per_s"]
            e1.append(
                {
                    "amp": amp,
                    "train_s": train_s,
                    "epoch_s": final["seconds"],
                    "wall_s": round(wall, 2),
                    "examples_per_s": final["examples_per_s"],
                }
            )
    fp32_epoch = e1[0]["epoch_s"]
    for r in e1:
        r["ratio"] = fp32_epoch / r["epoch_s"]

    print(
        f"\n## Throughput, wrn-40-2 -> wrn-16-1, 3x32x32, batch {batch}, {n_train} examples "
        "(2nd epoch of 2)\n"
    )
    table = [
        [LABELS[r["method"]], _precision(r["amp"]), f"{r['examples_per_s']:.0f}", f"{r['ratio']:.2f}"]
        for r in rows
    ]
    header = ["method", "precision", "examples/s", "ratio to fp32 baseline"]
    print(benchkit.md_table(header, table, ["---", "---", "---:", "---:"]))
    print(
        f"\n## One E1 cifar10 epoch (vid row, {e1_train} + {e1_test} synthetic images, batch 128, "
        "PID of 3 pairs)\n"
    )
    header = [
        "precision",
        "training steps (s)",
        "epoch incl. test + PID (s)",
        "run wall time (s)",
        "200 epochs (x200)",
        "speed-up of the epoch vs fp32",
    ]
    table = [
        [
            _precision(r["amp"]),
            f"{r['train_s']:.1f}",
            f"{r['epoch_s']:.1f}",
            f"{r['wall_s']:.1f}",
            f"{200 * r['epoch_s'] / 3600:.1f} h",
            f"{r['ratio']:.2f}x",
        ]
        for r in e1
    ]
    print(benchkit.md_table(header, table, ["---", *["---:"] * 5]))
    if args.json:
        payload = {
            "machine": machine,
            "device": where,
            "smoke": args.smoke,
            "batch": batch,
            "n_train": n_train,
        }
        benchkit.write_json(args.json, payload | {"throughput": rows, "e1_epoch": e1})
    return 0


def _precision(amp: str) -> str:
    return "fp32" if amp == "none" else amp


if __name__ == "__main__":
    sys.exit(main())
