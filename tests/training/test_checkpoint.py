"""Checkpoints: exact round trip, atomic replacement, refusal of pickles and foreign models."""

import json
import os
import pickle

import pytest
import torch

from infodistill.training.checkpoint import CheckpointError, load_model_state, rng_state, set_rng_state
from infodistill.training.rundir import load_checkpoint, save_checkpoint


def test_round_trip_of_model_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    # the scheduler wraps opt.step when built: built after it, it warns of the wrong call order
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
    model(torch.randn(8, 3)).sum().backward()
    opt.step()
    sched.step()
    state = {
        "epoch": 3,
        "model": model.state_dict(),
        "optim": opt.state_dict(),
        "sched": sched.state_dict(),
        "rng": rng_state(),
        "note": None,
    }
    save_checkpoint(tmp_path, "epoch-3", state)
    back = load_checkpoint(tmp_path)
    assert back["epoch"] == 3 and back["note"] is None
    for k, v in model.state_dict().items():
        assert torch.equal(back["model"][k], v)
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(back["optim"])
    assert torch.equal(
        opt2.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"]
    )
    assert back["sched"] == sched.state_dict()
    # RNG: restoring reproduces the same draws.
    set_rng_state(back["rng"])
    first = torch.rand(3)
    set_rng_state(back["rng"])
    assert torch.equal(torch.rand(3), first)


def test_latest_pointer_moves_only_after_a_complete_write(tmp_path):
    save_checkpoint(tmp_path, "epoch-1", {"epoch": 1, "w": torch.ones(2)})
    # A crash mid-write leaves a temporary directory behind and the pointer on epoch-1.
    (tmp_path / ".epoch-2.tmp").mkdir()
    (tmp_path / ".epoch-2.tmp" / "tensors.safetensors").write_bytes(b"garbage")
    assert load_checkpoint(tmp_path)["epoch"] == 1
    save_checkpoint(tmp_path, "epoch-2", {"epoch": 2, "w": torch.zeros(2)})
    assert load_checkpoint(tmp_path)["epoch"] == 2
    assert json.loads((tmp_path / "latest.json").read_text()) == {"latest": "epoch-2"}


def test_truncated_and_foreign_checkpoints_are_refused(tmp_path):
    path = save_checkpoint(tmp_path, "c", {"w": torch.ones(100)})
    blob = (path / "tensors.safetensors").read_bytes()
    (path / "tensors.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not an infodistill checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


def test_a_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "tensors.safetensors").write_bytes(pickle.dumps(Evil()))
    (d / "state.json").write_text("{}")
    with pytest.raises(CheckpointError):
        load_checkpoint(d)
    assert not marker.exists()


def test_model_from_another_architecture(tmp_path):
    a, b = torch.nn.Linear(3, 4), torch.nn.Linear(3, 5)
    with pytest.raises(CheckpointError, match="another architecture.*shape mismatch: bias, weight"):
        load_model_state(b, a.state_dict())
