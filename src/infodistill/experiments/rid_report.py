"""Reports of the paper experiments: tables (mean ± std over seeds, last and best epoch), PNG plots,
and the papers' qualitative claims evaluated on the numbers of the run."""

from __future__ import annotations

from math import sqrt
from pathlib import Path
from statistics import mean, variance

from ..training.trainer import read_log
from .common import logged_last_epoch, save_figure, write_report
from .common import mean_std as _ms

PID_KEYS = (("redundancy", "Red(Y:T,S)"), ("unique_t", "Uni(Y:T\\S)"), ("mi_t", "I(Y;T)"), ("mi_s", "I(Y;S)"))


def collect(preset, out: Path) -> dict:
    """{(teacher, method): {seed: log}} for the runs that exist."""
    from .rid import run_name

    runs = {}
    for kind in preset.teachers:
        for method in preset.methods:
            paths = {seed: out / run_name(kind, method, seed) / "log.jsonl" for seed in preset.seeds}
            runs[(kind, method)] = {seed: read_log(p) for seed, p in paths.items() if p.exists()}
    return runs


def _final_pid(log: list[dict], key: str):
    for rec in reversed(log):
        if rec.get("pid"):
            return next(iter(rec["pid"].values()))[key]
    return None


def paired_differences(runs: dict, epochs: int) -> dict:
    """{(teacher, method): [last-epoch test accuracy minus the baseline's, one per seed]} from
    :func:`collect`'s runs, over the seeds where both runs logged their last epoch ``epochs``. The
    same seed gives the same initialisation and data order (a method whose distillation weight is 0
    trains the student bit for bit like the baseline), so the paired difference removes the
    seed-to-seed noise the two means share."""

    def last(kind, method) -> dict:
        logs = runs.get((kind, method), {})
        return {s: log[-1]["test"]["accuracy"] for s, log in logs.items() if logged_last_epoch(log, epochs)}

    diffs = {}
    for kind, method in runs:
        if method == "baseline":
            continue
        ours, base = last(kind, method), last(kind, "baseline")
        d = [ours[s] - base[s] for s in ours if s in base]
        if d:
            diffs[(kind, method)] = d
    return diffs


def summarise(runs: dict) -> dict:
    """Per (teacher, method): last/best test accuracy and final PID terms over seeds."""
    rows = {}
    for (kind, method), by_seed in runs.items():
        logs = list(by_seed.values())
        if not logs:
            continue
        last = [log[-1]["test"]["accuracy"] for log in logs]
        best = [max(r["test"]["accuracy"] for r in log if "test" in r) for log in logs]
        row = {"last": last, "best": best, "agreement": [log[-1]["test"].get("agreement") for log in logs]}
        for key, _ in PID_KEYS:
            vals = [_final_pid(log, key) for log in logs]
            row[key] = [v for v in vals if v is not None]
        rows[(kind, method)] = row
    return rows


def check_claims(rows: dict) -> list[tuple[str, bool | None, str]]:
    """The [PID-KD] claims, each (claim, held?, the numbers behind the verdict); None = not run."""

    def acc(kind, method):
        r = rows.get((kind, method))
        return mean(r["last"]) if r else None

    def pid(kind, method, key):
        r = rows.get((kind, method))
        return mean(r[key]) if r and r[key] else None

    out = []
    b_u, v_u, r_u = acc("untrained", "baseline"), acc("untrained", "vid"), acc("untrained", "rid")
    if None not in (b_u, v_u):
        out.append(
            (
                "VID falls below the baseline with an untrained teacher",
                v_u < b_u - 0.01,
                f"VID {100 * v_u:.2f} % vs baseline {100 * b_u:.2f} %",
            )
        )
    if None not in (b_u, v_u, r_u):
        out.append(
            (
                "RID stays closer to the baseline than VID with an untrained teacher",
                abs(b_u - r_u) < abs(b_u - v_u),
                f"RID {100 * r_u:.2f} %, VID {100 * v_u:.2f} %, baseline {100 * b_u:.2f} %",
            )
        )
    it_u, it_t = pid("untrained", "baseline", "mi_t"), pid("trained", "baseline", "mi_t")
    red_u = pid("untrained", "baseline", "redundancy")
    if None not in (it_u, it_t, red_u):
        out.append(
            (
                "I(Y;T) and Red ≈ 0 for the untrained teacher (below 10 % of the trained teacher's I(Y;T))",
                it_u < 0.1 * it_t and red_u < 0.1 * it_t,
                f"untrained I(Y;T) {it_u:.3f}, Red {red_u:.3f} bits; trained I(Y;T) {it_t:.3f} bits",
            )
        )
    uni = {m: pid("trained", m, "unique_t") for m in ("baseline", "vid", "rid", "ted")}
    uni = {m: v for m, v in uni.items() if v is not None}
    if "rid" in uni and len(uni) > 1:
        lowest = min(uni, key=uni.get)
        out.append(
            (
                "RID ends with the lowest Uni(Y:T\\S) (trained teacher)",
                lowest == "rid",
                ", ".join(f"{m} {v:.3f}" for m, v in uni.items()) + " bits",
            )
        )
    b_t = acc("trained", "baseline")
    for m in ("vid", "rid"):
        a = acc("trained", m)
        if None not in (a, b_t):
            se = _se_diff(rows[("trained", m)]["last"], rows[("trained", "baseline")]["last"])
            out.append(
                (
                    f"{m.upper()} beats the baseline with a trained teacher (by more than the standard "
                    "error of the difference)",
                    a - b_t > se,
                    f"{m.upper()} {100 * a:.2f} % vs baseline {100 * b_t:.2f} %, "
                    f"standard error {100 * se:.2f} pt",
                )
            )
    return out


