"""``infodistill reproduce rid|fidelity|progressive``: the papers' experiments as one command each."""

from __future__ import annotations

import argparse

from .common import CLIError, require_torch


def add_commands(sub) -> None:
    """Register ``reproduce`` and its experiments on the CLI's subparsers."""
    rep = sub.add_parser("reproduce", help="the papers' experiments as one command each, with a report")
    rsub = rep.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    for name, help_text, description, presets in (
        (
            "rid",
            "E1 [PID-KD]: trained/untrained/noisy teacher x {baseline, VID, RID, TED}",
            "Train the teacher, run every (teacher, method, seed) distillation, and write\n"
            "report.md with the accuracy table, the PID trajectories and plots.",
            "quick (minutes on 2 CPU cores: Fashion-MNIST with task-irrelevant patterns, where the\n"
            "untrained teacher's premise holds; quick-mnist1d the default with --data mnist1d),\n"
            "standard (plain Fashion-MNIST), standard-nuisance (quick's data, a student with room),\n"
            "standard-mnist1d, paper, rid-ablation, or cifar10 (the default with --data cifar10)",
        ),
        (
            "fidelity",
            "E2 [FID]: self-distillation and ensembles, distillation data, init near the teacher",
            "Train the teacher members, run every KD setting (ensembles of 1/3/5, tau 1 and 4,\n"
            "crop-flip/mixup data, the lambda-initialisation sweep, an independent student) per seed,\n"
            "and write report.md with agreement, KL, accuracy and ECE per setting, and plots.",
            "quick (minutes on 2 CPU cores; quick-mnist1d the default with --data mnist1d),\n"
            "long-mnist1d (the mixup and lambda claims), paper, or cifar100 (default with --data cifar100)",
        ),
        (
            "progressive",
            "E3 [PROG]: progressive distillation's implicit curriculum on the sparse parity",
            "Train an MLP teacher on the sparse parity keeping every epoch's checkpoint, measure what\n"
            "the checkpoints carry about each input variable (PID engine), train students on labels,\n"
            "by KD from the final teacher and progressively from the checkpoints, and write report.md\n"
            "with the steps to the target accuracy, the curriculum and the claims' verdicts.",
            "quick (about 7 minutes on 2 CPU cores), standard (all four settings, 5 seeds), or paper\n"
            "(n = 100, k = 6, width 50 000: an accelerator's days)",
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
        rp.set_defaults(func=_reproduce(name), subparser=rp)


def parse_settings(items: list[str]) -> list[tuple[str, object]]:
    """``--set KEY=VALUE`` items as (key, value) pairs, each value read as YAML (``[0, 1, 2]``,
    ``1e-3``, ``null``, ``{width: 16}``), for :func:`infodistill.experiments.common.apply_settings`."""
    import yaml  # with the command: the CLI's top imports only the standard library

    pairs = []
    for item in items:
        if "=" not in item:
            raise CLIError(f"--set {item!r} must look like key=value (e.g. seeds=[0,1,2])")
        key, text = (x.strip() for x in item.split("=", 1))
        try:
            pairs.append((key, yaml.safe_load(text) if text else None))
        except yaml.YAMLError:
            raise CLIError(f"--set {key}: {text!r} is not a YAML value") from None
    return pairs


def _reproduce(experiment: str):
    def run(args, parser) -> int:
        require_torch()

        from ..experiments.common import apply_settings

        # Looked up on the module at call time, so that a patched run_rid / run_fidelity is the one run.
        if experiment == "rid":
            from ..experiments import rid as module

            check_method, run_experiment = module.check_method_param, module.run_rid
        elif experiment == "progressive":
            from ..experiments import progressive as module

            check_method, run_experiment = None, module.run_progressive
        else:
            from ..experiments import fidelity as module

            check_method, run_experiment = None, module.run_fidelity
        PRESETS = module.PRESETS
        if experiment == "progressive" and (args.data or args.data_dir):
            raise CLIError(
                "reproduce progressive generates its sparse parity: drop --data/--data-dir "
                "(choose n and k with --set n=40 --set k=5)"
            )

        if args.preset is None:
            # The paper's own data set means the paper's own setting (models, epochs, seeds); a data
            # set with a quick preset of its own (MNIST-1D) gets that one.
            if args.data in PRESETS:
                args.preset = args.data
            else:
                args.preset = f"quick-{args.data}" if f"quick-{args.data}" in PRESETS else "quick"
        if args.preset not in PRESETS:
            raise CLIError(f"unknown preset {args.preset!r}; use one of {', '.join(PRESETS)}")
        for flag in ("epochs", "teacher_epochs"):
            value = getattr(args, flag)
            if value is not None and value < 1:
                raise CLIError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
        preset = PRESETS[args.preset]
        changes = {
            "data": args.data,
            "data_root": args.data_dir,
            "student_epochs": args.epochs,
            "teacher_epochs": args.teacher_epochs,
            "seeds": tuple(args.seeds) if args.seeds else None,
        }
        # the flags as settings (another --data starts the data set's options afresh), then --set
        preset = apply_settings(preset, [(k, v) for k, v in changes.items() if v is not None])
        try:  # after the flags: --set is the most specific
            preset = apply_settings(preset, parse_settings(args.set), check_method)
        except ValueError as exc:  # the library's message starts with the setting's key
            raise CLIError(f"--set {exc}") from None
        out = args.out or f"runs/reproduce-{experiment}-{args.preset}"
        report = run_experiment(preset, out, progress=not args.quiet)
        print(f"report: {report}")
        return 0

    return run
