"""Build models by name: ``build_model('wrn-40-2', num_classes=10, in_channels=3)``."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .resnet import CifarResNet
from .small import MLP, CNN1d, SmallCNN
from .wrn import WideResNet

__all__ = ["MODEL_NAMES", "available_models", "build_model", "parse_model_spec"]

# The names a config may use.  ``wrn-D-K`` and ``resnetN`` accept any valid D, K, N; these are the
# ones listed in error messages and used by the experiments.
MODEL_NAMES: tuple[str, ...] = (
    "wrn-16-1",
    "wrn-16-2",
    "wrn-40-1",
    "wrn-40-2",
    "resnet8",
    "resnet20",
    "resnet56",
    "cnn-small",
    "mlp",
    "cnn1d",
)

_WRN = re.compile(r"^wrn-(\d+)-(\d+)$")
_RESNET = re.compile(r"^resnet(\d+)$")


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
    if m := _WRN.match(key):
        depth, width = int(m.group(1)), int(m.group(2))
        if depth < 10 or (depth - 4) % 6 != 0 or width < 1:
            raise _unknown(name, "WRN depth must be 6n+4 >= 10 and width >= 1")
        return "wrn", {"depth": depth, "width": width}
    if m := _RESNET.match(key):
        depth = int(m.group(1))
        if depth < 8 or (depth - 2) % 6 != 0:
            raise _unknown(name, "CIFAR ResNet depth must be 6n+2 >= 8")
        return "resnet", {"depth": depth}
    if key in ("cnn-small", "mlp", "cnn1d"):
        return key, {}
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
    allowed = {
        "wrn": {"dropout"},
        "resnet": set(),
        "cnn-small": {"width", "convs_per_stage", "pool_size"},
        "cnn1d": {"width", "kernel_size", "convs_per_stage", "pool_size"},
        "mlp": {"hidden", "batch_norm", "dropout", "in_features"},
    }[family]
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
    if family == "wrn":
        return WideResNet(arch["depth"], arch["width"], num_classes, in_channels, **kw)
    if family == "resnet":
        return CifarResNet(arch["depth"], num_classes, in_channels)
    if family == "cnn-small":
        return SmallCNN(num_classes, in_channels, **kw)
    if family == "cnn1d":
        return CNN1d(num_classes, in_channels, **kw)
    kw = dict(kw)
    in_features = kw.pop("in_features", None)
    if in_features is None:
        in_features = _input_numel(in_channels, input_size)
    return MLP(in_features, num_classes, **kw)
