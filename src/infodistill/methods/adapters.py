"""Adapters shared by the filter-based methods (RID, TED), so both use identical architectures and
differ only in their objectives."""

from __future__ import annotations

import torch.nn as nn


def conv1x1(c_in: int, c_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, bias=bias)


def teacher_filter(c_t: int, c_s: int) -> nn.Sequential:
    """f_t: 1x1 conv (C_t->C_t) -> BN -> ReLU -> 1x1 conv (C_t->C_s)  [PID-KD]."""
    # the conv before BN needs no bias: BN's shift absorbs it
    return nn.Sequential(conv1x1(c_t, c_t, bias=False), nn.BatchNorm2d(c_t), nn.ReLU(), conv1x1(c_t, c_s))


def student_filter(c_s: int) -> nn.Sequential:
    """f_s: 1x1 conv (C_s->2C_s) -> BN -> ReLU -> 1x1 conv (2C_s->C_s)  [PID-KD]."""
    return nn.Sequential(
        conv1x1(c_s, 2 * c_s, bias=False), nn.BatchNorm2d(2 * c_s), nn.ReLU(), conv1x1(2 * c_s, c_s)
    )


def class_head(channels: int, size: tuple[int, int], num_classes: int, pool: int | None) -> nn.Sequential:
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
    return nn.Sequential(*layers)
