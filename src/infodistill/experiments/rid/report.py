"""Reports of the paper experiments: tables (mean ± std over seeds, last and best epoch), PNG plots,
and the papers' qualitative claims evaluated on the numbers of the run."""

from __future__ import annotations

from math import isfinite, sqrt
from pathlib import Path
from statistics import mean, variance

from ...training.rundir import RunDir
from ..common import (
    SE_RULE,
    diff_text,
    load_full_data,
    logged_last_epoch,
    paired,
    save_figure,
    verdict,
    write_report,
)
from ..common import mean_std as _ms
from .presets import RID_VARIANTS, data_counts, run_name

PID_KEYS = (("redundancy", "Red(Y:T,S)"), ("unique_t", "Uni(Y:T\\S)"), ("mi_t", "I(Y;T)"), ("mi_s", "I(Y;S)"))


def collect(preset, out: Path) -> dict:
    """{(teacher, method): {seed: log}} for the runs that exist."""
    runs = {}
    for kind, method in preset.grid():
        run_dirs = {seed: RunDir(out / run_name(kind, method, seed)) for seed in preset.seeds}
        runs[(kind, method)] = {seed: run.read_log() for seed, run in run_dirs.items() if run.has_log()}
    return runs


def pair_stops(runs: dict) -> dict:
    """{(teacher, method): {seed: {pair: epoch}}}: when the stop rule switched each pair off, for the
    runs whose log has the rule's records (``pid_stop``)."""
    out = {}
    for key, by_seed in runs.items():
        for seed, log in by_seed.items():
            if not any("pid_stop" in r for r in log):
                continue
            first = {}
            for r in log:
                for pair in (r.get("pid_stop") or {}).get("stopped", []):
                    first.setdefault(pair, r["epoch"])
            out.setdefault(key, {})[seed] = first
    return out


def collect_stopped(preset, out: Path) -> dict:
    """{(teacher, method): {seed: {"epoch", "error"}}} for the runs that stopped on a non-finite value."""
    stopped = {}
    for kind, method in preset.grid():
        recs = {s: RunDir(out / run_name(kind, method, s)).read_stop() for s in preset.seeds}
        recs = {s: {"epoch": r["epoch"], "error": r["error"]} for s, r in recs.items() if r}
        if recs:
            stopped[(kind, method)] = recs
    return stopped


def pair_keys(preset) -> list[str]:
    """The PID tracker's keys of the preset's layer pairs ("student|teacher"), the last one last."""
    pairs = [f"{s}|{t}" for s, t in preset.layer_pairs()]
    return pairs if preset.pid_layers == "all" else pairs[-1:]


def _final_pid(log: list[dict], key: str, pair: str | None = None):
    """(value, [lo, hi] or None) of a PID term at the last epoch that measured it."""
    for rec in reversed(log):
        if rec.get("pid"):
            terms = rec["pid"][pair] if pair else next(iter(rec["pid"].values()))
            return terms[key], terms.get("ci", {}).get(key)
    return None, None


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


def summarise(runs: dict, epochs: int, pairs: list[str] | None = None, stopped: dict | None = None) -> dict:
    """Per (teacher, method): seeds that finished, their last/best test accuracy and final PID terms
    per layer pair (with bootstrap intervals when logged), and the runs that stopped. A stopped run's
    numbers are not averaged in (its last epoch is not the run's), but its row is kept."""
    stopped = stopped or {}
    rows = {}
    for key in dict.fromkeys([*runs, *stopped]):
        logs = {s: log for s, log in runs.get(key, {}).items() if logged_last_epoch(log, epochs)}
        if not logs and key not in stopped:
            continue
        seeds = list(logs)
        row = {
            "seeds": seeds,
            "last": [logs[s][-1]["test"]["accuracy"] for s in seeds],
            "best": [max(r["test"]["accuracy"] for r in logs[s] if "test" in r) for s in seeds],
            "agreement": [logs[s][-1]["test"].get("agreement") for s in seeds],
            "stopped": {str(s): r for s, r in stopped.get(key, {}).items()},
            "pid": {},
        }
        for pair in pairs or [None]:
            terms = {}
            for k, _ in PID_KEYS:
                vals = [_final_pid(logs[s], k, pair) for s in seeds]
                terms[k] = [v for v, _ in vals if v is not None]
                terms[k + "_ci"] = [ci for v, ci in vals if v is not None and ci is not None]
            row["pid"][pair or "first"] = terms
        last = (pairs or ["first"])[-1]
        row.update({k: row["pid"][last][k] for k, _ in PID_KEYS})
        rows[key] = row
    return rows


