"""Offline data sets, file readers and batched transforms (torch).

Nothing in this subpackage downloads. Loaders return ``(train, test)`` :class:`ArrayDataset`
pairs; a missing data set raises :class:`DataError` saying how to get it. One module per loader
(``fashion_mnist``, ``mnist1d``, ``digits``, ``sparse_parity``, ``cifar``, ``image_folder``), the
data set type in ``array_dataset``, loading by name in ``registry``. Pickled files (the CIFAR
"python version") are read only through the whitelist unpickler of
:mod:`infodistill.data.safe_pickle`.
"""

from .array_dataset import ArrayDataset
from .cifar import load_cifar
from .digits import load_digits_dataset
from .errors import DataError
from .fashion_mnist import (
    DEFAULT_FASHION_MNIST_ROOT,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    load_fashion_mnist,
)
from .idx import read_idx, write_idx
from .image_folder import IMAGE_EXTENSIONS, load_image_folder
from .mnist1d import load_mnist1d
from .registry import DATASET_NAMES, load_dataset
from .safe_pickle import RestrictedUnpickler, safe_load_pickle
from .sparse_parity import load_sparse_parity
from .transforms import (
    Compose,
    Mixup,
    Normalize,
    RandomCropPad,
    RandomHFlip,
    Transform,
    dataset_stats,
    mixup,
)

__all__ = [
    "ArrayDataset",
    "Compose",
    "DATASET_NAMES",
    "DEFAULT_FASHION_MNIST_ROOT",
    "DataError",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "IMAGE_EXTENSIONS",
    "Mixup",
    "Normalize",
    "RandomCropPad",
    "RandomHFlip",
    "RestrictedUnpickler",
    "Transform",
    "dataset_stats",
    "load_cifar",
    "load_dataset",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist1d",
    "load_sparse_parity",
    "mixup",
    "read_idx",
    "safe_load_pickle",
    "write_idx",
]