def _se_diff(a: list[float], b: list[float]) -> float:
    """Standard error of the difference of two means over seeds (0 with one seed each)."""
    return sqrt(_var(a) / len(a) + _var(b) / len(b))


def check_variant(rows: dict, variant: str) -> list[tuple[str, bool | None, str]]:
    """Beyond the paper: does ``variant`` (a RID variant) never fall below the baseline with an
    uninformative teacher, and keep RID's result with a trained one? "Below" means by more than the
    standard error of the difference of the two means over seeds (seed noise is not a loss)."""
    out = []
    for kind in ("untrained", "noisy"):
        v, b = rows.get((kind, variant)), rows.get((kind, "baseline"))
        if not v or not b:
            continue
        d = mean(v["last"]) - mean(b["last"])
        se = _se_diff(v["last"], b["last"])
        p = rows.get((kind, "rid"))
        published = f"; published RID {100 * mean(p['last']):.2f} %" if p else ""
        out.append(
            (
                f"{variant} does not fall below the baseline with the {kind} teacher",
                d >= -se,
                f"{variant} {100 * mean(v['last']):.2f} % vs baseline {100 * mean(b['last']):.2f} %: "
                f"difference {100 * d:+.2f} pt, standard error {100 * se:.2f} pt{published}",
            )
        )
    v, r, b = rows.get(("trained", variant)), rows.get(("trained", "rid")), rows.get(("trained", "baseline"))
    if v and r:
        base = f", baseline {100 * mean(b['last']):.2f} %" if b else ""
        out.append(
            (
                f"{variant} keeps published RID's result with the trained teacher (at least as accurate)",
                mean(v["last"]) >= mean(r["last"]),
                f"{variant} {100 * mean(v['last']):.2f} % vs published RID "
                f"{100 * mean(r['last']):.2f} %{base}",
            )
        )
    return out


def _var(values: list[float]) -> float:
    return variance(values) if len(values) > 1 else 0.0


