"""One Fashion-MNIST epoch of small-CNN distillation, end to end (target: < 40 s on 2 CPU cores).

    python bench/fmnist_epoch.py [--method kd] [--width 8] [--teacher-width 32]

Runs the real pipeline (``infodistill.training.runs.build_distillation``) on the 60 000 training
images of Debian's ``dataset-fashion-mnist``: one epoch of a ``cnn-small`` student distilled from a
larger ``cnn-small`` teacher (untrained here: only the time is measured), with the teacher's outputs
cached (fixed data). Prints the epoch's training time (from the run log) and the wall time of the
whole command, including data loading, caching and the test-set evaluation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from infodistill.training.config import DistillConfig, load_config
from infodistill.training.rundir import read_log
from infodistill.training.runs import build_distillation

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="kd")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--teacher-width", type=int, default=32)
    args = ap.parse_args(argv)
    print(benchkit.machine_line(benchkit.machine_info()), flush=True)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        cfg = load_config(
            DistillConfig,
            None,
            [
                "data.name=fashion-mnist",
                "data.batch_size=128",
                "optim.epochs=1",
                "student.name=cnn-small",
                f"student.kwargs={{width: {args.width}}}",
                "teacher.kind=untrained",
                "teacher.model.name=cnn-small",
                f"teacher.model.kwargs={{width: {args.teacher_width}}}",
                f"method.name={args.method}",
                f"run.out_dir={out}",
            ],
        )
        fit = build_distillation(cfg, progress=False)
        t_built = time.perf_counter()
        fit.run()
        total = time.perf_counter() - t0
        epoch = read_log(f"{out}/log.jsonl")[-1]["seconds"]
    rows = [
        ["epoch (train + test evaluation)", f"{epoch:.1f}", "40", "pass" if epoch < 40 else "FAIL"],
        ["whole command (load, cache teacher, epoch)", f"{total:.1f}", "—", f"build {t_built - t0:.1f} s"],
    ]
    print(benchkit.md_table(["what", "seconds", "target", "result"], rows, ["---", "---:", "---:", "---"]))


if __name__ == "__main__":
    main()
