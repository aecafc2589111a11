"""Data-parallel training under torchrun: 2 CPU processes (gloo) against one process.

The end-to-end tests launch the real command, ``python -m torch.distributed.run --standalone
--nproc_per_node 2 -m infodistill distill CONFIG``, on sklearn's digits with a feature method (VID:
the method's own trainable modules are wrapped too) and per-epoch PID tracking, and compare with
the same config run in one process (``data.batch_size`` is the global batch in both).

Tolerance: the two runs are the same optimisation, but not the same floating-point sums: DDP adds
the ranks' gradients, BatchNorm adds the ranks' statistics and the metrics add the ranks' sums, each
in another order than one process does (float32 rounding, ~1e-7 relative per step). Training
carries these differences along. Scalars (losses, NLL, KL) are compared to 1e-4 relative (1e-5
absolute); weight and optimiser tensors as wholes, ||a - b|| <= 1e-4 ||b|| + 1e-5 sqrt(n), because a
momentum entry that is a sum of cancelling gradients has a rounding error relative to the summands,
not to itself: with torch's scalar kernels (ATEN_CPU_CAPABILITY=default) one such entry differed
by more than 1e-4 of itself, while the worst tensor used 16 % of the norm bound (measured). The
bounds still catch any real difference (a wrong gradient scale, a shard evaluated instead of the
whole set, per-process BatchNorm statistics give 1e-3 and more). Counts (accuracy, agreement) are
compared to within one example, ECE (binned) to within two: the rules of ``runs_close``, shared by
every test that compares two code paths. Resuming under torchrun must reproduce an uninterrupted
torchrun run exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from infodistill.data.loader import TensorPairs
from infodistill.training import distributed
from infodistill.training.checkpoint import CRASH_ENV
from infodistill.training.config import (
    ConfigError,
    DataConfig,
    DistillConfig,
    OptimConfig,
    RunConfig,
    load_config,
)
from infodistill.training.rundir import read_log
from infodistill.training.runs import distill
from infodistill.training.task import Supervised
from infodistill.training.trainer import Fit, evaluate_model
from runs_close import TIMING, assert_records_close, assert_tensors_close

CONFIG = """
data: {name: digits, batch_size: 64, eval_batch_size: 128}
student: {name: cnn-small, kwargs: {width: 4, pool_size: 2}}
teacher: {kind: untrained, model: {name: cnn-small, kwargs: {width: 4, pool_size: 2}}, seed: 3}
method: {name: vid, pairs: [[stage3, stage3]]}
optim: {epochs: 3, lr: 0.05}
pid: {pairs: [[stage3, stage3]], k: 4, n_samples: 150, every: 3}
run: {seed: 0, threads: 1}
"""


def _env(crash: str | None = None) -> dict:
    drop = (CRASH_ENV, "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    if crash is not None:
        env[CRASH_ENV] = crash
    return env


def torchrun(cfg: Path, out: Path, crash: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "infodistill", "distill", str(cfg), "--quiet", "--resume", f"--out={out}"]
    return subprocess.run(cmd, env=_env(crash), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    cfg = root / "cfg.yaml"
    cfg.write_text(CONFIG)
    single = root / "single"
    distill(load_config(DistillConfig, cfg, [f"run.out_dir={single}"]), progress=False)
    ddp = root / "ddp"
    res = torchrun(cfg, ddp)
    assert res.returncode == 0, res.stderr[-3000:]
    return cfg, single, ddp, res


def _latest_tensors(out: Path) -> dict[str, torch.Tensor]:
    name = json.loads((out / "latest.json").read_text())["latest"]
    return load_file(str(out / name / "tensors.safetensors"))


def test_two_processes_match_one_process(runs):
    _, single, ddp, res = runs
    one, two = read_log(single / "log.jsonl"), read_log(ddp / "log.jsonl")
    assert [r["epoch"] for r in two] == [1, 2, 3]  # one log, one line per epoch
    for a, b in zip(two, one, strict=True):
        assert a["lr"] == b["lr"]
        for part in ("train_loss", "distill_data", "test"):
            # n equal (the whole set on every rank, not one shard), scalars within the rounding
            assert_records_close(a[part], b[part], where=f"{part}.")
        assert ("pid" in a) == ("pid" in b) == (b["epoch"] == 3)  # tracked by rank 0, logged once
    assert two[-1]["test"]["n"] == 450 and two[-1]["distill_data"]["n"] == 1347
    pid_a, pid_b = two[-1]["pid"]["stage3|stage3"], one[-1]["pid"]["stage3|stage3"]
    # k-means clusters of nearly equal features: the same partition up to rare ties.
    for k in ("mi_t", "mi_s", "redundancy"):
        assert abs(pid_a[k] - pid_b[k]) < 0.05, k

    wa, wb = _latest_tensors(ddp), _latest_tensors(single)
    assert set(wa) - set(wb) == {".rng_ranks.0", ".rng_ranks.1"} and set(wb) <= set(wa)
    # the generator state is not a weight (each rank's is kept in .rng_ranks)
    drop = (".rng.torch", ".rng_ranks.0", ".rng_ranks.1")
    assert_tensors_close(*({k: v for k, v in w.items() if k not in drop} for w in (wa, wb)))
    # Rank 0 alone wrote and reported: one checkpoint, no temporary files, one summary line.
    names = sorted(p.name for p in ddp.iterdir())
    assert names == ["config.json", "epoch-0003", "latest.json", "log.jsonl", "teacher-untrained.safetensors"]
    assert res.stdout.count("distill: epoch 3:") == 1


def test_resume_under_torchrun_is_exact(runs):
    cfg, _, ddp, _ = runs
    out = cfg.parent / "resumed"
    # Rank 0 kills itself after logging epoch 2, before its checkpoint; torchrun stops rank 1.
    killed = torchrun(cfg, out, crash="epoch-logged@2")
    assert killed.returncode != 0
    assert json.loads((out / "latest.json").read_text()) == {"latest": "epoch-0001"}
    assert [r["epoch"] for r in read_log(out / "log.jsonl")] == [1, 2]
    again = torchrun(cfg, out)
    assert again.returncode == 0, again.stderr[-3000:]

    def strip(log):
        return [{k: v for k, v in r.items() if k not in TIMING} for r in log]

    assert strip(read_log(out / "log.jsonl")) == strip(read_log(ddp / "log.jsonl"))
    a, b = _latest_tensors(out), _latest_tensors(ddp)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in b)


# ---------------------------------------------------------------- pieces, in one process


@pytest.mark.parametrize("n, world", [(64, 2), (3, 2), (7, 3), (5, 5), (130, 8)])
def test_shards_are_contiguous_balanced_and_cover_the_batch(n, world):
    bounds = [distributed.shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(bounds[r][1] == bounds[r + 1][0] for r in range(world - 1))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_sharded_evaluation_adds_up_to_the_whole_set():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    x, y = torch.randn(70, 5), torch.randint(0, 3, (70,))
    whole = evaluate_model(model, x, y, 16)
    # In one process the all-reduce adds nothing, so each shard returns its own sums' metrics:
    # batches 0, 2, 4 (16 + 16 + 6 examples) and 1, 3 (16 + 16).
    parts = [evaluate_model(model, x, y, 16, shard=(r, 2)) for r in range(2)]
    assert [p["n"] for p in parts] == [38, 32]
    for k in ("accuracy", "nll"):
        assert sum(p[k] * p["n"] for p in parts) / 70 == pytest.approx(whole[k], rel=1e-12)


def test_batch_size_must_give_every_process_an_example(tmp_path):
    fit = Fit(
        task=Supervised(nn.Linear(2, 2)),
        train=TensorPairs(torch.zeros(1797, 2), torch.zeros(1797, dtype=torch.long)),
        test=TensorPairs(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)),
        data=DataConfig(batch_size=64),
        optim=OptimConfig(),
        run_cfg=RunConfig(out_dir=str(tmp_path)),
    )
    fit._check_split(5)  # 1797 = 28 * 64 + 5: the last batch still has one example per process
    with pytest.raises(ConfigError, match="holds 5 of the 1797 .* 0 or >= 8"):
        fit._check_split(8)


@pytest.fixture
def one_rank_group():
    """A gloo group of one process, so the global-BatchNorm code runs (its all-reduces add nothing)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    saved = distributed._BN_GROUP
    distributed._BN_GROUP = dist.group.WORLD
    try:
        yield
    finally:
        distributed._BN_GROUP = saved
        dist.destroy_process_group()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_global_batchnorm_equals_torch_batchnorm(one_rank_group, momentum):
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(3, momentum=momentum)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    ours = nn.BatchNorm2d(3, momentum=momentum)
    ours.load_state_dict(ref.state_dict())
    ours.forward = types.MethodType(distributed._global_batch_norm, ours)
    x = (torch.randn(6, 3, 4, 4) * 2 + 1).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    g = torch.randn(6, 3, 4, 4)
    for _ in range(2):  # two steps: the running statistics and the cumulative average both move
        (ref(x) * g).sum().backward()
        (ours(x2) * g).sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-5, atol=1e-6)
    for (k, a), b in zip(ref.state_dict().items(), ours.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=k)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-6)
    ref.eval()
    ours.eval()
    torch.testing.assert_close(ours(x2), ref(x), rtol=1e-5, atol=1e-6)
    # The formula by hand, in float64: normalised with the biased variance of the batch, and the
    # buffer moved towards the unbiased one.
    rv = ours.running_var.clone()
    y = ours.train()(x2.detach())
    xd = x2.detach().double()
    mean, var = xd.mean((0, 2, 3)), xd.var((0, 2, 3), unbiased=False)
    expected = (xd - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + ours.eps)
    expected = expected * ours.weight.double().view(1, -1, 1, 1) + ours.bias.double().view(1, -1, 1, 1)
    torch.testing.assert_close(y.double(), expected.detach(), rtol=1e-5, atol=1e-5)
    n = xd.numel() / xd.shape[1]
    f = 0.1 if momentum is not None else 1.0 / 3  # the 3rd batch of a cumulative average
    torch.testing.assert_close(
        ours.running_var.double(), (1 - f) * rv.double() + f * var * n / (n - 1), rtol=1e-5, atol=1e-6
    )


