"""The CUDA side of the device code path: distill, resume, evaluate and audit on a GPU, in fp32,
bf16 and fp16, and two processes over nccl when two GPUs exist. Skipped without CUDA (the CPU
side of the same code is tests/training/test_device.py).

Not yet run: the machine this was written on has no GPU.

Tolerance of resume: on the CPU a resumed run is bit-identical to an uninterrupted one. On CUDA,
``torch.use_deterministic_algorithms(True, warn_only=True)`` picks deterministic cuDNN
convolutions, but some backward kernels (adaptive average pooling's, index_put's) accumulate with
atomics in an order that changes from run to run, so two identical CUDA runs differ by float32
rounding per step; metrics are compared to 1e-3 relative and weights to 1e-3 of their norm, which
still catches a resume that restores the wrong state (a reset scaler, generator or optimiser gives
differences of 1e-2 and more).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

import infodistill  # noqa: E402
from infodistill.cli import main  # noqa: E402
from infodistill.models import build_model  # noqa: E402
from infodistill.training.config import DistillConfig, load_config  # noqa: E402
from infodistill.training.rundir import load_checkpoint, read_log  # noqa: E402
from infodistill.training.runs import build_distillation  # noqa: E402
from interrupts import interrupt_at  # noqa: E402
from runs_close import TIMING  # noqa: E402

SRC = str(Path(infodistill.__file__).resolve().parents[1])
RTOL = 1e-3

TEACHER = """
data: {name: digits, batch_size: 64, eval_batch_size: 512}
model: {name: cnn-small, kwargs: {width: 16, pool_size: 2}}
optim: {epochs: 3, lr: 0.05}
run: {device: cuda, threads: 1}
"""

STUDENT = """
data: {name: digits, batch_size: 64, eval_batch_size: 512}
student: {name: cnn-small, kwargs: {width: 4, pool_size: 2}}
teacher: {kind: trained, model: {name: cnn-small, kwargs: {width: 16, pool_size: 2}}, checkpoints: [TEACHER]}
method: {name: vid, pairs: [[stage3, stage3]]}
pid: {pairs: [[stage3, stage3]], k: 5, n_samples: 200}
optim: {epochs: 3, lr: 0.05}
run: {device: cuda, threads: 1}
"""


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda-teacher")
    (root / "teacher.yaml").write_text(TEACHER)
    assert main(["train-teacher", str(root / "teacher.yaml"), "--quiet", "--out", str(root / "t")]) == 0
    assert read_log(root / "t" / "log.jsonl")[-1]["test"]["accuracy"] > 0.8
    return root / "t"


def _close(a: dict, b: dict, path: str = "") -> None:
    for k in b:
        if k in TIMING:
            continue
        if isinstance(b[k], dict):
            _close(a[k], b[k], f"{path}{k}.")
        elif isinstance(b[k], float):
            assert a[k] == pytest.approx(b[k], rel=RTOL, abs=1e-4), f"{path}{k}"
        else:
            assert a[k] == b[k], f"{path}{k}"


def _weights_close(a: dict, b: dict) -> None:
    for k, v in b.items():
        if v.is_floating_point():
            assert float((a[k].double() - v.double()).norm()) <= RTOL * float(v.double().norm()) + 1e-5, k
        else:
            assert torch.equal(a[k], v), k


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_distill_resume_evaluate_audit_on_cuda(tmp_path, teacher_dir, capsys, monkeypatch, amp):
    cfg = tmp_path / "distill.yaml"
    cfg.write_text(STUDENT.replace("TEACHER", str(teacher_dir)))
    over = [f"run.amp={amp}"]

    # Everything the run trains or reads lives on the GPU.
    fit = build_distillation(
        load_config(DistillConfig, cfg, [*over, f"run.out_dir={tmp_path / 'probe'}"]), False
    )
    assert fit.device == torch.device("cuda", torch.cuda.current_device())
    assert all(p.is_cuda for p in fit.parameters())
    seen = []
    fit.student.register_forward_hook(lambda m, args, out: seen.append((args[0].device.type, out.dtype)))
    fit.run()
    want = {"none": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert ("cuda", want) in seen and all(d == "cuda" for d, _ in seen)

    ref, run = str(tmp_path / "ref"), str(tmp_path / "run")
    assert main(["distill", str(cfg), *over, "--quiet", "--out", ref]) == 0
    restore = interrupt_at(monkeypatch, "train-step", 30)  # inside epoch 2 (22 steps an epoch)
    with pytest.raises(Exception, match="train-step"):
        main(["distill", str(cfg), *over, "--quiet", "--out", run])
    restore()
    state = load_checkpoint(run)
    assert state["epoch"] == 0 and isinstance(state["rng"]["cuda"], torch.Tensor)
    if amp == "fp16":
        assert state["scaler"]["scale"] > 0
    assert main(["distill", str(cfg), *over, "--quiet", "--out", run, "--resume"]) == 0
    for a, b in zip(read_log(Path(run) / "log.jsonl"), read_log(Path(ref) / "log.jsonl"), strict=True):
        _close(a, b)
    _weights_close(load_checkpoint(run)["student"], load_checkpoint(ref)["student"])
    if amp == "fp16":
        assert load_checkpoint(run)["scaler"]["scale"] == load_checkpoint(ref)["scaler"]["scale"]
    capsys.readouterr()

    # evaluate on the GPU: the log's last test metrics; and on the CPU, within a few examples
    assert main(["evaluate", run, "--json", "--device", "cuda"]) == 0
    on_gpu = json.loads(capsys.readouterr().out)["test"]
    _close(on_gpu, read_log(Path(run) / "log.jsonl")[-1]["test"])
    assert main(["evaluate", run, "--json", "--device", "cpu"]) == 0
    on_cpu = json.loads(capsys.readouterr().out)["test"]
    assert abs(on_cpu["accuracy"] - on_gpu["accuracy"]) <= 2 / on_cpu["n"]

    # audit on the GPU against an independent CPU computation of the student's accuracy
    assert (
        main(
            [
                "audit",
                "--teacher",
                str(teacher_dir),
                "--student",
                run,
                "--boot",
                "5",
                "--k",
                "5",
                "--device",
                "cuda",
                "--json",
            ]
        )
        == 0
    )
    audit = json.loads(capsys.readouterr().out)
    from infodistill.training.config import DataConfig
    from infodistill.training.runs import prepare_data

    _, test = prepare_data(DataConfig(name="digits"), 0)
    student = build_model("cnn-small", 10, 1, width=4, pool_size=2)
    student.load_state_dict(load_checkpoint(run)["student"])
    with torch.no_grad():
        acc = float((student.eval()(test.x).argmax(1) == test.y).double().mean())
    assert abs(audit["student_accuracy"] - acc) <= 2 / len(test)


def test_fp16_scaler_state_is_restored_on_resume(tmp_path, teacher_dir, monkeypatch):
    """A resumed fp16 run continues from the checkpoint's loss scale, not a fresh one (65536)."""
    from infodistill.training import trainer

    cfg = tmp_path / "distill.yaml"
    cfg.write_text(STUDENT.replace("TEACHER", str(teacher_dir)))
    out = tmp_path / "run"
    assert main(["distill", str(cfg), "run.amp=fp16", "optim.epochs=1", "--quiet", "--out", str(out)]) == 0
    saved = load_checkpoint(out)["scaler"]
    seen = {}
    original = trainer.Fit._epochs

    def spy(self, *args):
        seen.update(self._scaler.state_dict())
        return original(self, *args)

    monkeypatch.setattr(trainer.Fit, "_epochs", spy)
    assert (
        main(
            ["distill", str(cfg), "run.amp=fp16", "optim.epochs=1", "--quiet", "--out", str(out), "--resume"]
        )
        == 0
    )
    assert seen["scale"] == saved["scale"] and seen["_growth_tracker"] == saved["_growth_tracker"]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_processes_over_nccl_match_one(tmp_path, teacher_dir):
    cfg = tmp_path / "distill.yaml"
    cfg.write_text(STUDENT.replace("TEACHER", str(teacher_dir)))
    drop = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=SRC + os.pathsep + env.get("PYTHONPATH", ""))
    one = subprocess.run(
        [sys.executable, "-m", "infodistill", "distill", str(cfg), "--quiet", f"--out={tmp_path / 'one'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "infodistill",
        "distill",
        str(cfg),
        "--quiet",
        f"--out={tmp_path / 'two'}",
    ]
    two = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    for a, b in zip(
        read_log(tmp_path / "two" / "log.jsonl"), read_log(tmp_path / "one" / "log.jsonl"), strict=True
    ):
        a, b = dict(a), dict(b)
        for rec in (a, b):
            rec.pop("pid", None)  # clusters of slightly different features
            for split in ("test", "distill_data"):
                for count in ("accuracy", "agreement", "ece"):  # counts: within an example, not 1e-3
                    rec[split].pop(count)
        _close(a, b)
    _weights_close(load_checkpoint(tmp_path / "two")["student"], load_checkpoint(tmp_path / "one")["student"])
    # and the torchrun run resumes: a second launch continues (nothing left to do) without error
    again = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]


