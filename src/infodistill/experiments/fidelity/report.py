"""The E2 [FID] report: fidelity and accuracy per setting (mean ± std over seeds), plots, and the
paper's qualitative claims evaluated on the numbers of the run."""

from __future__ import annotations

import json
from math import sqrt
from pathlib import Path
from statistics import mean, stdev

from ...training.rundir import RunDir
from ..common import diff_text, load_full_data, mean_std, paired, save_figure, verdict, write_report
from .presets import data_counts, run_name

#: agreement at or above this counts as "≈ 100 %" (FID's "jumps to ~100 % train agreement")
NEAR_FULL = 0.99
#: the fidelity/accuracy inversion also needs both mean differences above half a point: on 1 000
#: test examples accuracies move in steps of 0.1 pt, so three seeds can agree exactly on a 0.2 pt
#: difference (standard error 0) that no one would call "less accurate"
MARGIN = 0.005
COLUMNS = (
    ("test", "accuracy", "test acc"),
    ("test", "agreement", "test agreement"),
    ("test", "kl_teacher_student", "test KL(t‖s)"),
    ("distill_data", "agreement", "train agreement"),
    ("distill_data", "kl_teacher_student", "train KL(t‖s)"),
    ("test", "ece", "test ECE"),
)


def collect(preset, out: Path) -> dict:
    """{setting name: {seed: log}} for the runs that exist."""
    runs = {}
    for s in preset.settings():
        logs = {seed: RunDir(out / run_name(s.name, seed)).read_log() for seed in preset.seeds}
        runs[s.name] = {seed: log for seed, log in logs.items() if log}
    return runs


def summarise(runs: dict) -> dict:
    """Per setting: the seeds, per-seed values of the last epoch's metrics, and the best epoch's
    accuracy (lists in the order of ``seeds``)."""
    rows = {}
    for name, logs in runs.items():
        if not logs:
            continue
        seeds = sorted(logs)
        row = {
            "seeds": seeds,
            "best": [max(r["test"]["accuracy"] for r in logs[s] if "test" in r) for s in seeds],
        }
        for split, key, _ in COLUMNS:
            row[f"{split}.{key}"] = [logs[s][-1].get(split, {}).get(key) for s in seeds]
        rows[name] = row
    return rows


def _by_seed(rows: dict, name: str, key: str) -> dict:
    """{seed: value} of one metric of one setting (seeds without the value left out)."""
    r = rows.get(name, {})
    return {s: v for s, v in zip(r.get("seeds", []), r.get(key, []), strict=False) if v is not None}


def _m(rows: dict, name: str, key: str) -> float | None:
    vals = [v for v in rows.get(name, {}).get(key, []) if v is not None]
    return mean(vals) if vals else None


def _sd(rows: dict, name: str, key: str) -> float:
    """Sample standard deviation over seeds (0 with one seed: no error bar)."""
    vals = [v for v in rows.get(name, {}).get(key, []) if v is not None]
    return stdev(vals) if len(vals) > 1 else 0.0


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def lambda_curve(preset, rows: dict) -> list[tuple[float, str]]:
    """(λ, setting name) in increasing λ; λ = 0 is the one-teacher run at the sweep's τ."""
    curve = [(0.0, f"ens1-tau{preset.lambda_tau:g}")] if preset.lambda_tau in preset.taus else []
    curve += [(lam, f"lambda{lam:g}") for lam in preset.lambdas]
    return [(lam, name) for lam, name in sorted(curve) if name in rows]


