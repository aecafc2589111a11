"""Batches of any labelled map-style data set, through ``torch.utils.data.DataLoader``.

Every consumer of examples (training, evaluation, the teacher-output cache, the PID tracker, the
audit) reads batches here, so a data set held in memory and one decoded item by item (an image
folder) go through the same code. The caller decides which indices form each batch (the trainer's
seeded permutation and its DDP shards: ``docs/distributed.md``); the loader only fetches them, in
that order, so the batches and therefore the results do not depend on the number of workers.

- In-memory sets (:class:`~infodistill.data.ArrayDataset`, :class:`TensorPairs`) define
  ``__getitems__``: a batch is one tensor indexing, as cheap as indexing the tensors directly.
- Other data sets are read item by item in ``workers`` processes (``persistent_workers``, so
  they start once per run, not per epoch) and stacked; items are ``(x, y)`` pairs.
- Workers are forked only while no thread of this process's is starting or ending: CPython 3.11
  can deadlock a child forked at that moment (``os.fork`` waits in the child, in
  ``PyOS_AfterFork_Child``, for a lock the other thread held; seen under torchrun, where the test
  reader forked while the train reader's queue threads ran). A reader therefore forks its workers
  when it is made, before any queue thread of its own exists; ``close()`` (or leaving a ``with``
  block) stops them and waits for its queue threads to end; the training loop makes both of a
  run's readers before its first step and closes them at its end.
- On CUDA, batches are pinned so the copy to the device can overlap the step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Sampler

__all__ = [
    "BatchReader",
    "ItemDataset",
    "TensorPairs",
    "auto_eval_batch",
    "auto_workers",
    "first_examples",
    "in_memory",
    "sample_shape",
    "take",
]


class TensorPairs:
    """(x, y) tensors as a map-style data set with batch indexing (``__getitems__``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def __getitems__(self, indices: list[int]):
        return take(self.x, indices), take(self.y, indices)


def take(t: torch.Tensor, indices: list[int]) -> torch.Tensor:
    """``t[indices]``; consecutive indices (evaluation, the teacher cache) as a slice, a view
    without a copy, as those passes read the tensors before the DataLoader path."""
    idx = torch.as_tensor(indices, dtype=torch.int64)
    if len(idx) and bool((idx.diff() == 1).all()):
        return t[int(idx[0]) : int(idx[-1]) + 1]
    return t[idx]


def in_memory(dataset) -> bool:
    """Whether ``dataset`` holds its examples as tensors ``x`` and ``y`` (batch indexing)."""
    return isinstance(getattr(dataset, "x", None), torch.Tensor) and hasattr(dataset, "__getitems__")


def auto_workers(dataset, requested: int | None = None) -> int:
    """Worker processes for ``dataset``: ``requested`` if given; else 0 for an in-memory set (a
    batch is one indexing, a worker would only add a copy between processes) and, for a set read
    per item, every core but two (left to the step's threads), at most 4: 0 on 2 cores, where
    bench/data_loading.py measured no gain from a worker even for PNG decoding (the step's two
    threads already fill both cores)."""
    if requested is not None:
        return int(requested)
    if in_memory(dataset):
        return 0
    return max(0, min(4, (os.cpu_count() or 2) - 2))


#: float32 input bytes of an automatic evaluation batch, and its largest size
EVAL_INPUT_BYTES = 16 * 2**20
MAX_EVAL_BATCH = 1000


def auto_eval_batch(dataset, train_batch: int, requested: int | None = None) -> int:
    """Examples per batch of the passes without gradients (evaluation, the teacher-output cache,
    the PID tracker's features): ``requested`` if given; else as many as fit
    :data:`EVAL_INPUT_BYTES` of float32 input, at most :data:`MAX_EVAL_BATCH` and at least the
    training batch (which the run holds anyway, with the activations of its backward pass).

    A pass without gradients holds its input batch and a layer's activations at a time, so its
    memory follows the batch's input size: 1 000 examples of Fashion-MNIST (3 KiB each), MNIST-1D
    or CIFAR (12 KiB) fit the budget, and 128 x 128 RGB images (192 KiB) are evaluated in batches
    of 85, raised to the training batch (bench/stream_memory.py: a one-epoch run over 4 000 such
    images peaked at 690 MiB with it, at 1 231 MiB with a fixed batch of 1 000)."""
    if requested is not None:
        return int(requested)
    per_example = 4 * math.prod(sample_shape(dataset))
    return max(int(train_batch), min(MAX_EVAL_BATCH, EVAL_INPUT_BYTES // max(1, per_example)))


def _collate(batch):
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        return batch  # already a batch (``__getitems__``)
    xs, ys = zip(*[(item[0], item[1]) for item in batch], strict=True)
    xs = [torch.as_tensor(v) for v in xs]
    out = torch.empty((len(xs), *xs[0].shape), dtype=xs[0].dtype).to(memory_format=_layout(xs[0]))
    x = torch.stack(xs, out=out)
    return x, torch.as_tensor([int(v) for v in ys], dtype=torch.int64)


def _layout(item: torch.Tensor) -> torch.memory_format:
    """The memory format of a batch of items like ``item``: channels-last when the item is laid
    out (H, W, C) in memory (an image decoded to HWC and permuted, as ``load_image_folder`` holds
    them), so a batch stacked from items has the strides of the same images held in memory and
    the model runs the same kernels on both (oneDNN's convolutions round differently per layout)."""
    if (
        item.dim() == 3
        and not item.is_contiguous()
        and item.unsqueeze(0).is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format


class _Batches(Sampler):
    """The batches of the current pass, set by the reader before each pass."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class BatchReader:
    """Reads the batches it is given from one data set, through one ``DataLoader`` kept for the
    whole run (its workers persist between passes).

    ``reader(batches)`` yields ``(idx, x, y)`` for each index tensor of ``batches``, in order; x
    and y on the CPU (pinned when ``pin_memory``)."""

    def __init__(self, dataset, workers: int | None = None, pin_memory: bool = False):
        self.dataset = dataset
        self.workers = auto_workers(dataset, workers)
        self._sampler = _Batches()
        self._loader = DataLoader(
            dataset,
            batch_sampler=self._sampler,
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=pin_memory,
            persistent_workers=self.workers > 0,
            # Its own generator: a DataLoader draws a worker base seed per pass, which from the
            # global generator would shift every later draw (dropout, a resumed run's RNG state).
            generator=torch.Generator().manual_seed(0),
        )
        if self.workers > 0:
            # The workers fork now, while this reader has no queue threads (see the module's notes):
            # a pass over no batches starts them and puts nothing on their queues.
            iter(self._loader)

    def close(self) -> None:
        """Stop the workers, and wait until this process's threads feeding their queues have
        ended, so that a reader made next forks with no thread starting or ending. Idempotent."""
        it = getattr(self._loader, "_iterator", None)
        if it is None:
            return
        self._loader._iterator = None
        # DataLoader keeps no public handle on its workers or queues: these are its iterator's.
        it._shutdown_workers()
        for queue in getattr(it, "_index_queues", ()):
            feeder = getattr(queue, "_thread", None)
            if feeder is not None:
                feeder.join(timeout=10)

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(
        self, batches: Sequence[torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        batches = list(batches)
        self._sampler.batches = [b.tolist() for b in batches]
        for idx, (x, y) in zip(batches, self._loader, strict=True):
            yield idx, x, y

    def sequential(self, batch_size: int, n: int | None = None, skip=None):
        """The first ``n`` examples (default all) in order, in batches of ``batch_size``;
        ``skip(k)`` true leaves out the k-th batch (another process evaluates it)."""
        n = len(self.dataset) if n is None else min(n, len(self.dataset))
        batches = [torch.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
        if skip is not None:
            batches = [b for k, b in enumerate(batches) if not skip(k)]
        return self(batches)


def first_examples(dataset, n: int, batch_size: int | None = None, workers: int | None = None):
    """``(x, y)`` of the first ``n`` examples as tensors (in-memory sets: a view, no copy; others
    read in batches of ``batch_size``, default :func:`auto_eval_batch`)."""
    n = min(n, len(dataset))
    if in_memory(dataset):
        return dataset.x[:n], dataset.y[:n]
    with BatchReader(dataset, workers) as reader:
        parts = list(reader.sequential(auto_eval_batch(dataset, 1, batch_size), n))
    return torch.cat([x for _, x, _ in parts]), torch.cat([y for _, _, y in parts])


def sample_shape(dataset) -> tuple[int, ...]:
    """The shape of one example, without reading the whole set."""
    shape = getattr(dataset, "input_shape", None)
    if shape is not None:
        return tuple(shape)
    return tuple(torch.as_tensor(dataset[0][0]).shape)


class ItemDataset:
    """A labelled data set read item by item (never held whole in memory): a user's
    ``torch.utils.data.Dataset`` or an image folder's files.

    ``read(j)`` returns example ``j`` of the source as a float32 tensor (C, H, W) or (C, L);
    ``labels`` are all the source's labels (known up front: the runs need the number of classes
    and the seeded subsets need the length, not the pixels). ``indices`` select and order the
    source's examples (a subset is a new view, nothing is read)."""

    def __init__(self, read, labels, num_classes: int, name: str, classes=None, split=None, indices=None):
        self.read, self.labels = read, torch.as_tensor(labels, dtype=torch.int64)
        self.indices = torch.arange(len(self.labels)) if indices is None else torch.as_tensor(indices)
        self.num_classes, self.name, self.classes, self.split = int(num_classes), name, classes, split
        self._shape = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def y(self) -> torch.Tensor:
        return self.labels[self.indices]

    def __getitem__(self, i: int):
        j = int(self.indices[i])
        x = self.read(j)
        if tuple(x.shape) != self.input_shape:
            raise ValueError(
                f"{self.name}: example {j} has shape {tuple(x.shape)}, example {int(self.indices[0])} "
                f"{self._shape}; every example needs the same shape (resize or crop them)"
            )
        return x, self.labels[j]

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self._shape is None:
            self._shape = tuple(self.read(int(self.indices[0])).shape)
        return self._shape

    def subset(self, indices) -> ItemDataset:
        sub = ItemDataset(
            self.read, self.labels, self.num_classes, self.name, self.classes, self.split,
            self.indices[torch.as_tensor(indices, dtype=torch.int64)],
        )  # fmt: skip
        sub._shape = self._shape
        return sub

    def __repr__(self) -> str:
        split = f", split={self.split!r}" if self.split else ""
        return f"ItemDataset(name={self.name!r}{split}, n={len(self)}, num_classes={self.num_classes})"
