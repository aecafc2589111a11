"""Feature capture with forward hooks on unmodified models, teacher freezing and student init.

Features are read from *named modules* (``dict(model.named_modules())`` keys such as ``'block2'`` or
``'layer3.2.bn2'``) by forward hooks, so any user ``nn.Module`` can be distilled without editing its
``forward``.  Names are validated when a run is built, with suggestions for typos, and
:func:`probe_shapes` reports each layer's output shape from one dummy forward.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "FeatureExtractor",
    "collect_features",
    "freeze_teacher",
    "interpolate_student",
    "is_frozen",
    "model_device",
    "probe_shapes",
    "validate_layers",
]


def _suggestions(model: nn.Module, name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    # Stage names (when the model declares them) and top-level children are the names a user most
    # likely wants; the full list can run to hundreds for deep nets.
    preferred = list(getattr(model, "stage_names", ())) + [n for n, _ in model.named_children()]
    shown = list(dict.fromkeys(preferred))[:12] or list(names)[:12]
    return (
        f"{hint} valid names include {', '.join(repr(s) for s in shown)} "
        f"({len(names)} named modules in all; see dict(model.named_modules()))"
    )


def validate_layers(model: nn.Module, layers: Iterable[str]) -> list[str]:
    """Check that every name in ``layers`` is a module of ``model``; returns them as a list.

    Raises ValueError for an unknown name (with close matches and some valid names), a duplicate, or
    a non-string entry.
    """
    if isinstance(layers, str):
        raise TypeError("layers must be a list of module names, not a single string")
    layers = list(layers)
    modules = dict(model.named_modules())
    names = [n for n in modules if n]
    seen: set[str] = set()
    for name in layers:
        if not isinstance(name, str):
            raise ValueError(f"layer names must be strings, got {name!r}")
        if name in seen:
            raise ValueError(f"layer {name!r} is listed twice")
        seen.add(name)
        if name not in modules:
            raise ValueError(
                f"model {type(model).__name__} has no module named {name!r}"
                + _suggestions(model, name, names)
            )
    return layers


class FeatureExtractor:
    """Capture the outputs of named modules of ``model`` with forward hooks.

    After each forward of ``model``, ``features[name]`` holds the latest output of module ``name``
    (if a module runs several times in one forward, the last call wins).  Outputs are stored as
    they are, still attached to the autograd graph, unless ``detach=True``: whether gradients should
    flow through a feature is the caller's decision (a student's features need them, a frozen
    teacher's do not).  Call :meth:`clear` between steps to release the stored tensors, and
    :meth:`remove` (or use ``with``) to take the hooks off the model.

    >>> fx = FeatureExtractor(model, ["block2", "block3"])    # doctest: +SKIP
    >>> logits, feats = fx(x)                                  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, layers: Iterable[str], *, detach: bool = False):
        self.model = model
        self.layers: list[str] = validate_layers(model, layers)
        self.detach = detach
        self.features: dict[str, Any] = {}
        modules = dict(model.named_modules())
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in self.layers]

    def _hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.detach and isinstance(output, torch.Tensor):
                output = output.detach()
            self.features[name] = output

        return hook

    def clear(self) -> None:
        """Drop the stored outputs (and with them any autograd graph they keep alive)."""
        self.features.clear()

    def remove(self) -> None:
        """Remove the hooks from the model (idempotent) and clear the stored outputs."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.clear()

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Run ``model(*args, **kwargs)``; return its output and ``{layer: output}`` for this forward.

        Raises RuntimeError if a hooked layer did not run (it would otherwise be silently missing).
        """
        if not self._handles:
            raise RuntimeError("FeatureExtractor hooks were removed; create a new extractor")
        self.clear()
        out = self.model(*args, **kwargs)
        missing = [n for n in self.layers if n not in self.features]
        if missing:
            raise RuntimeError(
                f"layer(s) {missing} did not run during the forward of {type(self.model).__name__}"
            )
        return out, dict(self.features)

    def __enter__(self) -> FeatureExtractor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self._handles else "removed"
        return f"FeatureExtractor({type(self.model).__name__}, layers={self.layers}, {state})"


