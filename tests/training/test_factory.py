"""Your own model, weights and data from a config (models/factory.py, data/factory.py), on the CPU:
a model and a data set defined in files in tmp_path, a weights file with a DDP prefix under a
nested key, distilled, killed, resumed, evaluated and audited through the CLI; and every way a
factory path or a weights file can be wrong, as one line."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from infodistill.cli import main
from infodistill.data.factory import load_data_factory
from infodistill.imports import import_object
from infodistill.models import build_from_factory, load_weights
from infodistill.training.config import ConfigError, DistillConfig, TeacherTrainConfig, load_config
from infodistill.training.rundir import load_checkpoint, read_log
from interrupts import interrupt_at  # the in-process kill
from runs_close import TIMING

MODELS = """
import torch
from torch import nn


class Net(nn.Module):
    stage_names = ("block1", "block2")

    def __init__(self, width=8, num_classes=10):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.BatchNorm2d(2 * width), nn.ReLU()
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.head(self.block2(self.block1(x)).mean((2, 3)))


def build(width=8, num_classes=10):
    return Net(width, num_classes)


def not_a_model():
    return 42


def needs_width(width):
    return Net(width)
"""

DATA = """
import torch
from torch.utils.data import TensorDataset


def digits(n_test=300):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    return TensorDataset(x[n_test:], y[n_test:]), TensorDataset(x[:n_test], y[:n_test])


def not_a_pair():
    return 3
