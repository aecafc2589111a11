"""Device placement and mixed precision (training/device.py), run here with ``run.device=cpu``.

The CUDA side of the same code path is tests/training/test_cuda.py (skipped without a GPU). Resolving a
device is tested against a faked ``torch.cuda`` where it needs GPUs; nothing here touches CUDA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import infodistill
from infodistill.cli import main
from infodistill.training import device as dev
from infodistill.training.config import ConfigError, DistillConfig, TeacherTrainConfig, load_config
from infodistill.training.distributed import to_sync_batchnorm_
from infodistill.training.evaluate import evaluate_run
from infodistill.training.rundir import load_checkpoint, read_log
from infodistill.training.runs import build_distillation, distill
from interrupts import Interrupt, interrupt_at
from runs_close import TIMING

SRC = str(Path(infodistill.__file__).resolve().parents[1])

BASE = [
    "data.name=digits",
    "data.batch_size=64",
    "data.eval_batch_size=512",
    "student.name=cnn-small",
    "student.kwargs={width: 4, pool_size: 2}",
    "teacher.kind=untrained",
    "teacher.model.name=cnn-small",
    "teacher.model.kwargs={width: 8, pool_size: 2}",
    "method.name=vid",
    "method.pairs=[[stage3, stage3]]",
    "optim.epochs=3",
    "run.threads=1",
    "run.device=cpu",
]


def _untimed(log):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in log]


def _cfg(out, *extra):
    return load_config(DistillConfig, None, [*BASE, f"run.out_dir={out}", *extra])


def _tensors(out: Path) -> dict:
    state = load_checkpoint(out)
    return {f"{part}.{k}": v for part in ("student", "extra") for k, v in state[part].items()}


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    # resolve_device only asks whether and how many; torch.device("cuda", i) touches no GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


# ------------------------------------------------------------------------------- configuration


def test_run_device_and_amp_parse():
    cfg = load_config(TeacherTrainConfig, None, ["run.device=cuda:1", "run.amp=bf16"])
    assert (cfg.run.device, cfg.run.amp, cfg.run.precision) == ("cuda:1", "bf16", "bf16")
    assert load_config(TeacherTrainConfig, None, []).run.device == "auto"
    # The older switch still means bf16 autocast.
    assert load_config(TeacherTrainConfig, None, ["run.bf16=true"]).run.precision == "bf16"


BAD_DEVICE = "run.device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index), got "


@pytest.mark.parametrize(
    "override, message",
    [
        ("run.device=gpu", BAD_DEVICE + "'gpu'"),
        ("run.device=cuda:x", BAD_DEVICE + "'cuda:x'"),
        ("run.device=cuda:-1", BAD_DEVICE + "'cuda:-1'"),
        ("run.device=CUDA", BAD_DEVICE + "'CUDA'"),
        ("run.amp=fp8", "run.amp must be one of 'none', 'bf16', 'fp16', got 'fp8'"),
    ],
)
def test_bad_device_or_amp_is_a_config_error(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(TeacherTrainConfig, None, [override])
    assert str(err.value) == message


def test_bf16_switch_and_fp16_contradict():
    with pytest.raises(ConfigError, match="run.bf16=true and run.amp=fp16 contradict"):
        load_config(TeacherTrainConfig, None, ["run.bf16=true", "run.amp=fp16"])


# ------------------------------------------------------------------------------ resolve_device


def test_cpu_and_auto_without_cuda(no_cuda):
    assert dev.resolve_device("cpu") == torch.device("cpu")
    assert dev.resolve_device("auto") == torch.device("cpu")
    assert dev.resolve_device("auto", local_rank=1) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_one_line(no_cuda, spec):
    with pytest.raises(ConfigError) as err:
        dev.resolve_device(spec)
    assert str(err.value) == (
        f"run.device is {spec!r} but CUDA is not available on this machine; use run.device=cpu or auto"
    )


def test_flag_wording(no_cuda):
    with pytest.raises(
        ConfigError,
        match="^--device is 'cuda' but CUDA is not available on this machine; use --device cpu or auto$",
    ):
        dev.resolve_device("cuda", key="--device")


def test_cuda_specs_with_gpus(two_gpus):
    assert dev.resolve_device("auto") == torch.device("cuda", 0)
    assert dev.resolve_device("cuda") == torch.device("cuda", 0)
    assert dev.resolve_device("cuda:1") == torch.device("cuda", 1)
    # Under torchrun every process takes its own GPU.
    assert dev.resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert dev.resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"'cuda:2' but this machine has 2 CUDA device\(s\)"):
        dev.resolve_device("cuda:2")
    with pytest.raises(ConfigError, match="one GPU for every process"):
        dev.resolve_device("cuda:0", local_rank=0)
    with pytest.raises(ConfigError, match="LOCAL_RANK=2 needs GPU cuda:2, but this machine has 2"):
        dev.resolve_device("cuda", local_rank=2)


def test_local_rank_comes_from_torchrun_env(two_gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dev.resolve_device("cuda") == torch.device("cuda", 1)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert dev.resolve_device("cuda") == torch.device("cuda", 0)


def test_amp_checks_and_contexts():
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError) as err:
        dev.check_amp("fp16", cpu)
    assert str(err.value) == (
        "run.amp=fp16 needs a CUDA device (a gradient scaler on fp16 autocast), but the run is on cpu; "
        "use run.amp=bf16 or none on the CPU"
    )
    dev.check_amp("bf16", cpu)
    assert dev.grad_scaler(cpu, "bf16") is None and dev.grad_scaler(cpu, "none") is None
    assert dev.process_group_backend(cpu) == "gloo"
    assert dev.process_group_backend(torch.device("cuda", 0)) == "cpu:gloo,cuda:nccl"
    lin = nn.Linear(4, 4)
    with dev.autocast(cpu, "bf16"):
        assert lin(torch.ones(2, 4)).dtype == torch.bfloat16
    with dev.autocast(cpu, "none"):
        assert lin(torch.ones(2, 4)).dtype == torch.float32
    assert "cuda" not in dev.rng_state(cpu)


# ------------------------------------------------------------------------------------- the CLI


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_cli_cuda_unavailable_exits_2_with_one_line(tmp_path, capsys, no_cuda):
    for command, extra in (("distill", "teacher: {kind: untrained}\n"), ("train-teacher", "")):
        cfg = tmp_path / f"{command}.yaml"
        cfg.write_text("data: {name: digits}\noptim: {epochs: 1}\n" + extra)
        assert main([command, str(cfg), "run.device=cuda", "--quiet", "--out", str(tmp_path / command)]) == 2
        assert _one_line_error(capsys) == (
            "infodistill: error: run.device is 'cuda' but CUDA is not available on this machine; "
            "use run.device=cpu or auto"
        )
        assert not (tmp_path / command / "log.jsonl").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the real exit status on a machine without CUDA")
def test_cli_cuda_unavailable_subprocess(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: digits}\noptim: {epochs: 1}\n")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "infodistill",
            "train-teacher",
            str(cfg),
            "run.device=cuda:0",
            "--quiet",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "infodistill: error: run.device is 'cuda:0' but CUDA is not available on this machine; "
        "use run.device=cpu or auto\n"
    )


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_fp16_on_the_cpu_is_refused(tmp_path, capsys, no_cuda, device):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: digits}\noptim: {epochs: 1}\n")
    args = ["train-teacher", str(cfg), f"run.device={device}", "run.amp=fp16", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert _one_line_error(capsys) == (
        "infodistill: error: run.amp=fp16 needs a CUDA device (a gradient scaler on fp16 autocast), but "
        "the run is on cpu; use run.amp=bf16 or none on the CPU"
    )


def test_evaluate_and_audit_take_a_device_flag(tmp_path, capsys, no_cuda):
    assert (
        main(
            [
                "audit",
                "--teacher",
                "untrained",
                "--teacher-model",
                "cnn-small",
                "--student",
                "untrained",
                "--student-model",
                "cnn-small",
                "--data",
                "digits",
                "--device",
                "cuda",
            ]
        )
        == 2
    )
    assert "--device is 'cuda' but CUDA is not available" in _one_line_error(capsys)


# ------------------------------------------------------------------------------ training on CPU


def test_explicit_cpu_is_the_auto_run_on_a_cpu_machine(tmp_path, no_cuda):
    a = distill(_cfg(tmp_path / "cpu", "optim.epochs=2"), progress=False)
    b = distill(_cfg(tmp_path / "auto", "optim.epochs=2", "run.device=auto"), progress=False)
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    assert a["examples_per_s"] > 0


def test_bf16_trains_on_the_cpu_and_resumes_bit_identically(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    fit = build_distillation(_cfg(tmp_path / "ref", "run.amp=bf16"), progress=False)
    dtypes = {"train": set(), "eval": set()}
    conv = next(m for m in fit.student.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda m, a, out: dtypes["train" if m.training else "eval"].add(out.dtype))
    ref = fit.run()
    # Autocast covers the training step only; evaluation stays float32.
    assert dtypes == {"train": {torch.bfloat16}, "eval": {torch.float32}}
    fp32 = distill(_cfg(tmp_path / "fp32"), progress=False)
    assert ref["train_loss"] != fp32["train_loss"]  # the bf16 run is another computation

    out = tmp_path / "resumed"
    restore = interrupt_at(monkeypatch, "epoch-logged", 2)  # epoch 2 logged, its checkpoint not
    with pytest.raises(Interrupt):
        distill(_cfg(out, "run.amp=bf16"), progress=False)
    restore()
    assert len(read_log(out / "log.jsonl")) == 2 and load_checkpoint(out)["epoch"] == 0
    distill(_cfg(out, "run.amp=bf16"), progress=False, resume=True)
    assert _untimed(read_log(out / "log.jsonl")) == _untimed(read_log(tmp_path / "ref" / "log.jsonl"))
    a, b = _tensors(out), _tensors(tmp_path / "ref")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_throughput_is_logged_for_the_training_steps(tmp_path):
    distill(_cfg(tmp_path / "t", "optim.epochs=1"), progress=False)
    (rec,) = read_log(tmp_path / "t" / "log.jsonl")
    n = 1347  # digits: 1 797 examples, a quarter held out
    # The steps are part of the epoch's seconds, so they ran at least n / seconds examples per second.
    assert rec["examples_per_s"] >= n / rec["seconds"] * 0.99


def test_resume_of_a_config_written_before_the_device_keys(tmp_path):
    """A run directory of an earlier version (no run.device, run.amp, ... in config.json) resumes:
    keys it lacks count as their defaults."""
    out = tmp_path / "old"
    distill(_cfg(out, "optim.epochs=1", "run.device=auto"), progress=False)
    saved = json.loads((out / "config.json").read_text())
    for key in ("device", "amp", "tensorboard"):
        del saved["run"][key]
    for key in ("factory", "weights", "weights_prefix", "weights_key"):
        del saved["student"][key]
    (out / "config.json").write_text(json.dumps(saved))
    final = distill(_cfg(out, "optim.epochs=1", "run.device=auto"), progress=False, resume=True)
    assert final["epoch"] == 1
    with pytest.raises(Exception, match="config differs in run.amp"):
        distill(_cfg(out, "optim.epochs=1", "run.device=auto", "run.amp=bf16"), progress=False, resume=True)


# --------------------------------------------------------------------------------- SyncBatchNorm


def test_sync_batchnorm_conversion_keeps_hooks_parameters_and_keys():
    from infodistill.models import FeatureExtractor, build_model

    model = build_model("cnn-small", 10, 1, width=4, seed=0)
    bn_name = next(n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d))
    params = {n: p for n, p in model.named_parameters()}
    keys = list(model.state_dict())
    fx = FeatureExtractor(model, [bn_name])
    x = torch.randn(4, 1, 28, 28)
    model.eval()
    before, feats_before = fx(x)
    n = to_sync_batchnorm_(model)
    assert n == sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) > 0
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    assert list(model.state_dict()) == keys
    assert all(p is params[k] for k, p in model.named_parameters())  # the optimiser's tensors
    after, feats_after = fx(x)  # the hook moved with the layer
    assert torch.equal(before, after) and torch.equal(feats_before[bn_name], feats_after[bn_name])
    fx.remove()
    assert not dict(model.named_modules())[bn_name]._forward_hooks


def test_the_fp16_scaler_path_forced_on_the_cpu_checkpoints_and_resumes(tmp_path, monkeypatch):
    """The config refuses fp16 on the CPU (no GPU here), but torch's CPU autocast and GradScaler run
    it: with the refusal patched out, the scaler's scale/unscale/step/update, its checkpointed state
    and its restore on resume run through the same code as on CUDA, and resume bit-identically."""
    from infodistill.training import trainer

    monkeypatch.setattr(dev, "check_amp", lambda amp, device: None)
    monkeypatch.setattr(trainer, "check_amp", lambda amp, device: None)
    torch.set_num_threads(1)
    extra = ("run.amp=fp16", "optim.grad_clip=5.0")  # clipping needs the unscaled gradients
    ref = distill(_cfg(tmp_path / "ref", *extra), progress=False)
    assert all(torch.isfinite(torch.tensor(v)) for v in ref["train_loss"].values())
    saved = load_checkpoint(tmp_path / "ref")["scaler"]
    assert set(saved) == {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}

    out = tmp_path / "resumed"
    restore = interrupt_at(monkeypatch, "epoch-logged", 2)
    with pytest.raises(Interrupt):
        distill(_cfg(out, *extra), progress=False)
    restore()
    epoch1 = load_checkpoint(out)["scaler"]
    fresh = torch.amp.GradScaler("cpu").state_dict()
    assert epoch1 != fresh  # 22 steps counted towards the next growth, or the scale backed off
    at_start = {}
    original = trainer.Fit._epochs

    def spy(self, *args):
        at_start.update(self._scaler.state_dict())
        return original(self, *args)

    monkeypatch.setattr(trainer.Fit, "_epochs", spy)
    distill(_cfg(out, *extra), progress=False, resume=True)
    assert at_start == epoch1
    assert _untimed(read_log(out / "log.jsonl")) == _untimed(read_log(tmp_path / "ref" / "log.jsonl"))
    a, b = _tensors(out), _tensors(tmp_path / "ref")
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert load_checkpoint(out)["scaler"] == saved


def test_evaluating_a_gpu_run_where_there_is_none_names_the_flag(tmp_path, capsys, no_cuda):
    out = tmp_path / "run"
    distill(_cfg(out, "optim.epochs=1"), progress=False)
    saved = json.loads((out / "config.json").read_text())
    saved["run"]["device"] = "cuda"  # as if trained on a GPU machine
    (out / "config.json").write_text(json.dumps(saved))
    assert main(["evaluate", str(out)]) == 2
    assert _one_line_error(capsys) == (
        "infodistill: error: run.device is 'cuda' but CUDA is not available on this machine (the run's "
        "config.json); evaluate it with --device cpu or auto"
    )
    with pytest.raises(ConfigError, match=r"config.json\); evaluate it with device='cpu' or auto$"):
        evaluate_run(out)  # the library names its argument
    assert main(["evaluate", str(out), "--device", "cpu", "--json"]) == 0
    assert (
        json.loads(capsys.readouterr().out)["test"]["accuracy"]
        == read_log(out / "log.jsonl")[-1]["test"]["accuracy"]
    )
