"""In-memory data sets and offline loaders.

Every loader returns ``(train, test)`` :class:`ArrayDataset` pairs with ``x`` a float32 tensor of
shape (N, C, H, W) -- or (N, C, L) for 1-D signals -- and ``y`` an int64 tensor. Nothing here ever
downloads: each loader reads a local copy, and a missing copy raises :class:`DataError` that says
how to obtain it.

Sources and formats:

- Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): four IDX files (see :mod:`.idx`). The Debian package
  ``dataset-fashion-mnist`` installs them as
  ``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``; the
  uncompressed upstream names are accepted too.
- MNIST-1D (Greydanus 2020): generated procedurally by the ``mnist1d`` package's
  ``mnist1d.data.make_dataset`` (never its ``get_dataset``, which downloads a pickle).
- scikit-learn's bundled 8x8 ``load_digits`` with a seeded stratified split.
- CIFAR-10/100 (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html) from a directory the
  user supplies. The *binary version* (``cifar-10-batches-bin``: records of 1 label byte + 3072
  pixel bytes; ``cifar-100-binary``: 1 coarse + 1 fine label byte + 3072 pixel bytes) is preferred
  when present because it needs no unpickling. The *python version* (``cifar-10-batches-py``,
  ``cifar-100-python``) consists of pickles and is read ONLY through the whitelist unpickler of
  :mod:`.safe_pickle`, never with ``pickle.load``: the project rule is never to unpickle arbitrary
  user files, and that unpickler can construct nothing but plain containers and numpy arrays.
  Pixels are stored channel-major (1024 R, 1024 G, 1024 B values, each a row-major 32x32 plane).
- Image folders (``root/<class>/*.jpg|png``, optionally split into ``train/`` and ``test/``, or the
  CUB-200-2011 layout with ``images.txt`` and ``train_test_split.txt``) decoded with Pillow.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from .errors import DataError
from .idx import read_idx
from .safe_pickle import safe_load_pickle

__all__ = [
    "ArrayDataset",
    "DATASET_NAMES",
    "DEFAULT_FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "IMAGE_EXTENSIONS",
    "load_cifar",
    "load_dataset",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist1d",
]

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


# ---------------------------------------------------------------- Fashion-MNIST

#: Where the Debian package ``dataset-fashion-mnist`` installs the data.
DEFAULT_FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")

#: Upstream file names; each may also carry a ``.gz`` suffix (the Debian package's form).
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: Label names, from the Fashion-MNIST README.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def _read_idx_split(
    images_path: Path, labels_path: Path, num_classes: int, name: str, split: str, classes: Sequence[str]
) -> ArrayDataset:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {images_path}"
        )
    if images.shape[0] == 0:
        raise DataError(f"{images_path}: holds 0 images; the {split} split must not be empty")
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside [0, {num_classes})")
    x = _to_float_images(images)[:, None]
    return ArrayDataset(x, labels.astype(np.int64), num_classes, name, classes, split)


def load_fashion_mnist(root: PathLike | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """Fashion-MNIST as ``(train, test)``: x (N, 1, 28, 28) in [0, 1], 10 classes.

    ``root`` (default ``/usr/share/datasets/fashion-mnist``, the Debian package's location) must
    contain the four IDX files of :data:`FASHION_MNIST_FILES`, gzip-compressed (``.gz``) or not.
    """
    root = DEFAULT_FASHION_MNIST_ROOT if root is None else Path(root)
    found: dict[str, Path] = {}
    for key, stem in FASHION_MNIST_FILES.items():
        for candidate in (root / f"{stem}.gz", root / stem):
            if candidate.is_file():
                found[key] = candidate
                break
    if len(found) < len(FASHION_MNIST_FILES):
        if root.exists() and not root.is_dir():
            problem = f"{root} is a file, not a directory"
        elif not root.is_dir():
            problem = f"directory {root} does not exist"
        else:
            lacking = [s for k, s in FASHION_MNIST_FILES.items() if k not in found]
            problem = f"{root} lacks {', '.join(lacking)}"
        names = ", ".join(f"{s}.gz" for s in FASHION_MNIST_FILES.values())
        raise DataError(
            f"Fashion-MNIST not found ({problem}): install with `apt-get install dataset-fashion-mnist` "
            f"or pass a directory containing the four idx files {names} (uncompressed also accepted)"
        )
    train, test = (
        _read_idx_split(
            found[f"{split}_images"],
            found[f"{split}_labels"],
            10,
            "fashion-mnist",
            split,
            FASHION_MNIST_CLASSES,
        )
        for split in ("train", "test")
    )
    if train.input_shape != test.input_shape:
        # A model would accept both (adaptive pooling) and silently test on another input size.
        raise DataError(
            f"{found['test_images']}: test images are {test.input_shape[1:]} but training images "
            f"({found['train_images']}) are {train.input_shape[1:]}; the two splits must match"
        )
    return train, test


# ---------------------------------------------------------------- MNIST-1D

_MNIST1D_FIXED = ("num_samples", "seed", "train_split", "url")


def load_mnist1d(
    n_samples: int = 5000, seed: int = 42, train_split: float = 0.8, **generator_args: Any
) -> tuple[ArrayDataset, ArrayDataset]:
    """MNIST-1D generated procedurally: x (N, 1, 40) float32, 10 classes.

    Calls ``mnist1d.data.make_dataset`` with the package's ``get_dataset_args()`` defaults
    (5000 samples, 80/20 split, sequence length 40, seed 42 -- the published data set) and the given
    overrides; extra keyword arguments override other generator fields (``final_seq_length``,
    ``iid_noise_scale``, ``shuffle_seq``, ...). The generator reseeds numpy's and Python's global
    RNGs; their states are restored afterwards. ``n_samples`` must be a multiple of 10 because the
    generator makes ``n_samples // 10`` examples per class. The signals are standardised by the
    generator (zero mean, unit std over the whole set), not scaled to [0, 1].
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise DataError(f"MNIST-1D needs the mnist1d package ({exc}): pip install mnist1d") from None
    if n_samples < 10 or n_samples % 10:
        raise ValueError(f"n_samples must be a positive multiple of 10, got {n_samples}")
    if not 0.0 < train_split < 1.0:
        raise ValueError(f"train_split must be in (0, 1), got {train_split}")
    args = get_dataset_args(as_dict=True)
    allowed = sorted(set(args) - set(_MNIST1D_FIXED))
    unknown = sorted(set(generator_args) - set(allowed))
    if unknown:
        raise ValueError(f"unknown mnist1d generator argument(s) {unknown}; allowed: {allowed}")
    args.update(generator_args, num_samples=int(n_samples), seed=int(seed), train_split=float(train_split))
    # The generator seeds and draws from numpy's legacy global RNG, so that is what must be saved.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        data = make_dataset(SimpleNamespace(**args))
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    classes = tuple(str(d) for d in range(10))
    out = []
    for split, xk, yk in (("train", "x", "y"), ("test", "x_test", "y_test")):
        x = torch.from_numpy(np.asarray(data[xk], dtype=np.float32))[:, None, :]
        y = np.asarray(data[yk], dtype=np.int64)
        if x.shape[0] == 0:
            raise ValueError(
                f"n_samples={n_samples} with train_split={train_split} leaves the {split} split empty"
            )
        out.append(ArrayDataset(x, y, 10, "mnist1d", classes, split))
    return out[0], out[1]


# ---------------------------------------------------------------- sklearn digits


def _stratified_split(y: np.ndarray, test_size: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

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


def load_digits_dataset(seed: int = 0, test_size: float = 0.25) -> tuple[ArrayDataset, ArrayDataset]:
    """scikit-learn's bundled 8x8 digits: x (N, 1, 8, 8) in [0, 1] (pixel counts 0..16 / 16).

    A stratified split (``sklearn.model_selection.train_test_split`` with ``random_state=seed``)
    gives 1347 training and 450 test examples at the default ``test_size=0.25``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = _stratified_split(y, test_size, seed, "digits")
    x = torch.from_numpy(images)[:, None]
    classes = tuple(str(d) for d in range(10))
    return (
        ArrayDataset(x[train_idx], y[train_idx], 10, "digits", classes, "train"),
        ArrayDataset(x[test_idx], y[test_idx], 10, "digits", classes, "test"),
    )


# ---------------------------------------------------------------- CIFAR

_CIFAR_PIXELS = 3 * 32 * 32

_CIFAR_BIN = {
    10: ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"]),
    100: ("cifar-100-binary", ["train.bin"], ["test.bin"]),
}
_CIFAR_PY = {
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
    100: ("cifar-100-python", ["train"], ["test"]),
}
_CIFAR_ARCHIVES = {
    10: ("cifar-10-binary.tar.gz", "cifar-10-python.tar.gz"),
    100: ("cifar-100-binary.tar.gz", "cifar-100-python.tar.gz"),
}
_CIFAR_LAYOUT = {
    10: (
        "cifar-10-batches-bin/{data_batch_1..5.bin, test_batch.bin[, batches.meta.txt]} (binary version, "
        "preferred) or cifar-10-batches-py/{data_batch_1..5, test_batch[, batches.meta]} (python version), "
        "as extracted from https://www.cs.toronto.edu/~kriz/cifar.html"
    ),
    100: (
        "cifar-100-binary/{train.bin, test.bin[, fine_label_names.txt, coarse_label_names.txt]} (binary "
        "version, preferred) or cifar-100-python/{train, test[, meta]} (python version), as extracted "
        "from https://www.cs.toronto.edu/~kriz/cifar.html"
    ),
}


def _locate(root: Path, dirname: str, marker: str) -> Path | None:
    # Accept the parent of the extracted directory or the directory itself.
    for candidate in (root / dirname, root):
        if (candidate / marker).is_file() or (candidate.name == dirname and candidate.is_dir()):
            return candidate
    return None


def _read_cifar_bin(path: Path, label_bytes: int, label_offset: int) -> tuple[np.ndarray, np.ndarray]:
    raw = _read_file(path)
    record = label_bytes + _CIFAR_PIXELS
    if not raw or len(raw) % record:
        raise DataError(
            f"{path}: {len(raw)} bytes is not a positive multiple of the {record}-byte CIFAR record "
            f"({label_bytes} label byte(s) + {_CIFAR_PIXELS} pixel bytes): truncated or wrong layout"
        )
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, label_offset].astype(np.int64)
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), labels


def _text_names(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    return [line.strip() for line in _read_file(path).decode("utf-8", "replace").splitlines() if line.strip()]


def _str_keys(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    # Files written by Python 2 (the real ones) come back with bytes keys under encoding="bytes".
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _read_cifar_py(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _str_keys(safe_load_pickle(path), path)
    if "data" not in batch or label_key not in batch:
        raise DataError(
            f"{path}: expected keys 'data' and '{label_key}', found {sorted(batch)}: "
            "wrong file for this layout"
        )
    data = batch["data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _CIFAR_PIXELS
    ):
        desc = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, {_CIFAR_PIXELS}), got {desc}")
    if data.shape[0] == 0:
        raise DataError(f"{path}: 'data' holds 0 images; a batch must not be empty")
    try:
        labels = np.asarray(batch[label_key])
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: '{label_key}' is not a list of integers ({exc})") from None
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or labels.shape[0] != data.shape[0]:
        raise DataError(
            f"{path}: '{label_key}' must be {data.shape[0]} integers, "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_py_names(path: Path, key: str) -> list[str] | None:
    if not path.is_file():
        return None
    meta = _str_keys(safe_load_pickle(path), path)
    names = meta.get(key)
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{path}: expected '{key}' to be a list of names")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]


def load_cifar(
    root: PathLike, num_classes: int = 10, coarse: bool = False
) -> tuple[ArrayDataset, ArrayDataset]:
    """CIFAR-10 or CIFAR-100 from an extracted archive: x (N, 3, 32, 32) in [0, 1].

    ``root`` is the directory holding the extracted ``cifar-10-batches-bin`` /
    ``cifar-10-batches-py`` (or ``cifar-100-binary`` / ``cifar-100-python``) folder, or that
    folder itself. The binary version is used when present (no unpickling at all); the python
    version is read with the whitelist unpickler of :mod:`.safe_pickle`. For CIFAR-100,
    ``coarse=True`` returns the 20 superclass labels instead of the 100 fine labels. Class-name
    files are optional. Anything missing, truncated or laid out differently raises
    :class:`DataError` describing the expected layout.
    """
    if num_classes not in (10, 100):
        raise ValueError(f"num_classes must be 10 or 100, got {num_classes}")
    if coarse and num_classes != 100:
        raise ValueError("coarse labels exist only for CIFAR-100")
    root = Path(root)
    n_out = 20 if coarse else num_classes
    name = f"cifar{num_classes}" + ("-coarse" if coarse else "")
    layout = _CIFAR_LAYOUT[num_classes]
    if not root.is_dir():
        raise DataError(f"CIFAR-{num_classes} directory {root} does not exist; expected {layout}")

    bin_dir, bin_train, bin_test = _CIFAR_BIN[num_classes]
    py_dir, py_train, py_test = _CIFAR_PY[num_classes]
    found_bin = _locate(root, bin_dir, bin_test[0])
    found_py = None if found_bin is not None else _locate(root, py_dir, py_test[0])
    if found_bin is None and found_py is None:
        archives = [a for a in _CIFAR_ARCHIVES[num_classes] if (root / a).is_file()]
        hint = (
            f" (found {archives[0]}: extract it with `tar xzf {root / archives[0]} -C {root}`)"
            if archives
            else ""
        )
        raise DataError(f"CIFAR-{num_classes} not found in {root}{hint}; expected {layout}")

    directory = found_bin if found_bin is not None else found_py
    files = (bin_train + bin_test) if found_bin is not None else (py_train + py_test)
    missing = [f for f in files if not (directory / f).is_file()]
    if missing:
        raise DataError(f"{directory}: missing {', '.join(missing)}; expected {layout}")

    if found_bin is not None:
        label_bytes, offset = (1, 0) if num_classes == 10 else (2, 0 if coarse else 1)

        def read(f: str) -> tuple[np.ndarray, np.ndarray]:
            return _read_cifar_bin(directory / f, label_bytes, offset)

        if num_classes == 10:
            classes = _text_names(directory / "batches.meta.txt")
        else:
            classes = _text_names(
                directory / ("coarse_label_names.txt" if coarse else "fine_label_names.txt")
            )
        train_files, test_files = bin_train, bin_test
    else:
        label_key = "labels" if num_classes == 10 else ("coarse_labels" if coarse else "fine_labels")

        def read(f: str) -> tuple[np.ndarray, np.ndarray]:
            return _read_cifar_py(directory / f, label_key)

        if num_classes == 10:
            classes = _cifar_py_names(directory / "batches.meta", "label_names")
        else:
            classes = _cifar_py_names(
                directory / "meta", "coarse_label_names" if coarse else "fine_label_names"
            )
        train_files, test_files = py_train, py_test

    if classes is not None and len(classes) != n_out:
        # A wrong names file should not make otherwise good data unusable; drop the names.
        classes = None
    out = []
    for split, split_files in (("train", train_files), ("test", test_files)):
        parts = [read(f) for f in split_files]
        for f, (_, labels) in zip(split_files, parts, strict=True):
            if labels.size and (labels.min() < 0 or labels.max() >= n_out):
                raise DataError(
                    f"{directory / f}: labels span [{int(labels.min())}, {int(labels.max())}], outside "
                    f"[0, {n_out}) for {name}; expected {layout}"
                )
        pixels = np.concatenate([p for p, _ in parts]) if len(parts) > 1 else parts[0][0]
        labels = np.concatenate([lab for _, lab in parts])
        out.append(ArrayDataset(_to_float_images(pixels), labels, n_out, name, classes, split))
    return out[0], out[1]


# ---------------------------------------------------------------- image folders

#: File suffixes (case-insensitive) that :func:`load_image_folder` reads.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

_IMAGE_FOLDER_LAYOUT = (
    "root/<class_name>/*.jpg|png, or root/train/<class_name>/* with root/test/<class_name>/*, or the "
    "CUB-200-2011 layout root/{images.txt, train_test_split.txt, images/<class_name>/*}"
)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _decode_images(paths: Sequence[Path], size: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    out: np.ndarray | None = None
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if size is not None:
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot decode image ({exc})") from None
        if out is None:
            out = np.empty((len(paths), *arr.shape), dtype=np.uint8)
        elif arr.shape != out.shape[1:]:
            raise DataError(
                f"{path}: image is {arr.shape[1]}x{arr.shape[0]} but {paths[0].name} is "
                f"{out.shape[2]}x{out.shape[1]}; pass size= to resize all images"
            )
        out[i] = arr
    assert out is not None
    return out.transpose(0, 3, 1, 2)


def _scan_classes(
    root: Path, classes: Sequence[str] | None = None
) -> tuple[list[str], list[Path], list[int]]:
    dirs = _class_dirs(root)
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
    else:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"{root}: class folder(s) {unknown} have no counterpart in the training folder")
    index = {c: i for i, c in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        files = _image_files(d)
        if not files:
            raise DataError(f"{d}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths += files
        labels += [index[d.name]] * len(files)
    return list(classes), paths, labels


def _read_id_table(path: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    for lineno, line in enumerate(_read_file(path).decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected '<image_id> <value>', got {line!r}")
        table[parts[0]] = parts[1].strip()
    return table


def _scan_cub(root: Path) -> tuple[list[str], list[Path], list[int], np.ndarray]:
    images = _read_id_table(root / "images.txt")
    is_train = _read_id_table(root / "train_test_split.txt")
    if set(images) != set(is_train):
        raise DataError(f"{root / 'train_test_split.txt'}: image ids differ from those of images.txt")
    rel = {i: Path(p) for i, p in images.items()}
    bad = next((p for p in rel.values() if len(p.parts) != 2), None)
    if bad is not None:
        raise DataError(f"{root / 'images.txt'}: path {bad} is not <class_name>/<file>")
    classes = sorted({p.parts[0] for p in rel.values()})
    index = {c: k for k, c in enumerate(classes)}
    ids = sorted(rel, key=lambda i: (int(i) if i.isdigit() else 0, i))
    paths = [root / "images" / rel[i] for i in ids]
    labels = [index[rel[i].parts[0]] for i in ids]
    try:
        train_mask = np.array([int(is_train[i]) == 1 for i in ids])
    except ValueError:
        raise DataError(f"{root / 'train_test_split.txt'}: the flag column must be 0 or 1") from None
    missing = next((p for p in paths if not p.is_file()), None)
    if missing is not None:
        raise DataError(f"{missing}: listed in images.txt but missing")
    return classes, paths, labels, train_mask


def load_image_folder(
    root: PathLike, size: int | None = None, test_size: float = 0.25, seed: int = 0
) -> tuple[ArrayDataset, ArrayDataset]:
    """Images sorted into one folder per class, decoded with Pillow: x (N, 3, H, W) RGB in [0, 1].

    Layouts, tried in this order:

    1. ``root/train/<class>/*`` and ``root/test/<class>/*`` (``val`` accepted for ``test``): the
       given split; classes are the training folder's subfolders.
    2. CUB-200-2011 (``root/images.txt`` lines ``<id> <class>/<file>``, ``root/train_test_split.txt``
       lines ``<id> <1 if train else 0>``, images under ``root/images``): the official split.
    3. ``root/<class>/*``: a stratified split with ``test_size`` and ``seed``.

    Classes are the folder names, sorted. Suffixes read: :data:`IMAGE_EXTENSIONS`. All images must
    share one size unless ``size`` is given, in which case each is resized to ``size x size``
    (bilinear). The whole set is held in memory as float32 (N * 3 * H * W * 4 bytes).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; expected {_IMAGE_FOLDER_LAYOUT}")
    if size is not None and size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    name = "image-folder"
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)

    if (root / "train").is_dir() and test_dir is not None:
        classes, train_paths, train_labels = _scan_classes(root / "train")
        if not classes:
            raise DataError(f"{root / 'train'}: no class folders; expected {_IMAGE_FOLDER_LAYOUT}")
        _, test_paths, test_labels = _scan_classes(test_dir, classes)
        if not test_paths:
            raise DataError(f"{test_dir}: no class folders; expected {_IMAGE_FOLDER_LAYOUT}")
        train_x = _decode_images(train_paths, size)
        test_x = _decode_images(test_paths, size)
        if train_x.shape[1:] != test_x.shape[1:]:
            raise DataError(
                f"{test_dir}: images are {test_x.shape[3]}x{test_x.shape[2]} but training images are "
                f"{train_x.shape[3]}x{train_x.shape[2]}; pass size= to resize all images"
            )
        n = len(classes)
        return (
            ArrayDataset(_to_float_images(train_x), train_labels, n, name, classes, "train"),
            ArrayDataset(_to_float_images(test_x), test_labels, n, name, classes, "test"),
        )

    if (root / "images.txt").is_file() and (root / "train_test_split.txt").is_file():
        classes, paths, labels_list, train_mask = _scan_cub(root)
        if not paths:
            raise DataError(f"{root / 'images.txt'}: lists no images")
        labels = np.asarray(labels_list, dtype=np.int64)
        train_idx, test_idx = np.flatnonzero(train_mask), np.flatnonzero(~train_mask)
    else:
        classes, paths, labels_list = _scan_classes(root)
        if not paths:
            raise DataError(f"{root}: no class folders with images; expected {_IMAGE_FOLDER_LAYOUT}")
        labels = np.asarray(labels_list, dtype=np.int64)
        train_idx, test_idx = _stratified_split(labels, test_size, seed, str(root))
    x = _to_float_images(_decode_images(paths, size))
    n = len(classes)
    return (
        ArrayDataset(x[train_idx], labels[train_idx], n, name, classes, "train"),
        ArrayDataset(x[test_idx], labels[test_idx], n, name, classes, "test"),
    )


# ---------------------------------------------------------------- dispatch


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
    "cifar10": _needs_root(lambda r, **kw: load_cifar(r, num_classes=10, **kw), "cifar10", _CIFAR_LAYOUT[10]),
    "cifar100": _needs_root(
        lambda r, **kw: load_cifar(r, num_classes=100, **kw), "cifar100", _CIFAR_LAYOUT[100]
    ),
    "image-folder": _needs_root(load_image_folder, "image-folder", _IMAGE_FOLDER_LAYOUT),
}

#: Names accepted by :func:`load_dataset`.
DATASET_NAMES = tuple(sorted(_LOADERS))

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "mnist-1d": "mnist1d",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "image_folder": "image-folder",
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
    return _LOADERS[key](root, **kw)
