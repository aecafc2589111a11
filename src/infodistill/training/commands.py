"""The ``train-teacher``, ``distill`` and ``evaluate`` commands of the ``infodistill`` CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(sub, error_cls) -> None:
    """Register the training commands on the CLI's subparsers; errors become ``error_cls``."""
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
        p.set_defaults(func=_run_command(name, error_cls), subparser=p)
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
    ev.set_defaults(func=_evaluate_command(error_cls), subparser=ev)

    rep = sub.add_parser("reproduce", help="the papers' experiments as one command each, with a report")
    rsub = rep.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    for name, help_text, description, presets in (
        (
            "rid",
            "E1 [PID-KD]: trained/untrained/noisy teacher x {baseline, VID, RID, TED}",
            "Train the teacher, run every (teacher, method, seed) distillation, and write\n"
            "report.md with the accuracy table, the PID trajectories and plots.",
            "quick (minutes on 2 CPU cores), paper, rid-ablation, or cifar10 (the default with\n"
            "--data cifar10)",
        ),
        (
            "fidelity",
            "E2 [FID]: self-distillation and ensembles, distillation data, init near the teacher",
            "Train the teacher members, run every KD setting (ensembles of 1/3/5, tau 1 and 4,\n"
            "crop-flip/mixup data, the lambda-initialisation sweep, an independent student) per seed,\n"
            "and write report.md with agreement, KL, accuracy and ECE per setting, and plots.",
            "quick (minutes on 2 CPU cores), paper, or cifar100 (the default with --data cifar100)",
        ),
    ):
        rp = rsub.add_parser(
            name,
            help=help_text,
            description=description + " Rerunning the same command skips finished runs and\n"
            "resumes interrupted ones.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        rp.add_argument("--preset", help=presets)
        rp.add_argument("--out", help=f"output directory (default runs/reproduce-{name}-PRESET)")
        rp.add_argument("--data", help="data set name (e.g. digits, fashion-mnist, cifar10)")
        rp.add_argument("--data-dir", help="data directory (CIFAR, image folders)")
        rp.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the preset's)")
        rp.add_argument("--epochs", type=int, help="student epochs (default: the preset's)")
        rp.add_argument("--teacher-epochs", type=int, help="teacher epochs (default: the preset's)")
        rp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="any preset setting, repeatable, value read as YAML: seeds=[0,1,2], pid_k=10, "
            "method_params.vid.lam=1 (or methods.vid.lam=1), student_model.kwargs.width=16",
        )
        rp.add_argument("--quiet", action="store_true", help="no progress bar")
        rp.set_defaults(func=_reproduce(name, error_cls), subparser=rp)
    from .audit import add_audit_command

    add_audit_command(sub, error_cls)


def _errors():
    from ..data import DataError
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .distributed import DistributedError
    from .rundir import RunDirError
    from .trainer import TrainingError

    return (
        ConfigError,
        CheckpointError,
        DataError,
        DistributedError,
        RunDirError,
        TrainingError,
        ValueError,
        OSError,  # an unreadable file, an --out that is a file, a full disk: the message names the path
    )


def _message(exc: Exception) -> str:
    """One line for an expected failure; an OSError names its path and reason, not ``[Errno N]``."""
    if isinstance(exc, OSError) and exc.strerror:
        from .rundir import os_reason

        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{os_reason(exc)}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _require_torch(error_cls) -> None:
    try:
        import torch  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as exc:
        raise error_cls(
            f"this command needs PyTorch and the training extras ({exc.name} is missing): "
            "pip install torch==2.13.0 'infodistill[train]'"
        ) from None


def _run_command(name: str, error_cls):
    def run(args, parser) -> int:
        _require_torch(error_cls)
        from .config import DistillConfig, TeacherTrainConfig, load_config
        from .runs import distill, train_teacher

        cls, fn = (TeacherTrainConfig, train_teacher) if name == "train-teacher" else (DistillConfig, distill)
        overrides = list(args.overrides) + ([f"run.out_dir={args.out}"] if args.out else [])
        try:
            cfg = load_config(cls, args.config, overrides)
            final = fn(cfg, progress=not args.quiet, resume=args.resume)
        except _errors() as exc:
            raise error_cls(_message(exc)) from None
        from .distributed import is_main

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


