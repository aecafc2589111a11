"""Batched data augmentation in plain torch (no torchvision).

Every transform takes a whole batch -- (B, C, H, W) images, or (B, C, L) signals where noted --
and an optional :class:`torch.Generator`. All randomness is drawn from that generator in a fixed
order, so the same generator state gives the same output; with ``generator=None`` torch's global
RNG is used. Random draws happen on the generator's device and are moved to the batch's device.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from scipy.special import betaincinv

from .array_dataset import ArrayDataset
from .loader import ItemDataset

__all__ = [
    "Compose",
    "Mixup",
    "Normalize",
    "RandomCropPad",
    "RandomHFlip",
    "Transform",
    "dataset_stats",
    "mixup",
    "symmetric_inputs",
]


def _rng_device(x: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else x.device


class Transform:
    """Base class: ``transform(x, generator=None)`` returns a new batch."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


class Normalize(Transform):
    """``(x - mean[c]) / std[c]`` per channel, for (B, C, ...) batches."""

    def __init__(self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean has {self.mean.numel()} channels, std {self.std.numel()}")
        if not bool((self.std > 0).all()):
            raise ValueError(f"std must be positive, got {self.std.tolist()}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim < 3 or x.shape[1] != self.mean.numel():
            raise ValueError(
                f"Normalize expects (B, {self.mean.numel()}, ...) batches, got shape {tuple(x.shape)}"
            )
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean = self.mean.to(device=x.device, dtype=x.dtype).view(shape)
        std = self.std.to(device=x.device, dtype=x.dtype).view(shape)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _check_images(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")


class RandomCropPad(Transform):
    """Zero-pad each side by ``padding`` pixels, then crop a random ``size`` window per sample.

    ``size`` is an int (square) or ``(height, width)``. Each sample's top-left corner is uniform
    over all valid positions: rows first, then columns, each one ``torch.randint`` over the batch.
    The classic CIFAR augmentation is ``RandomCropPad(32, padding=4)``.
    """

    def __init__(self, size: int | tuple[int, int], padding: int = 0) -> None:
        h, w = (size, size) if isinstance(size, int) else size
        if h < 1 or w < 1:
            raise ValueError(f"crop size must be positive, got {size}")
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.size = (int(h), int(w))
        self.padding = int(padding)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images(x, "RandomCropPad")
        b, c, _, _ = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p)) if p else x
        hp, wp = padded.shape[-2:]
        h, w = self.size
        if h > hp or w > wp:
            raise ValueError(f"crop {h}x{w} larger than the padded image {hp}x{wp}")
        dev = _rng_device(x, generator)
        top = torch.randint(0, hp - h + 1, (b,), generator=generator, device=dev).to(x.device)
        left = torch.randint(0, wp - w + 1, (b,), generator=generator, device=dev).to(x.device)
        # Two gathers (rows, then columns) with broadcast index views: measured ~2x faster on CPU
        # than one 4-index advanced-indexing op, and faster than a per-sample slicing loop.
        rows = (top[:, None] + torch.arange(h, device=x.device)).view(b, 1, h, 1).expand(b, c, h, wp)
        cols = (left[:, None] + torch.arange(w, device=x.device)).view(b, 1, 1, w).expand(b, c, h, w)
        return padded.gather(2, rows).gather(3, cols)

    def __repr__(self) -> str:
        return f"RandomCropPad(size={self.size}, padding={self.padding})"


class RandomHFlip(Transform):
    """Mirror each sample along its last axis (width) with probability ``p``.

    One ``torch.rand(B)`` draw decides all samples. Works on (B, C, H, W); also on (B, C, L),
    where reversing a signal is only meaningful if the task is invariant to it.
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim < 3:
            raise ValueError(f"RandomHFlip expects a (B, C, ...) batch, got shape {tuple(x.shape)}")
        draw = torch.rand(x.shape[0], generator=generator, device=_rng_device(x, generator)).to(x.device)
        flip = (draw < self.p).view((-1,) + (1,) * (x.ndim - 1))
        return torch.where(flip, x.flip(-1), x)

    def __repr__(self) -> str:
        return f"RandomHFlip(p={self.p})"


class Compose(Transform):
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Iterable[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


@torch.no_grad()
def dataset_stats(data: Any, batch_size: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of a data set's inputs.

    ``data`` is an :class:`~infodistill.data.ArrayDataset` (its ``x``) or a (N, C, ...) tensor.
    Sums are accumulated in float64 over chunks of ``batch_size`` examples, so large sets neither
    lose precision nor need a float64 copy. Returns ``(mean, std)`` as tuples of floats, ready for
    :class:`Normalize` or a JSON log.
    """
    x = data.x if hasattr(data, "x") else torch.as_tensor(data)
    if x.ndim < 3 or x.shape[0] == 0:
        raise ValueError(f"dataset_stats expects a non-empty (N, C, ...) tensor, got shape {tuple(x.shape)}")
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size].to(torch.float64).transpose(0, 1).reshape(c, -1)
        total += chunk.sum(1).cpu()
        total_sq += chunk.square().sum(1).cpu()
    count = x.numel() // c
    mean = total / count
    # Clamp: E[x^2] - E[x]^2 can round to a tiny negative for a constant channel.
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


