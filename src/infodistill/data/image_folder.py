"""Image folders (``root/<class>/*.jpg|png``, optionally split into ``train/`` and ``test/``, or the
CUB-200-2011 layout with ``images.txt`` and ``train_test_split.txt``), decoded with Pillow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .array_dataset import ArrayDataset, PathLike, _read_file, _stratified_split, _to_float_images
from .errors import DataError
from .loader import ItemDataset

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


def _decode_one(path: Path, size: int | None) -> np.ndarray:
    """One image as (H, W, 3) uint8 RGB, resized to ``size x size`` (bilinear) if given."""
    from PIL import Image, UnidentifiedImageError  # Pillow is optional (the data extra)

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None:
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None


class _ImageReader:
    """Example j of a lazy image folder: decoded when read, in a DataLoader worker (picklable)."""

    def __init__(self, paths: Sequence[Path], size: int | None):
        self.paths, self.size = list(paths), size

    def __call__(self, j: int):
        return _to_float_images(_decode_one(self.paths[j], self.size).transpose(2, 0, 1))


def _decode_images(paths: Sequence[Path], size: int | None) -> np.ndarray:
    out: np.ndarray | None = None
    for i, path in enumerate(paths):
        arr = _decode_one(path, size)
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
    root: PathLike, size: int | None = None, test_size: float = 0.25, seed: int = 0, lazy: bool = False
):
    """Images sorted into one folder per class, decoded with Pillow: x (N, 3, H, W) RGB in [0, 1].

    Layouts, tried in this order:

    1. ``root/train/<class>/*`` and ``root/test/<class>/*`` (``val`` accepted for ``test``): the
       given split; classes are the training folder's subfolders.
    2. CUB-200-2011 (``root/images.txt`` lines ``<id> <class>/<file>``, ``root/train_test_split.txt``
       lines ``<id> <1 if train else 0>``, images under ``root/images``): the official split.
    3. ``root/<class>/*``: a stratified split with ``test_size`` and ``seed``.

    Classes are the folder names, sorted. Suffixes read: :data:`IMAGE_EXTENSIONS`. All images must
    share one size unless ``size`` is given, in which case each is resized to ``size x size``
    (bilinear). The whole set is held in memory as float32 (N * 3 * H * W * 4 bytes), or, with
    ``lazy=True``, two :class:`~infodistill.data.loader.ItemDataset` s decode each image when it is
    read (a DataLoader worker does it; memory does not grow with the folder). The runs read image
    folders lazily.
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
        if lazy:
            return _lazy_pair(
                (train_paths, test_paths), (train_labels, test_labels), classes, size, str(test_dir)
            )
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
    if lazy:
        return _lazy_pair(
            ([paths[i] for i in train_idx], [paths[i] for i in test_idx]),
            (labels[train_idx], labels[test_idx]),
            classes,
            size,
            str(root),
        )
    x = _to_float_images(_decode_images(paths, size))
    n = len(classes)
    return (
        ArrayDataset(x[train_idx], labels[train_idx], n, name, classes, "train"),
        ArrayDataset(x[test_idx], labels[test_idx], n, name, classes, "test"),
    )


def _lazy_pair(paths, labels, classes, size, where: str):
    train, test = (
        ItemDataset(_ImageReader(p, size), y, len(classes), "image-folder", classes, split)
        for p, y, split in zip(paths, labels, ("train", "test"), strict=True)
    )
    if train.input_shape != test.input_shape:
        (_, h, w), (_, ht, wt) = train.input_shape, test.input_shape
        raise DataError(
            f"{where}: images are {wt}x{ht} but training images are {w}x{h}; pass size= to resize all images"
        )
    return train, test