def _evaluate_command(error_cls):
    def run(args, parser) -> int:
        _require_torch(error_cls)

        from ..models import collect_features
        from ..pid import estimate
        from .checkpoint import load_checkpoint, load_model_state
        from .config import DistillConfig, TeacherTrainConfig, from_dict
        from .runs import Teacher, _model, _teacher_members, prepare_data
        from .trainer import evaluate_model

        run_dir = Path(args.run_dir)
        try:
            if not (run_dir / "config.json").is_file():
                raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
            try:
                raw = json.loads((run_dir / "config.json").read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{run_dir / 'config.json'} is not valid JSON ({exc})") from None
            is_distill = "student" in raw
            cfg = from_dict(DistillConfig if is_distill else TeacherTrainConfig, raw)
            train, test = prepare_data(cfg.data, cfg.run.seed)
            model = _model(cfg.student if is_distill else cfg.model, train)
            load_model_state(model, load_checkpoint(run_dir)["student"], "student")
            teacher = None
            if is_distill and cfg.method.name != "progressive":
                teacher = Teacher(_teacher_members(cfg, train), [])
            t_logits = None if teacher is None else (lambda x: teacher(x)[0])
            result = {"test": evaluate_model(model, test.x, test.y, cfg.data.eval_batch_size, t_logits)}
            pairs = (
                [p.split(":") for p in args.pid_pairs]
                if args.pid_pairs
                else (cfg.pid.pairs if is_distill else [])
            )
            if pairs and teacher is not None:
                result["pid"] = {}
                n = min(cfg.pid.n_samples or len(test), len(test))
                bs = cfg.data.eval_batch_size
                for s_layer, t_layer in pairs:
                    s_feat = collect_features(model, [s_layer], test.x[:n], bs)[1][s_layer].numpy()
                    t_feat = collect_features(teacher.members[0], [t_layer], test.x[:n], bs)[1][
                        t_layer
                    ].numpy()
                    res = estimate(
                        test.y[:n].numpy(), t_feat, s_feat, k=cfg.pid.k, pca=cfg.pid.pca, seed=cfg.run.seed
                    )
                    result["pid"][f"{s_layer}|{t_layer}"] = res.pid.as_dict()
        except _errors() as exc:
            raise error_cls(_message(exc)) from None
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

    return run


def _reproduce(experiment: str, error_cls):
    def run(args, parser) -> int:
        _require_torch(error_cls)
        import dataclasses

        from ..experiments.common import apply_settings

        check_method = None
        if experiment == "rid":
            from ..experiments.rid import PRESETS, check_method_param
            from ..experiments.rid import run_rid as run_experiment

            check_method = check_method_param
        else:
            from ..experiments.fidelity import PRESETS
            from ..experiments.fidelity import run_fidelity as run_experiment

        if args.preset is None:
            # The paper's own data set means the paper's own setting (models, epochs, seeds).
            args.preset = args.data if args.data in PRESETS else "quick"
        if args.preset not in PRESETS:
            raise error_cls(f"unknown preset {args.preset!r}; use one of {', '.join(PRESETS)}")
        for flag in ("epochs", "teacher_epochs"):
            value = getattr(args, flag)
            if value is not None and value < 1:
                raise error_cls(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
        preset = PRESETS[args.preset]
        changes = {
            "data": args.data,
            "data_root": args.data_dir,
            "student_epochs": args.epochs,
            "teacher_epochs": args.teacher_epochs,
            "seeds": tuple(args.seeds) if args.seeds else None,
        }
        preset = dataclasses.replace(preset, **{k: v for k, v in changes.items() if v is not None})
        try:  # after the flags: --set is the most specific
            preset = apply_settings(preset, args.set, check_method)
        except ValueError as exc:
            raise error_cls(str(exc)) from None
        out = args.out or f"runs/reproduce-{experiment}-{args.preset}"
        try:
            report = run_experiment(preset, out, progress=not args.quiet)
        except _errors() as exc:
            raise error_cls(_message(exc)) from None
        print(f"report: {report}")
        return 0

    return run
