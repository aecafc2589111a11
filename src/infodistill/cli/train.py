"""``infodistill train-teacher``, ``distill`` and ``evaluate``."""

from __future__ import annotations

import argparse
import json

from .common import require_torch


def add_commands(sub) -> None:
    """Register the training commands on the CLI's subparsers."""
    for name, help_text in (
        ("train-teacher", "train a teacher (or any model) with cross-entropy from a config file"),
        ("distill", "distil a student from a teacher with one of the methods, from a config file"),
    ):
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text + ". With --resume, a run directory that holds a checkpoint is "
            "continued after its last finished epoch (the config must be the same).",
        )
        p.add_argument("config", help="YAML (.yaml/.yml) or TOML (.toml) config file")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. optim.lr=0.01")
        p.add_argument("--out", help="run directory (overrides run.out_dir)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument(
            "--resume", action="store_true", help="continue the run in --out/run.out_dir after its last epoch"
        )
        p.set_defaults(func=_run_command(name), subparser=p)
    ev = sub.add_parser(
        "evaluate",
        help="fidelity and PID of a distillation run's student against its teacher",
        description="Evaluate the latest checkpoint of a run directory on its test set: accuracy, NLL,\n"
        "ECE, top-1 agreement and KL(teacher||student), and the PID of the configured layer pairs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("run_dir", help="a directory written by `infodistill distill` or `train-teacher`")
    ev.add_argument("--pid-pairs", nargs="*", metavar="S:T", help="student:teacher layers for the PID")
    ev.add_argument("--json", action="store_true", help="print JSON")
    ev.add_argument(
        "--device",
        metavar="auto|cpu|cuda|cuda:N",
        help="where the models run (default: the run's run.device)",
    )
    ev.set_defaults(func=cmd_evaluate, subparser=ev)


def _run_command(name: str):
    def run(args, parser) -> int:
        require_torch()
        from ..training.config import DistillConfig, TeacherTrainConfig, load_config
        from ..training.distributed import is_main
        from ..training.runs import distill, train_teacher

        cls, fn = (TeacherTrainConfig, train_teacher) if name == "train-teacher" else (DistillConfig, distill)
        overrides = list(args.overrides) + ([f"run.out_dir={args.out}"] if args.out else [])
        cfg = load_config(cls, args.config, overrides)
        kw = {}
        if name == "distill" and cfg.method.pairs == "auto":
            from ..layer_map import auto_pairs  # the layer map, above the training layer

            kw["pair_resolver"] = auto_pairs
        final = fn(cfg, progress=not args.quiet, resume=args.resume, **kw)
        if not is_main():
            return 0  # under torchrun, rank 0 alone reports
        test = final.get("test", {})
        line = ", ".join(
            f"{k} {test[k]:.4f}" for k in ("accuracy", "agreement", "kl_teacher_student") if k in test
        )
        best = final.get("best") or {}
        best_acc = best.get("accuracy", float("nan"))
        epoch, best_epoch = final.get("epoch"), best.get("epoch")
        print(f"{name}: epoch {epoch}: {line}; best accuracy {best_acc:.4f} at epoch {best_epoch}")
        print(f"run directory: {cfg.run.out_dir} (log.jsonl, config.json, latest checkpoint)")
        return 0

    return run


def cmd_evaluate(args, parser) -> int:
    require_torch()
    from ..training.evaluate import evaluate_run

    result = evaluate_run(args.run_dir, args.pid_pairs, device=args.device, device_name="--device")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result["test"].items():
            print(f"  {k:20s} {v:.4f}" if isinstance(v, float) else f"  {k:20s} {v}")
        for pair, terms in result.get("pid", {}).items():
            print(
                f"  PID {pair}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in terms.items() if isinstance(v, float))
            )
    return 0
