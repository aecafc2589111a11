"""The checkpoint format: one directory of safetensors + JSON, written atomically; never pickled.

A checkpoint is a directory holding ``tensors.safetensors`` (every tensor) and ``state.json``
(everything else, with ``{"__tensor__": key}`` where a tensor stood). It is written under a
temporary name and renamed into place, so an interrupted write leaves the previous checkpoint of
that name (or none). Loading uses safetensors and ``json`` only: no code is ever unpickled. Where a
run keeps its checkpoints, and which is the latest, is the run directory's business
(``rundir.RunDir``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import InfodistillError
from ..models.factory import state_dict_mismatch

TENSORS, STATE = "tensors.safetensors", "state.json"


class CheckpointError(InfodistillError, ValueError):
    """A checkpoint that cannot be used: missing, truncated, or from another model."""


def flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list/tuple by a reference; collect the tensors."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return flatten(torch.from_numpy(np.ascontiguousarray(obj)), prefix, tensors) | {"__numpy__": True}
    if isinstance(obj, dict):
        out = {"__dict__": [[_key(k), flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
        return out
    if isinstance(obj, (list, tuple)):
        items = [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def _key(k):
    # JSON object keys must be strings; optimizer states use int keys, so keep the type.
    return {"int": k} if isinstance(k, int) else k


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            t = tensors[obj["__tensor__"]]
            return t.numpy() if obj.get("__numpy__") else t
        if "__dict__" in obj:
            return {
                (k["int"] if isinstance(k, dict) else k): unflatten(v, tensors) for k, v in obj["__dict__"]
            }
        if "__tuple__" in obj:
            return tuple(unflatten(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    return obj


def rng_state() -> dict:
    """torch's global RNG (dropout, initialisations); the training code draws all other
    randomness from explicit generators whose states it checkpoints itself."""
    return {"torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    rng = state.get("torch") if isinstance(state, dict) else None
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8:
        raise CheckpointError("the checkpoint's RNG state is not a byte tensor: the checkpoint is corrupt")
    try:
        torch.set_rng_state(rng)
    except RuntimeError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"the checkpoint's RNG state is corrupt ({msg})") from None


def write_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` (nested dicts of tensors and plain values) as the checkpoint directory
    ``path``, atomically: through ``.<name>.tmp`` beside it, renamed into place once complete."""
    final = Path(path)
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten(state, "", tensors)
    try:
        save_file(tensors, str(tmp / TENSORS))
        _fsync(tmp / TENSORS)
        crash_point("checkpoint-tensors-written")
        with open(tmp / STATE, "w") as f:
            json.dump(skeleton, f)
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        # A full disk: the partial copy would only take space the next attempt needs.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    crash_point("checkpoint-before-rename")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def _fsync(path: Path) -> None:
    # The data should reach the disk before the pointer names them (a killed process needs no
    # fsync, the page cache survives it; this narrows the window of a power loss).
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Fault injection for the crash tests only: ``INFODISTILL_TEST_SIGKILL_AT=NAME`` or ``NAME@K`` makes
#: the process SIGKILL itself the K-th time (default 1st) it reaches ``crash_point(NAME)``.
CRASH_ENV = "INFODISTILL_TEST_SIGKILL_AT"
_crash_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """A named point where the crash tests kill the process; inert unless ``CRASH_ENV`` names it.

    Points: ``checkpoint-tensors-written`` (between the safetensors and JSON writes),
    ``checkpoint-before-rename``, ``checkpoint-before-pointer``, ``epoch-logged`` (log line written,
    checkpoint not yet), ``train-step`` (after an optimiser step) and ``pid`` (inside a PID
    evaluation)."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    want, _, k = spec.partition("@")
    if want != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] == int(k or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read the checkpoint directory ``path``; a one-line CheckpointError if it is not one."""
    path = Path(path)
    if not (path / TENSORS).is_file() or not (path / STATE).is_file():
        raise CheckpointError(
            f"{path} is not an infodistill checkpoint: expected {TENSORS} and {STATE} in that directory"
        )
    try:
        tensors = load_file(str(path / TENSORS))
        skeleton = json.loads((path / STATE).read_text())
        state = unflatten(skeleton, tensors)
    except Exception as exc:  # safetensors raises its own error type for a bad header
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {msg}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: {STATE} must hold a mapping, got {type(state).__name__}")
    return _Checkpoint(state, path)


class _Checkpoint(dict):
    """A loaded checkpoint: a missing entry is a one-line CheckpointError, not a bare KeyError."""

    def __init__(self, state: dict, path: Path) -> None:
        super().__init__(state)
        self.path = path

    def __missing__(self, key):
        raise CheckpointError(
            f"checkpoint {self.path} has no {key!r} entry: it was not written by an infodistill run"
        )


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str = "model") -> None:
    """``load_state_dict`` with a one-line error naming missing, unexpected and mis-shaped keys.

    Also refused: integer tensors where the model has floating ones (``load_state_dict`` would cast
    them silently) and NaN/inf weights (every output would be NaN, and accuracy a silent 0.1)."""
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"the {what} checkpoint does not hold a state dict of named tensors")
    parts = state_dict_mismatch(model.state_dict(), state)
    if parts:
        raise CheckpointError(f"the {what} checkpoint is from another architecture ({'; '.join(parts)})")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())), None)
    if bad is not None:
        raise CheckpointError(
            f"the {what} checkpoint holds NaN or infinite values (in {bad}): it is from a diverged "
            "run; use an earlier checkpoint"
        )
    model.load_state_dict(state)
