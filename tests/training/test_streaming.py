"""Data sets read item by item (a user's torch Dataset, an image folder) go through the same
DataLoader path as the in-memory sets and give the same run: same batches, the same logs and
checkpoints within float32 rounding (``runs_close``: another code path), with or without worker
processes; exactly the same through a crash and a resume (one path run twice); and a run over an
image folder holds no more memory for a larger folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from infodistill.data.loader import BatchReader, ItemDataset, TensorPairs, auto_workers, first_examples
from infodistill.training.config import DistillConfig, from_dict
from infodistill.training.runs import distill
from interrupts import Interrupt, interrupt_at
from runs_close import assert_runs_close
from runs_close import read_log as _log  # log.jsonl without the timing fields

DATA = '''
import torch
from infodistill.data import load_digits_dataset


class Plain(torch.utils.data.Dataset):
    """A torch Dataset without batch indexing: items are read one at a time."""

    def __init__(self, ds):
        self.x, self.y = ds.x.clone(), ds.y.clone()
        self.classes = [str(c) for c in range(10)]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i].numpy(), int(self.y[i])


def digits(streamed=False):
    train, test = load_digits_dataset()
    return (Plain(train), Plain(test)) if streamed else (train, test)
'''


def _config(tmp_path: Path, name: str, streamed: bool, **extra) -> DistillConfig:
    data = {"factory": str(tmp_path / "digits_data.py") + ":digits", "kwargs": {"streamed": streamed}}
    data.update(
        batch_size=64, eval_batch_size=100, train_subset=600, test_subset=300, **extra.pop("data", {})
    )
    raw = {
        "data": data,
        "student": {"name": "cnn-small", "kwargs": {"width": 4, "pool_size": 2}},
        "teacher": {"kind": "untrained", "model": {"name": "cnn-small", "kwargs": {"width": 8}}, "seed": 3},
        "method": {"name": "vid", "pairs": [["stage3", "stage3"]]},
        "pid": {"pairs": [["stage3", "stage3"]], "k": 4, "n_samples": 200},
        "optim": {"epochs": 3, "lr": 0.05},
        "run": {"seed": 0, "threads": 1, "device": "cpu", "out_dir": str(tmp_path / name), "keep_every": 1},
    }
    for key, value in extra.items():
        raw[key] = value
    return from_dict(DistillConfig, raw)


def _checkpoints(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("epoch-*/tensors.safetensors"))}


@pytest.fixture
def digits_file(tmp_path):
    (tmp_path / "digits_data.py").write_text(DATA)
    torch.set_num_threads(1)
    return tmp_path


@pytest.mark.parametrize("augment", ["none", "crop-flip"])
def test_a_streamed_data_set_gives_the_in_memory_run(digits_file, augment):
    """Same seed, one process: the in-memory set and the same examples read one by one (without
    workers, and in two worker processes) give identical logs and checkpoints. With augment=none
    the teacher's outputs are cached, with crop-flip they are computed per step."""
    tmp = digits_file
    runs = {
        "memory": _config(tmp, f"memory-{augment}", False, data={"augment": augment}),
        "items": _config(tmp, f"items-{augment}", True, data={"augment": augment, "workers": 0}),
        "workers": _config(tmp, f"workers-{augment}", True, data={"augment": augment, "workers": 2}),
    }
    for cfg in runs.values():
        distill(cfg, progress=False)
    ref = Path(runs["memory"].run.out_dir)
    assert len(_log(ref)) == 3 and "pid" in _log(ref)[-1]
    for name in ("items", "workers"):  # other code paths: equal within float32 rounding
        assert_runs_close(Path(runs[name].run.out_dir), ref)


def test_a_streamed_run_resumes_to_the_uninterrupted_result(digits_file, monkeypatch):
    tmp = digits_file
    whole = _config(tmp, "whole", True, data={"workers": 2})
    distill(whole, progress=False)
    cut = _config(tmp, "cut", True, data={"workers": 2})
    restore = interrupt_at(monkeypatch, "train-step", 12)  # in epoch 2 (10 batches an epoch)
    with pytest.raises(Interrupt):
        distill(cut, progress=False)
    restore()
    assert len(_log(Path(cut.run.out_dir))) == 1
    distill(cut, progress=False)
    assert _log(Path(cut.run.out_dir)) == _log(Path(whole.run.out_dir))
    assert _checkpoints(Path(cut.run.out_dir)) == _checkpoints(Path(whole.run.out_dir))