def _by_seed(rows: dict, kind: str, method: str, key: str = "last") -> dict:
    r = rows.get((kind, method))
    if not r or not r.get(key):
        return {}
    return dict(zip(r["seeds"], r[key], strict=False))


def check_claims(rows: dict) -> list[tuple[str, bool | None, str]]:
    """The [PID-KD] claims, each (claim, held?, the numbers behind the verdict); held? is None when
    it cannot be decided (one seed). Every verdict is on differences paired by seed: held needs the
    mean difference beyond 2 standard errors in the claimed direction (:func:`verdict`)."""
    out = []

    def claim(text, d, direction, numbers):
        if d:
            out.append((text, verdict(d, direction), numbers))

    acc = {(k, m): _by_seed(rows, k, m) for k, m in rows}
    base_u, base_t = acc.get(("untrained", "baseline"), {}), acc.get(("trained", "baseline"), {})
    vid_u, rid_u = acc.get(("untrained", "vid"), {}), acc.get(("untrained", "rid"), {})
    d = paired(vid_u, base_u)
    claim("VID falls below the baseline with an untrained teacher", d, -1, f"VID − baseline: {diff_text(d)}")
    # per seed: how much further from the baseline VID lands than RID
    gap = {
        s: abs(vid_u[s] - base_u[s]) - abs(rid_u[s] - base_u[s]) for s in vid_u if s in rid_u and s in base_u
    }
    d = list(gap.values())
    claim(
        "RID stays closer to the baseline than VID with an untrained teacher",
        d,
        +1,
        f"|VID − baseline| − |RID − baseline|: {diff_text(d)}",
    )
    for key, label in (("mi_t", "I(Y;T)"), ("redundancy", "Red")):
        un = _by_seed(rows, "untrained", "baseline", key)
        tr = _by_seed(rows, "trained", "baseline", "mi_t")
        d = [0.1 * tr[s] - un[s] for s in un if s in tr]
        claim(
            f"{label} ≈ 0 for the untrained teacher (below 10 % of the trained teacher's I(Y;T))",
            d,
            +1,
            f"0.1·I(Y;T) trained − {label} untrained: {diff_text(d, 1.0, 'bits')}",
        )
    uni_rid = _by_seed(rows, "trained", "rid", "unique_t")
    others = {m: _by_seed(rows, "trained", m, "unique_t") for m in ("baseline", "vid", "ted")}
    diffs = {m: paired(v, uni_rid) for m, v in others.items() if paired(v, uni_rid)}
    if diffs:
        held = [verdict(d, +1) for d in diffs.values()]
        out.append(
            (
                "RID ends with the lowest Uni(Y:T\\S) (trained teacher)",
                None if None in held else all(held),
                "; ".join(f"{m} − RID: {diff_text(d, 1.0, 'bits')}" for m, d in diffs.items()),
            )
        )
    for m in ("vid", "rid"):
        d = paired(acc.get(("trained", m), {}), base_t)
        claim(
            f"{m.upper()} beats the baseline with a trained teacher",
            d,
            +1,
            f"{m.upper()} − baseline: {diff_text(d)}",
        )
    return out


