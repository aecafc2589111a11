"""The cost of reading batches through ``data/loader.py``, against indexing the tensors directly
(what the trainer did before the DataLoader path), with the training step they feed.

    OMP_WAIT_POLICY=PASSIVE python bench/data_loading.py [--threads 2] [--rounds 7]

Fashion-MNIST's 60 000 training images (Debian's dataset-fashion-mnist), batches of 128 of a
seeded permutation, each fed to one SGD step of a ``cnn-small`` (width 8) on cross-entropy. Rows:

- the in-memory set: direct tensor indexing (the reference), and ``BatchReader`` with 0, 1 and 2
  worker processes (0 is what ``data.workers: null`` picks for an in-memory set);
- the same examples as a set read per item (``ItemDataset``, as a user's torch Dataset is read;
  here without decoding cost), with 0, 1 and 2 workers (the rule for such sets leaves two cores
  to the step: 0 workers on 2 cores);
- with ``--image-folder N``: a generated folder of N 32 x 32 PNGs, decoded per item as the runs
  read image folders, with 0, 1 and 2 workers, each fed to a 3-channel ``cnn-small`` (width 8),
  against the same images decoded up front and indexed directly (that block's own reference).

Each row's time per batch is a median over interleaved rounds; the ratio is the median over
rounds of row / reference in the same round. The issue's target: the in-memory set through the
DataLoader path within 5 % of the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from infodistill.data import load_fashion_mnist
from infodistill.data.loader import BatchReader, ItemDataset, auto_workers
from infodistill.models import build_model

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402


class _Read:
    """Example j of an in-memory tensor, as a per-item data set reads it (picklable)."""

    def __init__(self, x):
        self.x = x

    def __call__(self, j):
        return self.x[j]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batches", type=int, default=20, help="batches per timed chunk")
    ap.add_argument("--n", type=int, help="training examples (default: all 60 000)")
    ap.add_argument("--image-folder", type=int, metavar="N", help="also time a generated folder of N PNGs")
    ap.add_argument("--json", help="write the measurements here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(benchkit.machine_line(benchkit.machine_info()), flush=True)
    train, _ = load_fashion_mnist()
    if args.n:
        train = train.subset(torch.arange(args.n))
    items = ItemDataset(_Read(train.x), train.y, train.num_classes, "fashion-mnist (per item)")
    rows = _rows(train, items, args.batches, "in memory", "per item")
    rule = {"in memory": auto_workers(train), "per item": auto_workers(items)}
    tmp = None
    if args.image_folder:
        import tempfile

        from infodistill.data import load_image_folder

        tmp = tempfile.TemporaryDirectory()
        _png_folder(Path(tmp.name), args.image_folder)
        held, _ = load_image_folder(tmp.name, test_size=0.1, lazy=False)
        lazy, _ = load_image_folder(tmp.name, test_size=0.1, lazy=True)
        rows += _rows(
            held,
            lazy,
            args.batches,
            "PNG folder, decoded up front",
            "PNG folder, decoded per item",
            len(rows),
        )
        rule.update({"PNG folder, decoded up front": 0, "PNG folder, decoded per item": auto_workers(lazy)})
    timed = benchkit.time_rounds(
        [fn for _, fn, _, _ in rows], lambda fn: fn(None), warmup=2, rounds=args.rounds, min_time=0.0
    )
    table, record = [], []
    for (label, _, w, ref_row), t in zip(rows, timed, strict=True):
        per_batch = [s / args.batches for s in t.samples]
        ratio = benchkit.median_ratio(t.samples, timed[ref_row].samples)
        picked = "yes" if "BatchReader" in label and rule[label.split(":")[0]] == w else ""
        label = label if "BatchReader" in label else f"{label} (reference)"
        table.append(
            [
                label,
                f"{1e3 * benchkit.statistics.median(per_batch):.2f}",
                f"{ratio:.3f}",
                f"{benchkit.spread(t.samples):.2f}",
                picked,
            ]
        )
        record.append({"row": label, "ms_per_batch": per_batch, "ratio": ratio, "workers": w})
    print(
        benchkit.md_table(
            [
                "batches of 128 + SGD step (cnn-small w8)",
                "ms / batch (median)",
                "ratio to reference",
                "spread",
                "data.workers: null picks",
            ],
            table,
            ["---", "---:", "---:", "---:", "---"],
        )
    )
    if args.json:
        benchkit.write_json(args.json, {"machine": benchkit.machine_info(), "rows": record})
    if tmp is not None:
        tmp.cleanup()


def _rows(held, per_item, n_batches: int, held_label: str, item_label: str, first: int = 0) -> list:
    """(label, timed function, workers, index of its reference row) for one model and data set:
    direct indexing of ``held``, then BatchReader over ``held`` and over ``per_item``; ``first``
    is the index the reference row will have in the whole table."""
    model = build_model("cnn-small", held.num_classes, held.x.shape[1], width=8, seed=0).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    order = torch.randperm(len(held), generator=torch.Generator().manual_seed(0))
    batches = list(order.split(128))
    state = {"next": 0}

    def chunk():
        k = state["next"]
        state["next"] = (k + n_batches) % max(1, len(batches) - n_batches)
        return batches[k : k + n_batches]

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    def direct(_):
        for idx in chunk():
            out = step(held.x[idx], held.y[idx])
        return out

    def through(reader):
        def run(_):
            for _idx, x, y in reader(chunk()):
                out = step(x, y)
            return out

        return run

    ref = first
    rows = [(f"{held_label}: tensor indexing", direct, 0, ref)]
    rows += [
        (f"{held_label}: BatchReader, {w} workers", through(BatchReader(held, w)), w, ref) for w in (0, 1, 2)
    ]
    rows += [
        (f"{item_label}: BatchReader, {w} workers", through(BatchReader(per_item, w)), w, ref)
        for w in (0, 1, 2)
    ]
    return rows


def _png_folder(root: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(10):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n // 10):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                root / f"c{c}" / f"{i}.png"
            )


if __name__ == "__main__":
    main()
