"""Small data files in the layouts the loaders read, shared by the tests (imported as ``datafiles``)."""

from pathlib import Path

import numpy as np


def write_cifar10_bin(root: Path, n: int) -> Path:
    """CIFAR-10's binary layout under ``root``: five training batches and a test batch of ``n``
    random 32x32x3 images each (first byte the label, 0..9); returns the batches' directory."""
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rows = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
        rows[:, 0] %= 10
        (d / name).write_bytes(rows.tobytes())
    return d