def _param_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in model.parameters():
        return t.device, t.dtype
    for t in model.buffers():
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or floating buffer; the CPU for a model without
    either): inputs are moved there, so callers follow the model instead of naming a device."""
    return _param_device_dtype(model)[0]


def probe_shapes(
    model: nn.Module,
    layers: Iterable[str],
    input_shape: Sequence[int],
    *,
    batch_size: int = 2,
) -> dict[str, tuple[int, ...]]:
    """Output shape (without the batch dimension) of each named layer for inputs of ``input_shape``.

    ``input_shape`` excludes the batch dimension, e.g. ``(3, 32, 32)``.  One forward of a zero batch
    runs in eval mode under ``no_grad`` on the model's device and dtype; every module's training flag
    is restored afterwards (so BatchNorm statistics never move).  Raises ValueError for an unknown
    layer, a layer that did not run during the forward, or one whose output is not a tensor.
    """
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"input_shape must be a non-empty sequence of positive ints, got {input_shape!r}")
    layers = validate_layers(model, layers)
    device, dtype = _param_device_dtype(model)
    x = torch.zeros((batch_size, *shape), device=device, dtype=dtype)
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad(), FeatureExtractor(model, layers) as fx:
            model(x)
            feats = dict(fx.features)
    finally:
        # Per-module restore: a single model.train(flag) would flatten a mix of train/eval modules.
        for m, flag in flags:
            m.training = flag
    out: dict[str, tuple[int, ...]] = {}
    for name in layers:
        if name not in feats:
            raise ValueError(
                f"layer {name!r} did not run during a forward of {type(model).__name__} "
                f"on input shape {shape}; pick a module on the forward path"
            )
        f = feats[name]
        if not isinstance(f, torch.Tensor):
            raise ValueError(
                f"layer {name!r} returned {type(f).__name__}, not a tensor; hook a module that "
                "returns a single tensor"
            )
        out[name] = tuple(f.shape[1:])
    return out


def _state_signature(module: nn.Module) -> tuple[dict[str, tuple], dict[str, tuple]]:
    params = {n: tuple(p.shape) for n, p in module.named_parameters()}
    buffers = {n: tuple(b.shape) for n, b in module.named_buffers()}
    return params, buffers


def _diff(kind: str, a: dict[str, tuple], b: dict[str, tuple]) -> list[str]:
    out = [f"{kind} {n!r} only in teacher" for n in a if n not in b]
    out += [f"{kind} {n!r} only in student" for n in b if n not in a]
    out += [f"{kind} {n!r}: teacher {a[n]} vs student {b[n]}" for n in a if n in b and a[n] != b[n]]
    return out


def interpolate_student(teacher: nn.Module, student: nn.Module, lam: float) -> nn.Module:
    """Set ``student <- lam * teacher + (1 - lam) * student`` in place and return ``student``.

    [FID] (Stanton et al. 2021, §5) initialise the student on the line between the teacher's weights
    and a fresh random initialisation; pass the freshly initialised student.  ``lam = 1`` copies the
    teacher exactly, ``lam = 0`` leaves the student unchanged.  Both models must have identical
    parameter and buffer names and shapes (else ValueError).

    Buffers: floating ones (BatchNorm running mean/var) are interpolated with the same ``lam`` so that
    the endpoints reproduce each model exactly (the convex mix of two positive variances stays
    positive); integer ones (``num_batches_tracked``) get the rounded interpolation.  The mixed running
    statistics do not describe the mixed network's activations; the student re-estimates them as soon
    as it trains in train mode.
    """
    if (
        isinstance(lam, bool)
        or not isinstance(lam, (int, float))
        or not math.isfinite(lam)
        or not 0 <= lam <= 1
    ):
        raise ValueError(f"lam must be a real number in [0, 1], got {lam!r}")
    lam = float(lam)
    tp, tb = _state_signature(teacher)
    sp, sb = _state_signature(student)
    problems = _diff("parameter", tp, sp) + _diff("buffer", tb, sb)
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; ... ({len(problems)} differences)" if len(problems) > 5 else ""
        )
        raise ValueError(f"teacher and student must have the same architecture: {shown}")
    if teacher is student:
        return student
    t_state = dict(teacher.named_parameters())
    t_state.update(teacher.named_buffers())
    with torch.no_grad():
        for name, s in [*student.named_parameters(), *student.named_buffers()]:
            t = t_state[name].to(device=s.device)
            if s.is_floating_point() or s.is_complex():
                # Written as lam*t + (1-lam)*s (not lerp) so lam = 1 and lam = 0 are exact copies.
                s.copy_(lam * t.to(s.dtype) + (1.0 - lam) * s)
            else:
                mixed = lam * t.to(torch.float64) + (1.0 - lam) * s.to(torch.float64)
                s.copy_(torch.round(mixed).to(s.dtype))
    return student


class _StayInEval:
    """Replacement for a frozen module's ``train`` method: any ``train(mode)`` leaves it in eval mode.

    ``nn.Module.train`` recurses by calling each child's ``train``, so installing this on every
    submodule keeps a parent's ``.train()`` from flipping the teacher back.  A small class (not a
    closure or bound method) so frozen models survive ``copy.deepcopy`` and pickling.
    """

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, mode: bool = True) -> nn.Module:
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.module.modules():
            m.training = False
        return self.module


def _force_eval_pre_hook(module: nn.Module, args: Any) -> None:
    # Second line of defence for code that sets ``.training`` directly or calls nn.Module.train
    # unbound: the frozen model is put back into eval mode before every forward.
    for m in module.modules():
        if m.training:
            m.training = False


def freeze_teacher(model: nn.Module) -> nn.Module:
    """Freeze ``model`` in place for use as a teacher; returns it.

    Eval mode (BatchNorm uses and never updates its running statistics, dropout is off), no
    gradients (``requires_grad=False`` on every parameter), and it *stays* that way: every submodule's
    ``train`` is replaced so a later ``parent.train()`` cannot switch it back, and a forward pre-hook
    restores eval mode if a flag was set by hand.  Idempotent.  Parameter values can still be replaced
    with ``load_state_dict`` (e.g. progressive distillation's checkpoints); the model stays frozen.
    """
    for m in model.modules():
        m.training = False
        if not isinstance(m.__dict__.get("train"), _StayInEval):
            object.__setattr__(m, "train", _StayInEval(m))
    for p in model.parameters():
        p.requires_grad_(False)
    if not getattr(model, "_infodistill_frozen", False):
        model.register_forward_pre_hook(_force_eval_pre_hook)
        object.__setattr__(model, "_infodistill_frozen", True)
    return model


def is_frozen(model: nn.Module) -> bool:
    """True if :func:`freeze_teacher` was applied and the model is in eval mode with no trainable params."""
    return (
        bool(getattr(model, "_infodistill_frozen", False))
        and not any(m.training for m in model.modules())
        and not any(p.requires_grad for p in model.parameters())
    )


@torch.no_grad()
def collect_features(model: nn.Module, layers: Sequence[str], x: torch.Tensor, batch_size: int):
    """Eval-mode, no-grad forward over ``x`` in batches, capturing ``layers`` with hooks.

    Batches are moved to the model's device; returns (the model's outputs concatenated, or None
    if they are not (N, C) tensors, {layer: float32 CPU tensor}): features come back to the CPU
    here, for the PID's numpy. Every module's own training flag is restored afterwards.
    """
    layers = list(layers)
    device = model_device(model)
    flags = [(m, m.training) for m in model.modules()]
    outputs, feats = [], {name: [] for name in layers}
    try:
        model.eval()
        with FeatureExtractor(model, layers, detach=True) as fx:
            for start in range(0, x.shape[0], batch_size):
                out, f = fx(x[start : start + batch_size].to(device))
                outputs.append(out if isinstance(out, torch.Tensor) else None)
                for name in layers:
                    if not isinstance(f[name], torch.Tensor):
                        raise ValueError(
                            f"layer {name!r} of {type(model).__name__} returned {type(f[name]).__name__}, "
                            "not a tensor; capture a module that returns a single tensor"
                        )
                    feats[name].append(f[name].float().cpu())
    finally:
        for m, flag in flags:
            m.training = flag
    z = torch.cat(outputs).float().cpu() if all(o is not None and o.dim() == 2 for o in outputs) else None
    return z, {name: torch.cat(v) for name, v in feats.items()}