#: the claims each premise carries (claim texts of :func:`check_claims`)
UNINFORMATIVE, USEFUL = "uninformative", "useful"
PREMISE_NAMES = {UNINFORMATIVE: "uninformative untrained teacher", USEFUL: "teacher worth distilling"}
CLAIM_PREMISES = {
    "VID falls below the baseline with an untrained teacher": UNINFORMATIVE,
    "RID stays closer to the baseline than VID with an untrained teacher": UNINFORMATIVE,
    "Red ≈ 0 for the untrained teacher (below 10 % of the trained teacher's I(Y;T))": UNINFORMATIVE,
    "RID ends with the lowest Uni(Y:T\\S) (trained teacher)": USEFUL,
    "VID beats the baseline with a trained teacher": USEFUL,
    "RID beats the baseline with a trained teacher": USEFUL,
}


def teacher_convergence(log: list[dict]) -> str:
    """How the teacher's test accuracy moved over the last quarter of its epochs (from epoch
    round(3E/4), at least 1, to E): under 1 point, it had converged at this budget."""
    acc = {r["epoch"]: r["test"]["accuracy"] for r in log if "test" in r}
    if len(acc) < 2:
        return "one evaluated epoch: convergence unknown"
    last = max(acc)
    start = max((e for e in acc if e <= max(1, round(0.75 * last)) and e < last), default=min(acc))
    delta = 100 * (acc[last] - acc[start])
    state = "converged" if abs(delta) < 1.0 else "still changing"
    return f"{delta:+.2f} pt from epoch {start} to {last}: {state}"


def check_premises(rows: dict, teacher_accuracy: float | None) -> dict[str, tuple[str, bool | None, str]]:
    """The premises of [PID-KD]'s claims, checked on the run before the claims (same 2-standard-error
    rule, paired by seed): {key: (premise, held?, numbers)}.

    - ``uninformative``: the untrained teacher carries little label information at the distilled
      layer, I(Y;T) below 10 % of the trained teacher's (the paper: 0.06 against 1.2 nats, 5 %).
      The untrained-teacher claims are about a teacher without task knowledge; with one that knows
      the task they test something else.
    - ``useful``: the trained teacher has knowledge the student can use: it is more accurate than
      the baseline student, and KD from it beats the baseline. Without that, "VID/RID beat the
      baseline" asks for a gain no method gets from this teacher.
    """
    out = {}
    un = _by_seed(rows, "untrained", "baseline", "mi_t")
    tr = _by_seed(rows, "trained", "baseline", "mi_t")
    d = [0.1 * tr[s] - un[s] for s in un if s in tr]
    if d:
        out[UNINFORMATIVE] = (
            "the untrained teacher carries little label information (I(Y;T) below 10 % of the trained "
            "teacher's, at the last pair)",
            verdict(d, +1),
            f"0.1·I(Y;T) trained − I(Y;T) untrained: {diff_text(d, 1.0, 'bits')}",
        )
    base = _by_seed(rows, "trained", "baseline")
    kd = paired(_by_seed(rows, "trained", "kd"), base)
    if base and teacher_accuracy is not None:
        better = teacher_accuracy > mean(base.values())
        gain = verdict(kd, +1) if kd else None
        held = (better and gain) if gain is not None else (None if better else False)
        out[USEFUL] = (
            "the trained teacher has knowledge the student can use (more accurate than the baseline "
            "student, and KD from it beats the baseline)",
            held,
            f"teacher {100 * teacher_accuracy:.2f} % vs baseline {100 * mean(base.values()):.2f} %; "
            f"KD − baseline: {diff_text(kd) if kd else 'KD not run'}",
        )
    return out


def check_variant(rows: dict, variant: str) -> list[tuple[str, bool | None, str]]:
    """Beyond the paper: does ``variant`` (a RID variant) never fall below the baseline with an
    uninformative teacher, and keep RID's result with a trained one? "Below" means a paired
    difference more than 2 standard errors under 0 (seed noise is not a loss)."""
    out = []
    for kind in ("untrained", "noisy"):
        d = paired(_by_seed(rows, kind, variant), _by_seed(rows, kind, "baseline"))
        if d:
            v = verdict(d, -1)
            out.append(
                (
                    f"{variant} does not fall below the baseline with the {kind} teacher",
                    None if v is None else not v,
                    f"{variant} − baseline: {diff_text(d)}",
                )
            )
    d = paired(_by_seed(rows, "trained", variant), _by_seed(rows, "trained", "rid"))
    if d:
        v = verdict(d, -1)
        out.append(
            (
                f"{variant} keeps published RID's result with the trained teacher (not below it)",
                None if v is None else not v,
                f"{variant} − published RID: {diff_text(d)}",
            )
        )
    return out


