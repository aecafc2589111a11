"""What the ``infodistill`` commands share: exit codes, the one-line error, the error types a
command reports as one line, array loading and checks, argument types and JSON output.

Only the standard library is imported at module level; numpy and the training modules are imported
inside the functions.
"""

from __future__ import annotations

import argparse
import json
import math

from ..errors import InfodistillError

PROG = "infodistill"

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for e.g. `yes | head`


class CLIError(InfodistillError):
    """An expected failure of the command line, reported as one line on stderr with exit status 2."""


def _one_line(msg: object) -> str:
    return " ".join(str(msg).split())


def _fmt(x: float) -> str:
    return f"{float(x) + 0.0:.6f}"  # + 0.0 turns -0.0 into 0.0


def _json_default(obj):
    """JSON encoder fallback for numpy scalars and arrays (imported lazily: numpy is loaded by then)."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=_json_default))


_DTYPE_KINDS = {
    "c": "complex numbers",
    "U": "strings",
    "S": "byte strings",
    "O": "Python objects",
    "V": "structured/void records",
    "M": "datetimes",
    "m": "timedeltas",
}


def load_array(path: str, what: str):
    """Load one real numeric array from a .npy file or a .npz file holding exactly one array.

    Never unpickles (``allow_pickle=False``). Raises CLIError with a one-line message naming the file.
    """
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except FileNotFoundError:
        raise CLIError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise CLIError(f"{what} path is a directory, not a .npy/.npz file: {path}") from None
    except OSError as exc:
        raise CLIError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None

    import zipfile

    import numpy as np

    try:
        if magic.startswith(b"\x93NUMPY"):
            arr = np.load(path, allow_pickle=False)
        elif magic.startswith(b"PK"):
            with np.load(path, allow_pickle=False) as npz:
                names = list(npz.files)
                if len(names) != 1:
                    listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                    raise CLIError(
                        f"{what} file {path} holds {len(names)} arrays ({listed or 'none'}); "
                        "expected exactly one"
                    )
                arr = npz[names[0]]
        elif magic[:1] == b"\x80":
            raise CLIError(
                f"{what} file {path} is a pickle; infodistill never unpickles files "
                "(save a numeric array with numpy.save instead)"
            )
        elif not magic:
            raise CLIError(f"{what} file {path} is empty")
        else:
            raise CLIError(f"{what} file {path} is not a NumPy .npy or .npz file")
    except CLIError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        msg = _one_line(exc)
        if "allow_pickle" in msg:
            msg = "it holds Python objects, which would need unpickling (infodistill never unpickles files)"
        raise CLIError(f"cannot load {what} file {path}: {msg}") from None

    kind = arr.dtype.kind
    if kind not in "biuf":
        desc = _DTYPE_KINDS.get(kind, "non-numeric values")
        raise CLIError(f"{what} file {path} has dtype {arr.dtype} ({desc}); expected a real numeric array")
    return arr


def _check_features(arr, what: str, path: str):
    import numpy as np

    if arr.ndim == 0:
        raise CLIError(f"{what} file {path} holds a scalar; expected an array (n_samples, ...)")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.shape[0] == 0 or arr.size == 0:
        raise CLIError(f"{what} file {path} is an empty array (shape {arr.shape})")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise CLIError(f"{what} file {path} contains NaN or infinite values")
    return arr


def _check_labels(arr, path: str):
    import numpy as np

    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise CLIError(f"labels file {path} must be a 1-D array of class ids, got shape {arr.shape}")
    if arr.size == 0:
        raise CLIError(f"labels file {path} is an empty array")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise CLIError(f"labels file {path} contains NaN or infinite values")
        if not np.all(arr == np.round(arr)):
            raise CLIError(f"labels file {path} holds non-integer values; expected integer class ids")
        return arr  # whole-number floats; a cast to int64 would merge classes beyond 2**63
    return arr.astype(np.int64)


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v

    parse.__name__ = "int"
    return parse


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return v


def _overrides_after_options(extras: list[str], command: str) -> list[str]:
    """``key=value`` overrides given after (or between) the options; argparse's positional takes
    only those before the first option. Anything else left over is a mistake to name."""
    for token in extras:
        if token.startswith("-"):
            raise CLIError(
                f"unrecognized option {token.split('=', 1)[0]} for {command} (see {PROG} {command} --help)"
            )
        if "=" not in token:
            raise CLIError(
                f"unexpected argument {token!r} for {command}: overrides look like key.sub=value, "
                f"e.g. optim.lr=0.01 (see {PROG} {command} --help)"
            )
    return extras


def errors() -> tuple:
    """The exception types ``main`` reports as one line instead of a traceback: the package's user
    errors (``InfodistillError``: configs, data, checkpoints, run directories, runs, torchrun, this
    command line), a library function's ValueError for a bad argument, and an OSError (an
    unreadable file, an --out that is a file, a full disk: the message names the path)."""
    return (InfodistillError, ValueError, OSError)


def message(exc: Exception) -> str:
    """One line for an expected failure; an OSError names its path and reason, not ``[Errno N]``."""
    if isinstance(exc, OSError) and exc.strerror:
        from ..training.rundir import os_reason

        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{os_reason(exc)}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def require_torch() -> None:
    """Raise CLIError naming the install command when PyTorch or the training extras are missing."""
    try:
        import torch  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as exc:
        raise CLIError(
            f"this command needs PyTorch and the training extras ({exc.name} is missing): "
            "pip install torch==2.13.0 'infodistill[train]'"
        ) from None