"""


@pytest.fixture
def user_files(tmp_path, monkeypatch):
    """my_models.py and my_data.py in tmp_path, which is the current directory."""
    (tmp_path / "my_models.py").write_text(MODELS)
    (tmp_path / "my_data.py").write_text(DATA)
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    return tmp_path


def _mine(tmp_path):
    return import_object(str(tmp_path / "my_models.py") + ":Net")


def _digits_test(n_test=300):
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images / 16, dtype=torch.float32)[:n_test, None], torch.tensor(d.target)[:n_test]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip().removeprefix("infodistill: error: ")


# -------------------------------------------------------------------------------------- factories


def test_a_factory_model_is_built_seeded(user_files):
    a = build_from_factory("my_models.py:build", {"width": 4}, seed=3)
    b = build_from_factory("my_models.py:build", {"width": 4}, seed=3)
    state = torch.get_rng_state()
    c = build_from_factory("my_models.py:build", {"width": 4}, seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert not torch.equal(a.block1[0].weight, c.block1[0].weight)
    assert type(a).__name__ == "Net" and a.block1[0].out_channels == 4
    # a module on sys.path works as well as a file
    sys.path.insert(0, str(user_files))
    try:
        assert isinstance(build_from_factory("my_models:build", {}), nn.Module)
    finally:
        sys.path.remove(str(user_files))


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        (
            "my_models.py",
            {},
            "factory must look like 'package.module:function' or 'path/to/file.py:function', got",
        ),
        (
            "no_such_module_xyz:build",
            {},
            "factory 'no_such_module_xyz:build': no module named 'no_such_module_xyz'",
        ),
        ("os:no_such_fn", {}, "factory 'os:no_such_fn': os has no attribute 'no_such_fn'; it defines"),
        ("missing.py:build", {}, "factory 'missing.py:build': no file missing.py (relative paths start from"),
        (
            "my_models.py:not_a_model",
            {},
            "factory 'my_models.py:not_a_model' returned a int, not a torch.nn.Module",
        ),
        (
            "my_models.py:needs_width",
            {},
            "factory 'my_models.py:needs_width' failed with kwargs {} (TypeError:",
        ),
        ("my_models.py:build", {"depth": 3}, "failed with kwargs {'depth': 3} (TypeError:"),
        ("broken.py:build", {}, "factory 'broken.py:build': importing"),
    ],
)
def test_bad_factories_are_one_line(user_files, spec, kwargs, message):
    (user_files / "broken.py").write_text("def build(:\n")
    with pytest.raises(ValueError) as err:
        build_from_factory(spec, kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


TRAINED = ["teacher.kind=trained", "teacher.checkpoints=[r]"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            [*TRAINED, "student.factory=m.py:build", "student.name=cnn-small"],
            "student.name and student.factory both",
        ),
        ([*TRAINED, "student.factory=nocolon"], "student.factory must look like"),
        (
            [*TRAINED, "student.weights_prefix=module."],
            "student.weights_prefix is set but student.weights is not",
        ),
        (
            [*TRAINED, "data.factory=m.py:digits", "data.root=/data"],
            "data.root is for the built-in data sets",
        ),
        (
            [*TRAINED, "teacher.model.weights=t.pt"],
            "teacher.checkpoints and teacher.model.weights both give the teacher's weights",
        ),
        (
            ["teacher.kind=untrained", "teacher.model.weights=t.pt"],
            "teacher.model.weights is one set of weights",
        ),
        (
            ["teacher.kind=trained"],
            r"a trained teacher needs at least one checkpoint path \(or teacher.model.weights",
        ),
    ],
)
def test_config_level_mistakes(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DistillConfig, None, overrides)


def test_a_teacher_from_weights_alone_is_a_valid_config():
    cfg = load_config(DistillConfig, None, ["teacher.kind=noisy", "teacher.model.weights=t.safetensors"])
    assert cfg.teacher.checkpoints == [] and cfg.teacher.model.weights == "t.safetensors"


def test_factory_keys_parse_and_label():
    cfg = load_config(TeacherTrainConfig, None, ["model.factory=pkg.mod:fn", "model.kwargs={a: 1}"])
    assert (cfg.model.name, cfg.model.factory, cfg.model.label) == (None, "pkg.mod:fn", "pkg.mod:fn")
    assert load_config(TeacherTrainConfig, None, []).model.name == "cnn-small"
    assert load_config(TeacherTrainConfig, None, []).data.name == "fashion-mnist"


# ---------------------------------------------------------------------------------------- weights


@pytest.fixture
def net(user_files):
    return build_from_factory("my_models.py:build", {"width": 4}, seed=0)


def _fresh(user_files):
    return build_from_factory("my_models.py:build", {"width": 4}, seed=1)


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_weights_from_safetensors_and_from_torch_save(user_files, net):
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(user_files / "w.safetensors"))
    assert _same(load_weights(_fresh(user_files), user_files / "w.safetensors"), net)
    torch.save(net.state_dict(), user_files / "plain.pt")
    assert _same(load_weights(_fresh(user_files), user_files / "plain.pt"), net)
    nested = {"epoch": 7, "model": {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}}
    torch.save(nested, user_files / "nested.pth")
    m = load_weights(_fresh(user_files), user_files / "nested.pth", prefix="module.", key="model.state_dict")
    assert _same(m, net) and not _same(_fresh(user_files), net)


def test_weights_errors_name_the_keys_and_the_fix(user_files, net):
    state = net.state_dict()
    fresh = _fresh(user_files)

    def error(path, **kw) -> str:
        with pytest.raises(ValueError) as err:
            load_weights(fresh, user_files / path, **kw)
        assert "\n" not in str(err.value)
        return str(err.value)

    torch.save(
        {k: v for k, v in state.items() if not k.startswith("head.")} | {"extra.w": torch.ones(1)},
        user_files / "partial.pt",
    )
    msg = error("partial.pt")
    assert "missing: head.bias, head.weight" in msg and "unexpected: extra.w" in msg
    torch.save({f"module.{k}": v for k, v in state.items()}, user_files / "ddp.pt")
    assert "its keys start with 'module.': set weights_prefix: 'module.'" in error("ddp.pt")
    assert "no key starts with weights_prefix 'model.'" in error("ddp.pt", prefix="model.")
    torch.save({"state_dict": state, "epoch": 3}, user_files / "ckpt.pt")
    assert "holds a mapping with keys 'state_dict', 'epoch'" in error("ckpt.pt")
    assert "set weights_key: state_dict" in error("ckpt.pt")
    assert "has no weights_key 'model' (at the top level: 'state_dict', 'epoch')" in error(
        "ckpt.pt", key="model"
    )
    torch.save(state | {"head.weight": torch.ones(3, 3)}, user_files / "shapes.pt")
    assert "shape mismatch: head.weight" in error("shapes.pt")
    torch.save(state | {"head.weight": torch.ones_like(state["head.weight"]).long()}, user_files / "ints.pt")
    assert "integer/float mismatch: head.weight" in error("ints.pt")
    torch.save(
        state | {"head.bias": torch.full_like(state["head.bias"], float("nan"))}, user_files / "nan.pt"
    )
    assert "holds NaN or infinite values (in head.bias)" in error("nan.pt")
    assert "does not exist" in error("nope.pt")
    (user_files / "junk.pt").write_bytes(b"not a torch file")
    assert "is not a PyTorch file torch.load can read" in error("junk.pt")
    (user_files / "junk.safetensors").write_bytes(b"not a safetensors file")
    assert "is not a readable safetensors file" in error("junk.safetensors")


class Payload:
    """Anything torch.load would have to unpickle by running code."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_that_runs_code_is_refused(user_files, net, capsys):
    torch.save({"state_dict": net.state_dict(), "payload": Payload()}, user_files / "evil.pt")
    with pytest.raises(ValueError, match="refuses to unpickle") as err:
        load_weights(_fresh(user_files), user_files / "evil.pt", key="state_dict")
    assert "\n" not in str(err.value)
    assert "this must never run" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ data