def test_a_streamed_image_folder_trains_on_cuda_with_pinned_workers(tmp_path):
    """An image folder read per item in two worker processes, batches pinned and copied to the
    GPU, against the same images held in memory (also on the GPU): the same run to CUDA's
    reduction-order tolerance."""
    import numpy as np
    from PIL import Image

    from infodistill.data.loader import BatchReader
    from infodistill.training.runs import distill

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(64):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                tmp_path / "img" / c / f"{i}.png"
            )
    (tmp_path / "eager.py").write_text(
        "from infodistill.data import load_image_folder\n\n"
        "def eager(root):\n    return load_image_folder(root)\n"
    )
    base = [
        "student.name=cnn-small",
        "student.kwargs={width: 4}",
        "teacher.kind=untrained",
        "teacher.model.name=cnn-small",
        "teacher.model.kwargs={width: 8}",
        "method.name=kd",
        "optim.epochs=2",
        "run.device=cuda",
        "data.batch_size=16",
        "data.eval_batch_size=32",
    ]
    streamed = load_config(
        DistillConfig,
        None,
        [
            *base,
            "data.name=image-folder",
            f"data.root={tmp_path / 'img'}",
            "data.workers=2",
            f"run.out_dir={tmp_path / 's'}",
        ],
    )
    fit = build_distillation(streamed, False)
    reader = fit.reader("train")
    assert isinstance(reader, BatchReader) and reader.workers == 2 and reader._loader.pin_memory
    distill(streamed, progress=False)
    held = load_config(
        DistillConfig,
        None,
        [
            *base,
            f"data.factory={tmp_path / 'eager.py'}:eager",
            f"data.kwargs={{root: {tmp_path / 'img'}}}",
            f"run.out_dir={tmp_path / 'm'}",
        ],
    )
    distill(held, progress=False)
    for a, b in zip(
        read_log(tmp_path / "s" / "log.jsonl"), read_log(tmp_path / "m" / "log.jsonl"), strict=True
    ):
        _close(a, b)
