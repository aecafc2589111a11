"""Run directories: one writer at a time (an OS lock a SIGKILL cannot leave stale), file-system
mistakes and failures as one line with exit status 2, and ``key=value`` overrides anywhere."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import infodistill
import infodistill.training.checkpoint as checkpoint_module
from infodistill.cli import main
from infodistill.training.rundir import LOCK_NAME, read_log
from runs_close import TIMING

SRC = str(Path(infodistill.__file__).resolve().parents[1])
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
}

TEACHER = """\
data: {name: digits, train_subset: 96, test_subset: 48, batch_size: 32}
model: {name: cnn-small, kwargs: {width: 4, pool_size: 2}}
optim: {epochs: 2}
"""


@pytest.fixture
def cfg(tmp_path):
    torch.set_num_threads(1)
    path = tmp_path / "teacher.yaml"
    path.write_text(TEACHER)
    return path


def one_line_error(capsys, *argv) -> str:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and "Traceback" not in err, (rc, out, err)
    assert err.count("\n") == 1 and err.startswith("infodistill: error: "), err
    return err


def _cli(*argv) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "infodistill", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


HOLDER = (
    "import sys, time\n"
    "from infodistill.training.rundir import RunDir\n"
    "held = RunDir(sys.argv[1]).locked()\n"
    "held.__enter__()\n"
    "print('locked', flush=True)\n"
    "time.sleep(300)\n"
)


@pytest.fixture
def holder(tmp_path):
    """A helper process holding the lock of ``tmp_path / 'run'`` through the library's own call."""
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True, env=ENV
    )
    assert proc.stdout.readline().strip() == "locked"
    yield run, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# ==================================================================================== one writer


def test_a_second_run_on_a_locked_directory_is_refused_with_the_holders_pid(holder, cfg, tmp_path):
    run, proc = holder
    for argv in (
        ("train-teacher", cfg, "--out", run, "--quiet"),
        ("distill", _untrained_distill(tmp_path), "--out", run, "--quiet"),
        ("reproduce", "rid", "--data", "digits", "--out", run, "--quiet"),
    ):
        second = _cli(*argv)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        assert out == "" and "Traceback" not in err and err.count("\n") == 1, err
        assert err.startswith("infodistill: error: ") and f"in use by another run (pid {proc.pid})" in err
    # Refused before writing anything: only the holder's lock file is there.
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]
    assert (run / LOCK_NAME).read_text().strip() == str(proc.pid)


def test_a_killed_holder_leaves_no_stale_lock(holder, cfg, capsys):
    run, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / LOCK_NAME).exists()  # the file stays; the kernel dropped the lock with the process
    assert main(["train-teacher", str(cfg), "--out", str(run), "--quiet"]) == 0
    assert "train-teacher: epoch 2" in capsys.readouterr().out
    assert not (run / LOCK_NAME).exists()  # a finished run removes its lock file


def test_a_running_train_teacher_holds_its_directory(cfg, tmp_path):
    run = tmp_path / "run"
    first = _cli("train-teacher", cfg, "--out", run, "--quiet", "optim.epochs=100000")
    try:
        lock = run / LOCK_NAME
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        second = _cli("train-teacher", cfg, "--out", run, "--quiet", "optim.epochs=100000")
        out, err = second.communicate(timeout=120)
        assert second.returncode == 2 and err.count("\n") == 1, err
        assert f"in use by another run (pid {first.pid})" in err
        assert first.poll() is None  # the holder goes on
    finally:
        first.kill()
        first.wait()


def _untrained_distill(tmp_path: Path) -> Path:
    path = tmp_path / "distill.yaml"
    path.write_text(
        "data: {name: digits, train_subset: 96, test_subset: 48, batch_size: 32}\n"
        "student: {name: cnn-small, kwargs: {width: 2, pool_size: 2}}\n"
        "teacher: {kind: untrained, model: {name: cnn-small, kwargs: {width: 4, pool_size: 2}}}\n"
        "method: {name: kd}\n"
        "optim: {epochs: 1}\n"
    )
    return path


# ==================================================================================== file system


def test_out_is_a_file_or_under_a_file(cfg, tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_bytes(b"keep me\n")
    err = one_line_error(capsys, "train-teacher", cfg, "--out", f, "--quiet")
    assert f"run directory {f} is an existing file, not a directory" in err and "--out" in err
    err = one_line_error(capsys, "distill", _untrained_distill(tmp_path), "--out", f / "run", "--quiet")
    assert f"cannot create run directory {f / 'run'}: {f} is a file, not a directory" in err
    assert f.read_bytes() == b"keep me\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root")
