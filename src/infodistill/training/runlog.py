"""The files of a run directory besides the checkpoints: the JSON-lines log, the ``latest.json``
pointer read back, pruning of old checkpoints, and the config check before a resume.

Every write is atomic (``infodistill.atomic``): a process killed mid-write leaves the old file,
never a torn one. The checkpoints themselves are ``checkpoint.py``'s; the directory's lock and the
file-system error messages are ``rundir.py``'s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import atomic_write as _write_atomic
from .checkpoint import load_checkpoint


class TrainingError(RuntimeError):
    """A run that cannot continue (e.g. a non-finite loss); the last good checkpoint is kept."""


def read_resume_state(out: Path, resume: bool, config: dict, defaults: dict | None = None) -> dict | None:
    """The checkpoint a run in ``out`` continues from (None: a fresh run), after the config check."""
    if not (out / "latest.json").exists():
        return None
    if not resume:
        raise TrainingError(
            f"{out} already holds a run: pass --resume to continue it, or choose another --out"
        )
    check_same_config(out / "config.json", config, defaults)
    return load_checkpoint(out)


def check_same_config(path: Path, config: dict, defaults: dict | None = None) -> None:
    """Resuming with another config would silently mix two runs: name the keys that differ.

    A key the saved config lacks (it was written before the key existed) counts as its default."""
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
            f"cannot resume {path.parent}: its config differs in {', '.join(diff[:5])}"
            f"{' ...' if len(diff) > 5 else ''}; use the same config or another --out"
        )


def read_log(path: str | os.PathLike) -> list[dict]:
    """The JSON lines of a run's log; a corrupt line is a TrainingError naming the file and line."""
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


def truncate_log(path: Path, start_epoch: int) -> None:
    """Drop log lines of epochs after the checkpoint (written before a crash, to be redone)."""
    if path.exists():
        keep = [r for r in read_log(path) if r["epoch"] <= start_epoch]
        _write_atomic(path, "".join(json.dumps(r) + "\n" for r in keep))


def append_log(path: Path, record: dict) -> None:
    """Add one line by rewriting the file atomically: a process killed mid-write leaves the old
    log, never a torn last line that would make the log unreadable."""
    old = path.read_text() if path.exists() else ""
    _write_atomic(path, old + json.dumps(record) + "\n")


def latest_name(out: Path) -> str | None:
    """The checkpoint ``latest.json`` names (None if there is none or it is unreadable)."""
    try:
        name = json.loads((out / "latest.json").read_text())["latest"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) else None


def prune_checkpoints(out: Path, latest: str, keep_every: int | None) -> None:
    """Delete earlier epoch checkpoints, except every ``keep_every``-th epoch's."""
    import shutil

    for d in out.glob("epoch-*"):
        if not d.is_dir() or d.name == latest:
            continue
        epoch = int(d.name.split("-")[1])
        if keep_every is None or epoch % keep_every:
            shutil.rmtree(d, ignore_errors=True)


__all__ = [
    "TrainingError",
    "append_log",
    "check_same_config",
    "latest_name",
    "prune_checkpoints",
    "read_log",
    "read_resume_state",
    "truncate_log",
]
