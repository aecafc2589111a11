"""Command-line interface: ``infodistill COMMAND ...``.

    infodistill pid JOINT.npy [--unit bits|nats] [--counts] [--tol X] [--json]
    infodistill pid --labels Y.npy --teacher T.npy --student S.npy [--k N] [--k-t N] [--k-s N]
                    [--pca N] [--no-normalize] [--pool flatten|avg] [--discretize kmeans|argmax]
                    [--fit-fraction F] [--boot N] [--ci C] [--perm N] [--seed N]
                    [--unit bits|nats] [--tol X] [--json]
    infodistill demo [--boot N]
    infodistill train-teacher|distill|evaluate|audit|reproduce ... (see --help)
    infodistill --version

Only the standard library is imported at module level, so ``infodistill --help`` is fast; numpy and
:mod:`infodistill.pid` are imported inside the command functions. torch is never imported.

Every expected failure (missing or unreadable file, pickled or non-numeric array, wrong shape,
mismatched lengths, a ``ValueError`` from the library) is reported as one line
``infodistill: error: <message>`` on stderr with exit status 2; argparse usage errors also exit 2;
Ctrl-C exits 130.

The commands live one group a module: :mod:`.pid` (pid, demo), :mod:`.train` (train-teacher,
distill, evaluate), :mod:`.audit`, :mod:`.reproduce`; :mod:`.common` holds what they share.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from . import audit, pid, reproduce, train
from .common import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    PROG,
    CLIError,
    _json_default,
    _one_line,
    _overrides_after_options,
    errors,
    message,
)
from .pid import TERMS_HELP, gates_table

__all__ = ["CLIError", "_json_default", "build_parser", "gates_table", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Knowledge distillation you can measure: partial information decomposition\n"
        "(BROJA) of what a teacher and a student representation know about the labels.",
        epilog=TERMS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    pid.add_commands(sub)
    train.add_commands(sub)
    reproduce.add_commands(sub)
    audit.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 error or usage error, 130 interrupted).

    ``argv`` defaults to ``sys.argv[1:]``. The console script calls ``sys.exit(main())``.
    """
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras and not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    try:
        if extras:
            args.overrides = list(args.overrides) + _overrides_after_options(extras, args.command)
        return args.func(args, args.subparser)
    except SystemExit as exc:  # parser.error() inside a command
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into e.g. `head`, which exited: stop quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE
    except errors() as exc:  # every user error, mapped here alone: one line, exit status 2
        text = exc if isinstance(exc, CLIError) else message(exc)
        print(f"{PROG}: error: {_one_line(text)}", file=sys.stderr)
        return EXIT_ERROR