def _var(values: list[float]) -> float:
    return variance(values) if len(values) > 1 else 0.0


def _plots(preset, runs: dict, out: Path) -> list[str]:
    # matplotlib is loaded (and set to the Agg backend) only when a report draws: importing the
    # experiments must not change the backend of a user's session.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is set
    from matplotlib.ticker import MaxNLocator

    files = []
    # the teachers with runs (runs="claims" runs none from the noisy teacher)
    kinds = [k for k in preset.teachers if any(runs.get((k, m)) for m in preset.methods)] or list(
        preset.teachers
    )
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for k, method in enumerate(preset.methods):
            logs = list(runs.get((kind, method), {}).values())
            if not logs:
                continue
            n = min(len(log) for log in logs)
            curve = [mean(log[i]["test"]["accuracy"] for log in logs) * 100 for i in range(n)]
            # one colour a method in every panel (a teacher may run fewer methods: runs="claims")
            ax.plot(range(1, n + 1), curve, marker="o", ms=3, label=method, color=f"C{k}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{kind} teacher")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    files.append(save_figure(fig, out, "accuracy.png"))

    for idx, pair in enumerate(pair_keys(preset), start=1):
        fig, axes = plt.subplots(len(kinds), len(PID_KEYS), figsize=(13, 2.8 * len(kinds)), squeeze=False)
        for i, kind in enumerate(kinds):
            for j, (key, label) in enumerate(PID_KEYS):
                ax = axes[i][j]
                for k, method in enumerate(preset.methods):
                    curve = pid_curve(runs.get((kind, method), {}).values(), pair, key)
                    if not curve:
                        continue
                    epochs = [c[0] for c in curve]
                    (line,) = ax.plot(
                        epochs, [c[1] for c in curve], marker="o", ms=3, label=method, color=f"C{k}"
                    )
                    if all(c[2] is not None for c in curve):
                        ax.fill_between(
                            epochs,
                            [c[2] for c in curve],
                            [c[3] for c in curve],
                            color=line.get_color(),
                            alpha=0.15,
                        )
                ax.ticklabel_format(axis="y", useOffset=False)
                lo, hi = ax.dataLim.intervaly
                # a constant term (I(Y;T) of a fixed teacher): a readable band around it
                if isfinite(lo) and isfinite(hi) and hi - lo < 1e-3:
                    ax.set_ylim(lo - 0.05, hi + 0.05)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_title(f"{label}, {kind} teacher, {pair}", fontsize=9)
                ax.set_xlabel("epoch")
                ax.set_ylabel("bits")
                ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(pid_caption(preset), fontsize=9)
        files.append(
            save_figure(fig, out, "pid.png" if idx == len(pair_keys(preset)) else f"pid-layer{idx}.png")
        )
    return files


def pid_curve(logs, pair: str, key: str) -> list[tuple]:
    """[(epoch, mean over seeds, mean lower bound, mean upper bound)] of a PID term over the epochs
    that measured it in every log (bounds None without bootstrap intervals)."""
    series = [{r["epoch"]: r["pid"][pair] for r in log if r.get("pid") and pair in r["pid"]} for log in logs]
    if not series:
        return []
    curve = []
    for e in sorted(set.intersection(*(set(s) for s in series))):
        terms = [s[e] for s in series]
        cis = [t.get("ci", {}).get(key) for t in terms]
        lo = mean(c[0] for c in cis) if all(cis) else None
        hi = mean(c[1] for c in cis) if all(cis) else None
        curve.append((e, mean(t[key] for t in terms), lo, hi))
    return curve


