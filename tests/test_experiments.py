"""E1 reproduction machinery on a tiny data set: every run, the report, the claims, resumption."""

import json

import pytest
import torch

from infodistill.cli import main
from infodistill.experiments.rid import RIDPreset, paper_method_params, run_rid
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
    pid_boot=5,
    method_params={**paper_method_params(), "rid": {"lam": 10.0, "rounds": 1}},
)


def test_run_rid_writes_a_report_and_resumes(tmp_path):
    torch.set_num_threads(1)
    report = run_rid(RIDPreset(**TINY), tmp_path, progress=False)
    text = report.read_text()
    assert (tmp_path / "accuracy.png").stat().st_size > 0 and (tmp_path / "pid.png").stat().st_size > 0
    for kind in ("trained", "untrained", "noisy"):
        for method in ("baseline", "vid", "vid-repdistiller", "rid", "ted"):
            assert f"| {kind} | {method} |" in text
            for layer in ("stage1", "stage2", "stage3"):
                assert f"| {kind} | {method} | {layer}|{layer} |" in text
    for png in ("pid-layer1.png", "pid-layer2.png"):
        assert (tmp_path / png).stat().st_size > 0
    assert "PCA 5, k-means k = 5" in text and "more than 2 standard errors" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["claims"]) == 7 + 3 and all(c["held"] in (True, False) for c in summary["claims"])
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


def _row(seeds, last, **pid):
    return {"seeds": list(seeds), "last": list(last), **{k: list(v) for k, v in pid.items()}}


def test_claims_need_the_paired_difference_beyond_two_standard_errors():
    seeds = (0, 1, 2)
    flat = dict(redundancy=[0.0] * 3, unique_t=[0.5] * 3, mi_t=[0.01] * 3, mi_s=[1.0] * 3)
    rows = {
        ("untrained", "baseline"): _row(seeds, [0.80, 0.70, 0.75], **flat),
        # VID - baseline: -0.20, -0.19, -0.21: mean -0.20, se 0.0058
        ("untrained", "vid"): _row(seeds, [0.60, 0.51, 0.54], **flat),
        ("untrained", "rid"): _row(seeds, [0.79, 0.69, 0.74], **flat),
        ("trained", "baseline"): _row(
            seeds, [0.80, 0.70, 0.75], redundancy=[1.0] * 3, unique_t=[0.5, 0.6, 0.4], mi_t=[2.0] * 3
        ),
        ("trained", "vid"): _row(seeds, [0.82, 0.72, 0.78], unique_t=[0.4, 0.5, 0.35]),
        ("trained", "rid"): _row(seeds, [0.83, 0.73, 0.77], unique_t=[0.2, 0.3, 0.1]),
    }
    claims = {c: (h, n) for c, h, n in check_claims(rows)}
    assert all(h for h, _ in claims.values()), claims
    assert len(claims) == 7
    assert (
        "paired difference -20.00 pt, standard error 0.58 pt, 3 seeds"
        in claims["VID falls below the baseline with an untrained teacher"][1]
    )
    # The same +2 pt mean, but one seed of three worse: differences +5, +4, -3 pt,
    # se = sd(5, 4, -3) / sqrt(3) = 4.36 / 1.73 = 2.52 pt > 2 / 2: did not hold.
    rows[("trained", "vid")]["last"] = [0.85, 0.74, 0.72]
    held, numbers = dict((c, (h, n)) for c, h, n in check_claims(rows))[
        "VID beats the baseline with a trained teacher"
    ]
    assert not held and "+2.00 pt, standard error 2.52 pt" in numbers
    # RID's Uni above TED's (missing here) is not needed; above the baseline's on one seed is enough to fail
    rows[("trained", "rid")]["unique_t"] = [0.2, 0.7, 0.1]
    held = {c: h for c, h, _ in check_claims(rows)}
    assert not held["RID ends with the lowest Uni(Y:T\\S) (trained teacher)"]
    # One seed: no standard error, so no verdict
    one = {k: _row(r["seeds"][:1], r["last"][:1]) for k, r in rows.items()}
    assert {h for _, h, _ in check_claims(one)} == {None}


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


def test_variant_claims_use_the_paired_standard_error():
    from infodistill.experiments.rid_report import check_variant

    seeds = (0, 1, 2)
    # variant - baseline = -0.5, -1.5, +0.5 pt: mean -0.5, se = 1.0 / sqrt(3) = 0.577 pt: not below
    rows = {
        ("untrained", "baseline"): _row(seeds, [0.79, 0.80, 0.81]),
        ("untrained", "v"): _row(seeds, [0.785, 0.785, 0.815]),
        ("trained", "rid"): _row(seeds, [0.81, 0.82, 0.83]),
        ("trained", "v"): _row(seeds, [0.82, 0.83, 0.84]),
    }
    claims = check_variant(rows, "v")
    assert [h for _, h, _ in claims] == [True, True]
    assert "paired difference -0.50 pt, standard error 0.58 pt, 3 seeds" in claims[0][2]
    # -1.5, -1.4, -1.6 pt: mean -1.5, se 0.058 pt: below by far more than 2 se
    rows[("untrained", "v")] = _row(seeds, [0.775, 0.786, 0.794])
    rows[("trained", "v")] = _row(seeds, [0.80, 0.81, 0.82])
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