def test_single_process_helpers_are_no_ops():
    assert distributed.init() == 1 and distributed.world_size() == 1 and distributed.is_main()
    t = torch.arange(3.0)
    assert distributed.all_reduce_sum(t) is t and torch.equal(t, torch.arange(3.0))
    assert distributed.any_true(True) and not distributed.any_true(False)
    assert distributed.broadcast_json({"a": 1}) == {"a": 1}
    assert distributed.sync_batchnorm_(nn.BatchNorm1d(2)) == 0


STREAMED_DATA = """
import torch
from infodistill.data import load_digits_dataset


class Plain(torch.utils.data.Dataset):
    def __init__(self, ds):
        self.x, self.y = ds.x, ds.y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i].numpy(), int(self.y[i])


def digits():
    return tuple(Plain(d) for d in load_digits_dataset())
"""


def test_a_set_read_per_item_under_torchrun_gives_the_in_memory_run(runs, tmp_path):
    """The same digits as a torch Dataset read item by item, one DataLoader worker per rank: the
    ranks read their own chunks and the run is the in-memory torchrun run (another code path for
    the batches: equal within float32 rounding, ``runs_close``)."""
    cfg, _, ddp, _ = runs
    (tmp_path / "streamed_digits.py").write_text(STREAMED_DATA)
    factory = f"{tmp_path / 'streamed_digits.py'}:digits"
    data = f'data: {{factory: "{factory}", batch_size: 64, eval_batch_size: 128, workers: 1}}'
    streamed_cfg = tmp_path / "cfg.yaml"
    streamed_cfg.write_text(
        CONFIG.replace("data: {name: digits, batch_size: 64, eval_batch_size: 128}", data)
    )
    res = torchrun(streamed_cfg, tmp_path / "run")
    assert res.returncode == 0, res.stderr[-3000:]
    assert_records_close(read_log(tmp_path / "run" / "log.jsonl"), read_log(ddp / "log.jsonl"))
    assert_tensors_close(_latest_tensors(tmp_path / "run"), _latest_tensors(ddp))
