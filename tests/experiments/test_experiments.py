"""E1 reproduction machinery on a tiny data set: every run, the report, the claims, resumption."""

import json
from pathlib import Path

import pytest
import torch

from infodistill.cli import main
from infodistill.experiments.rid import RIDPreset, paper_method_params, run_rid
from infodistill.experiments.rid.report import check_claims

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
    pid_boot=2,
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
    assert len(summary["premises"]) == 2 and "- Premise 'uninformative untrained teacher': the" in text
    for c in summary["claims"]:  # a claim whose premise failed is reported as such, not as failed
        if c["premise_met"] is False:
            assert f"- {c['claim']}: **premise not met**" in text
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


def test_premises_are_checked_before_the_claims():
    """I(Y;T) of the untrained teacher against 10 % of the trained one's, and a trained teacher
    worth distilling (more accurate than the baseline student, KD beating the baseline), both on
    differences paired by seed (hand-computed)."""
    from infodistill.experiments.rid.report import CLAIM_PREMISES, check_premises

    seeds = (0, 1, 2)
    rows = {
        ("untrained", "baseline"): _row(seeds, [0.50, 0.52, 0.48], mi_t=[0.05, 0.06, 0.04]),
        ("trained", "baseline"): _row(seeds, [0.50, 0.52, 0.48], mi_t=[1.0, 1.1, 0.9]),
        # KD - baseline: +0.10, +0.11, +0.09 (se 0.0058)
        ("trained", "kd"): _row(seeds, [0.60, 0.63, 0.57]),
    }
    p = check_premises(rows, teacher_accuracy=0.90)
    # 0.1 I(Y;T) trained - I(Y;T) untrained = 0.05 each seed: mean 0.05, se 0: held
    assert p["uninformative"][1] is True and p["useful"][1] is True
    assert "teacher 90.00 % vs baseline 50.00 %" in p["useful"][2]
    # the paper's premise fails where the untrained teacher keeps a quarter of the information
    rows[("untrained", "baseline")]["mi_t"] = [0.25, 0.30, 0.20]
    # a teacher less accurate than the baseline student is not worth distilling, whatever KD did
    p = check_premises(rows, teacher_accuracy=0.45)
    assert p["uninformative"][1] is False and p["useful"][1] is False
    # KD at the baseline's level: no gain, premise not met
    rows[("trained", "kd")]["last"] = [0.51, 0.51, 0.49]
    assert check_premises(rows, teacher_accuracy=0.90)["useful"][1] is False
    # every claim of check_claims that depends on a premise names it by its exact text
    pid = dict(redundancy=[0.1] * 3, unique_t=[0.2] * 3, mi_t=[0.3] * 3)
    kinds = [(t, m) for t in ("trained", "untrained") for m in ("baseline", "vid", "rid")]
    texts = {c for c, _, _ in check_claims({k: _row(seeds, [0.5, 0.6, 0.7], **pid) for k in kinds})}
    assert set(CLAIM_PREMISES) <= texts


def test_the_claim_runs_give_the_same_premises_and_claims_as_every_run():
    """``runs="claims"`` leaves out only runs no premise or claim reads: on made-up rows for every
    teacher x method (random numbers, so any row a claim read would change its numbers), the premises
    and claims from the claim grid's rows are those from all rows, text and numbers; and leaving
    out any one row of the claim grid changes them (the grid is no larger than it must be)."""
    import random

    from infodistill.experiments.rid import CLAIM_RUNS, METHODS, TEACHER_KINDS
    from infodistill.experiments.rid.report import check_premises

    rng = random.Random(0)
    seeds = (0, 1, 2)

    def numbers():
        return [rng.uniform(0.0, 2.0) for _ in seeds]

    full = {
        (kind, m): _row(
            seeds, numbers(), redundancy=numbers(), unique_t=numbers(), mi_t=numbers(), mi_s=numbers()
        )
        for kind in TEACHER_KINDS
        for m in METHODS
    }
    every = RIDPreset(**{**TINY, "teachers": TEACHER_KINDS, "methods": METHODS})
    claims_only = RIDPreset(**{**TINY, "teachers": TEACHER_KINDS, "methods": METHODS, "runs": "claims"})
    assert every.grid() == list(full)
    grid = claims_only.grid()
    assert grid == [(k, m) for k in ("trained", "untrained") for m in CLAIM_RUNS[k]]

    def verdicts(rows):
        return check_premises(rows, teacher_accuracy=0.9), check_claims(rows)

    assert verdicts({k: full[k] for k in grid}) == verdicts(full)
    for left_out in grid:
        assert verdicts({k: full[k] for k in grid if k != left_out}) != verdicts(full), left_out
    with pytest.raises(ValueError, match="runs must be one of all, claims, got 'some'"):
        RIDPreset(**{**TINY, "runs": "some"})


