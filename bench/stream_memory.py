"""Peak memory of a one-epoch run over a generated image folder, read per item (how the runs read
image folders) against held in memory, for growing folder sizes; and, for growing image sizes, the
automatic evaluation batch against a fixed 1 000 (the default before it).

    python bench/stream_memory.py [--sizes 1000 4000 16000] [--px 64] [--workers 0 1]
                                  [--eval-px 32 64 128] [--eval-images 4000] [--eval-batches auto 1000]

Each measurement is a fresh process running ``train_teacher`` for one epoch of a ``cnn-small``
(width 4) over ``root/<class>/*.png`` (two classes, random pixels, 75 % train); it reports its own
peak RSS (``ru_maxrss``) and that of its DataLoader workers (``RUSAGE_CHILDREN``: the largest
one). "in memory" loads the same folder with ``load_image_folder(lazy=False)`` through a data
factory, i.e. the whole set as one float32 tensor (N * 3 * px * px * 4 bytes). The claim:
streamed, the peak does not grow with the folder (beyond the labels and file names).

The second table runs the same one-epoch run (streamed, no workers, training batch 128) over
``--eval-images`` images of each ``--eval-px`` size, with ``data.eval_batch_size`` automatic
(``auto``: as many examples as fit 16 MiB of input, at least the training batch) and fixed: the
claim is that with the automatic batch the peak grows with the image size only by what one
training batch needs.
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

root, out, mode, workers, eval_batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[6]
if mode == "streamed":
    data = {"name": "image-folder", "root": root}
else:
    data = {"factory": sys.argv[5] + ":eager", "kwargs": {"root": root}}
eval_batch = None if eval_batch == "auto" else int(eval_batch)
data.update(batch_size=128, eval_batch_size=eval_batch, workers=workers)
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


def measure(tmp: Path, folder: Path, mode: str, workers: int, eval_batch: str) -> dict:
    """One run in a fresh process: its peak RSS and its largest worker's, in bytes."""
    out = tmp / f"run-{folder.name}-{mode.replace(' ', '')}-{workers}-{eval_batch}"
    cmd = [sys.executable, "-c", CHILD, str(folder), str(out), mode.split()[0], str(workers)]
    cmd += [str(tmp / "eager_data.py"), eval_batch]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    main_bytes, worker_bytes = map(int, done.stdout.split()[-2:])
    return {"peak_main_bytes": main_bytes, "peak_worker_bytes": worker_bytes}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--px", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--eval-px", type=int, nargs="*", default=[32, 64, 128])
    ap.add_argument("--eval-images", type=int, default=4000)
    ap.add_argument("--eval-batches", nargs="+", default=["auto", "1000"])
    ap.add_argument("--json", help="write the measurements here")
    args = ap.parse_args(argv)
    print(benchkit.machine_line(benchkit.machine_info()), flush=True)
    mib = lambda b: f"{b / 2**20:.0f}"  # noqa: E731
    rows, record, eval_rows, eval_record = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "eager_data.py").write_text(EAGER)
        for n in args.sizes:
            folder = tmp / f"img{n}-{args.px}"
            make_folder(folder, n, args.px)
            held = n * 3 * args.px * args.px * 4
            for mode, w in [("streamed", w) for w in args.workers] + [("in memory", 0)]:
                peak = measure(tmp, folder, mode, w, "auto")
                rows.append(
                    [str(n), mib(held), mode, str(w), mib(peak["peak_main_bytes"])]
                    + [mib(peak["peak_worker_bytes"]) if w else "—"]
                )
                record.append({"images": n, "px": args.px, "mode": mode, "workers": w, **peak})
                print(benchkit.text_table(["images", "float32 MiB", "read", "workers", "peak MiB",
                                           "worker MiB"], rows[-1:]), flush=True)  # fmt: skip
        for px in args.eval_px:
            folder = tmp / f"img{args.eval_images}-{px}"
            if not folder.exists():
                make_folder(folder, args.eval_images, px)
            for eval_batch in args.eval_batches:
                peak = measure(tmp, folder, "streamed", 0, eval_batch)
                one = 3 * px * px * 4
                eval_rows.append([f"{px}x{px}", eval_batch, mib(128 * one), mib(peak["peak_main_bytes"])])
                eval_record.append({"images": args.eval_images, "px": px, "eval_batch": eval_batch, **peak})
                print(benchkit.text_table(["image", "eval batch", "training batch MiB", "peak MiB"],
                                          eval_rows[-1:]), flush=True)  # fmt: skip
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
    if eval_rows:
        print()
        print(f"{args.eval_images} images read per item, one epoch, training batch 128:")
        print(
            benchkit.md_table(
                ["image (RGB)", "data.eval_batch_size", "a training batch's input (MiB)", "peak RSS (MiB)"],
                eval_rows,
                ["---", "---", "---:", "---:"],
            )
        )
    if args.json:
        benchkit.write_json(
            args.json, {"machine": benchkit.machine_info(), "rows": record, "eval_rows": eval_record}
        )


if __name__ == "__main__":
    main()
