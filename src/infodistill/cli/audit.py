"""``infodistill audit``: before distilling, what the teacher knows and what is left (see
:mod:`infodistill.audit`)."""

from __future__ import annotations

import argparse
import json

from .common import CLIError, errors, require_torch


def add_commands(sub) -> None:
    """Register ``infodistill audit`` on the CLI's subparsers."""
    p = sub.add_parser(
        "audit",
        help="before distilling: what the teacher knows (I(Y;T) per layer) and what is left (Uni(Y:T\\S))",
        description="Audit a teacher against a student on the first N test examples: per teacher layer\n"
        "I(Y;T), Red, Uni(Y:T\\S), Uni(Y:S\\T), Syn (bits, bootstrap CIs, label-permutation bias),\n"
        "both models' accuracy, and one verdict: nothing to distill / already transferred /\n"
        "worth distilling. A run directory's config.json supplies the model (and data) when\n"
        "--teacher-model / --student-model (--data) are omitted. A model (or --data) is a built-in\n"
        "name or your own factory, 'package.module:function' or 'file.py:function', called with\n"
        "the --*-kwargs; a weights file (.safetensors, or a state dict for torch.load) given as\n"
        "--teacher / --student is loaded into --*-model.\n\n"
        "--map: the layer map instead, every teacher layer x every student layer (--layers-s takes\n"
        "several, default all student stages): Red, Uni(Y:T\\S), I(Y;T), I(Y;S) with intervals and\n"
        "the permutation floor, and the suggested pairing; --heatmap writes it as a PNG.\n"
        "Several --teacher: rank the candidate teachers by Uni(Y:T\\S) at each one's best layer\n"
        "against the student layer (default: its last stage); the teacher options apply to all.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--teacher",
        required=True,
        action="append",
        metavar="RUN_DIR|CKPT|WEIGHTS|untrained",
        help="the teacher; give it several times to rank candidate teachers",
    )
    p.add_argument(
        "--teacher-model",
        metavar="NAME|MODULE:FN",
        help="teacher architecture (e.g. wrn-16-2, models.py:build)",
    )
    p.add_argument("--teacher-kwargs", metavar="YAML", help='architecture options, e.g. "{width: 16}"')
    p.add_argument(
        "--student",
        required=True,
        metavar="RUN_DIR|CKPT|WEIGHTS|untrained",
        help="the student ('untrained': random init from --seed)",
    )
    p.add_argument("--student-model", metavar="NAME|MODULE:FN", help="student architecture (e.g. cnn-small)")
    p.add_argument("--student-kwargs", metavar="YAML", help='architecture options, e.g. "{width: 8}"')
    for role in ("teacher", "student"):
        p.add_argument(
            f"--{role}-weights-prefix",
            metavar="PREFIX",
            help=f"strip PREFIX (e.g. module.) from --{role}'s keys",
        )
        p.add_argument(
            f"--{role}-weights-key",
            metavar="KEY",
            help=f"the state dict sits at KEY of --{role} (e.g. state_dict)",
        )
    p.add_argument(
        "--data", metavar="NAME|MODULE:FN", help="data set or factory (default: the teacher run's data)"
    )
    p.add_argument("--data-root", metavar="DIR", help="data directory (cifar10/100, image-folder)")
    p.add_argument("--data-kwargs", metavar="YAML", help="options of a --data factory")
    p.add_argument("--layers-t", metavar="A,B,C", help="teacher layers (default: all its stages)")
    p.add_argument(
        "--layers-s",
        metavar="X",
        help="student layer (default: its last stage); with --map several, X,Y,Z (default: all its stages)",
    )
    p.add_argument(
        "--map",
        action="store_true",
        help="the layer map: every teacher layer x every student layer, and the suggested pairing",
    )
    p.add_argument("--heatmap", metavar="PNG", help="with --map: write the map as a heatmap PNG")
    p.add_argument("--n", type=int, default=2000, help="test examples audited (default 2000)")
    p.add_argument("--k", type=int, default=10, help="k-means clusters (default 10)")
    p.add_argument("--pca", type=int, default=5, help="PCA dimensions, 0 for none (default 5)")
    p.add_argument("--boot", type=int, default=100, help="bootstrap resamples (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the estimate and untrained inits")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|cuda:N", help="where the models run")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_audit, subparser=p)


def _errors() -> tuple:
    return (*errors(), TypeError)


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _mapping(text: str | None, flag: str) -> dict | None:
    """The options a ``--*-kwargs`` flag gives as YAML text (a flow mapping); None if not given."""
    import yaml  # with the command: the CLI's top imports only the standard library

    if text is None:
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CLIError(
            f'{flag} is not valid YAML ({first}); write a flow mapping like "{{width: 8}}"'
        ) from None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise CLIError(f'{flag} must be a YAML mapping like "{{width: 8}}", got {text!r}')
    return value


def _layers(text: str | None, flag: str) -> list | None:
    """The layer names of a comma-separated flag (``--layers-t``, ``--layers-s``); None if not given."""
    if text is None:
        return None
    layers = [s.strip() for s in text.split(",") if s.strip()]
    if not layers:
        raise CLIError(f"{flag} names no layer")
    return layers


