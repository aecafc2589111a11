"""E1 reproduction machinery on a tiny data set: every run, the report, the claims, resumption."""

import json

import pytest
import torch

from infodistill.cli import main
from infodistill.experiments.rid import RIDPreset, run_rid
from infodistill.experiments.rid_report import check_claims

TINY = dict(
    name="tiny",
    data="digits",
    teacher_model={"name": "cnn-small", "kwargs": {"width": 8, "pool_size": 2}},
    teacher_train_subset=None,
    teacher_epochs=2,
    student_model={"name": "cnn-small", "kwargs": {"width": 4, "pool_size": 2}},
    student_train_subset=300,
    student_epochs=2,
    test_subset=None,
    seeds=(0, 1),
    pid_k=5,
    pid_samples=200,
    method_params={"vid": {"lam": 1.0}, "rid": {"lam": 10.0, "rounds": 1}, "ted": {"lam": 10.0}},
)


def test_run_rid_writes_a_report_and_resumes(tmp_path):
    torch.set_num_threads(1)
    report = run_rid(RIDPreset(**TINY), tmp_path, progress=False)
    text = report.read_text()
    assert (tmp_path / "accuracy.png").stat().st_size > 0 and (tmp_path / "pid.png").stat().st_size > 0
    for kind in ("trained", "untrained", "noisy"):
        for method in ("baseline", "vid", "rid", "ted"):
            assert f"| {kind} | {method} |" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["claims"]) == 6 + 3 and all(c["held"] in (True, False) for c in summary["claims"])
    assert "## Difference from the baseline (pt), paired by seed" in text
    rows, paired = summary["rows"], summary["paired_differences"]
    for key, diffs in paired.items():  # the same seeds, in order, as the accuracy table's lists
        kind = key.split("|")[0]
        expected = [a - b for a, b in zip(rows[key]["last"], rows[f"{kind}|baseline"]["last"], strict=True)]
        assert diffs == pytest.approx(expected, abs=1e-12)
    assert len(paired) == 3 * (len(RIDPreset(**TINY).methods) - 1)
    # Rerunning finds every run finished: nothing is retrained (logs untouched).
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/log.jsonl")}
    run_rid(RIDPreset(**TINY), tmp_path, progress=False)
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/log.jsonl")}


def test_claims_are_computed_from_the_numbers():
    def row(acc, **pid):
        base = {"last": [acc], "best": [acc], "agreement": [0.5]}
        base.update({k: [v] for k, v in pid.items()})
        return base

    pid = dict(redundancy=0.0, unique_t=0.5, mi_t=0.01, mi_s=1.0)
    rows = {
        ("untrained", "baseline"): row(0.80, **pid),
        ("untrained", "vid"): row(0.60, **pid),
        ("untrained", "rid"): row(0.78, **pid),
        ("trained", "baseline"): row(0.80, redundancy=1.0, unique_t=0.5, mi_t=2.0, mi_s=1.5),
        ("trained", "vid"): row(0.82, redundancy=1.2, unique_t=0.4, mi_t=2.0, mi_s=1.6),
        ("trained", "rid"): row(0.83, redundancy=1.5, unique_t=0.2, mi_t=2.0, mi_s=1.7),
    }
    held = {c: h for c, h, _ in check_claims(rows)}
    assert all(held.values()), held
    rows[("trained", "rid")] = row(0.70, redundancy=0.9, unique_t=0.9, mi_t=2.0, mi_s=1.0)
    held = {c: h for c, h, _ in check_claims(rows)}
    assert not held["RID ends with the lowest Uni(Y:T\\S) (trained teacher)"]
    assert not held[
        "RID beats the baseline with a trained teacher (by more than the standard error of the difference)"
    ]
    # +2 pt on average, but the standard error of the difference is sqrt(8e-4/2 + 2e-4/2) = 2.24 pt
    rows[("trained", "baseline")]["last"] = [0.79, 0.81]
    rows[("trained", "vid")]["last"] = [0.80, 0.84]
    claims = {c: (h, n) for c, h, n in check_claims(rows)}
    held, numbers = claims[
        "VID beats the baseline with a trained teacher (by more than the standard error of the difference)"
    ]
    assert not held and "standard error 2.24 pt" in numbers


