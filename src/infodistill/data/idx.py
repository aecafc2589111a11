"""Reader and writer for IDX files, the format of MNIST and Fashion-MNIST.

Format (Y. LeCun's MNIST page, http://yann.lecun.com/exdb/mnist/, section "FILE FORMATS"):

- bytes 0-1: zero;
- byte 2: element type code: ``0x08`` unsigned byte, ``0x09`` signed byte, ``0x0B`` int16,
  ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64;
- byte 3: number of dimensions ``n``;
- then ``n`` big-endian unsigned 32-bit sizes, one per dimension;
- then the elements, big-endian, in C (row-major) order, and nothing after them.

So ``train-images-idx3-ubyte`` has magic ``0x00000803`` and dims ``(60000, 28, 28)``, and
``train-labels-idx1-ubyte`` has magic ``0x00000801`` and dims ``(60000,)``. Files may be gzip
compressed (the Debian package ``dataset-fashion-mnist`` ships them as ``*.gz``); compression is
recognised from the gzip magic bytes, not from the file name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["read_idx", "write_idx", "IDX_DTYPES"]

#: IDX element type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        # A cut-off download is the common cause; gzip reports it as EOFError.
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a native-endian numpy array.

    The magic number, the element type, the header length and the exact data length are all
    checked; any problem raises :class:`DataError` with a one-line message naming the file.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, the magic number alone needs 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (magic number 0x{raw[:4].hex()} does not start with two zero bytes)"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX element type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(
            f"{path}: truncated IDX header ({len(raw)} bytes, {header_len} needed for {ndim} dimensions)"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    # Python ints: the product of declared dims must not overflow before it is compared.
    expected = dtype.itemsize
    for d in dims:
        expected *= d
    actual = len(raw) - header_len
    if actual < expected:
        raise DataError(
            f"{path}: truncated IDX data (dims {dims} of {dtype.name} need {expected} bytes, "
            f"only {actual} present)"
        )
    if actual > expected:
        raise DataError(
            f"{path}: IDX size mismatch (dims {dims} of {dtype.name} need {expected} bytes, "
            f"{actual} present: {actual - expected} trailing bytes)"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)
    # astype copies, so the result is writable and does not pin the decompressed buffer.
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends in ``.gz``.

    Supported dtypes are those of :data:`IDX_DTYPES` (uint8, int8, int16, int32, float32,
    float64). Returns the path written.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    code = next(
        (c for c, dt in IDX_DTYPES.items() if dt.newbyteorder("=") == array.dtype.newbyteorder("=")), None
    )
    if code is None:
        raise ValueError(f"dtype {array.dtype} has no IDX type code")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must fit in 32 bits, got {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path