def _check_numbers(args) -> None:
    """The ranges of the command's numbers (the audit, the layer map and the ranking share them)."""
    # --k 1: one cluster carries no information, and the verdict would read "nothing to distill".
    for flag, value, minimum in (("--n", args.n, 1), ("--k", args.k, 2), ("--pca", args.pca, 0)):
        if value < minimum:
            raise CLIError(f"{flag} must be >= {minimum}, got {value}")
    if args.boot < 1:
        raise CLIError(f"--boot must be >= 1 (the verdicts and floors need intervals), got {args.boot}")
    if not 0 <= args.seed < 2**32:
        raise CLIError(f"--seed must be in [0, 2**32), got {args.seed}")


def _check_teachers(teachers: list, s_layers: list | None, *, rank: bool) -> None:
    if rank:
        dups = sorted({t for t in teachers if teachers.count(t) > 1 and t != "untrained"})
        if dups:
            raise CLIError(f"--teacher {dups[0]} is given twice; name each candidate teacher once")
    if s_layers is not None and len(s_layers) != 1:
        when = " when ranking teachers" if rank else ""
        raise CLIError(f"--layers-s takes one student layer{when}, got {len(s_layers)}: {','.join(s_layers)}")


def cmd_audit(args, parser) -> int:
    """The audit of one teacher, the layer map (``--map``) or the ranking of several teachers: the
    flags are read here (YAML options, comma lists, ranges), the library builds and measures."""
    require_torch()  # without torch: one line naming the install command
    teachers = list(args.teacher)
    if args.heatmap is not None and not args.map:
        raise CLIError("--heatmap draws the layer map: add --map")
    if args.map and len(teachers) > 1:
        raise CLIError(
            f"--map maps one teacher against the student, got {len(teachers)} --teacher; "
            "drop --map to rank them, or map them one at a time"
        )
    if args.heatmap is not None and not args.heatmap.endswith(".png"):
        raise CLIError(f"--heatmap writes a PNG: give a path ending in .png, got {args.heatmap!r}")
    _check_numbers(args)
    t_layers, s_layers = _layers(args.layers_t, "--layers-t"), _layers(args.layers_s, "--layers-s")
    if not args.map:
        _check_teachers(teachers, s_layers, rank=len(teachers) > 1)
    load = dict(
        teacher_model=args.teacher_model,
        teacher_kwargs=_mapping(args.teacher_kwargs, "--teacher-kwargs"),
        student_model=args.student_model,
        student_kwargs=_mapping(args.student_kwargs, "--student-kwargs"),
        data=args.data,
        data_root=args.data_root,
        data_kwargs=_mapping(args.data_kwargs, "--data-kwargs"),
        layers_t=t_layers,
        layers_s=s_layers,
        n=args.n,
        seed=args.seed,
        teacher_weights_prefix=args.teacher_weights_prefix,
        teacher_weights_key=args.teacher_weights_key,
        student_weights_prefix=args.student_weights_prefix,
        student_weights_key=args.student_weights_key,
        device=args.device,
    )
    estimate = dict(n=args.n, k=args.k, pca=args.pca or None, n_boot=args.boot, seed=args.seed)
    # the library, with the command: the CLI's top imports only the standard library (torch-free --help)
    from ..audit import ARGUMENTS, audit, load_models
    from ..layer_map import layer_map, rank_teachers

    flags = {arg: "--" + arg.replace("_", "-") for arg in ARGUMENTS}  # the errors name the flags
    try:
        loaded = load_models(teachers, args.student, **load, argument_names=flags)
        student_layer = None if s_layers is None else s_layers[0]
        if args.map:
            result = layer_map(
                loaded.teachers[0], loaded.student, loaded.x, loaded.y, teacher_layers=t_layers,
                student_layers=s_layers, names=(loaded.teacher_names[0], loaded.student_name), **estimate,
            )  # fmt: skip
            if args.heatmap is not None:
                result.heatmap(args.heatmap)
        elif len(teachers) > 1:
            # each candidate under its argument as its name ("untrained: cnn1d (untrained, seed 2)")
            names = [
                f"{arg}: {name}" if arg == "untrained" else arg
                for arg, name in zip(teachers, loaded.teacher_names, strict=True)
            ]
            result = rank_teachers(
                dict(zip(names, loaded.teachers, strict=True)), loaded.student, loaded.x, loaded.y,
                teacher_layers=t_layers, student_layer=student_layer, student_name=loaded.student_name,
                **estimate,
            )  # fmt: skip
        else:
            result = audit(
                loaded.teachers[0], loaded.student, loaded.x, loaded.y, teacher_layers=t_layers,
                student_layer=student_layer, names=(loaded.teacher_names[0], loaded.student_name), **estimate,
            )  # fmt: skip
    except _errors() as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CLIError(msg) from None
    print(json.dumps(result.as_dict(), indent=2, default=_json_default) if args.json else result.table())
    return 0
