"""Atomic replacement of a text file, for every writer in the package and the bench scripts.

A reader, or a rerun after a crash, finds the old file or the new one, never a torn one: the text
goes to a temporary file in the same directory (``os.replace`` is atomic only within one file
system), is flushed and fsynced (so the rename cannot reach the disk before the data), and then
replaces the target. Standard library only, so that the lowest layer may import it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by a file holding ``text``, through ``.<name>.tmp`` beside it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        # a partial copy (a full disk) would only take space the next attempt needs
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.replace(tmp, path)
