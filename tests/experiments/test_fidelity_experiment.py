"""E2 reproduction machinery on a tiny data set: the grid, the teachers' accuracies, the report,
the claims (computed from numbers, both outcomes) and resumption."""

import json

import numpy as np
import pytest
import torch

from infodistill.cli import main
from infodistill.experiments.fidelity import FidelityPreset, distill_config, member_dir, run_fidelity
from infodistill.experiments.fidelity.report import check_claims

TINY = dict(
    name="tiny",
    data="digits",
    model={"name": "cnn-small", "kwargs": {"width": 4, "pool_size": 2}},
    train_subset=300,
    teacher_epochs=1,
    student_epochs=1,
    test_subset=None,
    ensembles=(1, 3),
    taus=(1.0, 4.0),
    data_settings=("mixup",),
    lambdas=(0.5, 1.0),
    seeds=(0,),
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("e2")
    report = run_fidelity(FidelityPreset(**TINY), out, progress=False)
    return out, report


def test_report_has_every_setting_and_plot(tiny_run):
    out, report = tiny_run
    text = report.read_text()
    names = [s.name for s in FidelityPreset(**TINY).settings()]
    assert names == [
        "independent",
        "ens1-tau1",
        "ens1-tau4",
        "ens3-tau1",
        "ens3-tau4",
        "ens1-tau4-mixup",
        "lambda0.5",
        "lambda1",
    ]
    for name in names:
        assert f"| {name} |" in text
    for png in ("agreement_vs_accuracy.png", "agreement_vs_lambda.png"):
        assert (out / png).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    # one seed: the paired comparisons are undecided, the λ curve's shape is not
    held = {c["claim"].split(":")[0]: c["held"] for c in summary["claims"]}
    assert held.pop("Initialising at λ·teacher + (1−λ)·random") in (True, False)
    assert set(held.values()) == {None} and "undecided" in text
    # The table's numbers are those of the runs' last log lines.
    log = [json.loads(line) for line in (out / "ens3-tau1-s0" / "log.jsonl").read_text().splitlines()]
    assert summary["rows"]["ens3-tau1"]["test.agreement"] == [log[-1]["test"]["agreement"]]


def test_members_share_the_data_and_ensemble_accuracy_is_independently_right(tiny_run):
    out, _ = tiny_run
    from infodistill.training.runs import model_from_run, prepare_data

    preset = FidelityPreset(**TINY)
    configs = [json.loads((member_dir(out, i) / "config.json").read_text()) for i in range(3)]
    assert len({c["run"]["seed"] for c in configs}) == 3  # distinct initialisations
    assert {c["data"]["subset_seed"] for c in configs} == {0}  # one training set
    cfg = distill_config(preset, preset.settings()[0], 0, out / "x")
    train, test = prepare_data(cfg.data, 0)
    probs = []
    with torch.no_grad():
        for i in range(3):
            model = model_from_run(member_dir(out, i), cfg.student, train).eval()
            z = model(test.x).double().numpy()
            e = np.exp(z - z.max(1, keepdims=True))
            probs.append(e / e.sum(1, keepdims=True))
    y = test.y.numpy()
    got = json.loads((out / "teachers.json").read_text())
    for i in range(3):
        assert got[f"member{i}"] == pytest.approx(np.mean(probs[i].argmax(1) == y), abs=1e-6)
    assert got["ensemble3"] == pytest.approx(np.mean(np.mean(probs, 0).argmax(1) == y), abs=1e-6)


def test_grid_configs(tmp_path):
    preset = FidelityPreset(**TINY)
    by_name = {s.name: distill_config(preset, s, 7, tmp_path / s.name) for s in preset.settings()}
    assert by_name["independent"].method.name == "baseline"
    ens = by_name["ens3-tau4"]
    assert ens.teacher.kind == "ensemble" and len(ens.teacher.checkpoints) == 3
    assert ens.method.params == {"tau": 4.0, "alpha": 0.0}
    assert by_name["ens1-tau4-mixup"].data.mixup_alpha == 1.0
    assert by_name["lambda0.5"].init_lambda == 0.5 and by_name["lambda0.5"].method.params["tau"] == 1.0
    assert all(c.run.seed == 7 and c.data.subset_seed == 0 for c in by_name.values())


def test_rerun_retrains_nothing(tiny_run):
    out, _ = tiny_run
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/log.jsonl")}
    run_fidelity(FidelityPreset(**TINY), out, progress=False)
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("*/log.jsonl")}


#: per-seed offsets shared by every setting: paired differences are then exact, one-sample margins
#: spread by 0.25 pt
SEED_SHIFT = (-0.0015, 0.0, 0.001)


def _rows(values: dict, shift=SEED_SHIFT) -> dict:
    """Rows as ``summarise`` builds them from (test acc, test agreement, train agreement) per setting,
    for seeds 0, 1, 2 (each value moved by that seed's shift)."""
    return {
        name: {
            "seeds": list(range(len(shift))),
            "test.accuracy": [acc + d for d in shift],
            "test.agreement": [agree + d for d in shift],
            "distill_data.agreement": [train + d for d in shift],
        }
        for name, (acc, agree, train) in values.items()
    }


