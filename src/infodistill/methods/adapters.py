"""Adapters shared by the filter-based methods (RID, TED), so both use identical architectures and
differ only in their objectives.

As in the [PID-KD] reference code (kd-rid), no 1x1 conv has a bias. Initial weights (``init``):
"pytorch" (default) keeps PyTorch's defaults; "reference" is kd-rid's Kaiming-uniform with fan_out
and the ReLU gain for every conv and linear weight, biases (the heads' only ones) at zero
(:func:`reference_init`). The default is not the reference's because of a measurement (docs/methods.md,
the RID row): at E1's budgets the reference init made RID diverge.
"""

from __future__ import annotations

import torch.nn as nn

INITS = ("pytorch", "reference")


def conv1x1(c_in: int, c_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, bias=bias)


def check_init(init: str) -> str:
    if init not in INITS:
        raise ValueError(f"adapter_init must be one of {INITS}, got {init!r}")
    return init


def reference_init(module: nn.Module) -> nn.Module:
    """Kaiming-uniform (fan_out, ReLU gain) weights and zero biases for every conv and linear layer
    of ``module`` (kd-rid's ``init_model_weights(..., 'kaiming')``); returns the module."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def initialised(module: nn.Module, init: str) -> nn.Module:
    """``module`` with the weights of ``init`` ("pytorch": as built; "reference": reference_init)."""
    return reference_init(module) if check_init(init) == "reference" else module


def teacher_filter(c_t: int, c_s: int, init: str = "pytorch") -> nn.Sequential:
    """f_t: 1x1 conv (C_t->C_t) -> BN -> ReLU -> 1x1 conv (C_t->C_s), no biases  [PID-KD]."""
    layers = [conv1x1(c_t, c_t, bias=False), nn.BatchNorm2d(c_t), nn.ReLU(), conv1x1(c_t, c_s, bias=False)]
    return initialised(nn.Sequential(*layers), init)


def student_filter(c_s: int, init: str = "pytorch") -> nn.Sequential:
    """f_s: 1x1 conv (C_s->2C_s) -> BN -> ReLU -> 1x1 conv (2C_s->C_s), no biases  [PID-KD]."""
    h = 2 * c_s
    layers = [conv1x1(c_s, h, bias=False), nn.BatchNorm2d(h), nn.ReLU(), conv1x1(h, c_s, bias=False)]
    return initialised(nn.Sequential(*layers), init)


def class_head(
    channels: int, size: tuple[int, int], num_classes: int, pool: int | None, init: str = "pytorch"
) -> nn.Sequential:
    """g: ReLU -> flatten -> linear to classes  [PID-KD].

    ``pool`` (optional) first average-pools the map to at most pool x pool, which bounds the head's
    size on large maps (the paper flattens the full map; ``pool=None`` does that).
    """
    layers: list[nn.Module] = [nn.ReLU()]
    h, w = size
    if pool is not None:
        if int(pool) < 1:
            raise ValueError(f"head_pool must be a positive int or None, got {pool!r}")
        h, w = min(h, int(pool)), min(w, int(pool))
        if (h, w) != tuple(size):
            layers.append(nn.AdaptiveAvgPool2d((h, w)))
    layers += [nn.Flatten(), nn.Linear(channels * h * w, num_classes)]
    return initialised(nn.Sequential(*layers), init)
