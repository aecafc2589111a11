"""Build models by name: ``build_model('wrn-40-2', num_classes=10, in_channels=3)``."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .resnet import CifarResNet
from .small import MLP, CNN1d, SmallCNN
from .wrn import WideResNet

__all__ = ["MODEL_NAMES", "available_models", "build_model", "parse_model_spec"]

_WRN = re.compile(r"^wrn-(\d+)-(\d+)$")
_RESNET = re.compile(r"^resnet(\d+)$")


def _wrn_args(m: re.Match, name: str) -> dict[str, int]:
    depth, width = int(m.group(1)), int(m.group(2))
    if depth < 10 or (depth - 4) % 6 != 0 or width < 1:
        raise _unknown(name, "WRN depth must be 6n+4 >= 10 and width >= 1")
    return {"depth": depth, "width": width}


def _resnet_args(m: re.Match, name: str) -> dict[str, int]:
    depth = int(m.group(1))
    if depth < 8 or (depth - 2) % 6 != 0:
        raise _unknown(name, "CIFAR ResNet depth must be 6n+2 >= 8")
    return {"depth": depth}


def _mlp(arch, num_classes, in_channels, input_size, kw) -> nn.Module:
    kw = dict(kw)
    in_features = kw.pop("in_features", None)
    if in_features is None:
        in_features = _input_numel(in_channels, input_size)
    return MLP(in_features, num_classes, **kw)


@dataclass(frozen=True)
class _Family:
    """One model family: the names it answers to, its options and how it is built."""

    #: names listed in error messages and used by the experiments
    examples: tuple[str, ...]
    options: frozenset[str]
    #: (arch args, num_classes, in_channels, input_size, options) -> the module
    build: Callable[..., nn.Module]
    #: a family of many names: (regex, arch args from the match); None: the family name only
    pattern: tuple[re.Pattern, Callable[[re.Match, str], dict[str, int]]] | None = None
    #: the modules that output its three stages (residual groups), as [PID-KD] distils them
    stages: tuple[str, ...] | None = None


#: The one table of models: adding a model is adding a row.
FAMILIES: dict[str, _Family] = {
    "wrn": _Family(
        ("wrn-16-1", "wrn-16-2", "wrn-40-1", "wrn-40-2"),
        frozenset({"dropout"}),
        lambda a, n, c, size, kw: WideResNet(a["depth"], a["width"], n, c, **kw),
        (_WRN, _wrn_args),
        ("block1", "block2", "block3"),
    ),
    "resnet": _Family(
        ("resnet8", "resnet20", "resnet56"),
        frozenset(),
        lambda a, n, c, size, kw: CifarResNet(a["depth"], n, c),
        (_RESNET, _resnet_args),
        ("layer1", "layer2", "layer3"),
    ),
    "cnn-small": _Family(
        ("cnn-small",),
        frozenset({"width", "convs_per_stage", "pool_size"}),
        lambda a, n, c, size, kw: SmallCNN(n, c, **kw),
        stages=("stage1", "stage2", "stage3"),
    ),
    "mlp": _Family(("mlp",), frozenset({"hidden", "batch_norm", "dropout", "in_features"}), _mlp),
    "cnn1d": _Family(
        ("cnn1d",),
        frozenset({"width", "kernel_size", "convs_per_stage", "pool_size"}),
        lambda a, n, c, size, kw: CNN1d(n, c, **kw),
        stages=("stage1", "stage2", "stage3"),
    ),
}

# The names a config may use.  ``wrn-D-K`` and ``resnetN`` accept any valid D, K, N; these are the
# ones listed in error messages and used by the experiments.
MODEL_NAMES: tuple[str, ...] = tuple(name for f in FAMILIES.values() for name in f.examples)


def available_models() -> list[str]:
    """The listed model names (``wrn-D-K`` and ``resnetN`` also accept other valid D, K, N)."""
    return list(MODEL_NAMES)


def _unknown(name: str, why: str = "") -> ValueError:
    extra = f" ({why})" if why else ""
    return ValueError(
        f"unknown model {name!r}{extra}; valid names: {', '.join(MODEL_NAMES)} "
        "(also wrn-D-K with D = 6n+4, resnetN with N = 6n+2)"
    )


def parse_model_spec(name: str) -> tuple[str, dict[str, int]]:
    """Split a model name into its family and architecture arguments.

    ``'wrn-40-2' -> ('wrn', {'depth': 40, 'width': 2})``, ``'resnet20' -> ('resnet', {'depth': 20})``,
    ``'cnn-small' -> ('cnn-small', {})``.  Matching is case-insensitive; invalid depths are a
    ValueError that lists the valid names.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    for family, f in FAMILIES.items():
        if f.pattern is None:
            if key == family:
                return family, {}
        elif m := f.pattern[0].match(key):
            return family, f.pattern[1](m, name)
    raise _unknown(name)


def _input_numel(in_channels: int, input_size: int | Sequence[int] | None) -> int:
    if input_size is None:
        raise ValueError(
            "model 'mlp' needs input_size (the per-channel input shape, e.g. (28, 28) or 40) "
            "or in_features to size its first layer"
        )
    dims = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"input_size must be a positive int or a sequence of them, got {input_size!r}")
    return in_channels * math.prod(dims)


def build_model(
    name: str,
    num_classes: int,
    in_channels: int,
    *,
    input_size: int | Sequence[int] | None = None,
    seed: int | None = None,
    **kw: Any,
) -> nn.Module:
    """Instantiate a model by name.

    Args:
        name: one of :data:`MODEL_NAMES`, or any ``wrn-D-K`` / ``resnetN`` with a valid depth.
        num_classes, in_channels: classifier outputs and input channels.
        input_size: per-channel input shape (e.g. ``(28, 28)`` or ``40``).  Only ``mlp`` needs it
            (to size its first layer); the convolutional models pool adaptively and ignore it, so a
            config can pass it uniformly.
        seed: if given, the weights are drawn from ``torch.manual_seed(seed)`` inside a forked RNG
            state, so the same seed gives the same initialisation and the global RNG is untouched
            (untrained "nuisance" teachers are reproducible from their seed).
        **kw: architecture options: ``dropout`` (wrn); ``width``, ``convs_per_stage``,
            ``pool_size`` (cnn-small, cnn1d); ``kernel_size`` (cnn1d); ``hidden``, ``batch_norm``,
            ``dropout``, ``in_features`` (mlp).  Unknown options are a ValueError naming them.
    """
    family, arch = parse_model_spec(name)
    allowed = FAMILIES[family].options
    bad = sorted(set(kw) - allowed)
    if bad:
        raise ValueError(f"unknown option(s) {bad} for model {name!r}; allowed: {sorted(allowed) or 'none'}")
    try:
        if seed is None:
            return _construct(family, arch, num_classes, in_channels, input_size, kw)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _construct(family, arch, num_classes, in_channels, input_size, kw)
    except RuntimeError as exc:
        # An absurd option (width=10**8) fails in torch's allocator: a user mistake, not a bug.
        if "allocate" not in str(exc):
            raise
        msg = f"model {name!r} with options {kw} does not fit in memory; use smaller ones"
        raise ValueError(msg) from None


def _construct(
    family: str,
    arch: dict[str, int],
    num_classes: int,
    in_channels: int,
    input_size: int | Sequence[int] | None,
    kw: dict[str, Any],
) -> nn.Module:
    return FAMILIES[family].build(arch, num_classes, in_channels, input_size, kw)