def test_claims_are_computed_from_the_numbers():
    preset = FidelityPreset(**TINY)
    rows = _rows(
        {
            "independent": (0.80, 0.85, 0.90),
            "ens1-tau1": (0.82, 0.92, 0.95),
            "ens1-tau4": (0.83, 0.90, 0.93),
            "ens3-tau1": (0.85, 0.88, 0.90),
            "ens3-tau4": (0.86, 0.87, 0.90),
            "ens1-tau4-mixup": (0.83, 0.91, 0.92),
            "lambda0.5": (0.84, 0.97, 0.995),
            "lambda1": (0.84, 0.99, 1.0),
        }
    )
    held = {c: h for c, h, _ in check_claims(preset, rows)}
    assert all(held.values()), held
    # one seed: no standard error, so no comparison is decided (the λ curve's shape still is)
    one = {n: {k: v[:1] for k, v in r.items()} for n, r in rows.items()}
    undecided = [c for c, h, _ in check_claims(preset, one) if h is None]
    assert len(undecided) == len(held) - 1 and not any(c.startswith("Initialising at") for c in undecided)

    rows = _rows(
        {
            "independent": (0.80, 0.95, 0.99),
            "ens1-tau1": (0.82, 0.995, 0.999),
            "ens1-tau4": (0.83, 0.90, 0.93),
            "ens3-tau1": (0.80, 0.99, 0.90),
            "ens3-tau4": (0.80, 0.99, 0.90),
            "ens1-tau4-mixup": (0.83, 0.89, 0.92),
            "lambda0.5": (0.84, 0.97, 0.95),
            "lambda1": (0.84, 0.99, 1.0),
        }
    )
    verdicts = check_claims(preset, rows)
    for start in (
        "Self-distillation: test",
        "Self-distillation: train",
        "Mixup distillation data raises test agreement",
        "Initialising at λ·teacher",
        "A 3-teacher ensemble gives a more accurate student",
        "Distillation raises agreement above",
    ):
        assert [h for c, h, _ in verdicts if c.startswith(start)] == [False], start


def test_lambda_claim_needs_a_jump_not_a_slope():
    preset = FidelityPreset(**{**TINY, "lambdas": (0.25, 0.5, 0.75), "lambda_tau": 1.0})
    claim = "Initialising at λ·teacher"

    def verdict(train_agreements):
        values = dict(
            zip(("ens1-tau1", "lambda0.25", "lambda0.5", "lambda0.75"), train_agreements, strict=True)
        )
        rows = _rows({n: (0.8, 0.9, v) for n, v in values.items()})
        return [(h, n) for c, h, n in check_claims(preset, rows) if c.startswith(claim)][0]

    held, numbers = verdict((0.95, 0.955, 0.995, 0.999))  # most of the rise in the step into λ = 0.5
    assert held and "λ* = 0.5, a jump" in numbers
    held, numbers = verdict((0.95, 0.97, 0.98, 0.992))  # a slope: 3 of the 4.2 points before λ* = 0.75
    assert not held and "not a jump" in numbers
    held, numbers = verdict((0.95, 0.97, 0.98, 0.985))
    assert not held and "no threshold" in numbers


def test_fidelity_inversion_claim_needs_both_paired_differences_beyond_two_se():
    preset = FidelityPreset(
        **{**TINY, "lambdas": (), "data_settings": (), "ensembles": (1,), "taus": (1.0, 4.0)}
    )
    claim = "More fidelity does not always mean more accuracy"
    rows = _rows({"ens1-tau1": (0.790, 0.95, 0.97), "ens1-tau4": (0.803, 0.90, 0.93)})
    verdict = {c.split(" (")[0]: h for c, h, _ in check_claims(preset, rows)}
    assert verdict[claim] is True
    # ens1-tau1 agrees more and is less accurate on average (0.3 pt), but seed by seed the accuracy
    # differences are -1.2, +0.8, -0.5 pt: mean -0.3, standard error 0.59 pt, inside 2 SE.
    rows["ens1-tau1"]["test.accuracy"] = [
        a + d for a, d in zip(rows["ens1-tau4"]["test.accuracy"], (-0.012, 0.008, -0.005), strict=True)
    ]
    verdict = {c.split(" (")[0]: h for c, h, _ in check_claims(preset, rows)}
    assert verdict[claim] is False


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--epochs", "0"], "--epochs must be >= 1"),
    ],
)
def test_reproduce_fidelity_cli_errors(args, message, capsys, tmp_path):
    assert main(["reproduce", "fidelity", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_inversion_needs_half_a_point_even_when_the_seeds_agree_exactly():
    """Three seeds 0.2 pt apart each (standard error 0) are a quantisation step of a 1 000-example
    test set, not a less accurate student."""
    preset = FidelityPreset(
        **{**TINY, "lambdas": (), "data_settings": (), "ensembles": (1,), "taus": (1.0, 4.0)}
    )
    claim = "More fidelity does not always mean more accuracy"
    rows = _rows({"ens1-tau1": (0.801, 0.95, 0.97), "ens1-tau4": (0.803, 0.90, 0.93)})
    verdict = {c.split(" (")[0]: (h, n) for c, h, n in check_claims(preset, rows)}
    assert verdict[claim] == (False, "none found")
    # one member: the ensemble claim is not run, and says why
    ens = [(h, n) for c, h, n in check_claims(preset, rows) if c.startswith("An ensemble")]
    assert ens == [(None, "not run (the preset trains one member)")]
