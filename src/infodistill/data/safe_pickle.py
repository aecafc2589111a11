"""A restricted unpickler for the CIFAR "python version" files.

SECURITY DECISION -- read this before touching the module.

The CIFAR-10/100 "python version" archives (https://www.cs.toronto.edu/~kriz/cifar.html) store
each batch as a pickle of a dict of plain values and one numpy array. Unpickling runs whatever
callable the file names, so ``pickle.load`` on a user-supplied file is arbitrary code execution.
The project rule is: **never unpickle arbitrary user files**. This module is the only place that
reads pickles, and it does so with :class:`RestrictedUnpickler`, whose ``find_class`` resolves
*only* the callables that a pickled numpy array needs and refuses every other global with
:class:`~infodistill.data.errors.DataError` before anything is called. With that whitelist a
file can build nothing but the pickle format's own containers (dict, list, tuple, str, bytes,
int, float, bool, None) and numpy arrays/dtypes.

The whitelist, by the pickle that references it:

- ``numpy.core.multiarray._reconstruct`` (numpy 1.x name; the real CIFAR files, written by
  Python 2 cPickle) and ``numpy._core.multiarray._reconstruct`` (numpy >= 2), with its argument
  ``numpy.ndarray`` and ``numpy.dtype``: the ``ndarray.__reduce__`` path, protocols 0-4;
- ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer``: the path numpy uses
  for protocol 5;
- ``_codecs.encode``, restricted to the ``latin1`` codec: how Python 3 writes ``bytes`` in a
  protocol-2 pickle (for Python 2 compatibility).

The names are mapped to the objects found through ``ndarray.__reduce__`` of the installed numpy
rather than imported by module path, so nothing is imported on behalf of the file. Files are read
with ``encoding="bytes"``, as the CIFAR authors' own loader does, because Python 2 ``str`` values
(the array payloads) are raw bytes, not text.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

__all__ = ["RestrictedUnpickler", "safe_load_pickle"]


_LATIN1_NAMES = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"})


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Only the codec protocol-2 pickles use for bytes; an arbitrary codec name would let a file
    # pick e.g. zlib_codec (a decompression bomb), so everything else is refused.
    if not isinstance(encoding, str) or encoding.lower().replace("_", "-") not in _LATIN1_NAMES:
        raise DataError(f"refusing _codecs.encode with encoding {encoding!r} in a pickle")
    if not isinstance(obj, str):
        raise DataError(f"refusing _codecs.encode of a {type(obj).__name__} in a pickle")
    return obj.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.ndarray((0,), np.uint8).__reduce__()[0]
    frombuffer = np.zeros(1, np.uint8).__reduce_ex__(5)[0]
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return table


_ALLOWED = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can construct only plain containers and numpy arrays (see module docstring).

    ``source`` is a name used in error messages (usually the file path).
    """

    def __init__(self, file: io.BufferedIOBase, *, source: str = "<pickle>") -> None:
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._source}: refusing to unpickle global {module}.{name} "
                "(only numpy arrays and plain containers are allowed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._source}: refusing persistent id in pickle")


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Load one pickle from ``path`` with :class:`RestrictedUnpickler`.

    Every failure -- a refused global, a truncated or corrupt stream, trailing garbage -- raises
    :class:`DataError` with a one-line message naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        # pickletools reads each declared length from the file before anything is allocated; the
        # C unpickler allocates first, so 12 bytes claiming a 2**33-byte bytearray would cost 8 GiB.
        for _ in pickletools.genops(raw):
            pass
    except Exception as exc:
        raise DataError(f"{path}: corrupt or truncated pickle ({type(exc).__name__}: {exc})") from None
    stream = io.BytesIO(raw)
    try:
        obj = RestrictedUnpickler(stream, source=str(path)).load()
    except DataError as exc:
        # The codec guard does not know the file name; add it.
        msg = str(exc)
        raise DataError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except Exception as exc:
        # Corrupt pickles surface as many types (UnpicklingError, EOFError, ValueError from
        # numpy's __setstate__, ...); all mean the same thing to the caller.
        raise DataError(f"{path}: corrupt or truncated pickle ({type(exc).__name__}: {exc})") from None
    if stream.tell() != len(raw):
        raise DataError(f"{path}: {len(raw) - stream.tell()} bytes of trailing data after the pickle")
    return obj
