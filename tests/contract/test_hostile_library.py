"""Hostile and broken inputs at the library level: every user entry point either raises its
documented exception with a message naming the problem, or, for valid but extreme inputs, returns
the right answer (checked against a closed form or an exact invariance, never against its own output
copied from a run). No code path may unpickle a user file: malicious payloads leave a marker file
behind if they ever run.

Entry points: ``decompose`` / ``estimate`` / ``sweep`` (joint arrays, features, labels), the
training config loader, the data loaders (IDX, Fashion-MNIST, CIFAR binary and python layouts, the
whitelist unpickler) and the checkpoint loader.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import subprocess
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datafiles import write_cifar10_bin
from gates import AND_RED, and_counts
from infodistill.data import (
    DataError,
    load_cifar,
    load_fashion_mnist,
    read_idx,
    safe_load_pickle,
    write_idx,
)
from infodistill.pid import decompose, estimate, sweep
from infodistill.training.checkpoint import CheckpointError, load_model_state, set_rng_state
from infodistill.training.config import (
    _YAML11_FLOAT,
    ConfigError,
    DistillConfig,
    TeacherTrainConfig,
    from_dict,
    load_config,
)
from infodistill.training.rundir import load_checkpoint, save_checkpoint

#: Deterministic fuzzing by default (the suite's profile, tests/conftest.py; --hypothesis-seed N draws
#: other examples), no per-example deadline (the machine is shared).
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SHORT = settings(FUZZ, max_examples=25)

TERMS = ("redundancy", "unique_t", "unique_s", "synergy", "mi_t", "mi_s", "mi_joint")


def assert_and_gate(res) -> None:
    """The closed-form BROJA values of the AND gate, within the certified gap."""
    tol = res.gap + 1e-9
    assert res.redundancy == pytest.approx(AND_RED, abs=tol)
    assert res.synergy == pytest.approx(0.5, abs=tol)
    assert abs(res.unique_t) <= tol and abs(res.unique_s) <= tol
    assert res.mi_joint == pytest.approx(1.5 - 0.75 * math.log2(3.0) + 0.5, abs=tol)


class _Evil:
    """Unpickling this runs ``touch marker``: the test fails if the marker ever appears."""

    def __init__(self, marker: Path, call=os.system):
        self.marker, self.call = marker, call

    def __reduce__(self):
        if self.call is os.system:
            return (os.system, (f"touch {self.marker}",))
        if self.call is subprocess.call:
            return (subprocess.call, (["touch", str(self.marker)],))
        # eval / exec of Python source that creates the marker
        return (self.call, (f"open({str(self.marker)!r}, 'w').close()",))


# ==================================================================================== joint arrays

BAD_JOINTS = {
    # flaw: (builder(rng) -> (array, counts flag), words the message must contain)
    "ndim": (lambda r: (np.full((2,) * int(r.choice([0, 1, 2, 4, 5])), 1.0), True), ["3-d"]),
    "empty": (lambda r: (np.zeros((0, int(r.integers(1, 4)), 2)), True), ["empty"]),
    "nan": (lambda r: (_poke(r, np.nan), bool(r.integers(2))), ["nan"]),
    "inf": (lambda r: (_poke(r, float(r.choice([np.inf, -np.inf]))), bool(r.integers(2))), ["infinite"]),
    "negative": (lambda r: (_poke(r, -float(r.uniform(1e-300, 10))), bool(r.integers(2))), ["negative"]),
    "total": (lambda r: (_joint(r) * float(r.choice([3.0, 1e300, 1e-300, 0.5])), False), ["sums to"]),
    "zero": (lambda r: (np.zeros((2, 3, 2)), True), ["total 0"]),
    "complex": (lambda r: (_joint(r) * (1 + 1j), bool(r.integers(2))), ["complex"]),
    "strings": (lambda r: (_joint(r).astype(str), bool(r.integers(2))), ["dtype <u"]),
    "ragged": (lambda r: ([[[0.5]], [[0.25, 0.25]]], False), ["numeric"]),
}


def _joint(rng) -> np.ndarray:
    p = rng.random(tuple(rng.integers(1, 5, 3)))
    return p / p.sum()


def _poke(rng, value) -> np.ndarray:
    p = _joint(rng)
    p[tuple(rng.integers(0, n) for n in p.shape)] = value
    return p


@FUZZ
@given(flaw=st.sampled_from(sorted(BAD_JOINTS)), seed=st.integers(0, 2**32 - 1))
def test_decompose_refuses_broken_joints_with_a_named_problem(flaw, seed):
    build, words = BAD_JOINTS[flaw]
    p, counts = build(np.random.default_rng(seed))
    with pytest.raises(ValueError) as err:
        decompose(p, counts=counts)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg.lower(), (flaw, msg)


@FUZZ
@given(
    counts=st.lists(st.integers(0, 60), min_size=12, max_size=12).filter(lambda c: sum(c) > 0),
    exponent=st.integers(-1060, 1000),
)
def test_count_histograms_at_any_scale_give_the_same_decomposition(counts, exponent):
    """Normalising is exact under a power-of-two scale: 2**e times a count histogram, from
    subnormal (2**-1060) to near the float64 maximum, is the same distribution."""
    c = np.array(counts, dtype=float).reshape(2, 3, 2)
    ref = decompose(c, counts=True)
    res = decompose(np.ldexp(c, exponent), counts=True)
    for t in TERMS:
        assert getattr(res, t) == pytest.approx(getattr(ref, t), abs=ref.gap + res.gap + 1e-12), t


@pytest.mark.parametrize("scale", [1e300, np.finfo(float).max / 2, 5e-324, 1e-310])
def test_and_gate_counts_near_the_float64_limits(scale):
    """Counts whose sum overflows to inf (max/2 each) or that are subnormal still give the
    closed-form AND values, with no numpy warning escaping."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = decompose(and_counts() * scale, counts=True)
    assert_and_gate(res)