def test_the_reader_returns_the_batches_it_is_given_in_order():
    x, y = torch.arange(40.0).view(20, 2), torch.arange(20) % 3
    reads = []

    class Logged(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            reads.append(i)
            return x[i], int(y[i])

    batches = [torch.tensor([5, 1, 19]), torch.tensor([0]), torch.tensor([7, 7])]
    for data in (TensorPairs(x, y), Logged()):
        got = list(BatchReader(data, workers=0)(batches))
        assert [i.tolist() for i, _, _ in got] == [b.tolist() for b in batches]
        for (_, xb, yb), b in zip(got, batches, strict=True):
            assert torch.equal(xb, x[b]) and torch.equal(yb, y[b])
    assert reads == [5, 1, 19, 0, 7, 7]  # the per-item set read exactly those items, once
    skipped = list(BatchReader(Logged(), workers=0).sequential(8, skip=lambda k: k % 2 == 1))
    assert [i.tolist() for i, _, _ in skipped] == [list(range(8)), list(range(16, 20))]
    cores = os.cpu_count() or 2
    assert auto_workers(TensorPairs(x, y)) == 0 and auto_workers(Logged()) == max(0, min(4, cores - 2))
    assert auto_workers(Logged(), 3) == 3
    assert torch.equal(first_examples(Logged(), 3)[0], x[:3])


def test_an_item_with_another_shape_is_named():
    shapes = {0: (1, 4, 4), 1: (1, 4, 4), 2: (1, 5, 4)}
    ds = ItemDataset(lambda j: torch.zeros(shapes[j]), [0, 1, 0], 2, "mine")
    assert ds.input_shape == (1, 4, 4) and ds[1][0].shape == (1, 4, 4)
    with pytest.raises(ValueError, match=r"example 2 has shape \(1, 5, 4\), example 0 \(1, 4, 4\)"):
        ds[2]
    sub = ds.subset([2, 0])
    assert sub.y.tolist() == [0, 0] and len(sub) == 2


# --------------------------------------------------------------------------------- peak memory

PEAK_RSS = r"""
import resource, sys
from infodistill.training.config import TeacherTrainConfig, from_dict
from infodistill.training.runs import train_teacher

root, out = sys.argv[1], sys.argv[2]
cfg = from_dict(TeacherTrainConfig, {
    "data": {"name": "image-folder", "root": root, "batch_size": 64, "eval_batch_size": 64, "workers": 0},
    "model": {"name": "cnn-small", "kwargs": {"width": 4}},
    "optim": {"epochs": 1},
    "run": {"seed": 0, "threads": 1, "device": "cpu", "out_dir": out},
})
train_teacher(cfg, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def _image_folder(root: Path, per_class: int, size: int = 64) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's")
def test_peak_memory_of_an_image_folder_run_does_not_grow_with_the_folder(tmp_path):
    """A 1-epoch run over 400 and over 2 000 images of 64 x 64: held in memory the larger folder
    would take 1 600 * 3 * 64 * 64 * 4 bytes = 75 MiB more (float32), plus its uint8 decode."""
    peaks = {}
    for n in (200, 1000):
        _image_folder(tmp_path / f"img{n}", n)
        done = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, str(tmp_path / f"img{n}"), str(tmp_path / f"run{n}")],
            capture_output=True,
            text=True,
            timeout=600,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", **_python_env()},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[n] = int(done.stdout.split()[-1]) * 1024
    grown = peaks[1000] - peaks[200]
    held = 1600 * 3 * 64 * 64 * 4
    assert grown < held / 4, f"peak RSS grew by {grown / 2**20:.1f} MiB (in memory: {held / 2**20:.0f} MiB)"


def _python_env() -> dict:
    import os

    keep = ("PYTHONPATH", "HOME", "VIRTUAL_ENV", "PYENV_ROOT", "PYENV_VERSION", "LANG")
    return {k: os.environ[k] for k in keep if k in os.environ}


def test_an_image_folder_read_per_item_gives_the_run_of_the_same_images_in_memory(tmp_path):
    """The runs read an image folder lazily (decoded in two workers); the same folder decoded
    whole up front (``load_image_folder(lazy=False)`` through a data factory) gives the same
    log and checkpoints, with crop-flip augmentation drawn from the same generator."""
    from infodistill.training.config import load_config

    _image_folder(tmp_path / "img", 40, size=16)
    (tmp_path / "eager.py").write_text(
        "from infodistill.data import load_image_folder\n\n"
        "def eager(root):\n    return load_image_folder(root)\n"
    )
    torch.set_num_threads(1)
    base = [
        "student.name=cnn-small",
        "student.kwargs={width: 4}",
        "teacher.kind=untrained",
        "teacher.model.name=cnn-small",
        "teacher.model.kwargs={width: 8}",
        "method.name=kd",
        "optim.epochs=2",
        "run.device=cpu",
        "run.threads=1",
        "data.batch_size=16",
        "data.eval_batch_size=32",
        "data.augment=crop-flip",
    ]
    root = tmp_path / "img"
    runs = {
        "lazy": [*base, "data.name=image-folder", f"data.root={root}", "data.workers=2"],
        "held": [*base, f"data.factory={tmp_path / 'eager.py'}:eager", f"data.kwargs={{root: {root}}}"],
    }
    for name, over in runs.items():
        distill(load_config(DistillConfig, None, [*over, f"run.out_dir={tmp_path / name}"]), progress=False)
    assert len(_log(tmp_path / "held")) == 2
    assert_runs_close(tmp_path / "lazy", tmp_path / "held")  # other code paths: within float32 rounding


def test_batches_read_per_item_have_the_layout_of_the_same_images_in_memory(tmp_path):
    """An image folder held in memory is channels-last (decoded HWC, permuted); a batch stacked
    from its items read one by one has the same strides, so the model runs the same kernels on
    both (with oneDNN's AVX2 convolutions the two layouts gave the test-set KL other last digits).
    Items laid out (C, H, W) stack to a contiguous batch, as before."""
    from infodistill.data import load_image_folder

    _image_folder(tmp_path, 5, size=8)
    held, _ = load_image_folder(tmp_path, test_size=0.2)
    lazy, _ = load_image_folder(tmp_path, test_size=0.2, lazy=True)
    assert held.x.is_contiguous(memory_format=torch.channels_last)
    for batch in ([0, 1, 2], [3, 1]):  # a slice and a gather of the held tensor
        (_, xa, _), (_, xb, _) = (
            next(BatchReader(held)([torch.tensor(batch)])),
            next(BatchReader(lazy)([torch.tensor(batch)])),
        )
        assert xa.stride() == xb.stride() and torch.equal(xa, xb), batch
    plain = TensorPairs(torch.randn(4, 3, 5, 5), torch.arange(4))
    items = ItemDataset(lambda j: plain.x[j], plain.y, 4, "plain")
    (_, x, _) = next(BatchReader(items)([torch.tensor([0, 2])]))
    assert x.is_contiguous() and torch.equal(x, plain.x[[0, 2]])


def test_the_automatic_evaluation_batch_follows_the_example_size():
    """16 MiB of float32 input, at most 1 000, at least the training batch (hand-computed)."""
    from infodistill.data.loader import auto_eval_batch

    def shaped(*shape):
        return TensorPairs(torch.zeros(2, *shape), torch.zeros(2, dtype=torch.int64))

    assert auto_eval_batch(shaped(1, 28, 28), 128) == 1000  # 2**24 // 3136 = 5349: capped
    assert auto_eval_batch(shaped(3, 32, 32), 128) == 1000  # 2**24 // 12288 = 1365: capped
    assert auto_eval_batch(shaped(3, 128, 128), 32) == 85  # 2**24 // 196608 = 85
    assert auto_eval_batch(shaped(3, 128, 128), 128) == 128  # the training batch fits anyway
    assert auto_eval_batch(shaped(3, 224, 224), 64) == 64  # 2**24 // 602112 = 27 < 64
    assert auto_eval_batch(shaped(3, 224, 224), 64, requested=500) == 500  # data.eval_batch_size


def test_a_run_evaluates_an_image_folder_in_batches_of_its_automatic_size(tmp_path, monkeypatch):
    """data.eval_batch_size left out: the evaluation, the teacher cache and the PID tracker of a
    run over 128 x 128 RGB images read batches of 85 (16 MiB of input), not 1 000; config.json keeps
    null (what the user wrote)."""
    _image_folder(tmp_path / "img", 8, size=128)
    cfg = from_dict(
        DistillConfig,
        {
            "data": {"name": "image-folder", "root": str(tmp_path / "img"), "batch_size": 4},
            "student": {"name": "cnn-small", "kwargs": {"width": 4}},
            "teacher": {"kind": "untrained", "model": {"name": "cnn-small", "kwargs": {"width": 4}}},
            "method": {"name": "kd"},
            "pid": {"pairs": [["stage3", "stage3"]], "k": 2, "pca": 2, "n_samples": 4},
            "optim": {"epochs": 1},
            "run": {"seed": 0, "threads": 1, "device": "cpu", "out_dir": str(tmp_path / "run")},
        },
    )
    sizes = []
    original = BatchReader.sequential

    def spy(self, batch_size, n=None, skip=None):
        sizes.append(batch_size)
        return original(self, batch_size, n, skip)

    monkeypatch.setattr(BatchReader, "sequential", spy)
    distill(cfg, progress=False)
    assert len(sizes) >= 3 and set(sizes) == {85}  # 2**24 // (3 * 128 * 128 * 4)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["eval_batch_size"] is None


def test_data_kwargs_reach_a_built_in_loader(tmp_path):
    """An image folder of mixed sizes (as CUB's) is resized per item by data.kwargs {size: N};
    an option the loader does not take is a one-line ConfigError."""
    from PIL import Image

    from infodistill.training.config import ConfigError, DataConfig
    from infodistill.training.runs import prepare_data

    for c, px in (("a", 10), ("b", 14)):
        (tmp_path / c).mkdir()
        for i in range(4):
            Image.fromarray(np.full((px, px + i, 3), 40 * i, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    train, test = prepare_data(DataConfig(name="image-folder", root=str(tmp_path), kwargs={"size": 12}), 0)
    assert isinstance(train, ItemDataset) and train.input_shape == (3, 12, 12)
    assert first_examples(train, len(train))[0].shape == (len(train), 3, 12, 12)
    with pytest.raises(
        ConfigError,
        match=r"data.kwargs \{'colour': 1\}: dataset 'image-folder' has no option 'colour'; its options: si",
    ):
        prepare_data(DataConfig(name="image-folder", root=str(tmp_path), kwargs={"colour": 1}), 0)


def test_workers_fork_with_no_queue_thread_running(digits_file, monkeypatch):
    """CPython 3.11 can deadlock a child forked while another thread starts or ends (seen under
    torchrun: the test reader forked its worker while the train reader's queue threads ran). Every
    worker of a run with workers (the teacher-output cache, the PID tracker's examples, the train
    and test readers) is forked while no thread the run started is alive, and a run leaves none
    behind: the forks are watched at ``os.fork`` itself. (Threads alive before the run, such as an
    earlier progress bar's idle monitor in the same test process, are not the run's.)"""
    import threading

    before = {t.ident for t in threading.enumerate()}
    new_at_fork = []
    real_fork = os.fork

    def watched_fork():
        new_at_fork.append(sorted(t.name for t in threading.enumerate() if t.ident not in before))
        return real_fork()

    monkeypatch.setattr(os, "fork", watched_fork)
    distill(_config(digits_file, "forks", True, data={"workers": 2}), progress=False)
    # the cache (2 workers), the tracker's examples (2), the train reader (2), the test reader (2)
    assert len(new_at_fork) == 8, new_at_fork
    assert all(not names for names in new_at_fork), new_at_fork
    left = [t.name for t in threading.enumerate() if t.ident not in before]
    assert not left, left
