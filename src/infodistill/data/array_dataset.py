"""The in-memory data set every loader returns, and the helpers the loaders share.

An :class:`ArrayDataset` holds ``x``, a float32 tensor of shape (N, C, H, W) -- or (N, C, L) for
1-D signals -- and ``y``, an int64 tensor. Each loader (one module per source: ``fashion_mnist``,
``mnist1d``, ``digits``, ``cifar``, ``image_folder``) returns a ``(train, test)`` pair of them and
never downloads: it reads a local copy, and a missing copy raises :class:`DataError` that says how
to obtain it. ``registry`` maps data set names to loaders.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from .errors import DataError
from .loader import take

PathLike = str | os.PathLike


class ArrayDataset:
    """A labelled data set held entirely in memory as two tensors.

    ``x``: float32, (N, C, H, W) for images or (N, C, L) for 1-D signals; ``y``: int64, (N,), with
    values in ``[0, num_classes)``. ``classes`` optionally names the classes (length
    ``num_classes``). Indexing with an int, a slice or an index tensor returns ``(x[i], y[i])``,
    so a whole batch is one indexing operation.
    """

    def __init__(
        self,
        x: torch.Tensor | np.ndarray,
        y: torch.Tensor | np.ndarray | Sequence[int],
        num_classes: int,
        name: str,
        classes: Sequence[str] | None = None,
        split: str | None = None,
    ) -> None:
        x = torch.as_tensor(x)
        if x.dtype != torch.float32:
            x = x.to(torch.float32)
        y = torch.as_tensor(y)
        if y.dtype != torch.int64:
            if y.is_floating_point() or y.dtype == torch.bool:
                raise ValueError(f"{name}: labels must be integers, got {y.dtype}")
            y = y.to(torch.int64)
        if x.ndim not in (3, 4):
            raise ValueError(f"{name}: x must be (N, C, L) or (N, C, H, W), got shape {tuple(x.shape)}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes must be >= 1, got {num_classes}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(
                f"{name}: labels span [{int(y.min())}, {int(y.max())}], outside [0, {num_classes})"
            )
        if classes is not None:
            classes = tuple(str(c) for c in classes)
            if len(classes) != num_classes:
                raise ValueError(f"{name}: {len(classes)} class names for {num_classes} classes")
        self.x = x
        self.y = y
        self.num_classes = int(num_classes)
        self.name = name
        self.classes = classes
        self.split = split

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch in one indexing (``torch.utils.data.DataLoader`` uses this)."""
        return take(self.x, indices), take(self.y, indices)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 28, 28)``."""
        return tuple(self.x.shape[1:])

    def subset(self, indices: Any) -> ArrayDataset:
        """A new data set with the examples at ``indices`` (ints or a boolean mask), same metadata."""
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        if idx.dtype != torch.bool:
            idx = idx.to(torch.int64).reshape(-1)
        return ArrayDataset(self.x[idx], self.y[idx], self.num_classes, self.name, self.classes, self.split)

    def __repr__(self) -> str:
        split = f", split={self.split!r}" if self.split else ""
        return (
            f"ArrayDataset(name={self.name!r}{split}, n={len(self)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes})"
        )


def _to_float_images(pixels: np.ndarray) -> torch.Tensor:
    # Dividing (not multiplying by 1/255) keeps k/255 exact to float32 rounding.
    return torch.from_numpy(pixels.astype(np.float32)).div_(255.0)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _stratified_split(y: np.ndarray, test_size: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        train_idx, test_idx = train_test_split(
            np.arange(len(y)), test_size=test_size, random_state=seed, stratify=y
        )
    except ValueError as exc:
        raise DataError(
            f"{what}: cannot make a stratified split with test_size={test_size} ({exc})"
        ) from None
    # Sorted so that example order follows the source, whatever the split's shuffle did.
    return np.sort(train_idx), np.sort(test_idx)
