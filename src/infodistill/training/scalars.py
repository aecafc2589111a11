"""The log's numbers as TensorBoard scalars (``run.tensorboard: true``), beside ``log.jsonl``.

Written by rank 0 into ``<out_dir>/tensorboard`` through ``torch.utils.tensorboard``, which needs the
``tensorboard`` package (``pip install tensorboard``, or the ``tensorboard`` extra); it is imported
only when the option is on. One scalar per number of an epoch's log record, tagged by its path in
the record (``train_loss/ce``, ``test/accuracy``, ``pid/stage3|stage3/unique_t``, ...) at step =
the epoch. A resumed run purges the events of epochs after its checkpoint, as it truncates the log.
"""

from __future__ import annotations

import math
from pathlib import Path

from .config import ConfigError

#: record entries that are not per-epoch measurements
_SKIP = {"epoch", "best"}


def require_tensorboard():
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line ConfigError naming the install."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # the optional tensorboard extra
    except ImportError:
        raise ConfigError(
            "run.tensorboard=true needs the tensorboard package: pip install tensorboard "
            "(or set run.tensorboard=false)"
        ) from None
    return SummaryWriter


def scalars(record: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a log record by tag (nested keys joined by '/'); CI pairs dropped."""
    out = {}
    for k, v in record.items():
        if not prefix and k in _SKIP or k == "ci":
            continue
        tag = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(scalars(v, tag + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[tag] = float(v)
    return out


class ScalarWriter:
    """Appends each epoch's record; ``first_epoch`` (1-based) is where this process starts, so
    events of that epoch and later left by a killed run are purged."""

    def __init__(self, log_dir: Path, first_epoch: int = 1):
        writer_cls = require_tensorboard()
        self._writer = writer_cls(log_dir=str(log_dir), purge_step=first_epoch if first_epoch > 1 else None)

    def write(self, record: dict) -> None:
        step = int(record["epoch"])
        for tag, value in scalars(record).items():
            self._writer.add_scalar(tag, value, global_step=step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


__all__ = ["ScalarWriter", "require_tensorboard", "scalars"]
