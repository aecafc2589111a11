"""Run directories: one writer at a time, and file-system failures in the project's words.

A run (``train-teacher``, ``distill``, a ``reproduce`` experiment) holds an exclusive OS lock
(``fcntl.flock``) on ``<dir>/.lock`` while it works. The kernel drops the lock when the process
ends, however it ends, so a SIGKILLed run never leaves a stale lock: only the file stays, and the
next run takes it over. A second process on the same directory is refused with the holder's pid,
which the holder writes into the file once it has the lock.

Under torchrun only rank 0 writes, so only rank 0 locks; its verdict is broadcast so that every
rank stops alike. Platforms without ``fcntl`` (Windows) run unlocked.
"""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; documented as unsupported
    fcntl = None

LOCK_NAME = ".lock"


class RunDirError(RuntimeError):
    """A run directory that cannot be used: a file, not writable, full, or in use by another run."""


_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
}


def os_reason(exc: OSError) -> str:
    """What went wrong, in a few words (no ``[Errno N]`` prefix, no repeated path)."""
    return _REASONS.get(exc.errno, (exc.strerror or type(exc).__name__).lower())


def _first_file_above(path: Path) -> Path | None:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent if not parent.is_dir() else None
    return None


def make_run_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and its parents) as a directory; a one-line RunDirError if it cannot be."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(
            f"run directory {path} is an existing file, not a directory: choose another --out "
            "(or delete the file)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = _first_file_above(path)
        if blocker is not None:
            raise RunDirError(
                f"cannot create run directory {path}: {blocker} is a file, not a directory; "
                "choose another --out"
            ) from None
        raise RunDirError(
            f"cannot create run directory {path} ({os_reason(exc)}); choose another --out"
        ) from None
    return path


#: resolved directory -> [fd, depth]: a process may re-enter its own lock (Fit.run inside distill)
_HELD: dict[str, list[int]] = {}


def _holder_pid(fd: int) -> str:
    # The holder writes its pid right after locking: a just-started holder may not have yet.
    for _ in range(20):
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        if text:
            return text
        time.sleep(0.05)
    return "unknown"


def lock_run_dir(path: str | os.PathLike) -> None:
    """Take the directory's lock for this process (created if missing); RunDirError if another
    process holds it. Re-entrant: each call needs one :func:`unlock_run_dir`."""
    path = make_run_dir(path)
    key = os.path.realpath(path)
    if key in _HELD:
        _HELD[key][1] += 1
        return
    if fcntl is None:
        _HELD[key] = [-1, 1]
        return
    lock = path / LOCK_NAME
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirError(
                f"run directory {path} is not writable ({os_reason(exc)}); choose another --out"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder_pid(fd)
            os.close(fd)
            raise RunDirError(
                f"run directory {path} is in use by another run (pid {pid}); wait for it to finish, "
                "stop it, or choose another --out"
            ) from None
        # A releasing holder unlinks the file: if ours is no longer the one at the path, another
        # process may lock the new file at the same time as us, so start again on that one.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as exc:
        os.close(fd)
        raise RunDirError(
            f"cannot write the lock file {lock} ({os_reason(exc)}); choose another --out"
        ) from None
    _HELD[key] = [fd, 1]


def unlock_run_dir(path: str | os.PathLike) -> None:
    key = os.path.realpath(path)
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    if held[0] >= 0:
        # Unlinked while still locked, so a waiting opener of this file sees it was replaced.
        try:
            os.unlink(Path(path) / LOCK_NAME)
        except OSError:
            pass
        os.close(held[0])


@contextmanager
def run_directory(path: str | os.PathLike):
    """Hold the run directory's lock for the block (rank 0 only under torchrun: every rank gets
    rank 0's refusal, so none waits on a rank that has stopped)."""
    from . import distributed

    error = None
    main = distributed.is_main()
    if main:
        try:
            lock_run_dir(path)
        except RunDirError as exc:
            error = str(exc)
    if distributed.world_size() > 1:
        error = distributed.broadcast_json(error)
    if error is not None:
        raise RunDirError(error)
    try:
        yield Path(path)
    finally:
        if main:
            unlock_run_dir(path)


@contextmanager
def writing(what: str, hint):
    """Turn an OSError while writing ``what`` into one RunDirError line ending in ``hint`` (a
    string, or a function giving it: the state to name is read only when a write failed)."""
    try:
        yield
    except OSError as exc:
        text = hint() if callable(hint) else hint
        raise RunDirError(f"cannot write {what} ({os_reason(exc)}); {text}") from None
