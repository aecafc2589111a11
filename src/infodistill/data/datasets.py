"""The loaders' former home, kept so that ``from infodistill.data.datasets import ...`` still works.

The data set type is in :mod:`.array_dataset`, each loader in a module of its own (``fashion_mnist``,
``mnist1d``, ``digits``, ``cifar``, ``image_folder``) and :func:`load_dataset` in :mod:`.registry`.
"""

from .array_dataset import ArrayDataset
from .cifar import load_cifar
from .digits import load_digits_dataset
from .fashion_mnist import (
    DEFAULT_FASHION_MNIST_ROOT,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    load_fashion_mnist,
)
from .image_folder import IMAGE_EXTENSIONS, load_image_folder
from .mnist1d import load_mnist1d
from .registry import DATASET_NAMES, load_dataset

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