def check_claims(preset, rows: dict) -> list[tuple[str, bool | None, str]]:
    """The [FID] claims, each (claim, held?, the numbers behind the verdict); held? is None when the
    settings were not run or fewer than 2 seeds finished (no standard error).

    Comparisons are paired by seed (same seed: same student initialisation and data order) and held
    only when the mean difference lies beyond 2 standard errors in the claimed direction
    (:func:`~.common.verdict`), as in E1. The λ claim is about the shape of the mean curve.
    """
    out = []

    def add(claim, held, numbers):
        out.append((claim, held, numbers))

    def agree(name, split="test"):
        return _by_seed(rows, name, f"{split}.agreement")

    def acc(name):
        return _by_seed(rows, name, "test.accuracy")

    def all_held(verdicts):
        return None if not verdicts or None in verdicts else all(verdicts)

    ens1 = [f"ens1-tau{t:g}" for t in preset.taus if f"ens1-tau{t:g}" in rows]
    for split, label in (("test", "test"), ("distill_data", "train (distillation-data)")):
        # one-sample: the margin below NEAR_FULL of each seed's agreement
        gaps = {n: [NEAR_FULL - v for v in agree(n, split).values()] for n in ens1}
        add(
            f"Self-distillation: {label} agreement stays below {100 * NEAR_FULL:.0f} %",
            all_held([verdict(d, +1) for d in gaps.values()]),
            "; ".join(
                f"{n}: {_pct(_m(rows, n, f'{split}.agreement'))} ({100 * NEAR_FULL:.0f} % − agreement: "
                f"{diff_text(d)})"
                for n, d in gaps.items()
            )
            or "not run",
        )

    base, mix = f"ens1-tau{preset.data_tau:g}", f"ens1-tau{preset.data_tau:g}-mixup"
    d = paired(agree(mix), agree(base))
    add(
        "Mixup distillation data raises test agreement",
        verdict(d, +1) if base in rows and mix in rows else None,
        f"mixup {_pct(_m(rows, mix, 'test.agreement'))} vs no augmentation "
        f"{_pct(_m(rows, base, 'test.agreement'))}; mixup − none: {diff_text(d)}",
    )

    curve = [(lam, _m(rows, n, "distill_data.agreement")) for lam, n in lambda_curve(preset, rows)]
    inner = [(lam, v) for lam, v in curve if lam < 1.0 and v is not None]
    if len(inner) >= 2 and inner[0][0] == 0.0:
        # λ* = the smallest λ from which every λ < 1 reaches ≈ 100 % train agreement; a *jump* means
        # most of the rise from λ = 0 happens in the last step into λ*, not gradually before it
        i = next((i for i in range(1, len(inner)) if all(v >= NEAR_FULL for _, v in inner[i:])), None)
        jump = i is not None and inner[i - 1][1] - inner[0][1] < 0.5 * (inner[i][1] - inner[0][1])
        if i is None:
            text = "no threshold below λ = 1"
        else:
            text = f"λ* = {inner[i][0]:g}, " + ("a jump" if jump else "reached gradually, not a jump")
        add(
            f"Initialising at λ·teacher + (1−λ)·random: train agreement jumps to ≥ {100 * NEAR_FULL:.0f} % "
            "above a threshold λ (over half of the rise from λ = 0 in the last step; mean over seeds)",
            jump,
            f"{text}; " + ", ".join(f"λ={lam:g}: {_pct(v)}" for lam, v in inner),
        )
    else:
        add("Initialising near the teacher: train agreement jumps above a threshold λ", None, "not run")

    kd = [n for n in rows if n != "independent"]
    best = None  # the pair whose weaker of the two paired differences is furthest beyond its SE
    for x in kd:
        for y in kd:
            if x == y:
                continue
            da, dc = paired(agree(x), agree(y)), paired(acc(y), acc(x))
            material = bool(da) and mean(da) > MARGIN and mean(dc) > MARGIN
            if material and verdict(da, +1) and verdict(dc, +1):
                t = min(_t_stat(da), _t_stat(dc))
                if best is None or t > best[0]:
                    best = (t, x, y, da, dc)
    decidable = len(kd) > 1 and any(len(rows[n]["seeds"]) > 1 for n in kd)
    add(
        "More fidelity does not always mean more accuracy (a setting with higher test agreement "
        f"and lower accuracy than another, both paired differences above {100 * MARGIN:.1f} pt and "
        "beyond 2 standard errors)",
        (best is not None) if decidable else None,
        "none found"
        if best is None
        else f"{best[1]} vs {best[2]}: agreement {diff_text(best[3])}; accuracy ({best[2]} − {best[1]}) "
        f"{diff_text(best[4])}",
    )

    big = max(preset.ensembles)
    pairs = [(f"ens1-tau{t:g}", f"ens{big}-tau{t:g}") for t in preset.taus] if big > 1 else []
    pairs = [(p, q) for p, q in pairs if p in rows and q in rows]
    diffs = {(p, q): paired(acc(q), acc(p)) for p, q in pairs}
    add(
        f"A {big}-teacher ensemble gives a more accurate student than one teacher"
        if big > 1
        else "An ensemble gives a more accurate student than one teacher",
        all_held([verdict(d, +1) for d in diffs.values()]),
        "; ".join(
            f"{q} {_pct(_m(rows, q, 'test.accuracy'))} vs {p} {_pct(_m(rows, p, 'test.accuracy'))} "
            f"({diff_text(d)})"
            for (p, q), d in diffs.items()
        )
        or ("not run (the preset trains one member)" if big == 1 else "not run"),
    )
    diffs = {n: paired(agree(n), agree("independent")) for n in ens1}
    add(
        "Distillation raises agreement above that of an independently trained student",
        all_held([verdict(d, +1) for d in diffs.values()]) if "independent" in rows else None,
        f"independent {_pct(_m(rows, 'independent', 'test.agreement'))}; "
        + "; ".join(f"{n} {_pct(_m(rows, n, 'test.agreement'))} ({diff_text(d)})" for n, d in diffs.items()),
    )
    return out


def _t_stat(d: list[float]) -> float:
    sd = stdev(d)
    return mean(d) / (sd / sqrt(len(d))) if sd > 0 else float("inf")