def pid_caption(preset, n_samples: int | None = None) -> str:
    """The estimator's settings; ``n_samples``: the PID samples actually used (default: requested)."""
    band = (
        f"bands: {preset.pid_boot}-resample bootstrap 95 % interval, mean over seeds"
        if preset.pid_boot
        else "no bootstrap"
    )
    which = " of the last pair (`pid_layers: last`)" if preset.pid_layers == "last" else ""
    return (
        f"PID (bits){which} on {n_samples or preset.pid_samples} test examples: flatten, L2-normalise, "
        f"PCA {preset.pid_pca}, k-means k = {preset.pid_k}; {band}"
    )


def _pid_cell(r: dict, pair: str, key: str) -> str:
    terms = r["pid"].get(pair, {})
    vals, cis = terms.get(key, []), terms.get(key + "_ci", [])
    if not vals:
        return "—"
    cell = f"{mean(vals):.3f}"
    if cis and len(cis) == len(vals):
        cell += f" [{mean(c[0] for c in cis):.3f}, {mean(c[1] for c in cis):.3f}]"
    return cell


def _stopped_cell(r: dict) -> str:
    if not r["stopped"]:
        return "—"
    return "; ".join(
        f"seed {s}: stopped at epoch {rec['epoch']}, non-finite "
        + ("weights" if "weights" in rec["error"] else "loss")
        for s, rec in r["stopped"].items()
    )


