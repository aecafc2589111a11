"""Tests of the command-line interface (``infodistill pid`` / ``infodistill demo``).

All but one test call :func:`infodistill.cli.main` in-process; one runs ``python -m infodistill`` in a
subprocess to check the real exit status and that no traceback reaches stderr.
"""

from __future__ import annotations

import ast
import json
import math
import os
import pickle
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import infodistill
import infodistill.pid
from gates import AND_RED, and_counts
from infodistill import cli
from infodistill.pid import decompose
from infodistill.pid.decompose import DEFAULT_TOL_BITS

AND_SYN = 0.5


def and_gate() -> np.ndarray:
    return and_counts() / 4.0


def random_joint(shape=(3, 4, 2), seed=1) -> np.ndarray:
    p = np.random.default_rng(seed).random(shape)
    return p / p.sum()


def save(tmp_path: Path, name: str, arr) -> str:
    path = tmp_path / name
    np.save(path, arr)
    return str(path)


def run(capsys, *argv: str):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("infodistill: error:"), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


def table_value(out: str, label: str) -> float:
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == label:
            return float(parts[-2])  # ... value unit
    raise AssertionError(f"no row {label!r} in:\n{out}")


def assert_close_tree(a, b, tol=1e-9, path="") -> None:
    """Recursive comparison of JSON-like trees, floats to ``tol``."""
    if isinstance(b, dict):
        assert isinstance(a, dict), path
        for key in b:
            assert key in a, f"{path}/{key} missing"
            assert_close_tree(a[key], b[key], tol, f"{path}/{key}")
    elif isinstance(b, (list, tuple)):
        assert isinstance(a, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close_tree(x, y, tol, f"{path}[{i}]")
    elif isinstance(b, float) and not isinstance(b, bool):
        if math.isnan(b):
            assert a is not None and math.isnan(a), path
        else:
            assert a == pytest.approx(b, abs=tol), path
    else:
        assert a == b, path


# ------------------------------------------------------------------------------------- basics


def test_version_and_help(capsys):
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.strip() == f"infodistill {infodistill.__version__}"
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and "pid" in out and "demo" in out and "left to distill" in out
    rc, out, _ = run(capsys, "pid", "--help")
    assert rc == 0 and "--labels" in out and "--counts" in out


def test_cli_module_imports_only_stdlib_at_top_level():
    """`infodistill --help` must stay fast: numpy / infodistill.pid are imported lazily, torch never.
    At module level the CLI package's modules import the standard library, each other, the
    package root (``__version__``) and ``infodistill.errors`` (standard library only) only."""
    files = sorted(Path(cli.__file__).parent.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "common.py", "pid.py", "train.py", "audit.py"}
    for path in files:
        tree = ast.parse(path.read_text())
        top = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                top.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 1:
                top.add(".")  # a module of the CLI package
            elif isinstance(node, ast.ImportFrom):
                top.add("." * node.level + (node.module or ""))
        allowed = {"__future__", "argparse", "json", "math", "os", "sys", ".", "..", "..errors"}
        assert top <= allowed, (path.name, top)
        every = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        if path.name in ("__init__.py", "pid.py"):  # the training commands import it when they run
            assert not any("torch" in name for name in every), path.name


def test_no_command_is_a_usage_error(capsys):
    rc, _, err = run(capsys)
    assert rc == 2 and "usage:" in err


def test_python_dash_m_runs_main(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["infodistill", "--version"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("infodistill", run_name="__main__")
    assert exc.value.code == 0
    assert infodistill.__version__ in capsys.readouterr().out


# ------------------------------------------------------------------------------------- pid JOINT


def test_and_gate_table_matches_exact_values(tmp_path, capsys):
    rc, out, err = run(capsys, "pid", save(tmp_path, "and.npy", and_gate()))
    assert rc == 0, err
    assert table_value(out, "Red(Y:T,S)") == pytest.approx(AND_RED, abs=1e-6)
    assert table_value(out, "Red(Y:T,S)") == pytest.approx(0.311278, abs=1e-6)
    assert table_value(out, "Syn(Y:T,S)") == pytest.approx(AND_SYN, abs=1e-6)
    assert table_value(out, "Uni(Y:T\\S)") == pytest.approx(0.0, abs=1e-6)
    assert table_value(out, "Uni(Y:S\\T)") == pytest.approx(0.0, abs=1e-6)
    assert table_value(out, "I(Y;T,S)") == pytest.approx(AND_RED + AND_SYN, abs=1e-6)
    for meaning in ("transferred / shared", "left to distill (teacher only)", "certified gap"):
        assert meaning in out
    assert "bits" in out


@pytest.mark.parametrize("unit", ["bits", "nats"])
@pytest.mark.parametrize("which", ["and", "random"])
def test_json_matches_decompose(tmp_path, capsys, unit, which):
    p = and_gate() if which == "and" else random_joint()
    rc, out, err = run(capsys, "pid", save(tmp_path, "p.npy", p), "--json", "--unit", unit)
    assert rc == 0, err
    d = json.loads(out)
    assert d["shape"] == list(p.shape)
    ref = decompose(p, unit=unit).as_dict()
    assert set(ref) <= set(d)
    assert d["unit"] == unit
    for key, val in ref.items():
        if key == "gap":  # the certificate honours the library's default tolerance
            assert 0 <= d[key] <= DEFAULT_TOL_BITS * (1.0 if unit == "bits" else np.log(2))
        elif isinstance(val, float):
            assert d[key] == pytest.approx(val, abs=1e-9), key


def test_counts_flag_and_tol(tmp_path, capsys):
    counts = np.array(and_gate() * 40, dtype=np.int64)
    path = save(tmp_path, "counts.npy", counts)
    rc, _, err = run(capsys, "pid", path)
    assert_one_line_error(rc, err, "counts.npy", "--counts")
    rc, out, err = run(capsys, "pid", path, "--counts", "--tol", "1e-10", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["redundancy"] == pytest.approx(AND_RED, abs=1e-9)
    assert d["gap"] <= 1e-10


def test_npz_with_one_array(tmp_path, capsys):
    path = tmp_path / "one.npz"
    np.savez(path, joint=and_gate())
    rc, out, err = run(capsys, "pid", str(path), "--json")
    assert rc == 0, err
    assert json.loads(out)["synergy"] == pytest.approx(AND_SYN, abs=1e-7)


# ------------------------------------------------------------------------------------- errors


def _pickle_file(tmp_path: Path) -> Path:
    path = tmp_path / "evil.npy"
    with open(path, "wb") as fh:
        pickle.dump([[0.5, 0.5]], fh)
    return path


def _object_npy(tmp_path: Path) -> Path:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return path


def _two_array_npz(tmp_path: Path) -> Path:
    path = tmp_path / "two.npz"
    np.savez(path, a=and_gate(), b=and_gate())
    return path


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "joint.csv"
    path.write_text("0.25,0.25\n0.25,0.25\n")
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.npy"
    path.write_bytes(b"")
    return path


def _truncated(tmp_path: Path) -> Path:
    path = tmp_path / "truncated.npy"
    np.save(path, and_gate())
    path.write_bytes(path.read_bytes()[:-16])
    return path


ERROR_CASES = {
    "missing": (lambda d: d / "nope.npy", ["nope.npy", "not found"]),
    "directory": (lambda d: d, ["directory"]),
    "pickle": (_pickle_file, ["evil.npy", "pickle"]),
    "object-array": (_object_npy, ["objects.npy", "unpickl"]),
    "two-arrays-npz": (_two_array_npz, ["two.npz", "2 arrays"]),
    "csv": (_csv, ["joint.csv", "not a numpy"]),
    "empty-file": (_empty, ["empty.npy", "empty"]),
    "truncated": (_truncated, ["truncated.npy"]),
    "strings": (lambda d: Path(save(d, "str.npy", np.array([["a", "b"]]))), ["str.npy", "strings"]),
    "complex": (lambda d: Path(save(d, "cplx.npy", and_gate() + 0j)), ["cplx.npy", "complex"]),
    "2-D": (lambda d: Path(save(d, "flat.npy", np.full((2, 2), 0.25))), ["flat.npy", "3-D"]),
    "4-D": (lambda d: Path(save(d, "deep.npy", np.full((2, 2, 2, 2), 1 / 16))), ["deep.npy", "3-D"]),
    "negative": (
        lambda d: Path(save(d, "neg.npy", and_gate() * [[[1, -1], [1, 1]]])),
        ["neg.npy", "negative"],
    ),
    "nan": (lambda d: Path(save(d, "nan.npy", np.full((2, 2, 2), np.nan))), ["nan.npy", "nan"]),
    "not-normalised": (lambda d: Path(save(d, "big.npy", and_gate() * 3)), ["big.npy", "sums to"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_joint_errors_are_one_line(tmp_path, capsys, case):
    make, needles = ERROR_CASES[case]
    rc, out, err = run(capsys, "pid", str(make(tmp_path)))
    assert out == ""
    assert_one_line_error(rc, err, *needles)


def test_bad_tol_is_a_library_error(tmp_path, capsys):
    rc, _, err = run(capsys, "pid", save(tmp_path, "and.npy", and_gate()), "--tol", "-1")
    assert_one_line_error(rc, err, "tol")


def _features(tmp_path: Path, n=600, seed=0, n_classes=6):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    teacher = 5.0 * rng.standard_normal((n_classes, 6))[y] + rng.standard_normal((n, 6))
    student = 5.0 * rng.standard_normal((n_classes // 2, 4))[y % (n_classes // 2)] + rng.standard_normal(
        (n, 4)
    )
    return (
        save(tmp_path, "y.npy", y),
        save(tmp_path, "t.npy", teacher),
        save(tmp_path, "s.npy", student),
        (y, teacher, student),
    )


def _estimate_args(y, t, s, *extra):
    return ("pid", "--labels", y, "--teacher", t, "--student", s, *extra)


@pytest.mark.parametrize(
    "case",
    [
        "lengths",
        "float-labels",
        "2d-labels",
        "string-labels",
        "complex-teacher",
        "nan-student",
        "missing-student",
    ],
)
def test_estimate_input_errors(tmp_path, capsys, case):
    y, t, s, (ya, ta, sa) = _features(tmp_path)
    needles = []
    if case == "lengths":
        s = save(tmp_path, "short.npy", sa[:-5])
        needles = ["mismatched lengths", "600", "595", "short.npy"]
    elif case == "float-labels":
        y = save(tmp_path, "yf.npy", ya + 0.5)
        needles = ["yf.npy", "integer"]
    elif case == "2d-labels":
        y = save(tmp_path, "y2.npy", np.stack([ya, ya], axis=1))
        needles = ["y2.npy", "1-D"]
    elif case == "string-labels":
        y = save(tmp_path, "ys.npy", ya.astype(str))
        needles = ["ys.npy", "strings"]
    elif case == "complex-teacher":
        t = save(tmp_path, "tc.npy", ta * 1j)
        needles = ["tc.npy", "complex"]
    elif case == "nan-student":
        sa = sa.copy()
        sa[3, 1] = np.nan
        s = save(tmp_path, "sn.npy", sa)
        needles = ["sn.npy", "nan"]
    elif case == "missing-student":
        s = str(tmp_path / "gone.npy")
        needles = ["gone.npy", "not found"]
    rc, out, err = run(capsys, *_estimate_args(y, t, s))
    assert out == ""
    assert_one_line_error(rc, err, *needles)


# ------------------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "argv",
    [
        ["pid"],  # neither
        ["pid", "J.npy", "--labels", "y.npy"],  # both
        ["pid", "J.npy", "--labels", "y.npy", "--teacher", "t.npy", "--student", "s.npy"],
        ["pid", "--labels", "y.npy", "--teacher", "t.npy"],  # incomplete
        ["pid", "--student", "s.npy"],
        ["pid", "J.npy", "--k", "4"],  # estimate option with a JOINT
        ["pid", "J.npy", "--no-normalize"],
        ["pid", "--labels", "y.npy", "--teacher", "t.npy", "--student", "s.npy", "--counts"],
        ["pid", "J.npy", "--bogus"],  # unknown argument
        ["pid", "J.npy", "--unit", "bans"],
        ["pid", "--labels", "y.npy", "--teacher", "t.npy", "--student", "s.npy", "--k", "0"],
        ["pid", "--labels", "y.npy", "--teacher", "t.npy", "--student", "s.npy", "--boot", "x"],
        ["frobnicate"],
    ],
)
def test_usage_errors(capsys, argv):
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert out == ""
    assert "usage: infodistill" in err and "error:" in err
    assert "Traceback" not in err


def test_mutual_exclusion_message(capsys):
    rc, _, err = run(capsys, "pid", "J.npy", "--labels", "y.npy")
    assert rc == 2 and "not both" in err
    rc, _, err = run(capsys, "pid", "--labels", "y.npy", "--teacher", "t.npy")
    assert rc == 2 and "--student" in err.splitlines()[-1]


# ------------------------------------------------------------------------------------- estimate path


def test_estimate_options_are_passed_through(tmp_path, capsys, monkeypatch):
    """CLI flags map onto estimate() keywords; unset flags keep the library defaults; ValueError: exit 2."""
    y, t, s, (ya, ta, sa) = _features(tmp_path)
    seen = {}

    def fake_estimate(labels, teacher, student, **kwargs):
        seen.update(kwargs, n=len(labels), dtype=labels.dtype, shapes=(teacher.shape, student.shape))
        raise ValueError("k_t=7 is more than the\nnumber of distinct rows")

    monkeypatch.setattr(infodistill.pid, "estimate", fake_estimate, raising=False)
    argv = _estimate_args(y, t, s, "--k-t", "7", "--pca", "2", "--no-normalize", "--pool", "avg")
    argv += ("--fit-fraction", "0.5", "--boot", "3", "--ci", "0.9", "--seed", "4", "--unit", "nats")
    argv += ("--perm", "0", "--discretize", "argmax")
    rc, out, err = run(capsys, *argv)
    assert_one_line_error(rc, err, "k_t=7 is more than the number of distinct rows")
    assert seen == {
        "k_t": 7,
        "pca": 2,
        "normalize": False,
        "pool": "avg",
        "fit_fraction": 0.5,
        "n_boot": 3,
        "ci": 0.9,
        "seed": 4,
        "n_perm": 0,
        "discretize": "argmax",
        "unit": "nats",
        "tol": None,
        "n": 600,
        "dtype": np.dtype(np.int64),
        "shapes": ((600, 6), (600, 4)),
    }


def _real_estimate():
    """The colleague-provided estimator; the tests below skip only while it does not exist yet."""
    pytest.importorskip("infodistill.pid.estimate")
    from infodistill.pid import estimate

    return estimate


def test_estimate_json_records_settings(tmp_path, capsys):
    estimate = _real_estimate()
    y, t, s, (ya, ta, sa) = _features(tmp_path)
    rc, out, err = run(capsys, *_estimate_args(y, t, s, "--k", "4", "--pca", "3", "--json"))
    assert rc == 0, err
    d = json.loads(out)
    assert d["settings"]["k_t"] == 4 and d["settings"]["k_s"] == 4
    assert d["settings"]["pca"] == 3
    assert d["ci"] is None
    assert d["inputs"]["n_samples"] == 600
    ref = estimate(ya, ta, sa, k=4, pca=3)
    assert_close_tree(d, json.loads(json.dumps(ref.as_dict(), default=cli._json_default)))


def test_estimate_bootstrap_cis_and_table(tmp_path, capsys):
    estimate = _real_estimate()
    y, t, s, (ya, ta, sa) = _features(tmp_path)
    rc, out, err = run(capsys, *_estimate_args(y, t, s, "--k", "4", "--pca", "3", "--boot", "10", "--json"))
    assert rc == 0, err
    d = json.loads(out)
    assert d["settings"]["k_t"] == 4 and d["settings"]["pca"] == 3
    assert d["settings"]["n_boot"] == 10
    assert isinstance(d["ci"], dict) and d["ci"]
    for term, (lo, hi) in d["ci"].items():
        assert lo <= hi + 1e-12, term
    ref = estimate(ya, ta, sa, k=4, pca=3, n_boot=10)
    assert ref.ci is not None
    assert_close_tree(d, json.loads(json.dumps(ref.as_dict(), default=cli._json_default)))

    rc, out, err = run(capsys, *_estimate_args(y, t, s, "--k", "4", "--pca", "3", "--boot", "10"))
    assert rc == 0, err
    assert ref.table() in out


def test_estimate_k_t_k_s_and_library_errors(tmp_path, capsys):
    _real_estimate()
    y, t, s, _ = _features(tmp_path)
    rc, out, err = run(capsys, *_estimate_args(y, t, s, "--k-t", "6", "--k-s", "3", "--pca", "2", "--json"))
    assert rc == 0, err
    d = json.loads(out)
    assert (d["settings"]["k_t"], d["settings"]["k_s"], d["settings"]["pca"]) == (6, 3, 2)
    # ValueErrors raised inside estimate() become one-line errors (feature names mapped to the files).
    rc, _, err = run(capsys, *_estimate_args(y, t, s, "--pca", "8"))
    assert_one_line_error(rc, err, "pca=8", "t.npy")
    rc, _, err = run(capsys, *_estimate_args(y, t, s, "--pca", "2", "--fit-fraction", "1.5"))
    assert_one_line_error(rc, err, "fit_fraction")
    rc, _, err = run(capsys, *_estimate_args(y, t, s, "--pca", "2", "--k", "700"))
    assert_one_line_error(rc, err, "700")


# ------------------------------------------------------------------------------------- demo


def test_demo_gates_match_textbook(capsys):
    rc, out, err = run(capsys, "demo", "--boot", "2")
    assert rc == 0, err
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    for gate in ("RDN", "UNQ", "XOR", "AND", "SUM", "COPY"):
        assert gate in rows
    and_row = rows["AND"].split()
    red, uni_t, uni_s, syn = map(float, and_row[-5:-1])
    assert red == pytest.approx(AND_RED, abs=1e-6)
    assert syn == pytest.approx(AND_SYN, abs=1e-6)
    assert uni_t == pytest.approx(0, abs=1e-6) and uni_s == pytest.approx(0, abs=1e-6)
    worst = float(out.split("max |computed - exact| over all gates and terms:")[1].split()[0])
    assert worst < 1e-6
    try:
        _real_estimate()
    except pytest.skip.Exception:
        assert "skipped" in err
    else:
        assert "Representation example" in out and "Reading: Red =" in out


def test_ctrl_c_exits_130(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.pid, "gates_table", interrupted)  # what the demo calls
    rc, _, err = run(capsys, "demo")
    assert rc == 130
    assert err.strip().splitlines() == ["infodistill: interrupted"]


# ------------------------------------------------------------------------------------- subprocess


def test_entry_point_missing_file_subprocess(tmp_path):
    missing = tmp_path / "does_not_exist.npy"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "infodistill", "pid", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("infodistill: error:")
    assert "does_not_exist.npy" in lines[0]


def test_cli_and_pid_commands_do_not_import_torch():
    """`pip install .` (no torch) must still run `infodistill demo` / `pid`: the training commands
    are registered without importing torch."""
    import subprocess
    import sys

    code = (
        "import sys; from infodistill.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
