"""Peak memory of a one-epoch run over a generated image folder, read per item (how the runs read
image folders) against held in memory, for growing folder sizes.

    python bench/stream_memory.py [--sizes 1000 4000 16000] [--px 64] [--workers 0 1]

Each measurement is a fresh process running ``train_teacher`` for one epoch of a ``cnn-small``
(width 4) over ``root/<class>/*.png`` (two classes, random pixels, 75 % train); it reports its own
peak RSS (``ru_maxrss``) and that of its DataLoader workers (``RUSAGE_CHILDREN``: the largest
one). "in memory" loads the same folder with ``load_image_folder(lazy=False)`` through a data
factory, i.e. the whole set as one float32 tensor (N * 3 * px * px * 4 bytes). The claim:
streamed, the peak does not grow with the folder (beyond the labels and file names).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402

CHILD = r"""
import resource, sys
from infodistill.training.config import TeacherTrainConfig, from_dict
from infodistill.training.runs import train_teacher

root, out, mode, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if mode == "streamed":
    data = {"name": "image-folder", "root": root}
else:
    data = {"factory": sys.argv[5] + ":eager", "kwargs": {"root": root}}
data.update(batch_size=128, eval_batch_size=256, workers=workers)
cfg = from_dict(TeacherTrainConfig, {
    "data": data,
    "model": {"name": "cnn-small", "kwargs": {"width": 4}},
    "optim": {"epochs": 1},
    "run": {"seed": 0, "threads": 1, "device": "cpu", "out_dir": out},
})
train_teacher(cfg, progress=False)
self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(self_kib * 1024, child_kib * 1024)  # bytes: the run's process, its largest worker
"""

EAGER = """
from infodistill.data import load_image_folder


def eager(root):
    return load_image_folder(root, lazy=False)
"""


def make_folder(root: Path, n: int, px: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n // 2):
            Image.fromarray(rng.integers(0, 256, (px, px, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--px", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--json", help="write the measurements here")
    args = ap.parse_args(argv)
    print(benchkit.machine_line(benchkit.machine_info()), flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    rows, record = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "eager_data.py").write_text(EAGER)
        for n in args.sizes:
            make_folder(tmp / f"img{n}", n, args.px)
            held = n * 3 * args.px * args.px * 4
            runs = [("streamed", w) for w in args.workers] + [("in memory", 0)]
            for mode, w in runs:
                out = tmp / f"run-{n}-{mode.replace(' ', '')}-{w}"
                cmd = [sys.executable, "-c", CHILD, str(tmp / f"img{n}"), str(out), mode.split()[0], str(w)]
                done = subprocess.run(
                    [*cmd, str(tmp / "eager_data.py")], capture_output=True, text=True, env=env
                )
                if done.returncode != 0:
                    raise SystemExit(done.stderr[-2000:])
                main_bytes, worker_bytes = map(int, done.stdout.split()[-2:])
                peak = {"peak_main_bytes": main_bytes, "peak_worker_bytes": worker_bytes}
                rows.append(
                    [
                        str(n),
                        f"{held / 2**20:.0f}",
                        mode,
                        str(w),
                        f"{peak['peak_main_bytes'] / 2**20:.0f}",
                        f"{peak['peak_worker_bytes'] / 2**20:.0f}" if w else "—",
                    ]
                )
                record.append({"images": n, "px": args.px, "mode": mode, "workers": w, **peak})
                print(
                    benchkit.text_table(
                        ["images", "float32 MiB", "read", "workers", "peak RSS MiB", "largest worker MiB"],
                        rows[-1:],
                    ),
                    flush=True,
                )
    print()
    print(
        benchkit.md_table(
            [
                "images",
                "the set as float32 (MiB)",
                "read",
                "workers",
                "peak RSS, main (MiB)",
                "peak RSS, largest worker (MiB)",
            ],
            rows,
            ["---:", "---:", "---", "---:", "---:", "---:"],
        )
    )
    if args.json:
        benchkit.write_json(args.json, {"machine": benchkit.machine_info(), "rows": record})


if __name__ == "__main__":
    main()
