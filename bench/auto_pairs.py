"""``method.pairs: auto`` against the paper's fixed three stage pairs, on MNIST-1D, paired by seed.

    python bench/auto_pairs.py [--teacher-epochs 15] [--epochs 10] [--seeds 0 1 2]
                               [--methods vid rid] [--subset N] [--out DIR] [--json PATH]

One teacher (configs/teacher-mnist1d.yaml, cnn1d width 64, ``--teacher-epochs``); each of
``--methods`` (configs/distill-mnist1d-*.yaml, student cnn1d width 8, ``--epochs`` epochs) is run
for every seed twice: with the three stage pairs [PID-KD] distils (stage1-stage1, stage2-stage2,
stage3-stage3) and with ``method.pairs: auto`` (the pairing the layer map suggests, measured on
the first 2 000 training examples against the student at its initialisation). Printed per method:
the pairs auto chose (per seed), the final test accuracy of both (mean over seeds), the paired
difference auto - fixed (mean ± standard error) and the wall time of a run (mean; auto's includes
its map), with the time ratio auto / fixed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402

ROOT = HERE.parent
FIXED = "[[stage1, stage1], [stage2, stage2], [stage3, stage3]]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchkit.add_distill_arguments(ap, methods=["vid", "rid"])
    args = ap.parse_args(argv)
    with benchkit.distill_bench(args) as (out, subset, info):
        return measure(args, out, subset, info)


def measure(args, out: Path, subset: list, info: dict) -> int:
    from infodistill.layer_map import auto_pairs
    from infodistill.training.config import DistillConfig, TeacherTrainConfig, load_config
    from infodistill.training.runs import distill, train_teacher

    teacher = out / "teacher"
    cfg = load_config(
        TeacherTrainConfig,
        ROOT / "configs" / "teacher-mnist1d.yaml",
        [f"optim.epochs={args.teacher_epochs}", f"run.out_dir={teacher}", *subset],
    )
    teacher_acc = train_teacher(cfg, progress=False)["test"]["accuracy"]

    def run(method: str, pairs: str, seed: int) -> tuple[float, float, list]:
        over = [
            f"optim.epochs={args.epochs}",
            f"run.seed={seed}",
            f"teacher.checkpoints=[{teacher}]",
            f"method.pairs={pairs}",
            f"run.out_dir={out / f'{method}-{pairs[:4]}-s{seed}'}",
            *subset,
        ]
        cfg = load_config(DistillConfig, ROOT / "configs" / f"distill-mnist1d-{method}.yaml", over)
        start = time.perf_counter()
        final = distill(cfg, progress=False, pair_resolver=auto_pairs)
        seconds = time.perf_counter() - start
        import json

        chosen = json.loads((Path(cfg.run.out_dir) / "config.json").read_text())["method"]["pairs"]
        return float(final["test"]["accuracy"]), seconds, chosen

    rows, results = [], {}
    for method in args.methods:
        got = {kind: {s: run(method, FIXED if kind == "fixed" else "auto", s) for s in args.seeds} for kind in
               ("fixed", "auto")}  # fmt: skip
        diff = [got["auto"][s][0] - got["fixed"][s][0] for s in args.seeds]
        se = statistics.stdev(diff) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        t_fixed = float(np.mean([got["fixed"][s][1] for s in args.seeds]))
        t_auto = float(np.mean([got["auto"][s][1] for s in args.seeds]))
        chosen = {s: got["auto"][s][2] for s in args.seeds}
        results[method] = {
            "accuracy": {k: {s: v[0] for s, v in got[k].items()} for k in got},
            "seconds": {k: {s: v[1] for s, v in got[k].items()} for k in got},
            "auto_pairs": chosen,
            "difference": float(np.mean(diff)),
            "se": float(se),
        }
        for kind in ("fixed", "auto"):
            acc = 100 * np.mean([got[kind][s][0] for s in args.seeds])
            t = t_fixed if kind == "fixed" else t_auto
            pairs = "3 stage pairs" if kind == "fixed" else "; ".join(
                f"s{s}: {' '.join(f'{a}<-{b}' for a, b in chosen[s]) or '-'}" for s in args.seeds
            )  # fmt: skip
            rows.append([method, kind, pairs, f"{acc:.2f}", f"{t:.1f}"])
        rows.append([method, "auto - fixed", "", f"{100 * np.mean(diff):+.2f} ± {100 * se:.2f}",
                     f"x {t_auto / t_fixed:.2f}"])  # fmt: skip
    print(
        f"\nteacher: cnn1d width 64, {args.teacher_epochs} epochs, test accuracy {100 * teacher_acc:.2f} %; "
        f"students: cnn1d width 8, {args.epochs} epochs, seeds {args.seeds}"
    )
    print(benchkit.text_table(["method", "pairs", "which", "accuracy %", "s a run"], rows))
    if args.json:
        benchkit.write_json(args.json, {"machine": info, "settings": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
