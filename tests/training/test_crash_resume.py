"""Crash safety of the real ``infodistill distill`` command: SIGKILL at random and at chosen points.

One run directory is killed again and again (mid-epoch, between the two files of a checkpoint,
before its rename, before the pointer moves, between the log line and the checkpoint, inside a PID
evaluation, and at random times), and the very same command is rerun each time. After every kill
the latest pointer must name a complete checkpoint and the log must parse; at the end, every log
line (all metrics and PID terms) and every epoch's checkpoint must be bit-identical to those of an
uninterrupted run. Deterministic points use the ``INFODISTILL_TEST_SIGKILL_AT`` hook of
``training/checkpoint.py`` (inert when the variable is unset).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infodistill.training.checkpoint import CRASH_ENV, crash_point
from infodistill.training.rundir import load_checkpoint, read_log
from runs_close import TIMING

EPOCHS = 10
CONFIG = f"""
data: {{name: digits, batch_size: 64, eval_batch_size: 512}}
student: {{name: cnn-small, kwargs: {{width: 4, pool_size: 2}}}}
teacher: {{kind: untrained, model: {{name: cnn-small, kwargs: {{width: 4, pool_size: 2}}}}, seed: 3}}
method: {{name: vid, pairs: [[stage3, stage3]]}}
optim: {{epochs: {EPOCHS}, lr: 0.05}}
pid: {{pairs: [[stage3, stage3]], k: 4, n_samples: 150}}
run: {{seed: 0, threads: 1, keep_every: 1}}
"""


def _env(crash: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (CRASH_ENV, "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    if crash is not None:
        env[CRASH_ENV] = crash
    return env


def _command(cfg: Path, out: Path, *overrides: str) -> list[str]:
    # The same command every time: --resume continues a run directory that holds a checkpoint and
    # starts a fresh run in one that does not.
    return [sys.executable, "-m", "infodistill", "distill", str(cfg), *overrides, "--quiet", "--resume"] + [
        f"--out={out}"
    ]


def _run(cmd: list[str], crash: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(crash), capture_output=True, text=True, timeout=300)


def _without_seconds(log: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in log]


def _checkpoint_files(out: Path) -> dict[str, bytes]:
    return {
        f"{d.name}/{f.name}": f.read_bytes() for d in sorted(out.glob("epoch-*")) for f in sorted(d.iterdir())
    }


def _assert_consistent(out: Path) -> int:
    """What a rerun would read is whole: the pointer names a loadable checkpoint of that epoch, and
    every log line parses. Returns the epoch of the latest checkpoint (0: none yet)."""
    log = read_log(out / "log.jsonl") if (out / "log.jsonl").exists() else []
    assert [r["epoch"] for r in log] == list(range(1, len(log) + 1))
    if not (out / "latest.json").exists():
        return 0
    name = json.loads((out / "latest.json").read_text())["latest"]
    state = load_checkpoint(out)  # raises on a missing or torn file
    assert name == f"epoch-{state['epoch'] + 1:04d}"
    return state["epoch"] + 1


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    cfg = root / "cfg.yaml"
    cfg.write_text(CONFIG)
    out = root / "uninterrupted"
    done = _run(_command(cfg, out))
    assert done.returncode == 0, done.stderr
    return cfg, out


def test_the_hook_is_inert_unless_named(monkeypatch):
    monkeypatch.delenv(CRASH_ENV, raising=False)
    crash_point("pid")  # unset: nothing happens
    monkeypatch.setenv(CRASH_ENV, "train-step@1")
    crash_point("pid")  # another point's name: nothing happens either
    monkeypatch.setenv(CRASH_ENV, "pid@3")
    crash_point("pid")
    crash_point("pid")  # the 1st and 2nd passes are spared; still alive to reach this line


def test_killed_runs_resume_to_the_uninterrupted_result(reference):
    cfg, ref_out = reference
    out = cfg.parent / "killed"
    cmd = _command(cfg, out)
    ref_log = read_log(ref_out / "log.jsonl")
    epoch_seconds = sum(r["seconds"] for r in ref_log) / len(ref_log)
    rng = random.Random(20261124)

    def kill_at_random_time() -> None:
        # Wait until this process has finished an epoch (so it is past start-up and training),
        # then kill it a random fraction of 1.5 epochs later.
        before = (out / "latest.json").read_text() if (out / "latest.json").exists() else None
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            now = (out / "latest.json").read_text() if (out / "latest.json").exists() else None
            if now is not None and now != before:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 1.5 * epoch_seconds))
        proc.kill()
        _, err = proc.communicate()
        assert proc.returncode == -9, f"the run ended before the kill landed: {err[-500:]!r}"

    epochs_seen = []
    schedule = [
        # The first three stop the first epoch, before any checkpoint exists.
        "epoch-logged@1",  # log line written, its checkpoint not
        "checkpoint-tensors-written@1",  # tensors written, state.json not yet
        "train-step@5",  # in the middle of an epoch
        None,  # random time
        "checkpoint-before-rename@2",  # complete temporary checkpoint, not renamed yet
        "pid@1",  # inside the per-epoch PID evaluation
        "checkpoint-before-pointer@1",  # renamed into place, the pointer still names the previous one
        "epoch-logged@2",  # log line written, its checkpoint not
        None,  # random time
    ]
    for crash in schedule:
        if crash is None:
            kill_at_random_time()
        else:
            killed = _run(cmd, crash)
            assert killed.returncode == -9, (crash, killed.stderr[-500:])
        epochs_seen.append(_assert_consistent(out))
    # The kills stopped a run that was still going, and progress was never lost.
    assert epochs_seen == sorted(epochs_seen) and epochs_seen[-1] < EPOCHS, epochs_seen

    finished = _run(cmd)
    assert finished.returncode == 0, finished.stderr
    assert _without_seconds(read_log(out / "log.jsonl")) == _without_seconds(ref_log)
    ours, theirs = _checkpoint_files(out), _checkpoint_files(ref_out)
    assert sorted(ours) == sorted(theirs) and len(ours) == 2 * EPOCHS
    for name, blob in theirs.items():
        assert ours[name] == blob, name
    assert (out / "teacher-untrained.safetensors").read_bytes() == (
        ref_out / "teacher-untrained.safetensors"
    ).read_bytes()
    # Every temporary file or directory left by a kill was replaced by the finished write.
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_non_finite_loss_stops_with_one_line_and_keeps_the_last_checkpoint(reference):
    cfg, ref_out = reference
    out = cfg.parent / "diverged"
    # From epoch 2 on the learning rate is 0.05e30: the weights overflow within a step or two.
    cmd = _command(cfg, out, "optim.schedule=step", "optim.milestones=[1]", "optim.gamma=1e30")
    res = _run(cmd)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("infodistill: error: non-finite") and "epoch 2" in lines[0]
    assert "last good checkpoint" in lines[0] and "optim.grad_clip" in lines[0]
    assert _assert_consistent(out) == 1
    # Epoch 1 ran at the same learning rate as the reference's first epoch: its checkpoint and log
    # line are exactly the reference's, so nothing of the diverged epoch 2 reached them.
    ours = _checkpoint_files(out)
    assert sorted(ours) == ["epoch-0001/state.json", "epoch-0001/tensors.safetensors"]
    for name, blob in ours.items():
        assert blob == (ref_out / name).read_bytes(), name
    ref_first = _without_seconds(read_log(ref_out / "log.jsonl"))[0]
    assert _without_seconds(read_log(out / "log.jsonl")) == [ref_first]
