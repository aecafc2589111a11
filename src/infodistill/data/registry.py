"""Data sets by name: :func:`load_dataset` and the names it accepts (:data:`DATASET_NAMES`, with a
few aliases), each mapped to its loader and to whether it takes, needs or refuses a ``root``.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable
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


def _no_root(loader: Callable[..., tuple[ArrayDataset, ArrayDataset]], name: str) -> Callable[..., Any]:
    def call(root: PathLike | None, **kw: Any) -> tuple[ArrayDataset, ArrayDataset]:
        if root is not None:
            raise DataError(f"dataset {name!r} is generated or bundled and takes no root (got {root})")
        return loader(**kw)

    return call


def _needs_root(
    loader: Callable[..., tuple[ArrayDataset, ArrayDataset]], name: str, layout: str
) -> Callable[..., Any]:
    def call(root: PathLike | None, **kw: Any) -> tuple[ArrayDataset, ArrayDataset]:
        if root is None:
            raise DataError(f"dataset {name!r} needs root=<directory>; expected {layout}")
        return loader(root, **kw)

    return call


_LOADERS: dict[str, Callable[..., tuple[ArrayDataset, ArrayDataset]]] = {
    "fashion-mnist": lambda root, **kw: load_fashion_mnist(root, **kw),
    "mnist1d": _no_root(load_mnist1d, "mnist1d"),
    "digits": _no_root(load_digits_dataset, "digits"),
    "sparse-parity": _no_root(load_sparse_parity, "sparse-parity"),
    "cifar10": _needs_root(lambda r, **kw: load_cifar(r, num_classes=10, **kw), "cifar10", _CIFAR_LAYOUT[10]),
    "cifar100": _needs_root(
        lambda r, **kw: load_cifar(r, num_classes=100, **kw), "cifar100", _CIFAR_LAYOUT[100]
    ),
    # Decoded per item when read (data/loader.py): an image folder can be larger than memory.
    "image-folder": _needs_root(
        lambda r, **kw: load_image_folder(r, **{"lazy": True, **kw}), "image-folder", _IMAGE_FOLDER_LAYOUT
    ),
}

#: Names accepted by :func:`load_dataset`.
DATASET_NAMES = tuple(sorted(_LOADERS))

#: The function behind each name, whose keyword arguments are that data set's options (``root``
#: and ``num_classes`` are the registry's); a name whose function takes ``**kwargs`` checks them
#: itself (MNIST-1D's generator arguments).
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "fashion-mnist": load_fashion_mnist,
    "mnist1d": load_mnist1d,
    "digits": load_digits_dataset,
    "sparse-parity": load_sparse_parity,
    "cifar10": load_cifar,
    "cifar100": load_cifar,
    "image-folder": load_image_folder,
}


def _check_options(key: str, kw: dict) -> None:
    """A one-line DataError for an option the data set does not take (a preset's or config's
    ``data.kwargs`` meant for another data set), instead of the loader's TypeError."""
    params = inspect.signature(_FUNCTIONS[key]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n in params if n not in ("root", "num_classes")]
    for name in kw:
        if name not in valid:
            raise DataOptionError(
                f"dataset {key!r} has no option {name!r}; its options: {', '.join(valid) or 'none'}"
            )


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
    if key not in _LOADERS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    _check_options(key, kw)
    if key == "image-folder":  # read per item: nothing to keep
        return _LOADERS[key](root, **kw)
    memo = (key, None if root is None else str(Path(root).resolve()), repr(sorted(kw.items())), _files(root))
    if memo not in _LOADED:
        _LOADED[memo] = _LOADERS[key](root, **kw)
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
