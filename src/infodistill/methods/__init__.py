"""Distillation methods (docs/methods.md): one ``nn.Module`` per method, built by name."""

from __future__ import annotations

import inspect
import math

from .base import Batch, DistillMethod, LayerPair, MethodSetup, OptimGroup, TwoStageMethod, resolve_pairs
from .baseline import Baseline
from .fitnets import FitNets
from .kd import KD, ensemble_logits, soft_cross_entropy
from .noise import noisy_features
from .progressive import Progressive
from .rid import RID, rid_schedule
from .scaffold import Scaffold
from .ted import TED
from .vid import VID

METHODS: dict[str, type[DistillMethod]] = {
    cls.name: cls for cls in (Baseline, KD, FitNets, VID, RID, TED, Progressive, Scaffold)
}


def method_hparams(name: str) -> dict[str, object]:
    """A method's keyword arguments and their defaults (``inspect.Parameter.empty`` when required)."""
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters
    return {k: p.default for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def build_method(
    name: str,
    *,
    num_classes: int | None = None,
    pairs=(),
    student_shapes=None,
    teacher_shapes=None,
    num_checkpoints: int | None = None,
    **kwargs,
) -> DistillMethod:
    """Build a method by name from what every method shares and the method's own hyper-parameters.

    The shared part is resolved here, once: ``pairs`` of (student layer, teacher layer) checked
    against ``student_shapes`` / ``teacher_shapes`` (feature shapes without the batch dimension,
    e.g. from :func:`~infodistill.models.probe_shapes`) for a method with feature terms and ignored
    by the others, ``num_classes``, and ``num_checkpoints`` (the teacher checkpoints a progressive
    run learns from). ``kwargs`` are the method's hyper-parameters (:func:`method_hparams`).
    Unknown names and unknown or missing arguments raise ValueError."""
    cls = _lookup(name)
    if num_classes is None:
        raise ValueError(f"method {name!r}: missing required argument(s) ['num_classes']")
    allowed = method_hparams(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"method {name!r}: unknown argument(s) {unknown}; it takes {sorted(allowed)}")
    missing = sorted(k for k, d in allowed.items() if d is inspect.Parameter.empty and k not in kwargs)
    if missing:
        raise ValueError(f"method {name!r}: missing required argument(s) {missing}")
    for key, value in kwargs.items():
        default = allowed[key]
        # Numeric hyper-parameters from a config file: a string or an .inf/.nan would otherwise fail
        # inside the constructor with a TypeError, or only as a non-finite loss after an epoch.
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"method {name!r}: {key} must be a finite number, got {value!r}")
            if key == "lam" and value < 0:  # the loss weight: negative would maximise the loss
                raise ValueError(f"method {name!r}: lam must be >= 0, got {value}")
    layer_pairs = (
        resolve_pairs(pairs, student_shapes, teacher_shapes, name) if cls.uses_teacher_features else ()
    )
    return cls(MethodSetup(num_classes, tuple(layer_pairs), num_checkpoints), **kwargs)


def method_class(name: str) -> type[DistillMethod]:
    """The class registered under ``name`` (its capabilities before anything is built)."""
    return _lookup(name)


def _lookup(name: str) -> type[DistillMethod]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {sorted(METHODS)}")
    return METHODS[name]


__all__ = [
    "METHODS",
    "Batch",
    "Baseline",
    "DistillMethod",
    "FitNets",
    "KD",
    "LayerPair",
    "MethodSetup",
    "OptimGroup",
    "Progressive",
    "RID",
    "Scaffold",
    "TED",
    "TwoStageMethod",
    "VID",
    "build_method",
    "ensemble_logits",
    "method_class",
    "method_hparams",
    "noisy_features",
    "rid_schedule",
    "soft_cross_entropy",
]
