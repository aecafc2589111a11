"""Your own data set from a config: ``data: {factory: "pkg.module:fn", kwargs: {...}}``.

The function returns ``(train, test)``: two :class:`~infodistill.data.ArrayDataset` s, or two
``torch.utils.data.Dataset`` s (anything with ``len`` and integer indexing) whose items are
``(x, y)`` pairs: x a tensor or array of one example, (C, H, W) or (C, L), and y an integer label.
A torch Dataset is streamed: its items are read when a batch needs them, in DataLoader workers
(``data.workers``), never held whole in memory (``data/loader.py`` ``ItemDataset``). Its labels
are read up front, from a ``targets`` or ``labels`` attribute when it has one (torchvision's
convention), else by one pass over the items. The number of classes is the datasets'
``num_classes`` or ``len(classes)`` when they declare one, else 1 + the largest label of either
split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..imports import import_object
from . import ArrayDataset
from .loader import ItemDataset

__all__ = ["load_data_factory"]


def load_data_factory(spec: str, kwargs: dict | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """``(train, test)`` from the function ``spec`` names, called with ``kwargs``; one-line
    ValueErrors for anything it cannot use."""
    fn = import_object(spec, "data.factory")
    if not callable(fn):
        raise ValueError(f"data.factory {spec!r} names a {type(fn).__name__}, not a function")
    kwargs = dict(kwargs or {})
    try:
        out = fn(**kwargs)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(
            f"data.factory {spec!r} failed with kwargs {kwargs} ({type(exc).__name__}"
            f"{': ' + first if first else ''}); check data.kwargs or the function"
        ) from None
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ValueError(
            f"data.factory {spec!r} returned a {type(out).__name__}; it must return (train, test) datasets"
        )
    train, test = out
    if isinstance(train, ArrayDataset) and isinstance(test, ArrayDataset):
        return train, test
    n_classes = _declared_classes(train) or _declared_classes(test)
    name = spec.rpartition(":")[2]
    labels = [_labels(d, spec, split) for d, split in ((train, "train"), (test, "test"))]
    if n_classes is None:
        n_classes = 1 + max(int(y.max()) for y in labels)
    for y, split in zip(labels, ("train", "test"), strict=True):
        if int(y.min()) < 0 or int(y.max()) >= n_classes:
            raise ValueError(
                f"data.factory {spec!r}: {split} labels span [{int(y.min())}, {int(y.max())}], "
                f"outside [0, {n_classes}) (the declared number of classes)"
            )
    classes = getattr(train, "classes", None)
    if classes is not None and len(classes) != n_classes:
        classes = None
    out = tuple(
        ItemDataset(_ItemReader(d, spec, split), y, n_classes, name, classes, split)
        for d, y, split in zip((train, test), labels, ("train", "test"), strict=True)
    )
    if out[0].input_shape != out[1].input_shape:
        raise ValueError(
            f"data.factory {spec!r}: train examples have shape {out[0].input_shape} but test "
            f"examples {out[1].input_shape}; both splits need the same input shape"
        )
    if len(out[0].input_shape) not in (2, 3):
        raise ValueError(
            f"data.factory {spec!r}: examples have shape {out[0].input_shape}; they must be "
            "(C, H, W) images or (C, L) signals"
        )
    return out


def _declared_classes(ds: Any) -> int | None:
    n = getattr(ds, "num_classes", None)
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return n
    classes = getattr(ds, "classes", None)
    return len(classes) if isinstance(classes, (list, tuple)) and classes else None


def _tensor(value: Any, spec: str, split: str, i: int, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, np.generic, int, float)) and not isinstance(value, bool):
        return torch.as_tensor(np.asarray(value))
    raise ValueError(
        f"data.factory {spec!r}: {split} item {i} has {what} of type {type(value).__name__}; return "
        "tensors or numpy arrays (for images, e.g. torchvision's ToTensor())"
    )


class _ItemReader:
    """Example j of a user's data set as a float32 tensor, checked (picklable for workers)."""

    def __init__(self, dataset, spec: str, split: str):
        self.dataset, self.spec, self.split = dataset, spec, split

    def __call__(self, j: int) -> torch.Tensor:
        x, _ = _pair(self.dataset[j], self.spec, self.split, j)
        return _tensor(x, self.spec, self.split, j, "x").to(torch.float32)


def _pair(item: Any, spec: str, split: str, i: int) -> tuple[Any, Any]:
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise ValueError(
            f"data.factory {spec!r}: {split} item {i} is a {type(item).__name__}, not an (x, y) pair"
        )
    return item[0], item[1]


def _length(ds: Any, spec: str, split: str) -> int:
    try:
        n = len(ds)
    except TypeError:
        raise ValueError(
            f"data.factory {spec!r}: the {split} set ({type(ds).__name__}) has no len(); return a "
            "map-style torch Dataset or an ArrayDataset"
        ) from None
    if n == 0:
        raise ValueError(f"data.factory {spec!r}: the {split} set is empty")
    return n


def _labels(ds: Any, spec: str, split: str) -> torch.Tensor:
    """All labels of a map-style data set: its ``targets``/``labels`` attribute, else one pass."""
    n = _length(ds, spec, split)
    for attr in ("targets", "labels"):
        known = getattr(ds, attr, None)
        if known is not None and not callable(known):
            try:
                y = torch.as_tensor(np.asarray(known))
            except (TypeError, ValueError):
                continue
            if y.shape == (n,) and not y.is_floating_point() and y.dtype != torch.bool:
                return y.to(torch.int64)
    ys = []
    for i in range(n):
        y = _tensor(_pair(ds[i], spec, split, i)[1], spec, split, i, "label")
        if y.numel() != 1 or y.is_floating_point() and float(y) != int(y):
            raise ValueError(
                f"data.factory {spec!r}: {split} item {i} has label {y.tolist()}; use an integer"
            )
        ys.append(int(y.reshape(())))
    return torch.tensor(ys, dtype=torch.int64)