def test_a_claims_preset_runs_only_the_claim_grid_and_checks_every_claim(tmp_path):
    torch.set_num_threads(1)
    # As `quick` runs: the claim runs, the PID of the last pair, the data set's loader options.
    preset = RIDPreset(
        **{
            **TINY,
            "student_epochs": 1,
            "pid_boot": 0,
            "variant": None,
            "runs": "claims",
            "pid_layers": "last",
        },
        data_kwargs={"test_size": 0.25},
    )
    report = run_rid(preset, tmp_path, progress=False)
    ran = sorted(p.name for p in tmp_path.glob("*-s*") if p.is_dir())
    from infodistill.experiments.rid import CLAIM_RUNS

    assert ran == sorted(f"{k}-{m}-s{s}" for k in CLAIM_RUNS for m in CLAIM_RUNS[k] for s in (0, 1))
    text = report.read_text()
    assert "runs: only those the premises and claims read (`runs: claims`" in text
    assert "Data `digits` with the loader's options `test_size: 0.25`;" in text
    assert "PID (bits) of the last pair (`pid_layers: last`)" in text
    # one measured pair: its terms are in the accuracy table, with no per-pair section or plots
    assert "every layer pair" not in text and "| trained | vid | stage3|stage3 |" not in text
    assert not (tmp_path / "pid-layer1.png").exists() and (tmp_path / "pid.png").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["claims"]) == 7 and len(summary["premises"]) == 2
    assert all(set(r["pid"]) == {"stage3|stage3"} for r in summary["rows"].values())


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
    from infodistill.experiments.rid.report import check_variant

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
    `--data cifar100` [FID]'s); an explicit `--preset` still wins, and other data keep `quick`,
    without its Fashion-MNIST patterns (an option of that data set's loader)."""
    import infodistill.experiments.fidelity as e2
    import infodistill.experiments.rid as e1

    seen, kwargs = [], []

    def fake(preset, out, progress=True):
        seen.append((preset.name, preset.data, preset.data_root, str(out)))
        kwargs.append(getattr(preset, "data_kwargs", None))
        return tmp_path / "report.md"

    monkeypatch.setattr(e1, "run_rid", fake)
    monkeypatch.setattr(e2, "run_fidelity", fake)
    d = str(tmp_path / "cifar")
    assert main(["reproduce", "rid", "--data", "cifar10", "--data-dir", d, "--quiet"]) == 0
    assert main(["reproduce", "fidelity", "--data", "cifar100", "--data-dir", d, "--quiet"]) == 0
    assert main(["reproduce", "rid", "--preset", "quick", "--data", "cifar10", "--data-dir", d]) == 0
    assert main(["reproduce", "rid", "--data", "digits", "--quiet"]) == 0
    assert main(["reproduce", "rid", "--data", "fashion-mnist", "--quiet"]) == 0
    assert seen == [
        ("cifar10", "cifar10", d, "runs/reproduce-rid-cifar10"),
        ("cifar100", "cifar100", d, "runs/reproduce-fidelity-cifar100"),
        ("quick", "cifar10", d, "runs/reproduce-rid-quick"),
        ("quick", "digits", None, "runs/reproduce-rid-quick"),
        ("quick", "fashion-mnist", None, "runs/reproduce-rid-quick"),
    ]
    assert kwargs == [{}, None, {}, {}, {"nuisance": 1.5}]
    rid_cifar = e1.PRESETS["cifar10"]
    assert (rid_cifar.teacher_model["name"], rid_cifar.student_model["name"]) == ("wrn-40-2", "wrn-16-1")


def test_paired_differences_match_seed_by_seed_and_skip_unfinished_runs(tmp_path):
    from infodistill.experiments.rid.report import collect, paired_differences

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


def test_every_e1_preset_distils_three_stage_pairs_with_the_papers_settings(tmp_path):
    from infodistill.experiments.rid import PRESETS, distill_config, fit_to_data

    stages = {
        "cnn-small": "stage",
        "cnn1d": "stage",
        "wrn-16-2": "block",
        "wrn-40-2": "block",
        "wrn-16-1": "block",
    }
    for name, preset in PRESETS.items():
        s, t = stages[preset.student_model["name"]], stages[preset.teacher_model["name"]]
        three = [[f"{s}{i}", f"{t}{i}"] for i in (1, 2, 3)]
        for method in ("vid", "rid", "ted"):
            if method not in preset.methods:
                continue
            cfg = distill_config(preset, tmp_path / "t", "trained", method, 0, tmp_path / name / method)
            assert cfg.method.pairs == three, (name, method)
            assert cfg.pid.pairs == (three if preset.pid_layers == "all" else three[-1:])
            assert cfg.pid.k == 5 and cfg.pid.pca == 5
            assert cfg.optim.grad_clip == 100.0 and cfg.optim.nesterov
        for method in ("baseline", "kd"):  # unclipped, as the reference code's baseline
            if method in preset.methods:
                cfg = distill_config(preset, tmp_path / "t", "trained", method, 0, tmp_path / name / method)
                assert cfg.optim.grad_clip is None
        # the reference's [-1, 1] inputs for images; MNIST-1D's standardised signals as loaded
        assert preset.scale_inputs == "symmetric"
        one_d = fit_to_data(preset, (1, 40))
        assert one_d.scale_inputs == "none" and fit_to_data(preset, (1, 8, 8)).scale_inputs == "symmetric"
        if "vid" in preset.methods:
            vid = distill_config(preset, tmp_path / "t", "trained", "vid", 0, tmp_path / "v").method.params
            assert vid == {"lam": 100.0, "regressor": "kd-rid", "alpha_init": 5.0, "eps": 1e-3}
            rid = distill_config(preset, tmp_path / "t", "trained", "rid", 0, tmp_path / "r").method.params
            assert (rid["lam"], rid["rounds"], rid["phase1_fraction"]) == (10.0, 10, 0.25)
            slim = distill_config(preset, tmp_path / "t", "trained", "vid-repdistiller", 0, tmp_path / "s")
            assert slim.method.name == "vid" and slim.method.pairs == three[-1:]
            assert slim.method.params == {
                "lam": 1.0,
                "regressor": "conv-relu-conv",
                "alpha_init": None,
                "eps": 1e-5,
            }


def test_a_diverging_run_is_reported_as_stopped_and_the_others_go_on(tmp_path):
    torch.set_num_threads(1)
    # lam = 1e30 without clipping: the first step's gradient throws the weights to inf/NaN
    params = {**paper_method_params(), "vid": {"lam": 1e30}}
    preset = RIDPreset(
        **{**TINY, "teachers": ("trained",), "methods": ("baseline", "vid"), "seeds": (0,)},
    )
    preset.method_params, preset.grad_clip, preset.pid_boot = params, None, 0
    report = run_rid(preset, tmp_path, progress=False).read_text()
    stopped = json.loads((tmp_path / "trained-vid-s0" / "stopped.json").read_text())
    assert stopped["epoch"] == 1 and "non-finite" in stopped["error"]
    row = next(line for line in report.splitlines() if line.startswith("| trained | vid |"))
    assert "seed 0: stopped at epoch 1, non-finite" in row and "| — |" in row  # no accuracy averaged in
    assert next(line for line in report.splitlines() if line.startswith("| trained | baseline |")).endswith(
        "| — |"
    )
    # a rerun does not train the stopped run again
    mtime = (tmp_path / "trained-vid-s0" / "stopped.json").stat().st_mtime_ns
    run_rid(preset, tmp_path, progress=False)
    assert (tmp_path / "trained-vid-s0" / "stopped.json").stat().st_mtime_ns == mtime


def test_set_reaches_every_preset_field_and_rejects_bad_keys(tmp_path, monkeypatch, capsys):
    import infodistill.experiments.rid as e1

    seen = []
    monkeypatch.setattr(
        e1, "run_rid", lambda preset, out, progress=True: seen.append(preset) or tmp_path / "r.md"
    )
    sets = [
        "methods.vid.lam=1",
        "method_params.rid.rounds=4",
        "seeds=[0, 1, 2]",
        "student_model.kwargs.width=16",
        "pid_k=10",
        "grad_clip=null",
        "pairs=[[stage3, stage3]]",
        "methods=[baseline, vid]",
    ]
    assert main(["reproduce", "rid", "--quiet", *[a for s in sets for a in ("--set", s)]]) == 0
    (p,) = seen
    quick = e1.PRESETS["quick"]
    assert p.method_params["vid"] == {**quick.method_params["vid"], "lam": 1}
    assert p.method_params["rid"]["rounds"] == 4 and quick.method_params["rid"]["rounds"] == 10
    assert p.seeds == (0, 1, 2) and p.student_model == {"name": "cnn-small", "kwargs": {"width": 16}}
    assert (p.pid_k, p.grad_clip, p.pairs, p.methods) == (
        10,
        None,
        (("stage3", "stage3"),),
        ("baseline", "vid"),
    )
    assert quick.student_model["kwargs"]["width"] == 8  # the preset itself is untouched
    for bad, words in (
        ("nope=1", ["unknown setting 'nope'", "valid settings:", "pid_k"]),
        ("pid_k=ten", ["pid_k: expected int"]),
        ("seeds=3", ["seeds: expected a list"]),
        ("methods.vid.lamb=1", ["vid has no parameter 'lamb'", "lam"]),
        ("methods.dino.lam=1", ["unknown method 'dino'"]),
        ("pid_k", ["must look like key=value"]),
        ("runs=some", ["--set runs must be one of all, claims, got 'some'"]),
    ):
        assert main(["reproduce", "rid", "--set", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("infodistill: error: ") and err.count("\n") == 1, err
        assert all(w in err for w in words), err
    assert main(["reproduce", "fidelity", "--set", "nope=1"]) == 2  # E2's presets take --set too
    assert "unknown setting 'nope'" in capsys.readouterr().err


def test_pid_curves_and_cells_from_hand_made_logs():
    from infodistill.experiments.rid.report import _pid_cell, pid_curve, summarise

    def rec(epoch, red, lo, hi):
        terms = {"redundancy": red, "unique_t": 0.0, "mi_t": 1.0, "mi_s": 1.0, "ci": {"redundancy": [lo, hi]}}
        return {"epoch": epoch, "test": {"accuracy": 0.5}, "pid": {"a|b": terms}}

    logs = {0: [rec(1, 0.2, 0.1, 0.3), {"epoch": 2, "test": {"accuracy": 0.6}}, rec(3, 0.4, 0.3, 0.6)]}
    logs[1] = [rec(1, 0.4, 0.2, 0.5), {"epoch": 2, "test": {"accuracy": 0.7}}, rec(3, 0.6, 0.5, 0.8)]
    curve = pid_curve(logs.values(), "a|b", "redundancy")
    # epochs 1 and 3 measured; means of the values and of the bounds over the two seeds
    assert [c[0] for c in curve] == [1, 3]
    assert curve[0][1:] == pytest.approx((0.3, 0.15, 0.4)) and curve[1][1:] == pytest.approx((0.5, 0.4, 0.7))
    row = summarise({("trained", "rid"): logs}, 3, ["a|b"])[("trained", "rid")]
    assert row["seeds"] == [0, 1] and row["last"] == [0.5, 0.5]
    assert _pid_cell(row, "a|b", "redundancy") == "0.500 [0.400, 0.700]"
    assert _pid_cell(row, "a|b", "unique_t") == "0.000"  # no interval logged for it


def test_run_configs_are_typed_configs_of_the_preset():
    """The experiments build DistillConfig objects directly (no override strings): every field the
    preset sets arrives with its type, and the preset's dicts are copies, not shared."""
    from infodistill.experiments.rid.presets import PRESETS, distill_config

    p = PRESETS["standard"]
    cfg = distill_config(p, Path("/t"), "noisy", "vid-repdistiller", 4, Path("/r"))
    assert cfg.method.name == "vid"
    assert cfg.method.params == {"lam": 1.0, "regressor": "conv-relu-conv", "alpha_init": None, "eps": 1e-5}
    assert isinstance(cfg.method.params["eps"], float) and cfg.method.pairs == [["stage3", "stage3"]]
    assert cfg.pid.pairs == [["stage1", "stage1"], ["stage2", "stage2"], ["stage3", "stage3"]]
    assert (cfg.teacher.kind, cfg.teacher.seed, cfg.teacher.checkpoints) == ("noisy", 4, ["/t"])
    assert (cfg.teacher.noise_sigma, cfg.optim.grad_clip, cfg.optim.nesterov) == (2.0, 100.0, True)
    assert (cfg.data.train_subset, cfg.data.test_subset, cfg.run.seed) == (1000, 5000, 4)
    cfg.student.kwargs["width"] = 99
    assert p.student_model["kwargs"]["width"] == 8
    rid = distill_config(p, Path("/t"), "untrained", "rid-nofreeze", 0, Path("/r"))
    assert rid.method.params == {
        "lam": 10.0,
        "rounds": 10,
        "phase1_fraction": 0.25,
        "student_in_phase1": True,
    }
    assert rid.teacher.checkpoints == []


def test_the_teacher_trains_at_least_its_step_budget_on_any_data_set():
    from infodistill.experiments.rid import PRESETS, teacher_budget

    # tuned presets keep their epochs: 20000/64 -> 313 steps an epoch (6: 1878), 4000/64 -> 63 (10: 630)
    assert teacher_budget(PRESETS["quick"], 60000).teacher_epochs == 6
    assert teacher_budget(PRESETS["quick-mnist1d"], 4000).teacher_epochs == 10
    # a data set of 1437 training examples: 23 steps an epoch, ceil(300 / 23) = 14 epochs
    assert teacher_budget(PRESETS["quick"], 1437).teacher_epochs == 14


def test_teacher_convergence_reads_the_last_quarter_of_its_epochs():
    from infodistill.experiments.rid.report import teacher_convergence

    log = [
        {"epoch": e, "test": {"accuracy": a}}
        for e, a in enumerate([0.5, 0.7, 0.8, 0.85, 0.9, 0.9, 0.905, 0.906], 1)
    ]
    assert teacher_convergence(log) == "+0.60 pt from epoch 6 to 8: converged"
    two = [{"epoch": 1, "test": {"accuracy": 0.80}}, {"epoch": 2, "test": {"accuracy": 0.83}}]
    assert teacher_convergence(two) == "+3.00 pt from epoch 1 to 2: still changing"
    assert "unknown" in teacher_convergence(two[1:])


def test_data_kwargs_reach_every_run_and_the_loader(tmp_path):
    from infodistill.experiments.common import apply_settings, load_full_data
    from infodistill.experiments.rid import PRESETS, check_method_param, distill_config, teacher_config

    p = apply_settings(
        PRESETS["quick-mnist1d"], {"data_kwargs": {"corr_noise_scale": 1.0}}, check_method_param
    )
    assert distill_config(p, tmp_path, "trained", "rid", 0, tmp_path / "r").data.kwargs == {
        "corr_noise_scale": 1.0
    }
    assert teacher_config(p, tmp_path / "t").data.kwargs == {"corr_noise_scale": 1.0}
    plain, _ = load_full_data("mnist1d", None)
    noisy, _ = load_full_data("mnist1d", None, p.data_kwargs)
    assert plain.x.shape == noisy.x.shape and not torch.equal(plain.x, noisy.x)


def test_auto_pairs_preset_distils_the_layer_maps_pairs_and_records_them(tmp_path):
    """``--set auto_pairs=true``: the feature methods' runs choose their pairs from the layer map on
    training examples (config.json holds the chosen pairs and how), the logit methods keep none, the
    PID still measures the preset's three stage pairs, and the report says so."""
    torch.set_num_threads(1)
    tiny = {**TINY, "seeds": (0,)}
    preset = RIDPreset(**tiny, methods=("baseline", "vid"), teachers=("trained",), auto_pairs=True)
    report = run_rid(preset, tmp_path, progress=False).read_text()
    vid = json.loads((tmp_path / "trained-vid-s0" / "config.json").read_text())
    assert isinstance(vid["method"]["pairs"], list) and vid["method"]["pairs"]
    assert vid["method"]["auto_pairs"]["examples"] == "the first 300 training examples"
    assert all(p[0] in ("stage1", "stage2", "stage3") for p in vid["method"]["pairs"])
    assert vid["pid"]["pairs"] == [["stage1", "stage1"], ["stage2", "stage2"], ["stage3", "stage3"]]
    base = json.loads((tmp_path / "trained-baseline-s0" / "config.json").read_text())
    assert base["method"]["pairs"] == [] and base["method"]["auto_pairs"] is None
    assert "the feature methods distil the pairs the layer map suggests" in report


def test_pid_stop_preset_switches_the_rule_on_for_runs_that_distil_every_measured_pair(tmp_path):
    """``--set pid_stop=true``: VID (all three stage pairs distilled and measured) runs with the stop
    rule and logs it; the baseline and vid-repdistiller (the last pair only) run without it."""
    from infodistill.experiments.rid import distill_config

    preset = RIDPreset(**{**TINY, "seeds": (0,)}, methods=("baseline", "vid"), teachers=("trained",),
                       pid_stop=True)  # fmt: skip
    for method, on in (("vid", True), ("rid", True), ("baseline", False), ("vid-repdistiller", False)):
        cfg = distill_config(preset, tmp_path / "t", "trained", method, 0, tmp_path / method)
        assert cfg.pid.stop is on and cfg.pid.n_perm == (20 if on else 0), method
    report = run_rid(preset, tmp_path, progress=False).read_text()
    log = [json.loads(line) for line in (tmp_path / "trained-vid-s0" / "log.jsonl").read_text().splitlines()]
    assert all("pid_stop" in r for r in log if "pid" in r) and any("pid" in r for r in log)
    # the report's table: the first epoch each pair was switched off, read off the log by hand
    first = {}
    for r in log:
        for pair in r.get("pid_stop", {}).get("stopped", []):
            first.setdefault(pair, r["epoch"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pair_stops"] == {"trained|vid": {"0": first}}
    assert "## Stop rule: pairs (student ← teacher) switched off (epoch)" in report
    base = (tmp_path / "trained-baseline-s0" / "log.jsonl").read_text()
    assert "pid_stop" not in base
    with pytest.raises(ValueError, match="pid_stop reads"):
        RIDPreset(**{**TINY, "pid_boot": 0}, pid_stop=True)
