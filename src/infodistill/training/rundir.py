"""A run directory and every file in it, behind one object: :class:`RunDir`.

A run (``train-teacher``, ``distill``, one run of a ``reproduce`` experiment) writes into one
directory::

    config.json                     the run's config (checked before a resume)
    log.jsonl                       one JSON line per finished epoch
    latest.json                     {"latest": "epoch-NNNN"}: the checkpoint a resume continues from
    epoch-NNNN/                     checkpoints (``checkpoint.py``'s format: safetensors + JSON)
    teacher-untrained.safetensors   an untrained (nuisance) teacher's weights, for inspection
    tensorboard/                    the log's numbers as TensorBoard scalars (``run.tensorboard``)
    stopped.json                    an experiment's record of a run that stopped on a non-finite loss
    .lock                           held while a process works in the directory

Only this module names these files; the loop, the experiments, ``evaluate`` and the audit read and
write them through a :class:`RunDir`. Every write is atomic (``infodistill.atomic``): a process
killed mid-write leaves the old file, never a torn one; ``latest.json`` is replaced only after the
checkpoint it names is complete.

The lock. A run holds an exclusive OS lock (``fcntl.flock``) on ``.lock`` while it works
(:meth:`RunDir.locked`). The kernel drops the lock when the process ends, however it ends, so a
SIGKILLed run never leaves a stale lock: only the file stays, and the next run takes it over. A
second process on the same directory is refused with the holder's pid, which the holder writes into
the file once it has the lock. Under torchrun only rank 0 writes, so only rank 0 locks; its verdict
is broadcast so that every rank stops alike. Platforms without ``fcntl`` (Windows) run unlocked.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from safetensors.torch import save_file

from ..atomic import atomic_write
from ..errors import InfodistillError
from . import distributed
from .checkpoint import CheckpointError, crash_point, read_checkpoint, write_checkpoint

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; documented as unsupported
    fcntl = None

CONFIG, LOG, LATEST, LOCK_NAME = "config.json", "log.jsonl", "latest.json", ".lock"
UNTRAINED_TEACHER, TENSORBOARD, STOPPED = "teacher-untrained.safetensors", "tensorboard", "stopped.json"


class RunDirError(InfodistillError, RuntimeError):
    """A run directory that cannot be used: a file, not writable, full, or in use by another run."""


class TrainingError(InfodistillError, RuntimeError):
    """A run that cannot continue (e.g. a non-finite loss); the last good checkpoint is kept."""


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


@contextmanager
def writing(what: str, hint):
    """Turn an OSError while writing ``what`` into one RunDirError line ending in ``hint`` (a
    string, or a function giving it: the state to name is read only when a write failed)."""
    try:
        yield
    except OSError as exc:
        text = hint() if callable(hint) else hint
        raise RunDirError(f"cannot write {what} ({os_reason(exc)}); {text}") from None


def epoch_name(epoch: int) -> str:
    """The checkpoint directory of 1-based ``epoch``."""
    return f"epoch-{epoch:04d}"


class RunDir:
    """The run directory ``path`` (see the module docstring for its files).

    Nothing is created or read until a method asks: ``RunDir(path)`` of a directory that does not
    exist yet is fine (``create`` or ``locked`` makes it)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- the directory and its lock ----------------------------------------------------------
    def create(self) -> Path:
        """Create the directory (and its parents); a one-line RunDirError if it cannot be."""
        path = self.path
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

    @contextmanager
    def locked(self):
        """Hold the directory's lock for the block (created if missing; rank 0 only under
        torchrun: every rank gets rank 0's refusal, so none waits on a rank that has stopped).
        RunDirError if another process, or this one, already holds it."""
        error = None
        main = distributed.is_main()
        if main:
            try:
                self.create()
                _lock(self.path)
            except RunDirError as exc:
                error = str(exc)
        if distributed.world_size() > 1:
            error = distributed.broadcast_json(error)
        if error is not None:
            raise RunDirError(error)
        try:
            yield self
        finally:
            if main:
                _unlock(self.path)

    # -- config.json -------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    def has_config(self) -> bool:
        return self.config_path.is_file()

    def read_config(self) -> dict:
        """The saved config; ValueError naming the file if it is not a JSON mapping."""
        try:
            raw = json.loads(self.config_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.config_path} is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{self.config_path} is not a config mapping")
        return raw

    def write_config(self, config: dict) -> None:
        atomic_write(self.config_path, json.dumps(config, indent=2))

    def check_same_config(self, config: dict, defaults: dict | None = None) -> None:
        """Resuming with another config would silently mix two runs: name the keys that differ.

        A key the saved config lacks (it was written before the key existed) counts as its
        default."""
        path = self.config_path
        if not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TrainingError(f"cannot resume: {path} is unreadable ({exc}); use another --out") from None
        if not isinstance(saved, dict):
            raise TrainingError(f"cannot resume: {path} is not a config mapping; use another --out")

        def flat(d, prefix=""):
            items = {}
            for k, v in d.items():
                key = f"{prefix}{k}"
                items.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
            return items

        a, b = flat(saved), flat(json.loads(json.dumps(config)))
        for k, v in flat(json.loads(json.dumps(defaults or {}))).items():
            a.setdefault(k, v)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if diff:
            raise TrainingError(
                f"cannot resume {self.path}: its config differs in {', '.join(diff[:5])}"
                f"{' ...' if len(diff) > 5 else ''}; use the same config or another --out"
            )

    # -- log.jsonl ---------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.path / LOG

    def has_log(self) -> bool:
        return self.log_path.exists()

    def read_log(self) -> list[dict]:
        """The log's records ([] before the first epoch); a corrupt line is a TrainingError."""
        return read_log(self.log_path) if self.has_log() else []

    def last_epoch(self) -> int:
        """The last epoch the log records (0 if none)."""
        return max((r["epoch"] for r in self.read_log()), default=0)

    def truncate_log(self, start_epoch: int) -> None:
        """Drop log lines of epochs after the checkpoint (written before a crash, to be redone)."""
        if self.has_log():
            keep = [r for r in self.read_log() if r["epoch"] <= start_epoch]
            atomic_write(self.log_path, "".join(json.dumps(r) + "\n" for r in keep))

    def append_log(self, record: dict) -> None:
        """Add one line by rewriting the file atomically: a process killed mid-write leaves the
        old log, never a torn last line that would make the log unreadable."""
        old = self.log_path.read_text() if self.has_log() else ""
        atomic_write(self.log_path, old + json.dumps(record) + "\n")

    # -- checkpoints and latest.json ---------------------------------------------------------
    def has_checkpoint(self) -> bool:
        return (self.path / LATEST).exists()

    def latest_name(self) -> str | None:
        """The checkpoint ``latest.json`` names (None if there is none or it is unreadable)."""
        try:
            name = json.loads((self.path / LATEST).read_text())["latest"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return name if isinstance(name, str) else None

    def save_checkpoint(self, name: str, state: dict) -> Path:
        """Write ``state`` as the checkpoint ``name``, then point ``latest.json`` at it."""
        final = write_checkpoint(self.create() / name, state)
        crash_point("checkpoint-before-pointer")
        atomic_write(self.path / LATEST, json.dumps({"latest": name}))
        return final

    def checkpoint_dir(self, epoch: int) -> Path:
        """Where the checkpoint of 1-based ``epoch`` is (kept after later epochs only with
        ``run.keep_every``): a path to hand to :func:`load_checkpoint` or ``model_from_run``."""
        return self.path / epoch_name(epoch)

    def load_latest(self) -> dict:
        """The checkpoint ``latest.json`` names."""
        return read_checkpoint(self._latest_path())

    def prune_checkpoints(self, latest: str, keep_every: int | None) -> None:
        """Delete earlier epoch checkpoints, except every ``keep_every``-th epoch's."""
        for d in self.path.glob("epoch-*"):
            if not d.is_dir() or d.name == latest:
                continue
            epoch = int(d.name.split("-")[1])
            if keep_every is None or epoch % keep_every:
                shutil.rmtree(d, ignore_errors=True)

    def resume_state(self, resume: bool, config: dict, defaults: dict | None = None) -> dict | None:
        """The checkpoint a run continues from (None: a fresh run), after the config check."""
        if not self.has_checkpoint():
            return None
        if not resume:
            raise TrainingError(
                f"{self.path} already holds a run: pass --resume to continue it, or choose another --out"
            )
        self.check_same_config(config, defaults)
        return self.load_latest()

    def _latest_path(self) -> Path:
        pointer = self.path / LATEST
        try:
            name = json.loads(pointer.read_text())["latest"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{pointer} is corrupt ({exc}); delete it to restart the run") from None
        # Only a directory beside the pointer: a hand-edited "../../x" must not lead elsewhere.
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            raise CheckpointError(
                f"{pointer} is corrupt (it must name a checkpoint directory beside it, got "
                f"{name!r}); delete it to restart the run"
            )
        return self.path / name

    # -- other files -------------------------------------------------------------------------
    def save_untrained_teacher(self, weights: dict) -> None:
        """An untrained (nuisance) teacher's weights (CPU tensors), so that it can be inspected;
        the run itself rebuilds it from its seed."""
        tmp = self.create() / f".{UNTRAINED_TEACHER}.tmp"
        with writing(f"the untrained teacher in {self.path}", "free space or choose another --out"):
            save_file(weights, str(tmp))
            tmp.replace(self.path / UNTRAINED_TEACHER)

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD

    def read_stop(self) -> dict | None:
        """The record of a run that stopped on a non-finite loss or weights (``record_stop``), or None."""
        path = self.path / STOPPED
        return json.loads(path.read_text()) if path.exists() else None

    def record_stop(self, record: dict) -> None:
        """Keep ``record`` ({"epoch", "error", ...}) of a run that stopped: for an experiment such a
        stop is a result, not the end of the experiment."""
        atomic_write(self.create() / STOPPED, json.dumps(record, indent=2))

    def clear_stop(self) -> None:
        (self.path / STOPPED).unlink(missing_ok=True)


def read_log(path: str | os.PathLike) -> list[dict]:
    """The JSON lines of a run's log file; a corrupt line is a TrainingError naming the file and
    line. (:meth:`RunDir.read_log` reads a run directory's.)"""
    with open(path) as f:
        lines = [(i, line) for i, line in enumerate(f, 1) if line.strip()]
    out = []
    for i, line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict):
            raise TrainingError(
                f"{path}, line {i}: not a JSON object; the log is corrupt (use another --out)"
            )
        out.append(rec)
    return out


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint directory, or a run directory (meaning its latest checkpoint)."""
    path = Path(path)
    run = RunDir(path)
    return run.load_latest() if (path / LATEST).is_file() else read_checkpoint(path)


def save_checkpoint(directory: str | os.PathLike, name: str, state: dict) -> Path:
    """Write ``state`` (nested dicts of tensors and plain values) as the checkpoint ``name`` of the
    run directory ``directory`` and make it the latest (:meth:`RunDir.save_checkpoint`)."""
    return RunDir(directory).save_checkpoint(name, state)


def _first_file_above(path: Path) -> Path | None:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent if not parent.is_dir() else None
    return None


#: resolved directory -> the fd of its lock, for the directories this process holds
_HELD: dict[str, int] = {}


def _holder_pid(fd: int) -> str:
    # The holder writes its pid right after locking: a just-started holder may not have yet.
    for _ in range(20):
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        if text:
            return text
        time.sleep(0.05)
    return "unknown"


def _lock(path: Path) -> None:
    """Take the directory's lock for this process; RunDirError if a process (this one included:
    a run is locked once, where it starts) holds it."""
    key = os.path.realpath(path)
    if key in _HELD:
        raise RunDirError(
            f"run directory {path} is in use by another run of this process; choose another --out"
        )
    if fcntl is None:
        _HELD[key] = -1
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
    _HELD[key] = fd


def _unlock(path: Path) -> None:
    fd = _HELD.pop(os.path.realpath(path), None)
    if fd is None or fd < 0:
        return
    # Unlinked while still locked, so a waiting opener of this file sees it was replaced.
    try:
        os.unlink(path / LOCK_NAME)
    except OSError:
        pass
    os.close(fd)


__all__ = [
    "RunDir",
    "RunDirError",
    "TrainingError",
    "epoch_name",
    "load_checkpoint",
    "os_reason",
    "read_log",
    "save_checkpoint",
    "writing",
]
