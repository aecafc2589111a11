"""The E2 [FID] report: fidelity and accuracy per setting (mean ± std over seeds), plots, and the
paper's qualitative claims evaluated on the numbers of the run."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

from ..training.trainer import read_log
from .common import mean_std, save_figure, write_report

#: agreement at or above this counts as "≈ 100 %" (FID's "jumps to ~100 % train agreement")
NEAR_FULL = 0.99
#: differences smaller than this (half a point) are not called a difference by the claims
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
    """{setting name: [log of each seed that exists]}."""
    from .fidelity_presets import run_name

    runs = {}
    for s in preset.settings():
        logs = [
            read_log(p) for seed in preset.seeds if (p := out / run_name(s.name, seed) / "log.jsonl").exists()
        ]
        runs[s.name] = [log for log in logs if log]
    return runs


def summarise(runs: dict) -> dict:
    """Per setting: per-seed values of the last epoch's metrics, and the best epoch's accuracy."""
    rows = {}
    for name, logs in runs.items():
        if not logs:
            continue
        row = {"best": [max(r["test"]["accuracy"] for r in log if "test" in r) for log in logs]}
        for split, key, _ in COLUMNS:
            row[f"{split}.{key}"] = [log[-1].get(split, {}).get(key) for log in logs]
        rows[name] = row
    return rows


def _m(rows: dict, name: str, key: str) -> float | None:
    vals = [v for v in rows.get(name, {}).get(key, []) if v is not None]
    return mean(vals) if vals else None


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def lambda_curve(preset, rows: dict) -> list[tuple[float, str]]:
    """(λ, setting name) in increasing λ; λ = 0 is the one-teacher run at the sweep's τ."""
    curve = [(0.0, f"ens1-tau{preset.lambda_tau:g}")] if preset.lambda_tau in preset.taus else []
    curve += [(lam, f"lambda{lam:g}") for lam in preset.lambdas]
    return [(lam, name) for lam, name in sorted(curve) if name in rows]


def check_claims(preset, rows: dict) -> list[tuple[str, bool | None, str]]:
    """The [FID] claims, each (claim, held?, the numbers behind the verdict); None = not run."""
    out = []

    def add(claim, held, numbers):
        out.append((claim, held, numbers))

    def agree(name, split="test"):
        return _m(rows, name, f"{split}.agreement")

    ens1 = [f"ens1-tau{t:g}" for t in preset.taus if f"ens1-tau{t:g}" in rows]
    for split, label in (("test", "test"), ("distill_data", "train (distillation-data)")):
        vals = {n: agree(n, split) for n in ens1}
        held = bool(vals) and all(v is not None and v < NEAR_FULL for v in vals.values())
        add(
            f"Self-distillation: {label} agreement stays below {100 * NEAR_FULL:.0f} %",
            held if vals else None,
            ", ".join(f"{n}: {_pct(v)}" for n, v in vals.items()) or "not run",
        )

    base, mix = f"ens1-tau{preset.data_tau:g}", f"ens1-tau{preset.data_tau:g}-mixup"
    a, b = agree(base), agree(mix)
    add(
        "Mixup distillation data raises test agreement",
        None if a is None or b is None else b > a,
        f"mixup {_pct(b)} vs no augmentation {_pct(a)}",
    )

    curve = [(lam, agree(n, "distill_data")) for lam, n in lambda_curve(preset, rows)]
    inner = [(lam, v) for lam, v in curve if lam < 1.0 and v is not None]
    if len(inner) >= 2 and inner[0][0] == 0.0:
        # λ* = the smallest λ from which every λ < 1 reaches ≈ 100 % train agreement; a *jump* means
        # most of the rise from λ = 0 happens in the last step into λ*, not gradually before it
        i = next((i for i in range(1, len(inner)) if all(v >= NEAR_FULL for _, v in inner[i:])), None)
        jump = i is not None and inner[i - 1][1] - inner[0][1] < 0.5 * (inner[i][1] - inner[0][1])
        if i is None:
            verdict = "no threshold below λ = 1"
        else:
            verdict = f"λ* = {inner[i][0]:g}, " + ("a jump" if jump else "reached gradually, not a jump")
        add(
            f"Initialising at λ·teacher + (1−λ)·random: train agreement jumps to ≥ {100 * NEAR_FULL:.0f} % "
            "above a threshold λ (over half of the rise from λ = 0 in the last step)",
            jump,
            f"{verdict}; " + ", ".join(f"λ={lam:g}: {_pct(v)}" for lam, v in inner),
        )
    else:
        add("Initialising near the teacher: train agreement jumps above a threshold λ", None, "not run")

    kd = [n for n in rows if n != "independent"]
    best = None
    for x in kd:
        for y in kd:
            ax, ay = agree(x), agree(y)
            cx, cy = _m(rows, x, "test.accuracy"), _m(rows, y, "test.accuracy")
            if None in (ax, ay, cx, cy):
                continue
            d = min(ax - ay, cy - cx)
            if d > MARGIN and (best is None or d > best[0]):
                best = (d, x, y, ax, ay, cx, cy)
    add(
        "More fidelity does not always mean more accuracy (a setting with higher test agreement "
        f"and lower accuracy, both by > {100 * MARGIN:.1f} pt)",
        best is not None if len(kd) > 1 else None,
        "none found"
        if best is None
        else f"{best[1]}: agreement {_pct(best[3])}, accuracy {_pct(best[5])}; "
        f"{best[2]}: agreement {_pct(best[4])}, accuracy {_pct(best[6])}",
    )

    big = max(preset.ensembles)
    pairs = [(f"ens1-tau{t:g}", f"ens{big}-tau{t:g}") for t in preset.taus]
    pairs = [(p, q) for p, q in pairs if p in rows and q in rows]
    add(
        f"A {big}-teacher ensemble gives a more accurate student than one teacher",
        all(_m(rows, q, "test.accuracy") > _m(rows, p, "test.accuracy") for p, q in pairs)
        if pairs and big > 1
        else None,
        ", ".join(
            f"{q} {_pct(_m(rows, q, 'test.accuracy'))} vs {p} {_pct(_m(rows, p, 'test.accuracy'))}"
            for p, q in pairs
        )
        or "not run",
    )
    ind = agree("independent")
    add(
        "Distillation raises agreement above that of an independently trained student",
        all(agree(n) > ind for n in ens1) if ens1 and ind is not None else None,
        f"independent {_pct(ind)}; " + ", ".join(f"{n} {_pct(agree(n))}" for n in ens1),
    )
    return out


