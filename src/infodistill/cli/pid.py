"""``infodistill pid`` and ``infodistill demo``.

Only the standard library is imported at module level; numpy and :mod:`infodistill.pid` are imported
inside the command functions. torch is never imported.
"""

from __future__ import annotations

import argparse
import math
import sys

from .common import (
    EXIT_OK,
    PROG,
    CLIError,
    _check_features,
    _check_labels,
    _float,
    _fmt,
    _int_at_least,
    _one_line,
    _print_json,
    load_array,
)

#: What each term means for distillation (T the teacher, S the student); the terms, their order and
#: labels come from :mod:`infodistill.pid.terms`, imported where the table is made (it imports numpy).
MEANINGS = {
    "redundancy": "transferred / shared",
    "unique_t": "left to distill (teacher only)",
    "unique_s": "student only (not from the teacher)",
    "synergy": "synergy (only from T and S together)",
    "mi_t": "teacher's label information",
    "mi_s": "student's label information",
    "mi_joint": "both together",
}

TERMS_HELP = """\
terms of the BROJA partial information decomposition of I(Y; T, S)
(Y the labels, T the teacher, S the student):
  Red(Y:T,S)   label information T and S share: what has been transferred
  Uni(Y:T\\S)   information only the teacher has: what is left to distill
  Uni(Y:S\\T)   information only the student has
  Syn(Y:T,S)   information available only from T and S together
  I(Y;T) = Red + Uni(Y:T\\S),  I(Y;S) = Red + Uni(Y:S\\T),  I(Y;T,S) = Red + both Uni + Syn
"""


# --------------------------------------------------------------------------------------------------
# tables


