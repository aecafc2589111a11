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
    import yaml

    return (*errors(), TypeError, yaml.YAMLError)


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def cmd_audit(args, parser) -> int:
    require_torch()  # without torch: one line naming the install command
    from ..audit import run_audit
    from ..layer_map import run_layer_map, run_rank_teachers

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
    load = dict(
        teacher_model=args.teacher_model,
        teacher_kwargs=args.teacher_kwargs,
        student_model=args.student_model,
        student_kwargs=args.student_kwargs,
        data=args.data,
        data_root=args.data_root,
        data_kwargs=args.data_kwargs,
        teacher_weights_prefix=args.teacher_weights_prefix,
        teacher_weights_key=args.teacher_weights_key,
        student_weights_prefix=args.student_weights_prefix,
        student_weights_key=args.student_weights_key,
        device=args.device,
    )
    numbers = dict(n=args.n, k=args.k, pca=args.pca, boot=args.boot, seed=args.seed)
    try:
        if args.map:
            result = run_layer_map(
                teachers[0], args.student, layers_t=args.layers_t, layers_s=args.layers_s, **numbers, **load
            )
            if args.heatmap is not None:
                result.heatmap(args.heatmap)
        elif len(teachers) > 1:
            result = run_rank_teachers(
                teachers, args.student, layers_t=args.layers_t, layers_s=args.layers_s, **numbers, **load
            )
        else:
            result = run_audit(
                teachers[0], args.student, layers_t=args.layers_t, layers_s=args.layers_s, **numbers, **load
            )
    except _errors() as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CLIError(msg) from None
    print(json.dumps(result.as_dict(), indent=2, default=_json_default) if args.json else result.table())
    return 0