def _plots(preset, rows: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, split, label in zip(
        axes, ("test", "distill_data"), ("test", "train (distillation data)"), strict=True
    ):
        for name in rows:
            x, y = _m(rows, name, f"{split}.agreement"), _m(rows, name, "test.accuracy")
            if x is None or y is None:
                continue
            marker = "s" if name == "independent" else ("^" if name.startswith("lambda") else "o")
            ax.scatter(100 * x, 100 * y, marker=marker, s=30)
            ax.annotate(name, (100 * x, 100 * y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"{label} agreement with the teacher (%)")
        ax.set_ylabel("student test accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("Fidelity vs generalisation (mean over seeds)", fontsize=10)
    files.append(save_figure(fig, out, "agreement_vs_accuracy.png"))

    curve = lambda_curve(preset, rows)
    if curve:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        lams = [lam for lam, _ in curve]
        for split, label in (("distill_data", "train agreement"), ("test", "test agreement")):
            ax.plot(
                lams, [100 * _m(rows, n, f"{split}.agreement") for _, n in curve], marker="o", label=label
            )
        ax.plot(
            lams,
            [100 * _m(rows, n, "test.accuracy") for _, n in curve],
            marker="s",
            ls="--",
            label="test accuracy",
        )
        ax.set_xlabel("λ (student initialised at λ·teacher + (1−λ)·random)")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        files.append(save_figure(fig, out, "agreement_vs_lambda.png"))
    return files


def write_fidelity_report(preset, out: Path, counts: dict | None = None) -> Path:
    """``counts``: the examples used (``fidelity.data_counts``); read from the data set when omitted."""
    if counts is None:
        from .common import load_full_data
        from .fidelity_presets import data_counts

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
    for claim, held, numbers in claims:
        verdict = "not run" if held is None else ("**held**" if held else "**did not hold**")
        lines.append(f"- {claim}: {verdict} ({numbers})")
    summary = {
        "examples": counts,
        "teachers": teachers,
        "claims": [{"claim": c, "held": h, "numbers": n} for c, h, n in claims],
        "rows": rows,
    }
    return write_report(out, lines, plots, preset, summary)
