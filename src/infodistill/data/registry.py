"""Data sets by name: :func:`load_dataset` and the names it accepts (:data:`DATASET_NAMES`, with a
few aliases), each mapped to its loader and to whether it takes, needs or refuses a ``root``.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .array_dataset import ArrayDataset, PathLike
from .cifar import _CIFAR_LAYOUT, load_cifar
from .digits import load_digits_dataset
from .errors import DataError, DataOptionError
from .fashion_mnist import load_fashion_mnist
from .image_folder import _IMAGE_FOLDER_LAYOUT, load_image_folder
from .mnist1d import load_mnist1d
from .sparse_parity import load_sparse_parity


@dataclass(frozen=True)
class _Source:
    """One data set: its loader function, whose keyword arguments are the data set's options (a
    function that takes ``**kwargs`` checks them itself: MNIST-1D's generator arguments), whether it
    takes, needs or refuses a ``root`` (and the layout a needed root has), the arguments the name
    fixes, and the defaults a user may override."""

    function: Callable[..., tuple[ArrayDataset, ArrayDataset]]
    root: str  # "optional", "required" or "refused"
    layout: str = ""
    fixed: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)


_SOURCES: dict[str, _Source] = {
    "fashion-mnist": _Source(load_fashion_mnist, "optional"),
    "mnist1d": _Source(load_mnist1d, "refused"),
    "digits": _Source(load_digits_dataset, "refused"),
    "sparse-parity": _Source(load_sparse_parity, "refused"),
    "cifar10": _Source(load_cifar, "required", _CIFAR_LAYOUT[10], fixed={"num_classes": 10}),
    "cifar100": _Source(load_cifar, "required", _CIFAR_LAYOUT[100], fixed={"num_classes": 100}),
    # Decoded per item when read (data/loader.py): an image folder can be larger than memory.
    "image-folder": _Source(load_image_folder, "required", _IMAGE_FOLDER_LAYOUT, defaults={"lazy": True}),
}

#: Names accepted by :func:`load_dataset`.
DATASET_NAMES = tuple(sorted(_SOURCES))


def _check_options(key: str, kw: dict) -> None:
    """A one-line DataError for an option the data set does not take (a preset's or config's
    ``data.kwargs`` meant for another data set), instead of the loader's TypeError."""
    source = _SOURCES[key]
    params = inspect.signature(source.function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n in params if n != "root" and n not in source.fixed]
    for name in kw:
        if name not in valid:
            raise DataOptionError(
                f"dataset {key!r} has no option {name!r}; its options: {', '.join(valid) or 'none'}"
            )


def _load(key: str, root: PathLike | None, kw: dict) -> tuple[ArrayDataset, ArrayDataset]:
    source = _SOURCES[key]
    kw = {**source.defaults, **kw, **source.fixed}
    if source.root == "refused":
        if root is not None:
            raise DataError(f"dataset {key!r} is generated or bundled and takes no root (got {root})")
        return source.function(**kw)
    if source.root == "required" and root is None:
        raise DataError(f"dataset {key!r} needs root=<directory>; expected {source.layout}")
    return source.function(root, **kw)


_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "mnist-1d": "mnist1d",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "image_folder": "image-folder",
    "sparse_parity": "sparse-parity",
    "imagefolder": "image-folder",
}


def load_dataset(name: str, root: PathLike | None = None, **kw: Any) -> tuple[ArrayDataset, ArrayDataset]:
    """Load ``(train, test)`` by name: one of :data:`DATASET_NAMES`.

    ``root`` is the data directory (optional for ``fashion-mnist``, required for ``cifar10``,
    ``cifar100`` and ``image-folder``, refused for the generated/bundled ``mnist1d`` and
    ``digits``); other keyword arguments go to the loader.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _SOURCES:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    _check_options(key, kw)
    if key == "image-folder":  # read per item: nothing to keep
        return _load(key, root, kw)
    memo = (key, None if root is None else str(Path(root).resolve()), repr(sorted(kw.items())), _files(root))
    if memo not in _LOADED:
        _LOADED[memo] = _load(key, root, kw)
        while len(_LOADED) > _KEEP:
            _LOADED.popitem(last=False)
    _LOADED.move_to_end(memo)
    return tuple(_copy(d) for d in _LOADED[memo])


#: The last data sets loaded in this process, by (name, root, options, the root's files): an
#: experiment's runs load the same set again and again (MNIST-1D is generated, ~2 s a time; the
#: Fashion-MNIST files are decompressed, ~1.5 s). Each call gets its own copy.
_LOADED: OrderedDict = OrderedDict()
_KEEP = 2


def _files(root: PathLike | None) -> tuple:
    """(path, size, mtime) of the files under ``root``, so that a changed file is read again."""
    if root is None or not Path(root).exists():
        return ()
    return tuple(
        (str(f), st.st_size, st.st_mtime_ns)
        for f in sorted(Path(root).rglob("*"))[:10_000]
        if f.is_file() and (st := f.stat())
    )


def _copy(data: ArrayDataset) -> ArrayDataset:
    return ArrayDataset(data.x.clone(), data.y.clone(), data.num_classes, data.name, data.classes, data.split)
