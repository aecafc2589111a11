"""Does the audit's teacher ranking predict what distilling from each teacher gains? MNIST-1D.

    python bench/rank_teachers.py [--teacher-epochs 15] [--epochs 10] [--seeds 0 1 2]
                                  [--methods kd rid] [--n 1000] [--boot 100] [--student-labels N]
                                  [--out DIR] [--json PATH]

Candidate teachers (cnn1d width 64, configs/teacher-mnist1d.yaml): trained for ``--teacher-epochs``
epochs, for 3 epochs, for 1 epoch, and untrained. The audit ranks them for the student before
distillation (cnn1d width 8, untrained, seed 0): Uni(Y:T\\S) at each teacher's best stage against
the student's last stage, on the first ``--n`` test examples (``infodistill.layer_map.rank_teachers``).
Then every teacher is distilled into the student with each of ``--methods`` (the MNIST-1D configs:
KD with tau 4, RID on stage3) for ``--epochs`` epochs and every seed, and the student is trained
without a teacher (baseline) with the same seeds. The gain of a teacher is the student's final test
accuracy minus the baseline's of the same seed (paired), averaged over seeds with its standard
error; printed: the ranking, the gains, and the Spearman rank correlation between the audit's
score and the mean gain, per method. Wall times are printed too (the machine line says where).
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
TEACHER_KW = {"width": 64}


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties), by hand: numpy only."""

    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = v.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):  # ties share their mean rank
            r[v == value] = r[v == value].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchkit.add_distill_arguments(ap, methods=["kd", "rid"])
    ap.add_argument("--n", type=int, default=1000, help="test examples the audit reads (default 1000)")
    ap.add_argument("--boot", type=int, default=100)
    ap.add_argument(
        "--student-labels", type=int, default=None, help="the students' training examples (E1: 500)"
    )
    args = ap.parse_args(argv)
    if args.teacher_epochs <= 3:
        ap.error("--teacher-epochs must be above 3 (the 3-epoch and 1-epoch teachers are the others)")
    with benchkit.distill_bench(args) as (out, subset, info):
        return measure(args, out, subset, info)


def measure(args, out: Path, subset: list, info: dict) -> int:
    from infodistill.audit import load_models
    from infodistill.layer_map import rank_teachers
    from infodistill.training.config import DistillConfig, TeacherTrainConfig, load_config
    from infodistill.training.runs import distill, train_teacher

    start = time.perf_counter()
    teachers = {f"{args.teacher_epochs} epochs": args.teacher_epochs, "3 epochs": 3, "1 epoch": 1}
    dirs = {}
    for name, epochs in teachers.items():
        d = out / f"teacher-{epochs}"
        cfg = load_config(
            TeacherTrainConfig,
            ROOT / "configs" / "teacher-mnist1d.yaml",
            [f"optim.epochs={epochs}", f"run.out_dir={d}", *subset],
        )
        train_teacher(cfg, progress=False)
        dirs[name] = str(d)
    t_teachers = time.perf_counter() - start

    # The audit: every candidate against the untrained student of seed 0 (the student before
    # distillation). The untrained teacher is built with seed 1 + its position (load_models).
    start = time.perf_counter()
    loaded = load_models(
        [*dirs.values(), "untrained"],
        "untrained",
        teacher_model="cnn1d",
        teacher_kwargs=TEACHER_KW,
        student_model="cnn1d",
        student_kwargs={"width": 8},
        data="mnist1d",
        n=args.n,
        seed=0,
        device="cpu",
    )
    names = [*dirs, "untrained"]
    untrained_seed = 1 + len(dirs)
    ranking = rank_teachers(
        dict(zip(names, loaded.teachers, strict=True)), loaded.student, loaded.x, loaded.y, n=args.n,
        n_boot=args.boot, student_name="cnn1d width 8 (untrained, seed 0)",
    )  # fmt: skip
    t_audit = time.perf_counter() - start
    print(f"\n{ranking.table()}\n(audit {t_audit:.1f} s; teachers trained in {t_teachers:.1f} s)")

    def run(method: str, teacher: str | None, seed: int) -> float:
        cfg_file = ROOT / "configs" / f"distill-mnist1d-{method if method != 'baseline' else 'kd'}.yaml"
        over = [f"optim.epochs={args.epochs}", f"run.seed={seed}", *subset]
        if args.student_labels is not None:
            over.append(f"data.train_subset={args.student_labels}")
        if method == "baseline":
            over += ["method.name=baseline", "method.params={}"]
            teacher = teacher or names[0]
        if teacher == "untrained":
            over += ["teacher.kind=untrained", "teacher.checkpoints=[]", f"teacher.seed={untrained_seed}"]
        else:
            over += [f"teacher.checkpoints=[{dirs[teacher]}]"]
        tag = f"{method}-{teacher.replace(' ', '')}-s{seed}"
        over.append(f"run.out_dir={out / tag}")
        return float(distill(load_config(DistillConfig, cfg_file, over), progress=False)["test"]["accuracy"])

    start = time.perf_counter()
    base = {seed: run("baseline", None, seed) for seed in args.seeds}
    rows, results = [], {"baseline": base, "methods": {}}
    score = {r.name: r.unique_t for r in ranking.ranks}
    for method in args.methods:
        gains = {}
        for name in names:
            acc = {seed: run(method, name, seed) for seed in args.seeds}
            diff = [acc[s] - base[s] for s in args.seeds]
            se = statistics.stdev(diff) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            gains[name] = {"accuracy": acc, "gain": float(np.mean(diff)), "se": float(se)}
            rows.append(
                [method, name, f"{score[name]:.3f}", f"{100 * np.mean(list(acc.values())):.2f}",
                 f"{100 * gains[name]['gain']:+.2f} ± {100 * se:.2f}"]
            )  # fmt: skip
        rho = spearman([score[n] for n in names], [gains[n]["gain"] for n in names])
        results["methods"][method] = {"gains": gains, "spearman": rho}
        rows.append([method, "Spearman(score, gain)", "", "", f"{rho:+.2f}"])
    t_distill = time.perf_counter() - start
    mean_base = 100 * np.mean(list(base.values()))
    print(
        f"\ndistillation: {args.epochs} epochs, seeds {args.seeds}, student training examples "
        f"{args.student_labels or 'all'}; baseline accuracy {mean_base:.2f} % "
        f"(mean); gain = accuracy - baseline of the same seed, mean ± standard error ({t_distill:.0f} s)"
    )
    print(benchkit.text_table(["method", "teacher", "audit Uni", "accuracy %", "gain (points)"], rows))
    if args.json:
        benchkit.write_json(
            args.json,
            {
                "machine": info,
                "settings": vars(args),
                "ranking": ranking.as_dict()["ranks"],
                **results,
                "seconds": {"teachers": t_teachers, "audit": t_audit, "distill": t_distill},
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
