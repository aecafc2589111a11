"""Typed configs: files, overrides and errors that name the key."""

import pytest

from infodistill.training.config import (
    ConfigError,
    DistillConfig,
    TeacherTrainConfig,
    load_config,
)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_yaml_and_toml_give_the_same_config(tmp_path):
    y = write(tmp_path, "c.yaml", "model: {name: wrn-16-2}\noptim: {lr: 0.1, epochs: 3}\nrun: {seed: 4}\n")
    t = write(
        tmp_path, "c.toml", '[model]\nname = "wrn-16-2"\n[optim]\nlr = 0.1\nepochs = 3\n[run]\nseed = 4\n'
    )
    a, b = load_config(TeacherTrainConfig, y), load_config(TeacherTrainConfig, t)
    assert a == b and a.model.name == "wrn-16-2" and a.optim.epochs == 3 and a.run.seed == 4


def test_overrides_are_typed(tmp_path):
    cfg = load_config(
        TeacherTrainConfig,
        None,
        [
            "optim.lr=1e-3",
            "optim.epochs=7",
            "data.augment=crop-flip",
            "optim.milestones=[2, 5]",
            "optim.grad_clip=5",
        ],
    )
    assert cfg.optim.lr == 1e-3 and cfg.optim.epochs == 7 and cfg.optim.milestones == [2, 5]
    assert cfg.optim.grad_clip == 5.0 and isinstance(cfg.optim.grad_clip, float)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr'"),
        ("optim.lr=fast", "config key 'optim.lr': expected float, got str"),
        ("optim.epochs=2.5", "config key 'optim.epochs': expected int"),
        ("optim.epochs=true", "config key 'optim.epochs': expected int, got bool"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("data.augment=rotate", "data.augment must be one of"),
        ("optim.milestones=[0]", "optim.milestones must lie in 1..epochs"),
        ("optim=3", "config key 'optim': expected a mapping"),
        ("oops", "must look like key.sub=value"),
    ],
)
def test_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(TeacherTrainConfig, None, [override])


def test_distill_config_checks_teacher_and_pairs():
    with pytest.raises(ConfigError, match="teacher.checkpoints: a trained teacher needs"):
        load_config(DistillConfig, None, ["teacher.kind=trained"])
    with pytest.raises(ConfigError, match="an ensemble needs >= 2 members"):
        load_config(DistillConfig, None, ["teacher.kind=ensemble", "teacher.checkpoints=[a]"])
    with pytest.raises(ConfigError, match=r"method.pairs\[0\] must be \[student_layer, teacher_layer\]"):
        load_config(DistillConfig, None, ["teacher.kind=untrained", "method.pairs=[[a]]"])
    with pytest.raises(ConfigError, match="init_lambda must lie in"):
        load_config(DistillConfig, None, ["teacher.kind=untrained", "init_lambda=2"])
    ok = load_config(DistillConfig, None, ["teacher.kind=untrained", "method.pairs=[[stage3, block3]]"])
    assert ok.method.pairs == [["stage3", "block3"]]


def test_yaml_python_tags_are_refused(tmp_path):
    p = write(tmp_path, "evil.yaml", "run: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid safe YAML"):
        load_config(TeacherTrainConfig, p)


def test_missing_and_wrong_suffix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TeacherTrainConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="use a .yaml, .yml or .toml file"):
        load_config(TeacherTrainConfig, write(tmp_path, "c.json", "{}"))


TOML = '[model]\nname = "wrn-16-2"\n[optim]\nlr = 0.1\nepochs = 3\n'


def test_toml_on_python_3_10_reads_through_the_tomli_backport(tmp_path, monkeypatch):
    # Python 3.10 has no tomllib: a None entry makes `import tomllib` fail as it does there.
    monkeypatch.setitem(__import__("sys").modules, "tomllib", None)
    t = write(tmp_path, "c.toml", TOML)
    y = write(tmp_path, "c.yaml", "model: {name: wrn-16-2}\noptim: {lr: 0.1, epochs: 3}\n")
    assert load_config(TeacherTrainConfig, t) == load_config(TeacherTrainConfig, y)
    bad = write(tmp_path, "bad.toml", "[model\nname = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(TeacherTrainConfig, bad)


def test_toml_without_tomllib_or_tomli_names_the_package_to_install(tmp_path, monkeypatch):
    modules = __import__("sys").modules
    monkeypatch.setitem(modules, "tomllib", None)
    monkeypatch.setitem(modules, "tomli", None)
    with pytest.raises(ConfigError, match="pip install tomli"):
        load_config(TeacherTrainConfig, write(tmp_path, "c.toml", TOML))