def test_a_data_factory_of_torch_datasets_is_streamed(user_files):
    from infodistill.data.loader import ItemDataset, first_examples

    train, test = load_data_factory("my_data.py:digits", {"n_test": 300})
    assert isinstance(test, ItemDataset) and not hasattr(test, "x")  # read per item, not held
    x, y = _digits_test(300)
    got_x, got_y = first_examples(test, 300, batch_size=64, workers=0)
    assert torch.equal(got_x, x) and torch.equal(got_y, y) and torch.equal(test.y, y)
    assert (len(train), len(test), train.num_classes, train.input_shape) == (1497, 300, 10, (1, 8, 8))
    with pytest.raises(ValueError, match="returned a int; it must return \\(train, test\\) datasets"):
        load_data_factory("my_data.py:not_a_pair")
    with pytest.raises(ValueError, match="failed with kwargs {'n': 1}"):
        load_data_factory("my_data.py:digits", {"n": 1})


# ------------------------------------------------------------------ the whole flow through the CLI


CONFIG = """
data: {factory: "my_data.py:digits", kwargs: {n_test: 300}, batch_size: 64, eval_batch_size: 512}
teacher:
  kind: trained
  model: {factory: "my_models.py:build", kwargs: {width: 8}, weights: teacher.pt,
          weights_prefix: "module.", weights_key: state_dict}
student: {factory: "my_models.py:build", kwargs: {width: 4}}
method: {name: vid, pairs: [[block2, block2]]}
pid: {pairs: [[block2, block2]], k: 5, n_samples: 200}
optim: {epochs: 3, lr: 0.05}
run: {device: cpu, threads: 1}
"""


@pytest.fixture
def flow(user_files):
    teacher = build_from_factory("my_models.py:build", {"width": 8}, seed=5)
    # As a DDP-trained model is often saved: a checkpoint dict, the weights with a "module." prefix.
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in teacher.state_dict().items()}, "epoch": 9},
        user_files / "teacher.pt",
    )
    (user_files / "distill.yaml").write_text(CONFIG)
    return teacher.eval()


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).double().mean())