def test_extreme_tolerances_are_honest():
    rng = np.random.default_rng(3)
    c = rng.integers(0, 6, (3, 4, 3)).astype(float)
    ref = decompose(c, counts=True)
    for tol in (1e-300, 5e-324):
        # Far below double precision: the answer is still returned, certified to the gap reached.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = decompose(c, counts=True, tol=tol)
        assert all("certified a gap" in str(w.message) for w in caught)
        assert res.gap < 1e-6
        for t in TERMS:
            assert getattr(res, t) == pytest.approx(getattr(ref, t), abs=res.gap + ref.gap + 1e-12)
        assert res.mi_joint == pytest.approx(
            res.redundancy + res.unique_t + res.unique_s + res.synergy, abs=res.gap + 1e-12
        )
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tol must be a positive finite number"):
            decompose(c, counts=True, tol=bad)


# ==================================================================================== features


def _clustered(n=240, seed=0):
    """Labels y in 0..2; teacher features separate all three classes, student only y == 0."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    t = 8.0 * np.eye(3)[y] + rng.standard_normal((n, 3))
    s = 8.0 * np.stack([y == 0, y != 0], axis=1) + rng.standard_normal((n, 2))
    return y, t, s


EST = dict(k=3, pca=None, n_perm=0)


@pytest.fixture(scope="module")
def clustered():
    y, t, s = _clustered()
    return y, t, s, estimate(y, t, s, **EST)


BAD_FEATURES = {
    "1-D": (lambda x, r: x[:, 0], ["2-d", "reshape(-1, 1)"]),
    "5-D": (lambda x, r: x.reshape(len(x), 1, 1, 1, -1), ["2-d", "4-d"]),
    "nan": (lambda x, r: _set(x, r, np.nan), ["nan or infinite"]),
    "inf": (lambda x, r: _set(x, r, -np.inf), ["nan or infinite"]),
    "length": (lambda x, r: x[: int(r.integers(1, len(x)))], ["samples but labels has"]),
    "complex": (lambda x, r: x * 1j, ["real numeric", "complex"]),
    "strings": (lambda x, r: x.astype(str), ["real numeric"]),
    "objects": (lambda x, r: x.astype(object), ["real numeric", "object"]),
    "no features": (lambda x, r: x[:, :0], ["empty"]),
}


def _set(x, rng, value):
    x = x.copy()
    x[int(rng.integers(len(x))), int(rng.integers(x.shape[1]))] = value
    return x


@SHORT
@given(
    flaw=st.sampled_from(sorted(BAD_FEATURES)),
    side=st.sampled_from(["teacher", "student"]),
    seed=st.integers(0, 999),
)
def test_estimate_refuses_broken_features(clustered, flaw, side, seed):
    y, t, s, _ = clustered
    build, words = BAD_FEATURES[flaw]
    rng = np.random.default_rng(seed)
    if side == "teacher":
        t = build(t, rng)
    else:
        s = build(s, rng)
    with pytest.raises(ValueError) as err:
        estimate(y, t, s, **EST)
    msg = str(err.value)
    assert f"{side}_features" in msg and "\n" not in msg, msg
    for w in words:
        assert w in msg.lower(), (flaw, msg)


BAD_LABELS = {
    "2-D": (lambda y: np.stack([y, y], axis=1), "1-d"),
    "fractional": (lambda y: y + 0.5, "integer class ids"),
    "nan": (lambda y: np.where(y == 1, np.nan, y), "integer class ids"),
    "strings": (lambda y: y.astype(str), "integer class ids"),
    "complex": (lambda y: y + 0j, "integer class ids"),
    "empty": (lambda y: y[:0], "empty"),
    "longer": (lambda y: np.concatenate([y, y[:3]]), "samples but labels has"),
}


@pytest.mark.parametrize("flaw", sorted(BAD_LABELS))
def test_estimate_refuses_broken_labels(clustered, flaw):
    y, t, s, _ = clustered
    build, words = BAD_LABELS[flaw]
    with pytest.raises(ValueError, match="labels") as err:
        estimate(build(y), t, s, **EST)
    assert words in str(err.value).lower()


@FUZZ
@given(e_t=st.integers(-1000, 1000), e_s=st.integers(-1000, 1000), normalize=st.booleans())
def test_feature_scale_does_not_change_the_estimate(clustered, e_t, e_s, normalize):
    """Normalisation, PCA and k-means are equivariant under one positive scale per source, so the
    clusters (and the histogram) of 2**e * features are those of the features: exactly, from
    1e-300 to 1e+300, where squared distances would otherwise underflow or overflow."""
    y, t, s, _ = clustered
    kw = dict(EST, normalize=normalize, pca=2)
    ref = estimate(y, t, s, **kw)
    res = estimate(y, np.ldexp(t, e_t), np.ldexp(s, e_s), **kw)
    np.testing.assert_array_equal(res.counts, ref.counts)
    assert res.terms == ref.terms


@pytest.mark.parametrize("scale", [1e300, 1e-300, 3.7e150])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_extreme_features_give_the_plain_answer(clustered, scale, dtype):
    y, t, s, ref = clustered
    if dtype is np.float32:
        scale = float(np.clip(scale, 1e-30, 1e30))  # inside float32's range
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warning may escape
        res = estimate(y, (t * scale).astype(dtype), (s * scale).astype(dtype), **EST)
    np.testing.assert_array_equal(res.counts, ref.counts)
    for term in TERMS:
        assert res.terms[term] == pytest.approx(ref.terms[term], abs=1e-9)


#: Injective relabellings: the PID does not depend on what the class ids are.
RELABEL = st.sampled_from(
    [
        np.array([1e300, -1e300, 2.0**70]),  # whole floats far beyond int64
        np.array([2**63 + 5, 2**64 - 1, 7], dtype=np.uint64),
        np.array([-5, -(2**62), 3]),
        np.array([0.0, 1e16, 1e16 + 2.0]),  # distinct, 2 apart: exact in float64
        np.array([True, False, True]),  # not injective: two classes merge, checked separately
    ]
)


@SHORT
@given(values=RELABEL)
def test_class_ids_are_never_merged(clustered, values):
    y, t, s, ref = clustered
    res = estimate(values[y], t, s, **EST)
    merged = len(set(values.tolist())) < 3
    if merged:  # the bool map sends classes 0 and 2 to True: I(Y; T) must drop
        assert res.counts.shape[0] == 2 and res.terms["mi_t"] < ref.terms["mi_t"] - 0.1
        return
    # Rows are the classes in sorted order of their ids; sorted rows must match the reference.
    order = np.argsort(values)
    np.testing.assert_array_equal(res.counts, ref.counts[order])
    for term in TERMS:
        assert res.terms[term] == pytest.approx(ref.terms[term], abs=1e-9)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(normalize="no"), "normalize must be true or false"),
        (dict(k=1.5), "k must be an integer"),
        (dict(pca=-2), "pca must be an integer"),
        (dict(ci=float("nan")), "ci must be"),
        (dict(fit_fraction=1.0), "fit_fraction"),
        (dict(seed=2**40), "seed must be < 2**32"),
        (dict(tol=float("inf")), "tol"),
        (dict(k=500), "only 240 samples"),
    ],
)
def test_estimate_options_out_of_range(clustered, kwargs, words):
    y, t, s, _ = clustered
    with pytest.raises(ValueError) as err:
        estimate(y, t, s, **{**EST, **kwargs})
    assert words in str(err.value).lower()


@pytest.mark.parametrize("k", [True, None, 3.0, [], ["a"]])
def test_sweep_refuses_a_bad_k_list(clustered, k):
    y, t, s, _ = clustered
    with pytest.raises(ValueError, match="k"):
        sweep(y, t, s, k=k, pca=None, n_perm=0)


# ==================================================================================== configs

#: Every section of both config classes: an unknown key at any level is named with its full path.
SECTIONS = {
    TeacherTrainConfig: ["", "data", "model", "optim", "run"],
    DistillConfig: ["", "data", "student", "teacher", "teacher.model", "method", "optim", "pid", "run"],
}


@pytest.mark.parametrize(
    "cls, section",
    [(c, s) for c, ss in SECTIONS.items() for s in ss],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_unknown_keys_at_every_level(cls, section):
    key = f"{section}.lr_typo" if section else "lr_typo"
    with pytest.raises(ConfigError, match=rf"unknown config key '{key}'; valid keys here: "):
        load_config(
            cls, None, [f"{key}=1", "teacher.kind=untrained"] if cls is DistillConfig else [f"{key}=1"]
        )


#: (section, key, type) of typed fields; values of any other type are refused naming the key.
FIELDS = [
    ("data", "name", str),
    ("data", "batch_size", int),
    ("data", "mixup_alpha", float),
    ("data", "root", "str|None"),
    ("optim", "lr", float),
    ("optim", "epochs", int),
    ("optim", "nesterov", bool),
    ("optim", "milestones", "list[int]"),
    ("optim", "grad_clip", "float|None"),
    ("run", "seed", int),
    ("run", "out_dir", str),
    ("model", "kwargs", dict),
]

ANY_VALUE = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.none(),
)


def _fits(tp, v) -> bool:
    """Whether ``v`` is a legal value of the field type (ints count as floats, bools never as numbers)."""
    if tp == "str|None":
        return v is None or isinstance(v, str)
    if tp == "float|None":
        return v is None or _fits(float, v)
    if tp == "list[int]":
        return isinstance(v, list) and all(_fits(int, x) for x in v)
    if tp is float:
        if isinstance(v, str) and _YAML11_FLOAT.fullmatch(v.strip()):  # YAML 1.1's '1e-3' string
            v = float(v)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, tp)


@FUZZ
@given(field=st.sampled_from(FIELDS), value=ANY_VALUE)
def test_wrong_types_are_refused_naming_the_key(field, value):
    section, key, tp = field
    cfg = {section: {key: value}}
    if not _fits(tp, value):
        with pytest.raises(ConfigError, match=rf"config key '{section}\.{key}(\[\d+\])?'"):
            from_dict(TeacherTrainConfig, cfg)
        return
    try:  # the right type: accepted, or refused by a range check that names the key
        out = from_dict(TeacherTrainConfig, cfg)
    except ConfigError as exc:
        assert f"{section}.{key}" in str(exc)
    else:
        expected = float(value) if tp in (float, "float|None") and value is not None else value
        assert getattr(getattr(out, section), key) == expected


OUT_OF_RANGE = [
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("optim.lr=0", "optim.lr must be > 0"),
    ("optim.lr=.inf", "'optim.lr': expected a finite number"),
    ("optim.lr=.nan", "'optim.lr': expected a finite number"),
    ("optim.lr=1e999", "'optim.lr': expected a finite number"),
    ("optim.epochs=0", "optim.epochs must be > 0"),
    ("optim.momentum=-0.5", "optim.momentum must be >= 0"),
    ("optim.weight_decay=-1e-4", "optim.weight_decay must be >= 0"),
    ("optim.gamma=0", "optim.gamma must be > 0"),
    ("optim.grad_clip=0", "optim.grad_clip must be > 0"),
    ("data.batch_size=0", "data.batch_size must be > 0"),
    ("data.eval_batch_size=-3", "data.eval_batch_size must be > 0"),
    ("data.mixup_alpha=-1", "data.mixup_alpha must be >= 0"),
    ("data.train_subset=0", "data.train_subset must be > 0"),
    ("data.augment=rotate", "data.augment must be one of"),
    ("run.seed=-1", "run.seed must lie in [0, 2**32)"),
    ("run.seed=4294967296", "run.seed must lie in [0, 2**32)"),
    ("run.threads=0", "run.threads must be > 0"),
    ("run.eval_every=0", "run.eval_every must be > 0"),
    ("run.out_dir=''", "run.out_dir must name a directory"),
    ("optim.optimizer=lbfgs", "optim.optimizer must be one of"),
]

DISTILL_OUT_OF_RANGE = [
    ("pid.k=1", "pid.k must be >= 2"),
    ("pid.k=0", "pid.k must be >= 2"),
    ("pid.every=0", "pid.every must be > 0"),
    ("pid.pca=-1", "pid.pca must be >= 0"),
    ("pid.n_samples=5", "pid.n_samples must be >= pid.k"),
    ("pid.n_boot=-1", "pid.n_boot must be >= 0"),
    ("pid.pairs=[[a]]", "pid.pairs[0] must be [student_layer, teacher_layer]"),
    ("teacher.noise_sigma=-1", "teacher.noise_sigma must be >= 0"),
    ("teacher.noise_fraction=2", "teacher.noise_fraction must lie in [0, 1]"),
    ("teacher.seed=-2", "teacher.seed must lie in [0, 2**32)"),
    ("teacher.kind=oracle", "teacher.kind must be one of"),
    ("init_lambda=1.5", "init_lambda must lie in [0, 1]"),
]


@pytest.mark.parametrize("override, message", OUT_OF_RANGE)
def test_out_of_range_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(TeacherTrainConfig, None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("override, message", DISTILL_OUT_OF_RANGE)
def test_distill_out_of_range_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(DistillConfig, None, ["teacher.kind=untrained", override])
    assert message in str(err.value)


def test_a_missing_section_is_checked_too():
    """No teacher section means the default trained teacher, which needs a checkpoint: refused at
    load time, not as an IndexError when the run is built."""
    with pytest.raises(ConfigError, match="teacher.checkpoints: a trained teacher needs"):
        load_config(DistillConfig, None, ["data.name=digits"])


PYTHON_TAGS = [
    "run: !!python/object/apply:os.system ['touch {m}']\n",
    "run: !!python/object/apply:subprocess.call [[touch, '{m}']]\n",
    "run: !!python/object/new:os.system ['touch {m}']\n",
    "run: !!python/name:os.system\n",
    "run: !!python/module:os\n",
    "optim: {{lr: !!python/object/apply:builtins.eval [\"open('{m}', 'w').close() or 0.1\"]}}\n",
]


@pytest.mark.parametrize("text", PYTHON_TAGS)
def test_yaml_python_tags_never_run(tmp_path, text):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.yaml"
    path.write_text(text.format(m=marker))
    with pytest.raises(ConfigError, match="is not valid safe YAML"):
        load_config(TeacherTrainConfig, path)
    assert not marker.exists()


@FUZZ
@given(text=st.text(max_size=80), suffix=st.sampled_from([".yaml", ".yml", ".toml"]))
def test_any_text_is_a_config_or_a_config_error(tmp_path_factory, text, suffix):
    path = tmp_path_factory.mktemp("cfg") / f"c{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        cfg = load_config(TeacherTrainConfig, path)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(cfg, TeacherTrainConfig)


@SHORT
@given(blob=st.binary(min_size=1, max_size=64))
def test_binary_garbage_is_a_config_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(b"\xff\xfe" + blob)  # never valid UTF-8
    with pytest.raises(ConfigError, match="cannot read config file .* as UTF-8"):
        load_config(TeacherTrainConfig, path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("data: {name: digits\n", "not valid safe YAML"),
        ("- 1\n- 2\n", "must hold a mapping of sections"),
        ("3\n", "must hold a mapping of sections"),
        ("'just a string'\n", "must hold a mapping of sections"),
    ],
)
def test_yaml_that_is_not_a_config(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(TeacherTrainConfig, path, ["optim.epochs=2"])


def test_toml_syntax_empty_file_and_directory(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[optim\nlr = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(TeacherTrainConfig, bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(TeacherTrainConfig, empty) == TeacherTrainConfig()  # the documented defaults
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(TeacherTrainConfig, folder)


def test_billion_laughs_and_recursive_aliases_are_refused_quickly(tmp_path):
    lines = ['  a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):  # 9**9 = 387M strings once expanded
        lines.append(f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("model:\n  name: cnn-small\n  kwargs:\n" + "\n".join("  " + x for x in lines) + "\n")
    loop = tmp_path / "loop.yaml"
    loop.write_text("model: {name: cnn-small, kwargs: &k {width: 4, again: *k}}\n")
    for path in (bomb, loop):
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match="expands to more than"):
            load_config(TeacherTrainConfig, path)
        assert time.perf_counter() - t0 < 5.0


# ==================================================================================== data files


def _idx_bytes(tmp: Path) -> bytes:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    return write_idx(tmp / "a.idx", arr).read_bytes()


@FUZZ
@given(cut=st.integers(0, 4 + 4 * 3 + 24 - 1), gz=st.booleans())  # header 16 bytes + 24 of data
def test_idx_truncated_anywhere_is_a_data_error(tmp_path_factory, cut, gz):
    import gzip

    tmp = tmp_path_factory.mktemp("idx")
    raw = _idx_bytes(tmp)[:cut]
    path = tmp / "t.idx"
    path.write_bytes(gzip.compress(raw) if gz and raw else raw)
    with pytest.raises(DataError, match=r"t\.idx: (truncated|not an IDX|IDX header declares)"):
        read_idx(path)


@FUZZ
@given(pos=st.integers(0, 15), byte=st.integers(0, 255), extra=st.binary(max_size=3))
def test_idx_with_a_mutated_header_is_refused_or_self_consistent(tmp_path_factory, pos, byte, extra):
    """A flipped header byte (magic, type code, dims) either gives a DataError or an array whose
    size is exactly what the header declares: never a silently misread file."""
    tmp = tmp_path_factory.mktemp("idx")
    raw = bytearray(_idx_bytes(tmp))
    raw[pos] = byte
    path = tmp / "m.idx"
    path.write_bytes(bytes(raw) + extra)
    try:
        arr = read_idx(path)
    except DataError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
    else:
        ndim = raw[3]
        dims = struct.unpack(f">{ndim}I", bytes(raw[4 : 4 + 4 * ndim]))
        assert arr.shape == dims and arr.nbytes == len(raw) + len(extra) - 4 - 4 * ndim


def _fashion(root: Path, n_train=12, n_test=6, size=(28, 28)) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, *size), dtype=np.uint8))
    write_idx(root / "train-labels-idx1-ubyte", (np.arange(n_train) % 10).astype(np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte", (np.arange(n_test) % 10).astype(np.uint8))
    return root


FASHION_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]


@SHORT
@given(name=st.sampled_from(FASHION_FILES), frac=st.floats(0.0, 0.999))
def test_fashion_mnist_with_a_truncated_file(tmp_path_factory, name, frac):
    root = _fashion(tmp_path_factory.mktemp("fm"))
    raw = (root / name).read_bytes()
    (root / name).write_bytes(raw[: int(frac * len(raw))])
    with pytest.raises(DataError, match=name):
        load_fashion_mnist(root)


@pytest.mark.parametrize(
    "case, message",
    [
        ("magic", "not an IDX file"),
        ("count", "11 labels for 12 images"),
        ("empty", "holds 0 images"),
        ("size", r"test images are \(28, 28\) but training images"),
        ("labels", r"label 10 outside \[0, 10\)"),
        ("file-as-root", "is a file, not a directory"),
    ],
)
def test_fashion_mnist_inconsistent_directories(tmp_path, case, message):
    root = _fashion(
        tmp_path / "fm", n_train=0 if case == "empty" else 12, size=(14, 14) if case == "size" else (28, 28)
    )
    if case == "magic":
        p = root / "t10k-images-idx3-ubyte"
        p.write_bytes(b"\x01\x02" + p.read_bytes()[2:])
    elif case == "count":
        write_idx(root / "train-labels-idx1-ubyte", np.zeros(11, np.uint8))
    elif case == "labels":
        write_idx(root / "train-labels-idx1-ubyte", np.full(12, 10, np.uint8))
    elif case == "file-as-root":
        root = root / "train-images-idx3-ubyte"
    with pytest.raises(DataError, match=message):
        load_fashion_mnist(root)



@SHORT
@given(cut=st.integers(1, 3 * 3073 - 1).filter(lambda c: c % 3073))
def test_cifar_binary_truncated_is_a_data_error(tmp_path_factory, cut):
    root = tmp_path_factory.mktemp("cifar")
    d = write_cifar10_bin(root, 3)
    raw = (d / "data_batch_3.bin").read_bytes()
    (d / "data_batch_3.bin").write_bytes(raw[: len(raw) - cut])
    with pytest.raises(DataError, match="data_batch_3.bin: .* not a positive multiple of the 3073-byte"):
        load_cifar(root)


def _cifar_py(root: Path) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    return d


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("call", [os.system, subprocess.call, eval, exec], ids=lambda c: c.__name__)
def test_malicious_cifar_batches_never_run(tmp_path, protocol, call):
    d = _cifar_py(tmp_path)
    marker = tmp_path / "PWNED"
    payload = pickle.dumps({b"data": _Evil(marker, call), b"labels": [0]}, protocol=protocol)
    # The payload is live: plain pickle.loads runs it (on a marker of its own).
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(probe, call), protocol=protocol))  # noqa: S301
    assert probe.exists()
    (d / "test_batch").write_bytes(payload)
    with pytest.raises(DataError, match=r"test_batch: refusing to unpickle global"):
        load_cifar(tmp_path)
    assert not marker.exists()


@SHORT
@given(frac=st.floats(0.0, 0.999), protocol=st.sampled_from([2, 5]))
def test_truncated_pickles_are_data_errors(tmp_path_factory, frac, protocol):
    path = tmp_path_factory.mktemp("pk") / "batch"
    raw = pickle.dumps(
        {b"data": np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072), b"labels": [1, 2]}, protocol=protocol
    )
    path.write_bytes(raw[: int(frac * len(raw))])
    with pytest.raises(DataError, match="batch: corrupt or truncated pickle"):
        safe_load_pickle(path)


@pytest.mark.parametrize("claimed", [2**33, 2**62])
def test_a_pickle_claiming_a_huge_buffer_allocates_nothing(tmp_path, claimed):
    """12 bytes declaring a 2**33-byte bytearray made the C unpickler allocate 8 GiB before it
    noticed the file was short; the length is now checked against the file first."""
    path = tmp_path / "bomb"
    path.write_bytes(b"\x80\x05\x96" + struct.pack("<Q", claimed) + b"abc")
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="bomb: corrupt or truncated pickle"):
            safe_load_pickle(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


# ==================================================================================== checkpoints


def _model(width=4):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, width), torch.nn.BatchNorm1d(width), torch.nn.Linear(width, 2)
    )


@pytest.fixture
def ckpt(tmp_path):
    state = {"epoch": 0, "student": _model().state_dict(), "rng": {"torch": torch.get_rng_state()}}
    return save_checkpoint(tmp_path / "run", "epoch-0001", state)


@FUZZ
@given(frac=st.floats(0.0, 0.999))
def test_truncated_safetensors_are_refused(tmp_path_factory, frac):
    run = tmp_path_factory.mktemp("run")
    path = save_checkpoint(run, "c", {"student": _model().state_dict()})
    blob = (path / "tensors.safetensors").read_bytes()
    (path / "tensors.safetensors").write_bytes(blob[: int(frac * len(blob))])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(run)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(skeleton=JSON | st.fixed_dictionaries({"student": JSON}) | st.fixed_dictionaries({"__dict__": JSON}))
def test_any_state_json_is_refused_cleanly(tmp_path_factory, skeleton):
    """Whatever JSON state.json holds, loading the weights ends in a CheckpointError: there is no
    tensor reference in it, so it can never be a model's state."""
    run = tmp_path_factory.mktemp("run")
    path = save_checkpoint(run, "c", {"student": _model().state_dict()})
    (path / "state.json").write_text(json.dumps(skeleton))
    with pytest.raises(CheckpointError) as err:
        load_model_state(_model(), load_checkpoint(run)["student"], "student")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickles_named_safetensors_are_never_unpickled(tmp_path, ckpt, kind):
    marker = tmp_path / "PWNED"
    target = ckpt / "tensors.safetensors"
    if kind == "pickle":
        target.write_bytes(pickle.dumps({"student": _Evil(marker)}))
    else:
        torch.save({"student": _model().state_dict(), "evil": _Evil(marker)}, target)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(ckpt.parent)
    assert not marker.exists()


