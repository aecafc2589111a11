"""Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): four IDX files (see :mod:`.idx`).

The Debian package ``dataset-fashion-mnist`` installs them as
``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``; the
uncompressed upstream names are accepted too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .array_dataset import ArrayDataset, PathLike, _to_float_images
from .errors import DataError
from .idx import read_idx
from .nuisance import add_nuisance

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


def load_fashion_mnist(
    root: PathLike | None = None, nuisance: float = 0.0
) -> tuple[ArrayDataset, ArrayDataset]:
    """Fashion-MNIST as ``(train, test)``: x (N, 1, 28, 28) in [0, 1], 10 classes.

    ``root`` (default ``/usr/share/datasets/fashion-mnist``, the Debian package's location) must
    contain the four IDX files of :data:`FASHION_MNIST_FILES`, gzip-compressed (``.gz``) or not.

    ``nuisance`` > 0 adds to every image a fixed random smooth pattern of that standard deviation
    (in pixel units, [0, 1] being the pixels' range), drawn independently of the image and its
    label (:func:`~infodistill.data.nuisance.add_nuisance`; seed 0 for the training split, 1 for
    the test split): task-irrelevant structure, so the pixels then leave [0, 1].
    """
    if not (isinstance(nuisance, int | float) and not isinstance(nuisance, bool)) or not 0 <= nuisance < 1e6:
        raise DataError(
            f"nuisance must be a number >= 0 (the patterns' standard deviation), got {nuisance!r}"
        )
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
    if nuisance:
        for seed, split in enumerate((train, test)):
            split.x = torch.from_numpy(add_nuisance(split.x.numpy(), float(nuisance), seed))
    if train.input_shape != test.input_shape:
        # A model would accept both (adaptive pooling) and silently test on another input size.
        raise DataError(
            f"{found['test_images']}: test images are {test.input_shape[1:]} but training images "
            f"({found['train_images']}) are {train.input_shape[1:]}; the two splits must match"
        )
    return train, test