def test_reproduce_cli(tmp_path, capsys):
    torch.set_num_threads(1)
    args = [
        "reproduce",
        "rid",
        "--preset",
        "quick",
        "--data",
        "digits",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--teacher-epochs",
        "1",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    # quick's Fashion-MNIST models run on digits too (adaptive pooling); subsets above digits' size are moot
    assert main(args) == 0
    assert f"report: {tmp_path / 'report.md'}" in capsys.readouterr().out
    assert main(["reproduce", "rid", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_rid_variants_run_as_rid_with_their_switch(tmp_path):
    from infodistill.experiments.rid import PRESETS, RID_VARIANTS, distill_config

    preset = PRESETS["rid-ablation"]
    assert set(RID_VARIANTS) <= set(preset.methods)
    for name, switch in RID_VARIANTS.items():
        cfg = distill_config(preset, tmp_path / "t", "untrained", name, 0, tmp_path / name)
        assert cfg.method.name == "rid"
        assert cfg.method.params == {**preset.method_params["rid"], **switch}
    published = distill_config(preset, tmp_path / "t", "untrained", "rid", 0, tmp_path / "rid")
    assert published.method.params == preset.method_params["rid"]


def test_variant_claims_use_the_standard_error_of_the_difference():
    from infodistill.experiments.rid_report import check_variant

    def row(*accs):
        return {"last": list(accs)}

    # baseline 0.80 ± 0.01, variant 0.795 ± 0.01 over 3 seeds: d = -0.5 pt, se = sqrt(2 * 1e-4 / 3) = 0.816 pt
    rows = {
        ("untrained", "baseline"): row(0.79, 0.80, 0.81),
        ("untrained", "v"): row(0.785, 0.795, 0.805),
        ("untrained", "rid"): row(0.70, 0.71, 0.72),
        ("trained", "rid"): row(0.81, 0.82, 0.83),
        ("trained", "v"): row(0.82, 0.83, 0.84),
    }
    claims = check_variant(rows, "v")
    assert [h for _, h, _ in claims] == [True, True]
    assert "difference -0.50 pt, standard error 0.82 pt" in claims[0][2]
    rows[("untrained", "v")] = row(0.775, 0.785, 0.795)  # d = -1.5 pt > se below
    rows[("trained", "v")] = row(0.80, 0.81, 0.82)
    assert [h for _, h, _ in check_variant(rows, "v")] == [False, False]


def test_the_papers_data_set_selects_the_papers_setting(tmp_path, monkeypatch, capsys):
    """`--data cifar10` without `--preset` runs [PID-KD]'s WRN-40-2 -> WRN-16-1 setting (and
    `--data cifar100` [FID]'s); an explicit `--preset` still wins, and other data keep `quick`."""
    import infodistill.experiments.fidelity as e2
    import infodistill.experiments.rid as e1

    seen = []

    def fake(preset, out, progress=True):
        seen.append((preset.name, preset.data, preset.data_root, str(out)))
        return tmp_path / "report.md"

    monkeypatch.setattr(e1, "run_rid", fake)
    monkeypatch.setattr(e2, "run_fidelity", fake)
    d = str(tmp_path / "cifar")
    assert main(["reproduce", "rid", "--data", "cifar10", "--data-dir", d, "--quiet"]) == 0
    assert main(["reproduce", "fidelity", "--data", "cifar100", "--data-dir", d, "--quiet"]) == 0
    assert main(["reproduce", "rid", "--preset", "quick", "--data", "cifar10", "--data-dir", d]) == 0
    assert main(["reproduce", "rid", "--data", "digits", "--quiet"]) == 0
    assert seen == [
        ("cifar10", "cifar10", d, "runs/reproduce-rid-cifar10"),
        ("cifar100", "cifar100", d, "runs/reproduce-fidelity-cifar100"),
        ("quick", "cifar10", d, "runs/reproduce-rid-quick"),
        ("quick", "digits", None, "runs/reproduce-rid-quick"),
    ]
    rid_cifar = e1.PRESETS["cifar10"]
    assert (rid_cifar.teacher_model["name"], rid_cifar.student_model["name"]) == ("wrn-40-2", "wrn-16-1")


def test_paired_differences_match_seed_by_seed_and_skip_unfinished_runs(tmp_path):
    from infodistill.experiments.rid_report import collect, paired_differences

    preset = RIDPreset(
        **{**TINY, "teachers": ("trained",), "methods": ("baseline", "rid"), "seeds": (0, 1, 2, 3)}
    )
    acc = {("baseline", 0): 0.80, ("baseline", 1): 0.70, ("baseline", 2): 0.75, ("rid", 0): 0.82}
    acc |= {("rid", 1): 0.71, ("rid", 2): 0.90, ("baseline", 3): 0.60}  # rid seed 3 never ran

    for (method, seed), a in acc.items():
        run = tmp_path / f"trained-{method}-s{seed}"
        run.mkdir()
        epochs = 1 if (method, seed) == ("rid", 2) else 2  # rid seed 2 was interrupted after epoch 1
        lines = [{"epoch": e + 1, "test": {"accuracy": a if e + 1 == epochs else 0.1}} for e in range(epochs)]
        (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    d = paired_differences(collect(preset, tmp_path), preset.student_epochs)
    assert list(d) == [("trained", "rid")]
    # Only seeds 0 and 1 have both runs finished: differences +2 and +1 points.
    assert d[("trained", "rid")] == [pytest.approx(0.02), pytest.approx(0.01)]