def _plots(preset, rows: dict, out: Path) -> list[str]:
    # matplotlib is loaded (and set to the Agg backend) only when a report draws: importing the
    # experiments must not change the backend of a user's session.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is set

    files = []
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4))
    for ax, split, label in zip(
        axes, ("test", "distill_data"), ("test", "train (distillation data)"), strict=True
    ):
        for i, name in enumerate(rows):
            x, y = _m(rows, name, f"{split}.agreement"), _m(rows, name, "test.accuracy")
            if x is None or y is None:
                continue
            marker = "s" if name == "independent" else ("^" if name.startswith("lambda") else "o")
            ax.errorbar(
                100 * x,
                100 * y,
                xerr=100 * _sd(rows, name, f"{split}.agreement"),
                yerr=100 * _sd(rows, name, "test.accuracy"),
                fmt=marker,
                color=plt.cm.tab20(i % 20),  # up to 20 settings, each its own colour
                ms=5,
                elinewidth=0.8,
                capsize=2,
                label=name,
            )
        ax.set_xlabel(f"{label} agreement with the teacher (%)")
        ax.set_ylabel("student test accuracy (%)")
        ax.grid(alpha=0.3)
    # one legend for both panels (same settings, same colours): labels beside points overlap
    handles, labels = axes[0].get_legend_handles_labels()
    axes[1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, frameon=False)
    fig.suptitle(f"Fidelity vs generalisation (mean ± sd over {len(preset.seeds)} seeds)", fontsize=10)
    files.append(save_figure(fig, out, "agreement_vs_accuracy.png"))

    curve = lambda_curve(preset, rows)
    if curve:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        lams = [lam for lam, _ in curve]
        for key, label, style in (
            ("distill_data.agreement", "train agreement", dict(marker="o")),
            ("test.agreement", "test agreement", dict(marker="o")),
            ("test.accuracy", "test accuracy", dict(marker="s", ls="--")),
        ):
            ax.errorbar(
                lams,
                [100 * _m(rows, n, key) for _, n in curve],
                yerr=[100 * _sd(rows, n, key) for _, n in curve],
                capsize=2,
                label=label,
                **style,
            )
        ax.set_xlabel("λ (student initialised at λ·teacher + (1−λ)·random)")
        ax.set_title(f"mean ± sd over {len(preset.seeds)} seeds", fontsize=9)
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        files.append(save_figure(fig, out, "agreement_vs_lambda.png"))
    return files


def write_fidelity_report(preset, out: Path, counts: dict | None = None) -> Path:
    """``counts``: the examples used (``fidelity.data_counts``); read from the data set when omitted."""
    if counts is None:
        train, test = load_full_data(preset.data, preset.data_root)
        counts = data_counts(preset, len(train), len(test))
    rows = summarise(collect(preset, out))
    claims = check_claims(preset, rows)
    plots = _plots(preset, rows, out)
    teachers = json.loads((out / "teachers.json").read_text())
    members = [v for k, v in teachers.items() if k.startswith("member")]
    lines = [
        f"# E2 [FID]: fidelity of self-distillation and ensemble distillation (preset `{preset.name}`)",
        "",
        f"Data `{preset.data}`; teacher members and student are `{preset.model}` (self-distillation), "
        f"trained on the same {counts['train']} training examples (the distillation data); "
        f"members {preset.teacher_epochs} epochs, students {preset.student_epochs} epochs; KD with "
        f"α = 0; seeds {list(preset.seeds)}; test set: {counts['test']} examples. "
        "Train agreement and KL are measured on the distillation data without augmentation.",
        "",
        "## Teachers (test accuracy)",
        "",
        f"- members: {mean_std(members)} % (n = {len(members)})",
        *[f"- ensemble of {m}: {_pct(teachers[f'ensemble{m}'])}" for m in preset.ensembles],
        "",
        "## Students, mean ± std over seeds (last epoch; accuracy also at the best epoch)",
        "",
        "| setting | test acc (last) | test acc (best) | test agreement | test KL(t‖s) | train agreement "
        "| train KL(t‖s) | test ECE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        cells = [
            mean_std(r["test.accuracy"]),
            mean_std(r["best"]),
            mean_std(r["test.agreement"]),
            mean_std(r["test.kl_teacher_student"], 1.0, 4),
            mean_std(r["distill_data.agreement"]),
            mean_std(r["distill_data.kl_teacher_student"], 1.0, 4),
            mean_std(r["test.ece"], 1.0, 4),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Accuracy and agreement in %, KL in nats, ECE over 10 confidence bins. `independent`: trained on "
        "the labels "
        "only (agreement with member 0); `ens{m}-tau{τ}`: KD from the first m members at temperature τ; "
        "`-crop-flip` / `-mixup`: the distillation data; `lambda{λ}`: student initialised at "
        "λ·teacher + (1−λ)·random.",
        "",
        "## The paper's qualitative claims, checked on this run",
        "",
    ]
    lines += [
        "Rule (as in E1): a comparison **held** when the mean of its per-seed paired difference lies "
        "more than 2 standard errors (sd of the differences / √n) beyond 0 in the claimed direction; "
        "with fewer than 2 seeds it is *undecided*.",
        "",
    ]
    for claim, held, numbers in claims:
        word = (
            "undecided (not run, or one seed)"
            if held is None
            else ("**held**" if held else "**did not hold**")
        )
        lines.append(f"- {claim}: {word} ({numbers})")
    summary = {
        "examples": counts,
        "teachers": teachers,
        "claims": [{"claim": c, "held": h, "numbers": n} for c, h, n in claims],
        "rows": rows,
    }
    return write_report(out, lines, plots, preset, summary)