class Mixup(NamedTuple):
    """A mixed batch: ``x = lam * x_orig + (1 - lam) * x_orig[index]``."""

    x: torch.Tensor
    index: torch.Tensor
    lam: float

    def mix(self, t: torch.Tensor) -> torch.Tensor:
        """Mix anything aligned with the batch (one-hot labels, soft targets) the same way."""
        return self.lam * t + (1.0 - self.lam) * t[self.index]


def mixup(x: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> Mixup:
    """Mixup (Zhang et al., ICLR 2018) of a batch with a random permutation of itself.

    ``lam ~ Beta(alpha, alpha)``, one value per batch, drawn by inverse-CDF from one uniform of
    ``generator`` (``torch.distributions.Beta`` cannot take a generator), then ``index =
    randperm(B)`` from the same generator; ``alpha = 0`` gives ``lam = 1`` (no mixing).

    For distillation ([FID] mixup distillation data) the returned ``x`` IS the distillation input:
    the caller must feed this SAME mixed tensor to both the teacher and the student, so that the
    teacher labels exactly the input the student sees. Never mix teacher outputs or logits instead
    (softmax is not linear), and never re-draw a second mixup for the student. Labels for a CE term,
    if any, are mixed with :meth:`Mixup.mix` (or as ``lam * CE(y) + (1 - lam) * CE(y[index])``).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"mixup expects a non-empty batch, got shape {tuple(x.shape)}")
    dev = _rng_device(x, generator)
    u = float(torch.rand((), generator=generator, dtype=torch.float64, device=dev))
    if alpha == 0:
        lam = 1.0
    else:
        lam = float(betaincinv(alpha, alpha, u))
    index = torch.randperm(x.shape[0], generator=generator, device=dev).to(x.device)
    mixed = x * lam + x[index] * (1.0 - lam)
    return Mixup(mixed, index, lam)


class _Symmetric:
    """A reader's example mapped x -> 2x - 1 (a class, not a closure: DataLoader workers pickle it)."""

    def __init__(self, read):
        self.read = read

    def __call__(self, j: int) -> torch.Tensor:
        return self.read(j) * 2.0 - 1.0


def symmetric_inputs(data):
    """``data`` with every input mapped x -> 2x - 1 (images in [0, 1] to [-1, 1], as
    ``Normalize(0.5, 0.5)``): a new ArrayDataset for one held in memory, a new reader for an
    ItemDataset (nothing is read now). Other data sets: ValueError."""
    if isinstance(data, ArrayDataset):
        return ArrayDataset(data.x * 2.0 - 1.0, data.y, data.num_classes, data.name, data.classes, data.split)
    if isinstance(data, ItemDataset):
        out = ItemDataset(
            _Symmetric(data.read),
            data.labels,
            data.num_classes,
            data.name,
            data.classes,
            data.split,
            data.indices,
        )
        out._shape = data._shape
        return out
    raise ValueError(f"cannot scale the inputs of a {type(data).__name__}; scale them in your data set")
