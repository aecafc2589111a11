"""Noisy teacher features ([PID-KD]'s "noisy" teacher): Gaussian noise of std sigma added to, or
replacing, a fraction of each teacher feature map before the method sees it."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

MODES = ("add", "replace")
GRANULARITIES = ("element", "channel")


def _noisy(x: Tensor, sigma: float, fraction: float, mode: str, generator, granularity: str) -> Tensor:
    if fraction == 0.0 or (sigma == 0.0 and mode == "add"):
        return x
    # draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move
    device = generator.device if generator is not None else x.device
    noise = sigma * torch.randn(x.shape, generator=generator, device=device)
    noise = noise.to(device=x.device, dtype=x.dtype)
    new = x + noise if mode == "add" else noise
    if fraction == 1.0:
        return new
    # element: each entry independently; channel: whole channel maps (all positions of a channel)
    mask_shape = x.shape if granularity == "element" or x.dim() < 2 else (*x.shape[:2], *(1,) * (x.dim() - 2))
    mask = torch.rand(mask_shape, generator=generator, device=device) < fraction
    return torch.where(mask.to(x.device), new, x)


def noisy_features(
    feats: Mapping[str, Tensor] | Tensor,
    sigma: float,
    fraction: float = 1.0,
    mode: str = "add",
    generator: torch.Generator | None = None,
    granularity: str = "element",
) -> dict[str, Tensor] | Tensor:
    """Return noisy copies of teacher features (a dict by layer name, or one tensor).

    Each selected entry becomes ``x + sigma * eps`` (``mode="add"``) or ``sigma * eps``
    (``mode="replace"``), eps ~ N(0, 1). Selection is random and independent per entry with
    probability ``fraction`` (``granularity="element"``) or per (sample, channel) map
    (``granularity="channel"``); ``fraction=1`` selects everything. Layers are processed in the dict's
    order, so a seeded ``generator`` makes the result reproducible. Inputs are not modified.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    args = (float(sigma), float(fraction), mode, generator, granularity)
    if isinstance(feats, Tensor):
        return _noisy(feats, *args)
    return {name: _noisy(x, *args) for name, x in feats.items()}