def test_factory_model_and_weights_distill_resume_evaluate_audit(user_files, flow, capsys, monkeypatch):
    ref, run = str(user_files / "ref"), str(user_files / "run")
    assert main(["distill", "distill.yaml", "--quiet", "--out", ref]) == 0
    restore = interrupt_at(monkeypatch, "train-step", 30)  # inside epoch 2 (24 steps an epoch)
    with pytest.raises(Exception, match="train-step"):
        main(["distill", "distill.yaml", "--quiet", "--out", run])
    restore()
    assert len(read_log(user_files / "run" / "log.jsonl")) == 1
    assert main(["distill", "distill.yaml", "--quiet", "--out", run, "--resume"]) == 0
    untimed = [
        {k: v for k, v in r.items() if k not in TIMING} for r in read_log(user_files / "run" / "log.jsonl")
    ]
    assert untimed == [
        {k: v for k, v in r.items() if k not in TIMING} for r in read_log(user_files / "ref" / "log.jsonl")
    ]
    a, b = load_checkpoint(run)["student"], load_checkpoint(ref)["student"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    capsys.readouterr()

    # evaluate, against an independent computation from the files alone
    assert main(["evaluate", run, "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    student = _mine(user_files)(4)
    student.load_state_dict(load_checkpoint(run)["student"])
    x, y = _digits_test()
    assert result["test"]["accuracy"] == pytest.approx(_accuracy(student, x, y), abs=1e-12)
    with torch.no_grad():
        agree = float((student(x).argmax(1) == flow(x).argmax(1)).double().mean())
    assert result["test"]["agreement"] == pytest.approx(agree, abs=1e-12)
    assert set(result["pid"]["block2|block2"]) >= {"redundancy", "unique_t"}

    # audit: the teacher as a weights file and a factory, the student as the run directory
    args = [
        "audit",
        "--teacher",
        "teacher.pt",
        "--teacher-model",
        "my_models.py:build",
        "--teacher-kwargs",
        "{width: 8}",
        "--teacher-weights-prefix",
        "module.",
        "--teacher-weights-key",
        "state_dict",
        "--student",
        run,
        "--boot",
        "5",
        "--k",
        "5",
        "--device",
        "cpu",
        "--json",
    ]
    assert main(args) == 0
    audit = json.loads(capsys.readouterr().out)
    assert [r["layer"] for r in audit["rows"]] == ["block1", "block2"]  # the model's stage_names
    assert audit["settings"]["n"] == 300  # the factory's test split, from the run's config
    assert audit["teacher_accuracy"] == pytest.approx(_accuracy(flow, x, y), abs=1e-12)
    assert audit["student_accuracy"] == pytest.approx(_accuracy(student, x, y), abs=1e-12)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method.pairs=[[blok2, block2]]"], "has no module named 'blok2'; did you mean 'block2'"),
        (
            ["student.kwargs={width: 4, num_classes: 3}"],
            "student model 'my_models.py:build' does not fit the data 'digits'",
        ),
        (
            ["teacher.model.weights_prefix=null"],
            "teacher.model.weights file teacher.pt does not fit the model Net",
        ),
        (["student.factory=my_models.py:nope"], "student.factory 'my_models.py:nope': "),
        (["data.kwargs={n: 1}"], "data.factory 'my_data.py:digits' failed with kwargs {'n': 1}"),
    ],
)
def test_factory_runs_are_checked_when_built(user_files, flow, capsys, overrides, message):
    assert main(["distill", "distill.yaml", *overrides, "--quiet", "--out", "x"]) == 2
    assert message in _one_line_error(capsys)
    assert not (user_files / "x" / "log.jsonl").exists()


def test_audit_flag_mistakes(user_files, flow, capsys):
    base = [
        "audit",
        "--student",
        "untrained",
        "--student-model",
        "my_models.py:build",
        "--data",
        "my_data.py:digits",
        "--boot",
        "5",
    ]
    for extra, message in (
        (
            ["--teacher", "teacher.pt"],
            "--teacher teacher.pt needs --teacher-model (the model the weights are for)",
        ),
        (
            ["--teacher", "untrained", "--teacher-model", "x", "--teacher-weights-key", "k"],
            "--teacher-weights-key is for a weights file given as --teacher; untrained is not one",
        ),
        (
            ["--teacher", "my_data.py", "--teacher-model", "my_models.py:build"],
            "is a file but not a weights file",
        ),
        (
            [
                "--teacher",
                "teacher.pt",
                "--teacher-model",
                "my_models.py:build",
                "--teacher-kwargs",
                "{width: 8}",
            ],
            "--teacher file teacher.pt holds a mapping with keys 'state_dict', 'epoch'",
        ),
        (
            ["--teacher", "untrained", "--teacher-model", "my_models.py:gone"],
            "--teacher-model 'my_models.py:gone':",
        ),
        (
            ["--teacher", "untrained", "--teacher-model", "cnn-small", "--data-root", "/x"],
            "--data-root is for the built-in data sets",
        ),
    ):
        assert main([*base, *extra]) == 2, extra
        assert message in _one_line_error(capsys)


# ------------------------------------------------------------------------------------ TensorBoard


def test_tensorboard_missing_is_one_line_before_training(user_files, flow, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    assert main(["distill", "distill.yaml", "run.tensorboard=true", "--quiet", "--out", "tb"]) == 2
    assert _one_line_error(capsys) == (
        "run.tensorboard=true needs the tensorboard package: pip install tensorboard "
        "(or set run.tensorboard=false)"
    )
    assert not (user_files / "tb" / "log.jsonl").exists()


def test_tensorboard_scalars_are_the_log_values(user_files, flow, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # Killed after epoch 2's log line and scalars, before its checkpoint: the rerun redoes epoch 2
    # and replaces its events.
    restore = interrupt_at(monkeypatch, "epoch-logged", 2)
    with pytest.raises(Exception, match="epoch-logged"):
        main(["distill", "distill.yaml", "run.tensorboard=true", "--quiet", "--out", "tb"])
    restore()
    assert (
        main(["distill", "distill.yaml", "run.tensorboard=true", "--quiet", "--out", "tb", "--resume"]) == 0
    )
    acc = EventAccumulator(str(user_files / "tb" / "tensorboard"))
    acc.Reload()
    log = read_log(user_files / "tb" / "log.jsonl")
    for tag, pick in (
        ("test/accuracy", lambda r: r["test"]["accuracy"]),
        ("train_loss/vid", lambda r: r["train_loss"]["vid"]),
        ("pid/block2|block2/unique_t", lambda r: r["pid"]["block2|block2"]["unique_t"]),
        ("examples_per_s", lambda r: r["examples_per_s"]),
    ):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2, 3]
        assert [e.value for e in events] == pytest.approx([pick(r) for r in log], rel=1e-6)


def test_scalars_of_a_record():
    from infodistill.training.scalars import scalars

    rec = {
        "epoch": 2,
        "lr": 0.1,
        "train_loss": {"ce": 1.0},
        "best": {"epoch": 1, "accuracy": 0.5},
        "pid": {"a|b": {"unique_t": 0.2, "ci": {"unique_t": [0.1, 0.3]}}},
        "flag": True,
        "nan": float("nan"),
    }
    assert scalars(rec) == {"lr": 0.1, "train_loss/ce": 1.0, "pid/a|b/unique_t": 0.2}
