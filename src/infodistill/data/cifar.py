"""CIFAR-10/100 (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html) from a directory the
user supplies.

The *binary version* (``cifar-10-batches-bin``: records of 1 label byte + 3072 pixel bytes;
``cifar-100-binary``: 1 coarse + 1 fine label byte + 3072 pixel bytes) is preferred when present
because it needs no unpickling. The *python version* (``cifar-10-batches-py``,
``cifar-100-python``) consists of pickles and is read ONLY through the whitelist unpickler of
:mod:`.safe_pickle`, never with ``pickle.load``: the project rule is never to unpickle arbitrary
user files, and that unpickler can construct nothing but plain containers and numpy arrays.
Pixels are stored channel-major (1024 R, 1024 G, 1024 B values, each a row-major 32x32 plane).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .array_dataset import ArrayDataset, PathLike, _read_file, _to_float_images
from .errors import DataError
from .safe_pickle import safe_load_pickle

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