def _plots(preset, runs: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    files = []
    fig, axes = plt.subplots(
        1, len(preset.teachers), figsize=(4.2 * len(preset.teachers), 3.4), squeeze=False
    )
    for ax, kind in zip(axes[0], preset.teachers, strict=True):
        for method in preset.methods:
            logs = list(runs.get((kind, method), {}).values())
            if not logs:
                continue
            n = min(len(log) for log in logs)
            curve = [mean(log[i]["test"]["accuracy"] for log in logs) * 100 for i in range(n)]
            ax.plot(range(1, n + 1), curve, marker="o", ms=3, label=method)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{kind} teacher")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    files.append(save_figure(fig, out, "accuracy.png"))

    fig, axes = plt.subplots(
        len(preset.teachers), len(PID_KEYS), figsize=(13, 2.8 * len(preset.teachers)), squeeze=False
    )
    for i, kind in enumerate(preset.teachers):
        for j, (key, label) in enumerate(PID_KEYS):
            ax = axes[i][j]
            for method in preset.methods:
                logs = runs.get((kind, method), {}).values()
                # (epoch, value) of the epochs that measured the PID (every pid_every-th and the last)
                series = [
                    [(r["epoch"], next(iter(r["pid"].values()))[key]) for r in log if r.get("pid")]
                    for log in logs
                ]
                if not series or not series[0]:
                    continue
                n = min(len(s) for s in series)
                ax.plot(
                    [e for e, _ in series[0][:n]],
                    [mean(s[k][1] for s in series) for k in range(n)],
                    marker="o",
                    ms=3,
                    label=method,
                )
            ax.ticklabel_format(axis="y", useOffset=False)
            lo, hi = ax.dataLim.intervaly
            if hi - lo < 1e-3:  # a constant term (I(Y;T) of a fixed teacher): a readable band around it
                ax.set_ylim(lo - 0.05, hi + 0.05)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{label}, {kind} teacher", fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_ylabel("bits")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    files.append(save_figure(fig, out, "pid.png"))
    return files


def write_rid_report(preset, out: Path, counts: dict | None = None) -> Path:
    """``counts``: the examples used (``rid.data_counts``); read from the data set when omitted."""
    from .rid import RID_VARIANTS, data_counts

    if counts is None:
        from .common import load_full_data

        train, test = load_full_data(preset.data, preset.data_root)
        counts = data_counts(preset, len(train), len(test))

    runs = collect(preset, out)
    rows = summarise(runs)
    claims = check_claims(rows)
    plots = _plots(preset, runs, out)
    teacher_log = read_log(out / "teacher" / "log.jsonl")
    lines = [
        f"# E1 [PID-KD]: distillation from trained, untrained and noisy teachers (preset `{preset.name}`)",
        "",
        f"Data `{preset.data}`; teacher `{preset.teacher_model}` trained on "
        f"{counts['teacher_train']} examples for {preset.teacher_epochs} epochs "
        f"(test accuracy {100 * teacher_log[-1]['test']['accuracy']:.2f} %); "
        f"student `{preset.student_model}` "
        f"trained on {counts['student_train']} labelled examples for {preset.student_epochs} "
        f"epochs; layer pair {preset.pair}; seeds {list(preset.seeds)}; test set: "
        f"{counts['test']} examples. PID on {counts['pid_samples']} test examples, "
        f"k = {preset.pid_k}.",
        "",
        "## Test accuracy (%), mean ± std over seeds",
        "",
        "| teacher | method | last epoch | best epoch | agreement (last) | Red | Uni(Y:T\\S) | I(Y;T) "
        "| I(Y;S) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (kind, method), r in rows.items():
        pid_cells = [f"{mean(r[k]):.3f}" if r[k] else "—" for k, _ in PID_KEYS]
        agree = [a for a in r["agreement"] if a is not None]
        lines.append(
            f"| {kind} | {method} | {_ms(r['last'])} | {_ms(r['best'])} | {_ms(agree)} | "
            + " | ".join(pid_cells)
            + " |"
        )
    lines += [
        "",
        "PID terms (bits) are those of the last epoch, averaged over seeds.",
        "",
        "## The paper's qualitative claims, checked on this run",
        "",
    ]
    for claim, held, numbers in claims:
        verdict = "**held**" if held else "**did not hold**"
        lines.append(f"- {claim}: {verdict} ({numbers})")
    diffs = paired_differences(runs, preset.student_epochs)
    if diffs:
        lines += [
            "",
            "## Difference from the baseline (pt), paired by seed",
            "",
            "Each seed's last-epoch test accuracy minus the baseline's with the same seed (same "
            "initialisation and data order); standard error of the mean difference.",
            "",
            "| teacher | method | mean difference | standard error | seeds better / equal / worse |",
            "|---|---|---|---|---|",
        ]
        for (kind, method), d in diffs.items():
            se = sqrt(_var(d) / len(d))
            tally = f"{sum(x > 0 for x in d)} / {sum(x == 0 for x in d)} / {sum(x < 0 for x in d)}"
            lines.append(f"| {kind} | {method} | {100 * mean(d):+.2f} | {100 * se:.2f} | {tally} |")
    variant = check_variant(rows, preset.variant) if preset.variant else []
    if variant:
        lines += [
            "",
            f"## Beyond the paper: `{preset.variant}`",
            "",
            f"RID with the switches {RID_VARIANTS.get(preset.variant, {})} on top of the published "
            "method (`student_in_phase1`: the student also trains with cross-entropy in the filter "
            "phases, where the published schedule freezes it; see the README, *Why RID falls below "
            "the baseline*).",
            "",
        ]
        for claim, held, numbers in variant:
            lines.append(f"- {claim}: {'**held**' if held else '**did not hold**'} ({numbers})")
    claims = claims + variant
    summary = {
        "examples": counts,
        "claims": [{"claim": c, "held": h, "numbers": n} for c, h, n in claims],
        "rows": {f"{k}|{m}": v for (k, m), v in rows.items()},
        "paired_differences": {f"{k}|{m}": d for (k, m), d in diffs.items()},
    }
    return write_report(out, lines, plots, preset, summary)