def write_rid_report(preset, out: Path, counts: dict | None = None) -> Path:
    """``counts``: the examples used (``rid.data_counts``); read from the data set when omitted."""
    if counts is None:
        train, test = load_full_data(preset.data, preset.data_root, preset.data_kwargs)
        counts = data_counts(preset, len(train), len(test))

    runs = collect(preset, out)
    pairs = pair_keys(preset)
    rows = summarise(runs, preset.student_epochs, pairs, collect_stopped(preset, out))
    claims = check_claims(rows)
    plots = _plots(preset, runs, out)
    teacher_log = RunDir(out / "teacher").read_log()
    last = pairs[-1]
    lines = [
        f"# E1 [PID-KD]: distillation from trained, untrained and noisy teachers (preset `{preset.name}`)",
        "",
        f"Data `{preset.data}`"
        + (
            " with the loader's options `"
            + ", ".join(f"{k}: {v}" for k, v in preset.data_kwargs.items())
            + "`"
            if preset.data_kwargs
            else ""
        )
        + f"; teacher `{preset.teacher_model}` trained on "
        f"{counts['teacher_train']} examples for {preset.teacher_epochs} epochs "
        f"(test accuracy {100 * teacher_log[-1]['test']['accuracy']:.2f} %; "
        f"{teacher_convergence(teacher_log)}); "
        f"student `{preset.student_model}` "
        f"trained on {counts['student_train']} labelled examples for {preset.student_epochs} "
        f"epochs; layer pairs {[list(p) for p in preset.layer_pairs()]} ("
        + (
            "measured by the PID; the feature methods distil the pairs the layer map suggests, chosen "
            "per run: `auto_pairs`, see each run's config.json"
            if preset.auto_pairs
            else "VID, RID, TED distil all of them; `vid-repdistiller` the last"
        )
        + f"); seeds {list(preset.seeds)}; "
        + (
            "runs: only those the premises and claims read (`runs: claims`; the variants, and KD and "
            "TED from the untrained teacher, are not run); "
            if preset.runs == "claims"
            else ""
        )
        + "test set: "
        f"{counts['test']} examples. {pid_caption(preset, counts['pid_samples'])}.",
        "",
        "## Test accuracy (%), mean ± std over the seeds that finished",
        "",
        f"PID terms (bits) at the last epoch on the last pair `{last}`, mean over seeds "
        "[mean of the per-seed bootstrap interval bounds]. A run that stopped on a non-finite loss is "
        "listed under *stopped* and left out of the means.",
        "",
        "| teacher | method | last epoch | best epoch | agreement (last) | Red | Uni(Y:T\\S) | I(Y;T) "
        "| I(Y;S) | stopped |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (kind, method), r in rows.items():
        pid_cells = [_pid_cell(r, last, k) for k, _ in PID_KEYS]
        agree = [a for a in r["agreement"] if a is not None]
        lines.append(
            f"| {kind} | {method} | {_ms(r['last'])} | {_ms(r['best'])} | {_ms(agree)} | "
            + " | ".join(pid_cells)
            + f" | {_stopped_cell(r)} |"
        )
    if len(pairs) > 1:  # (one measured pair: the table above has it)
        lines += [
            "",
            "## PID at the last epoch, every layer pair (bits)",
            "",
            "| teacher | method | pair | Red | Uni(Y:T\\S) | I(Y;T) | I(Y;S) |",
            "|---|---|---|---|---|---|---|",
        ]
        for (kind, method), r in rows.items():
            for pair in pairs:
                lines.append(
                    f"| {kind} | {method} | {pair} | "
                    + " | ".join(_pid_cell(r, pair, k) for k, _ in PID_KEYS)
                    + " |"
                )
    lines += [
        "",
        "## The paper's qualitative claims, checked on this run",
        "",
        f"Rule: a claim **held** when the mean of its per-seed paired difference lies more than "
        f"{SE_RULE:g} standard errors (sd of the differences / √n) beyond 0 in the claimed direction; "
        "otherwise it **did not hold**; with one seed there is no standard error (*undecided*).",
        "",
    ]

    def word(held):
        return "**undecided** (one seed)" if held is None else "**held**" if held else "**did not hold**"

    premises = check_premises(rows, teacher_log[-1]["test"]["accuracy"])
    lines += [
        "Premises first: a claim whose premise did not hold in this run is reported as **premise not "
        "met** (its numbers still given), not as a failed claim.",
        "",
    ]
    for key, (text, held, numbers) in premises.items():
        lines.append(f"- Premise '{PREMISE_NAMES[key]}': {text}: {word(held)} ({numbers})")
    lines.append("")
    premise_met = {}
    for claim, held, numbers in claims:
        key = CLAIM_PREMISES.get(claim)
        met = premises[key][1] if key in premises else None
        premise_met[claim] = met
        if met is False:
            name = PREMISE_NAMES[key]
            lines.append(f"- {claim}: **premise not met** (premise '{name}' did not hold; {numbers})")
        else:
            lines.append(f"- {claim}: {word(held)} ({numbers})")
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
            "the baseline*). Same rule: *did not hold* means more than 2 standard errors below.",
            "",
        ]
        for claim, held, numbers in variant:
            lines.append(f"- {claim}: {word(held)} ({numbers})")
    claims = claims + variant
    switched = pair_stops(runs) if preset.pid_stop else {}
    if switched:
        lines += [
            "",
            "## Stop rule: pairs (student ← teacher) switched off (epoch)",
            "",
            "`pid_stop`: a pair's distillation term is switched off once the upper end of its "
            "Uni(Y:T\\S) interval reaches its permutation floor (docs/layer-map.md).",
            "",
            "| teacher | method | " + " | ".join(f"seed {s}" for s in preset.seeds) + " |",
            "|---|---|" + "---|" * len(preset.seeds),
        ]
        for (kind, method), by_seed in switched.items():
            cells = [
                ", ".join(
                    f"{pair.replace('|', ' ← ')} ({epoch})" for pair, epoch in by_seed.get(seed, {}).items()
                )
                or "-"
                for seed in preset.seeds
            ]
            lines.append(f"| {kind} | {method} | " + " | ".join(cells) + " |")
    summary = {
        "examples": counts,
        "premises": [{"premise": t, "held": h, "numbers": n} for t, h, n in premises.values()],
        "claims": [
            {"claim": c, "held": h, "numbers": n, "premise_met": premise_met.get(c)} for c, h, n in claims
        ],
        "rule": f"held iff mean paired difference > {SE_RULE:g} standard errors in the claimed direction",
        "rows": {f"{k}|{m}": v for (k, m), v in rows.items()},
        "paired_differences": {f"{k}|{m}": d for (k, m), d in diffs.items()},
        **({"pair_stops": {f"{k}|{m}": v for (k, m), v in switched.items()}} if switched else {}),
    }
    lines += ["", f"Plots: {pid_caption(preset)}."]
    return write_report(out, lines, plots, preset, summary)
