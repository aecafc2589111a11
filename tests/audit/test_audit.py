"""`infodistill audit`: what a teacher knows and what is left to distil, on the 8x8 digits."""

import json

import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from infodistill.audit import NOTHING, TRANSFERRED, WORTH, audit, load_models
from infodistill.cli import main
from infodistill.training.config import DataConfig, ModelConfig, TeacherTrainConfig, load_config
from infodistill.training.runs import model_from_config, model_from_run, prepare_data, train_teacher

TEACHER = ModelConfig("cnn-small", {"width": 16, "pool_size": 2})
STUDENT = ModelConfig("cnn-small", {"width": 8, "pool_size": 2})
BOOT = 20  # enough for the verdicts below; the CLI default is 100


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    # One BLAS thread as well: PCA's SVD with threads fighting over 2 shared cores ran 6-10x slower.
    # threadpoolctl limits only the libraries loaded so far: load scipy's own OpenBLAS first.
    import scipy.linalg  # noqa: F401
    import sklearn.decomposition  # noqa: F401

    limits = threadpool_limits(1)
    out = tmp_path_factory.mktemp("audit-teacher")
    cfg = load_config(
        TeacherTrainConfig,
        None,
        [
            "data.name=digits",
            "data.batch_size=64",
            "data.eval_batch_size=512",
            "optim.lr=0.05",
            "model.name=cnn-small",
            "model.kwargs={width: 16, pool_size: 2}",
            "optim.epochs=4",
            f"run.out_dir={out}",
        ],
    )
    assert train_teacher(cfg, progress=False)["test"]["accuracy"] > 0.8
    train, test = prepare_data(DataConfig(name="digits"), 0)
    yield {"dir": out, "train": train, "test": test, "teacher": model_from_run(out, TEACHER, train)}
    limits.restore_original_limits()


class NoiseTeacher(nn.Module):
    """A 'teacher' whose hooked layer is seeded Gaussian noise: independent of Y by construction."""

    def __init__(self):
        super().__init__()
        self.gen = torch.Generator().manual_seed(0)
        self.stage = nn.Identity()
        self.fc = nn.Linear(16, 10)
        self.stage_names = ("stage",)

    def forward(self, x):
        return self.fc(self.stage(torch.randn(x.shape[0], 16, generator=self.gen)))


def test_trained_teacher_vs_untrained_student_is_worth_distilling(setup):
    student = model_from_config(STUDENT, setup["train"], seed=0)
    res = audit(setup["teacher"], student, setup["test"].x, setup["test"].y, n_boot=BOOT)
    assert [r.layer for r in res.rows] == ["stage1", "stage2", "stage3"]  # all teacher stages
    assert res.student_layer == "stage3"  # the student's last stage
    assert res.decision == WORTH and res.verdict.startswith("worth distilling: Uni(Y:T\\S) = ")
    last = res.row("stage3")
    assert last.unique_t > 0.3 and last.ci["unique_t"][0] > 0.3
    assert last.informative and last.mi_t > 1.5
    assert res.teacher_accuracy > 0.8 and res.student_accuracy < 0.5
    assert res.settings["n"] == len(setup["test"])  # digits' test split has 450 < 2000 examples
    # Reference row: the raw pixels through the same pipeline (~2.2 bits); training added to it.
    assert res.reference.layer == "(input)" and last.mi_t > res.reference.ci["mi_t"][1]
    assert res.notes == []
    json.dumps(res.as_dict())


def test_teacher_of_pure_noise_has_nothing_to_distill(setup):
    res = audit(
        NoiseTeacher(), setup["teacher"], setup["test"].x, setup["test"].y, n_boot=BOOT, input_reference=False
    )
    assert res.decision == NOTHING and res.verdict == "nothing to distill"
    row = res.rows[0]
    assert not row.informative
    # The plug-in I(Y;T) of noise is its bias (~0.13 bits at n=450, k=10); the raw percentile
    # interval sits a further bias above it, which is why the audit centres the intervals.
    assert row.mi_t < 0.3 and row.ci_raw["mi_t"][0] > row.ci["mi_t"][0]
    assert "permutation baseline" in res.reason


def test_untrained_cnn_teacher_still_carries_label_information_on_digits(setup):
    """Random conv features + PCA + k-means separate the digits well: an untrained CNN is not a
    teacher that knows nothing (measured: I(Y;T) ~ 1.9-2.2 bits against a 0.13-bit baseline)."""
    untrained = model_from_config(TEACHER, setup["train"], seed=1)
    res = audit(
        untrained, setup["teacher"], setup["test"].x, setup["test"].y, teacher_layers=["stage3"], n_boot=BOOT
    )
    row = res.rows[0]
    assert row.informative and row.mi_t > 1.0 and res.decision != NOTHING
    assert res.teacher_accuracy < 0.3  # its logits are useless even though its features are not
    # ... and no more than the raw pixels give through the same pipeline, which the audit notes.
    assert row.mi_t <= res.reference.ci["mi_t"][1] and "raw input" in res.notes[0]