def test_out_not_writable(cfg, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        err = one_line_error(capsys, "train-teacher", cfg, "--out", ro / "run", "--quiet")
    finally:
        ro.chmod(0o700)
    assert "permission denied" in err and "choose another --out" in err


def test_out_not_writable_simulated(cfg, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    real_open = os.open

    def deny(path, *args, **kwargs):
        if Path(path).parent == run:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    err = one_line_error(capsys, "train-teacher", cfg, "--out", run, "--quiet")
    assert f"run directory {run} is not writable (permission denied); choose another --out" in err
    assert list(run.iterdir()) == []


def _checkpoint_bytes(run: Path, name: str) -> dict:
    return {f.name: f.read_bytes() for f in sorted((run / name).iterdir())}


def test_a_full_disk_keeps_the_previous_checkpoint_and_resume_finishes_the_run(
    cfg, tmp_path, capsys, monkeypatch
):
    ref = tmp_path / "ref"
    assert main(["train-teacher", str(cfg), "--out", str(ref), "--quiet"]) == 0
    run = tmp_path / "run"
    real_save = checkpoint_module.save_file
    calls, epoch1 = [], {}

    def full_disk(tensors, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the epoch-2 checkpoint: epoch 1's is complete, snapshot it first
            epoch1.update(_checkpoint_bytes(run, "epoch-0001"))
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_file", full_disk)
    capsys.readouterr()
    err = one_line_error(capsys, "train-teacher", cfg, "--out", run, "--quiet")
    assert f"cannot write the epoch 2 checkpoint in {run} (no space left on the device)" in err
    assert "the last good checkpoint (epoch-0001) is kept" in err and "--resume" in err
    assert _checkpoint_bytes(run, "epoch-0001") == epoch1
    assert json.loads((run / "latest.json").read_text()) == {"latest": "epoch-0001"}
    assert not (run / "epoch-0002").exists() and not (run / ".epoch-0002.tmp").exists()
    assert not (run / LOCK_NAME).exists()

    monkeypatch.setattr(checkpoint_module, "save_file", real_save)
    assert main(["train-teacher", str(cfg), "--out", str(run), "--quiet", "--resume"]) == 0
    assert _checkpoint_bytes(run, "epoch-0002") == _checkpoint_bytes(ref, "epoch-0002")

    def without_seconds(log):
        return [{k: v for k, v in r.items() if k not in TIMING} for r in log]

    assert without_seconds(read_log(run / "log.jsonl")) == without_seconds(read_log(ref / "log.jsonl"))


# ==================================================================================== overrides


def test_overrides_before_between_and_after_the_options(cfg, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train-teacher", cfg, "optim.epochs=3", "--out", run, "data.test_subset=40", "--quiet"]
    assert main([*map(str, argv), "optim.epochs=1"]) == 0  # the last one wins, as before the options
    saved = json.loads((run / "config.json").read_text())
    assert saved["optim"]["epochs"] == 1 and saved["data"]["test_subset"] == 40
    assert [r["epoch"] for r in read_log(run / "log.jsonl")] == [1]
    capsys.readouterr()
    out = tmp_path / "student"
    assert (
        main(["distill", str(_untrained_distill(tmp_path)), "--out", str(out), "--quiet", "optim.lr=0.02"])
        == 0
    )
    assert json.loads((out / "config.json").read_text())["optim"]["lr"] == 0.02


@pytest.mark.parametrize("command", ["train-teacher", "distill"])
def test_unknown_flags_and_stray_words_after_the_options_are_errors(command, cfg, tmp_path, capsys):
    config = cfg if command == "train-teacher" else _untrained_distill(tmp_path)
    run = tmp_path / "run"
    err = one_line_error(capsys, command, config, "--out", run, "optim.epochs=1", "--bogus=3")
    assert f"unrecognized option --bogus for {command}" in err
    err = one_line_error(capsys, command, config, "--out", run, "epochs3")
    assert "unexpected argument 'epochs3'" in err and "key.sub=value" in err
    err = one_line_error(capsys, command, config, "epochs3", "--out", run)
    assert "override 'epochs3' must look like key.sub=value" in err
    assert not run.exists()
