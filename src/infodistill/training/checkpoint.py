"""Checkpoints as safetensors + JSON, written atomically; never pickled.

A checkpoint is a directory ``<name>/`` holding ``tensors.safetensors`` (every tensor) and
``state.json`` (everything else, with ``{"__tensor__": key}`` where a tensor stood). It is written
under a temporary name and renamed into place, and ``latest.json`` (the pointer a resumed run
reads) is replaced atomically after it, so an interrupted write leaves the previous checkpoint
as the latest one. Loading uses safetensors and ``json`` only: no code is ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

TENSORS, STATE, LATEST = "tensors.safetensors", "state.json", "latest.json"


class CheckpointError(ValueError):
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
    torch.set_rng_state(state["torch"])


def save_checkpoint(directory: str | os.PathLike, name: str, state: dict) -> Path:
    """Write ``state`` (nested dicts of tensors and plain values) as ``directory/name`` atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten(state, "", tensors)
    save_file(tensors, str(tmp / TENSORS))
    with open(tmp / STATE, "w") as f:
        json.dump(skeleton, f)
        f.flush()
        os.fsync(f.fileno())
    final = directory / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = directory / f".{LATEST}.tmp"
    pointer.write_text(json.dumps({"latest": name}))
    os.replace(pointer, directory / LATEST)
    return final


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint directory (or a run directory, meaning its latest checkpoint)."""
    path = Path(path)
    if (path / LATEST).is_file():
        try:
            path = path / json.loads((path / LATEST).read_text())["latest"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise CheckpointError(
                f"{path / LATEST} is corrupt ({exc}); delete it to restart the run"
            ) from None
    if not (path / TENSORS).is_file() or not (path / STATE).is_file():
        raise CheckpointError(
            f"{path} is not an infodistill checkpoint: expected {TENSORS} and {STATE} in that directory"
        )
    try:
        tensors = load_file(str(path / TENSORS))
        skeleton = json.loads((path / STATE).read_text())
        return unflatten(skeleton, tensors)
    except Exception as exc:  # safetensors raises its own error type for a bad header
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {msg}") from None


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str = "model") -> None:
    """``load_state_dict`` with a one-line error naming missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or extra or shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", extra), ("shape mismatch", shape)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}")
        raise CheckpointError(f"the {what} checkpoint is from another architecture ({'; '.join(parts)})")
    model.load_state_dict(state)