def test_same_model_as_student_is_already_transferred(setup):
    teacher = setup["teacher"]
    teacher.train()
    x, y = setup["test"].x, setup["test"].y
    res = audit(teacher, teacher, x, y, teacher_layers=["stage3"], n_boot=BOOT, input_reference=False)
    assert res.decision == TRANSFERRED and res.verdict == "already transferred"
    row = res.rows[0]
    assert row.unique_t == pytest.approx(0.0, abs=1e-6) and row.redundancy == pytest.approx(
        row.mi_t, abs=1e-6
    )
    assert all(m.training for m in teacher.modules())  # training flags restored after the audit
    teacher.eval()


def test_cli_table_json_and_errors(setup, capsys):
    run = str(setup["dir"])
    untrained = ["--student", "untrained", "--student-model", "cnn-small", "--student-kwargs", "{width: 8}"]
    # Model and data come from the run directory's config.json.
    assert main(["audit", "--teacher", run, *untrained, "--layers-t", "stage2,stage3", "--boot", "10"]) == 0
    out = capsys.readouterr().out
    assert "I(Y;T) [CI]" in out and "Uni(Y:T\\S) [CI]" in out and "bias I/Uni" in out
    assert "\nstage2 " in out and "\nstage3 " in out and "\n(input) " in out
    assert "verdict: worth distilling" in out

    args = ["audit", "--teacher", run, "--teacher-model", "cnn-small", "--student", run, "--data", "digits"]
    assert main([*args, "--layers-t", "stage3", "--n", "300", "--boot", "10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["decision"] == TRANSFERRED and result["settings"]["n"] == 300
    assert result["rows"][0]["layer"] == "stage3" and len(result["rows"][0]["ci"]["unique_t"]) == 2

    bad = {
        "missing": ["--teacher", str(setup["dir"] / "nope"), *untrained],
        "layer": ["--teacher", run, *untrained, "--layers-t", "stage9"],
        "student layer": ["--teacher", run, *untrained, "--layers-s", "fc,pool"],
        "yaml": ["--teacher", run, "--student", "untrained", "--student-model", "cnn-small"]
        + ["--student-kwargs", "{width: "],
        "kwargs": ["--teacher", run, "--student", "untrained", "--student-model", "cnn-small"]
        + ["--student-kwargs", "{depth: 3}"],
        "model": ["--teacher", run, "--student", "untrained", "--student-model", "vgg-99"],
        "untrained without model": ["--teacher", run, "--student", "untrained"],
        "architecture": ["--teacher", run, "--teacher-kwargs", "{width: 4, pool_size: 2}", *untrained],
        "data": ["--teacher", run, *untrained, "--data", "imagenet"],
    }
    for case, argv in bad.items():
        assert main(["audit", *argv]) == 2, case
        err = capsys.readouterr().err
        assert err.startswith("infodistill: error: ") and err.count("\n") == 1, (case, err)


def test_load_models_names_its_own_arguments_and_the_command_its_flags(tmp_path):
    """The library takes options as mappings and layers as lists, and its errors name its keyword
    arguments; ``infodistill audit`` reads its flags' YAML and passes their names instead."""
    cases = (
        ({}, "teacher untrained needs teacher_model (the architecture to initialise)"),
        (
            {"argument_names": {"teacher": "--teacher", "teacher_model": "--teacher-model"}},
            "--teacher untrained needs --teacher-model (the architecture to initialise)",
        ),
        (
            {"teacher_model": "cnn-small", "student_model": "cnn-small", "student_kwargs": "{width: 8}"},
            "student_kwargs must be a mapping of option names to values like {'width': 8}, got '{width: 8}'",
        ),
        (
            {"teacher_model": "cnn-small", "student_model": "cnn-small", "teacher_weights_key": "k"},
            "teacher_weights_key is for a weights file given as teacher; untrained is not one",
        ),
        (
            {"teacher_model": "cnn-small", "student_model": "cnn-small", "data": "f.py:g", "data_root": "/x"},
            "data_root is for the built-in data sets; pass a factory's options in data_kwargs",
        ),
        (
            {"teacher_model": "cnn-small", "student_model": "cnn-small"},
            "data is required (no run directory's config.json names the data set)",
        ),
    )
    for kwargs, message in cases:
        with pytest.raises(ValueError) as err:
            load_models(["untrained"], "untrained", **kwargs)
        assert str(err.value) == message
    with pytest.raises(FileNotFoundError, match="^teacher .*nope: no such run directory"):
        load_models([tmp_path / "nope"], "untrained")
