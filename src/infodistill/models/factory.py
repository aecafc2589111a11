"""Your own model and your own weights: build any ``nn.Module`` by import path, load a weights file.

``build_from_factory("pkg.module:fn", kwargs)`` imports ``pkg.module`` (or, for
``"path/to/file.py:fn"``, the file itself; a relative path is taken from the current directory)
and returns ``fn(**kwargs)``, which must be an ``nn.Module``. Naming a factory runs that code, as
importing it would: a config that names one is a program, to be trusted like one.

``load_weights(model, path, prefix=..., key=...)`` reads a ``.safetensors`` file, or a PyTorch file
through ``torch.load(weights_only=True)`` (tensors and plain containers only: a pickle that would
run code is refused), takes the state dict at ``key`` ("state_dict", or "a.b" for nested
mappings), strips ``prefix`` ("module." of a model saved inside DDP) and loads it, with a one-line
error listing missing and unexpected keys. Every error here is a ``ValueError`` of one line that
names the problem and the fix.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from ..imports import first_line, import_object

__all__ = ["build_from_factory", "load_weights", "read_state_dict"]


def build_from_factory(
    spec: str, kwargs: dict | None = None, *, seed: int | None = None, what: str = "factory"
):
    """``fn(**kwargs)`` for the function ``spec`` names, which must return an ``nn.Module``.

    ``seed``: the module is built under ``torch.manual_seed(seed)`` inside a forked RNG state, as
    :func:`~infodistill.models.build_model` builds the built-in ones (same seed, same weights; the
    global RNG is untouched)."""
    fn = import_object(spec, what)
    if not callable(fn):
        raise ValueError(f"{what} {spec!r} names a {type(fn).__name__}, not a function or class")
    kwargs = dict(kwargs or {})
    try:
        if seed is None:
            model = fn(**kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = fn(**kwargs)
    except Exception as exc:
        raise ValueError(
            f"{what} {spec!r} failed with kwargs {kwargs} ({first_line(exc)}); check the kwargs "
            "or the function"
        ) from None
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"{what} {spec!r} returned a {type(model).__name__}, not a torch.nn.Module; "
            "make it return the model"
        )
    return model


def _is_state_dict(obj) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _keys(obj: dict) -> str:
    keys = [repr(k) for k in list(obj)[:6]]
    return ", ".join(keys) + (" ..." if len(obj) > 6 else "")


def read_state_dict(
    path: str | Path, *, prefix: str | None = None, key: str | None = None, what: str = "weights"
) -> dict[str, torch.Tensor]:
    """The state dict in a weights file (see the module docstring), on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {path} does not exist; give the path of a .safetensors or .pt file")
    if path.suffix == ".safetensors":
        try:
            obj: Any = load_file(str(path))
        except Exception as exc:
            raise ValueError(
                f"{what} file {path} is not a readable safetensors file ({first_line(exc)})"
            ) from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            # torch's message is a paragraph; the line after "WeightsUnpickler error:" says why.
            text = str(exc).partition("WeightsUnpickler error:")[2] or str(exc)
            why = next((line.strip() for line in text.splitlines() if line.strip()), "").split(". ")[0]
            if "global" not in why.lower():
                raise ValueError(
                    f"{what} file {path} is not a PyTorch file torch.load can read ({why[:160]}); "
                    "save it with torch.save(model.state_dict(), path) or as .safetensors"
                ) from None
            raise ValueError(
                f"{what} file {path} holds more than tensors and plain containers, which "
                f"torch.load(weights_only=True) refuses to unpickle ({why[:160]}); save the "
                "state dict alone (torch.save(model.state_dict(), path)) or a .safetensors file"
            ) from None
        except Exception as exc:
            raise ValueError(
                f"{what} file {path} is not a PyTorch file torch.load can read ({first_line(exc)}); "
                "save it with torch.save(model.state_dict(), path) or as .safetensors"
            ) from None
    if key is not None:
        obj = _at_key(obj, key, path, what)
    if not _is_state_dict(obj):
        if isinstance(obj, dict) and obj:
            nested = [k for k, v in obj.items() if isinstance(k, str) and _is_state_dict(v)]
            hint = f"set weights_key: {nested[0]}" if nested else "set weights_key to the entry holding it"
            raise ValueError(
                f"{what} file {path}{f' at key {key!r}' if key else ''} holds a mapping with keys "
                f"{_keys(obj)}, not a state dict of named tensors; {hint}"
            )
        raise ValueError(
            f"{what} file {path}{f' at key {key!r}' if key else ''} holds a {type(obj).__name__}, not a "
            "state dict of named tensors; save model.state_dict()"
        )
    if prefix:
        if not any(k.startswith(prefix) for k in obj):
            raise ValueError(
                f"{what} file {path}: no key starts with weights_prefix {prefix!r} (keys: {_keys(obj)}); "
                "drop weights_prefix or correct it"
            )
        obj = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in obj.items()}
    return obj


def _at_key(obj, key: str, path: Path, what: str):
    if isinstance(obj, dict) and key in obj:
        return obj[key]
    node = obj
    for i, part in enumerate(key.split(".")):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(key.split(".")[:i]) or "the top level"
            have = _keys(node) if isinstance(node, dict) else f"a {type(node).__name__}"
            raise ValueError(
                f"{what} file {path} has no weights_key {key!r} (at {where}: {have}); "
                "name one of those keys, or drop weights_key"
            )
        node = node[part]
    return node


def state_dict_mismatch(own: dict, state: dict) -> list[str]:
    """What keeps ``state`` from loading into a model whose state dict is ``own``: one
    'label: keys' entry each for missing, unexpected, mis-shaped and integer/float-mismatched keys
    (empty: it fits). ``load_state_dict`` would cast an integer tensor into a float one silently."""
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    both = set(own) & set(state)
    shape = sorted(k for k in both if tuple(own[k].shape) != tuple(state[k].shape))
    kind = sorted(k for k in both if own[k].is_floating_point() != state[k].is_floating_point())
    parts = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", extra),
        ("shape mismatch", shape),
        ("integer/float mismatch", kind),
    ):
        if keys:
            shown = ", ".join(keys[:4]) + (f" ... ({len(keys)} in all)" if len(keys) > 4 else "")
            parts.append(f"{label}: {shown}")
    return parts


def load_weights(
    model: nn.Module,
    path: str | Path,
    *,
    prefix: str | None = None,
    key: str | None = None,
    what: str = "weights",
) -> nn.Module:
    """Load the weights file ``path`` into ``model`` (in place; returned). Every key must match:
    missing, unexpected and mis-shaped keys are listed in the one-line error."""
    state = read_state_dict(path, prefix=prefix, key=key, what=what)
    own = model.state_dict()
    parts = state_dict_mismatch(own, state)
    if parts:
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        hint = "check the model's kwargs, weights_prefix and weights_key"
        common = _common_prefix(extra)
        if missing and common and any(k[len(common) :] in own for k in extra):
            hint = f"its keys start with {common!r}: set weights_prefix: {common!r}"
        raise ValueError(
            f"{what} file {path} does not fit the model {type(model).__name__} ({'; '.join(parts)}); {hint}"
        )
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())), None)
    if bad is not None:
        raise ValueError(f"{what} file {path} holds NaN or infinite values (in {bad}); use other weights")
    model.load_state_dict(state)
    return model


def _common_prefix(keys: list[str]) -> str:
    """The dotted prefix shared by all ``keys`` ("module." for a DDP-saved model), or ''."""
    if not keys:
        return ""
    first = keys[0].split(".")[0] + "."
    return first if len(first) > 1 and all(k.startswith(first) for k in keys) else ""