@pytest.mark.parametrize(
    "latest, message",
    [
        ('{"latest": "../../../etc"}', "must name a checkpoint directory beside it"),
        ('{"latest": "/etc"}', "must name a checkpoint directory beside it"),
        ('{"latest": 3}', "must name a checkpoint directory beside it"),
        ("[1, 2]", "latest.json is corrupt"),
        ('{"newest": "epoch-0001"}', "latest.json is corrupt"),
        ("not json", "latest.json is corrupt"),
    ],
)
def test_a_tampered_latest_pointer_is_refused(ckpt, latest, message):
    (ckpt.parent / "latest.json").write_text(latest)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(ckpt.parent)


def test_state_json_without_the_weights(ckpt):
    (ckpt / "state.json").write_text('{"epoch": 3}')
    state = load_checkpoint(ckpt.parent)
    assert state["epoch"] == 3
    with pytest.raises(CheckpointError, match="has no 'student' entry"):
        state["student"]
    (ckpt / "state.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="state.json must hold a mapping, got list"):
        load_checkpoint(ckpt.parent)


def test_weights_from_another_model_or_broken_weights(ckpt):
    state = load_checkpoint(ckpt.parent)["student"]
    with pytest.raises(CheckpointError, match="another architecture.*shape mismatch"):
        load_model_state(_model(width=8), state, "teacher")
    ints = {k: v.to(torch.int64) for k, v in state.items()}
    with pytest.raises(CheckpointError, match="integer/float mismatch"):
        load_model_state(_model(), ints, "teacher")
    for bad in (float("nan"), float("inf")):
        broken = {k: (v * bad if k == "2.weight" else v) for k, v in state.items()}
        with pytest.raises(CheckpointError, match=r"NaN or infinite values \(in 2.weight\)"):
            load_model_state(_model(), broken, "teacher")
    for not_a_state in (3, [state], {"a": 1}):
        with pytest.raises(CheckpointError, match="does not hold a state dict of named tensors"):
            load_model_state(_model(), not_a_state, "teacher")
    model = _model()
    load_model_state(model, state)  # the untouched weights still load
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize(
    "rng", [{"torch": torch.zeros(3, dtype=torch.int64)}, {"torch": torch.zeros(7, dtype=torch.uint8)}, {}, 5]
)
def test_a_corrupt_rng_state_is_refused(rng):
    before = torch.get_rng_state()
    with pytest.raises(CheckpointError, match="RNG state"):
        set_rng_state(rng)
    assert torch.equal(torch.get_rng_state(), before)


# ---------------------------------------------------------------- memory budget (issue 11)


def test_decompose_refuses_a_joint_beyond_the_memory_budget():
    """Sized before any copy: a broadcast view costs nothing, its 16 float64 copies would not."""
    p = np.broadcast_to(np.float64(1.0 / 3000**3), (3000, 3000, 3000))
    with pytest.raises(ValueError, match=r"memory budget.*fewer labels or fewer clusters"):
        decompose(p)


def test_solver_system_beyond_the_budget_is_refused(monkeypatch):
    """200 labels x 30 x 30 (pair space: D blocks, X = D^-1 U and the 900 x 900 system) needs
    about 8·(4·200·60² + 60·200·900 + 2·900²) = 122 MiB; a 0.05 GiB budget refuses it, 1 GiB not."""
    rng = np.random.default_rng(0)
    p = rng.random((200, 30, 30))
    p /= p.sum()
    monkeypatch.setenv("INFODISTILL_PID_MEMORY_GB", "0.05")
    with pytest.raises(ValueError, match=r"Newton system for a 200 x 30 x 30 joint"):
        decompose(p)
    monkeypatch.setenv("INFODISTILL_PID_MEMORY_GB", "lots")
    with pytest.raises(ValueError, match="INFODISTILL_PID_MEMORY_GB"):
        decompose(p)