def pid_table(res, title: str | None = None) -> str:
    """Aligned text table of a PIDResult: term, meaning, value, unit, then the certified gap."""
    from ..pid.terms import LABELS, TERMS

    header = ("term", "meaning", "value", "unit")
    rows = [(LABELS[t], MEANINGS[t], _fmt(getattr(res, t)), res.unit) for t in TERMS]
    w = [max(len(r[i]) for r in (header, *rows)) for i in range(4)]
    lines = [] if title is None else [title, ""]
    lines.append(f"  {header[0]:<{w[0]}}  {header[1]:<{w[1]}}  {header[2]:>{w[2]}}  {header[3]}")
    lines.append("  " + "-" * (w[0] + w[1] + w[2] + w[3] + 6))
    for term, (label, meaning, val, unit) in zip(TERMS, rows, strict=True):
        lines.append(f"  {label:<{w[0]}}  {meaning:<{w[1]}}  {val:>{w[2]}}  {unit}")
        if term == "synergy":  # the atoms above, the mutual informations they add up to below
            lines.append("")
    lines.append("")
    lines.append(f"  certified gap: {res.gap:.1e} {res.unit} (every term is exact to within this)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# commands


def _pid_joint(args) -> int:
    from ..pid import decompose

    p = load_array(args.joint, "joint")
    try:
        res = decompose(p, unit=args.unit, counts=args.counts, tol=args.tol)
    except ValueError as exc:
        msg = _one_line(exc).replace("pass counts=True", "pass --counts")
        raise CLIError(f"{args.joint}: {msg}") from None
    if args.json:
        _print_json({**res.as_dict(), "shape": list(p.shape)})
    else:
        shape = " x ".join(str(n) for n in p.shape)
        title = (
            f"BROJA PID of p[y,t,s] from {args.joint} (shape {shape}; axis 0 = Y labels, "
            "axis 1 = T teacher, axis 2 = S student)"
        )
        print(pid_table(res, title))
    return EXIT_OK


#: estimate-only options: argparse dest -> estimate() keyword
ESTIMATE_OPTIONS = {
    "k": "k",
    "k_t": "k_t",
    "k_s": "k_s",
    "pca": "pca",
    "normalize": "normalize",
    "pool": "pool",
    "fit_fraction": "fit_fraction",
    "discretize": "discretize",
    "boot": "n_boot",
    "ci": "ci",
    "perm": "n_perm",
    "seed": "seed",
}


def _pid_estimate(args) -> int:
    labels = _check_labels(load_array(args.labels, "labels"), args.labels)
    teacher = _check_features(load_array(args.teacher, "teacher"), "teacher", args.teacher)
    student = _check_features(load_array(args.student, "student"), "student", args.student)
    n = {"labels": len(labels), "teacher": teacher.shape[0], "student": student.shape[0]}
    if len(set(n.values())) != 1:
        raise CLIError(
            "mismatched lengths: "
            f"labels has {n['labels']} samples ({args.labels}), "
            f"teacher {n['teacher']} ({args.teacher}), student {n['student']} ({args.student})"
        )

    try:
        from ..pid import estimate
    except ImportError as exc:
        raise CLIError(f"the estimator is not available in this installation ({_one_line(exc)})") from None

    kwargs = {
        kw: getattr(args, dest) for dest, kw in ESTIMATE_OPTIONS.items() if getattr(args, dest) is not None
    }
    try:
        res = estimate(labels, teacher, student, unit=args.unit, tol=args.tol, **kwargs)
    except ValueError as exc:
        msg = _one_line(exc)
        msg = msg.replace("teacher_features", f"teacher features ({args.teacher})")
        msg = msg.replace("student_features", f"student features ({args.student})")
        msg = msg.replace("or pca=None", "or --pca 0 (no PCA)")
        raise CLIError(msg) from None

    if args.json:
        d = dict(res.as_dict())
        d.setdefault("settings", res.settings)
        d.setdefault("ci", res.ci)
        d.setdefault(
            "inputs",
            {
                "labels": args.labels,
                "teacher": args.teacher,
                "student": args.student,
                "n_samples": n["labels"],
            },
        )
        _print_json(d)
    else:
        print(f"labels: {args.labels}  teacher: {args.teacher}  student: {args.student}  (n = {n['labels']})")
        print(res.table())
    return EXIT_OK


def cmd_pid(args, parser: argparse.ArgumentParser) -> int:
    files = {"--labels": args.labels, "--teacher": args.teacher, "--student": args.student}
    given = [flag for flag, v in files.items() if v is not None]
    if args.joint is not None and given:
        parser.error(f"give either a JOINT array or --labels/--teacher/--student, not both (got {given[0]})")
    if args.joint is None:
        if not given:
            parser.error("give a JOINT .npy array, or all of --labels, --teacher and --student")
        if len(given) != 3:
            missing = ", ".join(flag for flag, v in files.items() if v is None)
            parser.error(f"--labels, --teacher and --student go together: missing {missing}")
        if args.counts:
            parser.error("--counts applies only to a JOINT array")
        return _pid_estimate(args)
    used = [f"--{dest.replace('_', '-')}" for dest in ESTIMATE_OPTIONS if getattr(args, dest) is not None]
    if used:
        flag = "--no-normalize" if used[0] == "--normalize" else used[0]
        parser.error(f"{flag} applies only with --labels/--teacher/--student, not to a JOINT array")
    return _pid_joint(args)


# ---- demo


def gates_table() -> str:
    from ..pid import decompose
    from ..pid.gates import GATES
    from ..pid.terms import ATOMS, LABELS

    head = ("gate", "Y = f(T, S)", *(LABELS[t] for t in ATOMS), "gap")
    lines = [
        "Canonical gates: T, S independent uniform bits (RDN: T = S uniform), BROJA PID in bits.",
        "Each gate: the computed decomposition, and below it the exact textbook value.",
        "",
        f"  {head[0]:<5} {head[1]:<12}" + "".join(f"{h:>12}" for h in head[2:6]) + f"{head[6]:>10}",
    ]
    lines.append("  " + "-" * (len(lines[-1]) - 2))
    worst = 0.0
    for name, gate in GATES.items():
        definition, exact = gate.definition, [gate.pid[t] for t in ATOMS]
        res = decompose(gate.joint(), unit="bits")
        vals = [getattr(res, t) for t in ATOMS]
        worst = max(worst, *(abs(v - e) for v, e in zip(vals, exact, strict=True)))
        lines.append(
            f"  {name:<5} {definition:<12}" + "".join(f"{_fmt(v):>12}" for v in vals) + f"{res.gap:>10.1e}"
        )
        lines.append(f"  {'':<5} {'  exact':<12}" + "".join(f"{_fmt(e):>12}" for e in exact))
    lines.append("")
    lines.append(f"  max |computed - exact| over all gates and terms: {worst:.1e} bits")
    return "\n".join(lines)


def demo_features(n: int = 5000, n_classes: int = 10, seed: int = 0):
    """Synthetic labels and features: teacher clusters encode y, student clusters encode y mod 5."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    dim = 8
    # Class centres: well separated (spread 6 vs unit noise), so the clusters recover what they encode.
    centres_t = 6.0 * rng.standard_normal((n_classes, dim))
    centres_s = 6.0 * rng.standard_normal((n_classes // 2, dim))
    teacher = centres_t[y] + rng.standard_normal((n, dim))
    student = centres_s[y % (n_classes // 2)] + rng.standard_normal((n, dim))
    return y, teacher, student


def cmd_demo(args, parser: argparse.ArgumentParser) -> int:
    print(gates_table())
    print()
    try:
        from ..pid import estimate
    except ImportError as exc:
        print(
            f"{PROG}: representation example skipped: estimator not available ({_one_line(exc)})",
            file=sys.stderr,
        )
        return EXIT_OK

    y, teacher, student = demo_features()
    print(
        f"Representation example: n = {len(y)} samples, 10 classes, {teacher.shape[1]}-D features "
        "(seeded synthetic data).\n"
        "  teacher features cluster by the label y; student features cluster by y mod 5 only\n"
        f"  (the student cannot tell y from y + 5). Estimate with k = 10 clusters, {args.boot} bootstrap "
        "resamples:"
    )
    print()
    res = estimate(y, teacher, student, k=10, n_boot=args.boot, seed=0)
    print(res.table())
    pid = res.pid
    unit = pid.unit
    print()
    print(
        f"Reading: Red = {pid.redundancy:.2f} {unit} (about log2 5 = {math.log2(5):.2f}) of label "
        "information is already shared by the student (transferred); "
        f"Uni(Y:T\\S) = {pid.unique_t:.2f} {unit} is known only to the teacher, "
        "what is left to distill (here: whether y >= 5); "
        f"Uni(Y:S\\T) = {pid.unique_s:.2f} and Syn = {pid.synergy:.2f}"
        + (
            " are near 0: the student knows nothing about y that the teacher does not."
            if max(abs(pid.unique_s), abs(pid.synergy)) < 0.1
            else "."
        )
    )
    return EXIT_OK


def add_commands(sub) -> None:
    """Register ``pid`` and ``demo`` on the CLI's subparsers."""
    pid = sub.add_parser(
        "pid",
        help="decompose a joint array p[y,t,s], or estimate the PID from labels and features",
        description="BROJA partial information decomposition, either of an explicit joint array\n"
        "p[y,t,s] (JOINT .npy/.npz), or estimated from labels and teacher/student features\n"
        "(--labels/--teacher/--student: features are PCA-reduced and clustered, then the joint\n"
        "histogram is decomposed). Files are loaded with allow_pickle=False (never unpickled).",
        epilog=TERMS_HELP + "\nexamples:\n"
        "  infodistill pid joint.npy\n"
        "  infodistill pid counts.npy --counts --unit nats --json\n"
        "  infodistill pid --labels y.npy --teacher t.npy --student s.npy --k 10 --boot 100\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pid.add_argument(
        "joint",
        nargs="?",
        metavar="JOINT",
        help="joint distribution p[y,t,s] as .npy (or .npz holding one array); axis 0 = labels Y, "
        "axis 1 = teacher T, axis 2 = student S",
    )
    pid.add_argument(
        "--unit", choices=("bits", "nats"), default="bits", help="information unit (default bits)"
    )
    pid.add_argument(
        "--tol", type=_float, default=None, help="certified solver tolerance, in --unit (default 1e-8 bits)"
    )
    pid.add_argument("--json", action="store_true", help="print JSON instead of a table")

    joint = pid.add_argument_group("JOINT array only")
    joint.add_argument("--counts", action="store_true", help="JOINT is a count histogram: normalise it")

    est = pid.add_argument_group("estimate from labels and features")
    est.add_argument("--labels", metavar="Y.npy", help="labels: 1-D integer class ids, length n")
    est.add_argument("--teacher", metavar="T.npy", help="teacher features: (n, ...) real array")
    est.add_argument("--student", metavar="S.npy", help="student features: (n, ...) real array")
    est.add_argument(
        "--k", type=_int_at_least(1), metavar="N", help="clusters per representation (default 10)"
    )
    est.add_argument(
        "--k-t", type=_int_at_least(1), metavar="N", help="clusters for the teacher (default --k)"
    )
    est.add_argument(
        "--k-s", type=_int_at_least(1), metavar="N", help="clusters for the student (default --k)"
    )
    est.add_argument(
        "--pca",
        type=_int_at_least(0),
        metavar="N",
        help="PCA components before clustering (0: no PCA; default 5)",
    )
    est.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_const",
        const=False,
        default=None,
        help="do not L2-normalise each sample's feature vector",
    )
    est.add_argument(
        "--pool",
        choices=("flatten", "avg"),
        help="how to reduce (n, C, ...) features to (n, d): flatten, or average over the trailing axes "
        "(default flatten)",
    )
    est.add_argument(
        "--discretize",
        choices=("kmeans", "argmax"),
        help="symbols by k-means clustering, or argmax over the columns for logits/probabilities "
        "(default kmeans)",
    )
    est.add_argument(
        "--fit-fraction",
        type=_float,
        metavar="F",
        help="fit PCA and k-means on this random fraction of the samples and count the histogram "
        "on the held-out rest (default: fit and count on all)",
    )
    est.add_argument(
        "--boot", type=_int_at_least(0), metavar="N", help="bootstrap resamples for CIs (default 0)"
    )
    est.add_argument(
        "--ci", type=_float, metavar="C", help="confidence level of the intervals (default 0.95)"
    )
    est.add_argument(
        "--perm",
        type=_int_at_least(0),
        metavar="N",
        help="label permutations for the plug-in bias baseline (0: none; default 5)",
    )
    est.add_argument("--seed", type=int, metavar="N", help="random seed (default 0)")
    pid.set_defaults(func=cmd_pid, subparser=pid)

    demo = sub.add_parser(
        "demo",
        help="canonical gates against their exact values, and a synthetic teacher/student example",
        description="Decompose the canonical gates (RDN, UNQ, XOR, AND, SUM, COPY) and compare with\n"
        "their exact textbook values; then estimate the PID of a synthetic teacher/student pair.",
        epilog=TERMS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--boot", type=_int_at_least(0), default=50, metavar="N", help="bootstrap resamples (default 50)"
    )
    demo.set_defaults(func=cmd_demo, subparser=demo)
