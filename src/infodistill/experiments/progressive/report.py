"""The E3 [PROG] report: steps to the target accuracy per setting (intervals over seeds), the
curriculum in the teacher's checkpoints (PID engine and the paper's correlation probe), plots, and
the paper's claims checked on the numbers of the run, premises first."""

from __future__ import annotations

from math import nan, sqrt
from pathlib import Path
from statistics import mean, stdev

from ...training.rundir import RunDir
from ..common import SE_RULE, diff_text, mean_std, paired, save_figure, verdict, write_report
from .presets import run_name, steps_to

#: the peak of the support signal must be at least this many times its value at the final checkpoint
#: ("signal the converged teacher no longer shows")
FADE = 2.0


def _interval(values: list[float]) -> str:
    """mean [mean - 2 SE, mean + 2 SE] over seeds (the verdicts' rule); one value: no interval."""
    if not values:
        return "—"
    m = mean(values)
    if len(values) < 2:
        return f"{m:,.0f}"
    half = SE_RULE * stdev(values) / sqrt(len(values))
    return f"{m:,.0f} [{m - half:,.0f}, {m + half:,.0f}]"


def censored_steps(preset, steps: dict) -> dict:
    """{seed: steps}, a run that never reached the target counted at one epoch past its end (a lower
    bound on its true count)."""
    budget = (preset.student_epochs + 1) * preset.steps_per_epoch
    return {seed: budget if v is None else v for seed, v in steps.items()}


def curriculum_claim(curriculum: dict, final: int, key: str, null_key: str, k: int) -> tuple[bool, str]:
    """Whether an intermediate checkpoint carries the support signal above the off-support reference
    on every support coordinate, and the final checkpoint shows at most 1/FADE of that peak."""
    inner = {e: r for e, r in curriculum.items() if e < final}
    if not inner or final not in curriculum:
        return False, "no intermediate checkpoint measured"
    per = "mi" if key == "support_mi" else "corr"
    peak = max(inner, key=lambda e: inner[e][key])
    r = inner[peak]
    above = min(r[per][:k]) > r[null_key]
    faded = curriculum[final][key] * FADE <= r[key]
    text = (
        f"peak at epoch {peak} (teacher accuracy {100 * r['accuracy']:.1f} %): support mean {r[key]:.4f}, "
        f"smallest support coordinate {min(r[per][:k]):.4f}, largest off-support {r[null_key]:.4f}; "
        f"final checkpoint (epoch {final}): support mean {curriculum[final][key]:.4f}"
    )
    return above and faded, text


def check_claims(preset, teacher_acc: float, transition, steps: dict, curriculum: dict) -> list:
    """[(claim, held: True/False/None/"premise", numbers)]: "premise" when the teacher did not reach
    ``teacher_premise`` (or has no transition checkpoint) and the claim is not judged."""
    out = []
    premise_ok = teacher_acc >= preset.teacher_premise
    premise_text = (
        f"premise not met: the final teacher reaches {100 * teacher_acc:.1f} % < "
        f"{100 * preset.teacher_premise:.0f} %"
    )

    def faster(a: str, b: str, claim: str):
        if a not in steps or b not in steps or not steps[a] or not steps[b]:
            out.append((claim, None, "not run"))
            return
        if not premise_ok:
            out.append((claim, "premise", premise_text))
            return
        if a.startswith("progressive") and transition is None:
            out.append((claim, "premise", "premise not met: the teacher has no intermediate checkpoint"))
            return
        missed = [s for s, v in steps[a].items() if v is None]
        d = paired(censored_steps(preset, steps[a]), censored_steps(preset, steps[b]))
        held = verdict(d, -1) if not missed else False
        text = f"{a} − {b}: {diff_text(d, 1.0, 'steps')}"
        if missed:
            text += f"; {a} never reached the target with seed(s) {missed}"
        out.append((claim, held, text))

    target = f"{100 * preset.target_accuracy:g} %"
    faster(
        "progressive",
        "kd",
        f"Progressive distillation reaches {target} in fewer steps than KD from the final teacher",
    )
    faster(
        "progressive",
        "labels",
        f"Progressive distillation reaches {target} in fewer steps than training on labels",
    )
    faster(
        "progressive-all",
        "kd",
        f"Progressive distillation from every checkpoint reaches {target} in fewer steps than KD from the "
        "final teacher",
    )
    final = preset.teacher_epochs
    for key, null_key, what in (
        ("support_mi", "off_mi_max", "mutual information I(o; x_i) (PID engine)"),
        ("support_corr", "off_corr_max", "correlation |E[x_i (p − E p)]| (the paper's probe, centred)"),
    ):
        claim = (
            f"Implicit curriculum: an intermediate checkpoint's output carries the support variables "
            f"x_i (each above every off-support coordinate), which the final teacher no longer shows "
            f"(≤ 1/{FADE:g} of the peak); {what}"
        )
        if not premise_ok:
            out.append((claim, "premise", premise_text))
            continue
        held, text = curriculum_claim(curriculum, final, key, null_key, preset.k)
        out.append((claim, held, text))
    return out


def _plots(preset, curriculum: dict, curves: dict, out: Path) -> list[str]:
    # matplotlib is loaded (and set to the Agg backend) only when a report draws: importing the
    # experiments must not change the backend of a user's session.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is set

    files = []
    epochs = sorted(curriculum)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.plot(epochs, [curriculum[e]["accuracy"] for e in epochs], "k-", label="test accuracy")
    ax.plot(epochs, [curriculum[e]["mi_label"] for e in epochs], "b--", label="I(o; y) bits")
    ax.set_xlabel("teacher epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    for key, label, style in (
        ("support_mi", "I(o; x_i), support mean", "r-"),
        ("off_mi_max", "I(o; x_j), off-support max", "r:"),
        ("support_unique_x", "unique info of x_i (PID), support mean", "m-"),
        ("support_corr", "|E[x_i (p − Ep)]|, support mean", "g-"),
        ("off_corr_max", "|E[x_j (p − Ep)]|, off-support max", "g:"),
    ):
        ax.plot(epochs, [curriculum[e][key] for e in epochs], style, label=label)
    ax.set_xlabel("teacher epoch")
    ax.set_ylabel("bits / correlation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(
        "The teacher's checkpoints: accuracy and what the output carries about each variable", fontsize=10
    )
    files.append(save_figure(fig, out, "curriculum.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for s, by_seed in curves.items():
        if not by_seed:
            continue
        length = min(len(a) for a in by_seed.values())
        steps = [(e + 1) * preset.steps_per_epoch for e in range(length)]
        ax.plot(steps, [mean(a[e] for a in by_seed.values()) for e in range(length)], label=s)
    ax.axhline(preset.target_accuracy, color="grey", ls=":", lw=1)
    ax.set_xlabel("student steps")
    ax.set_ylabel(f"test accuracy (mean over {len(preset.seeds)} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    files.append(save_figure(fig, out, "students.png"))
    return files


def student_curves(preset, out: Path) -> dict:
    """{setting: {seed: [test accuracy after each epoch]}} for the runs that exist."""
    curves: dict = {}
    for s in preset.settings:
        curves[s] = {}
        for seed in preset.seeds:
            accs = [r["test"]["accuracy"] for r in RunDir(out / run_name(s, seed)).read_log() if "test" in r]
            if accs:
                curves[s][seed] = accs
    return curves


def steps_table(preset, curves: dict) -> dict:
    """{setting: {seed: steps to the target accuracy, or None}}."""
    return {
        s: {seed: steps_to(a, preset.target_accuracy, preset.steps_per_epoch) for seed, a in by_seed.items()}
        for s, by_seed in curves.items()
    }


def write_progressive_report(
    preset, out: Path, teacher_accs: list[float], transition, curriculum: dict
) -> Path:
    curves = student_curves(preset, out)
    steps = steps_table(preset, curves)
    teacher_acc = teacher_accs[-1] if teacher_accs else 0.0
    claims = check_claims(preset, teacher_acc, transition, steps, curriculum)
    plots = _plots(preset, curriculum, curves, out)
    spe = preset.steps_per_epoch
    lines = [
        f"# E3 [PROG]: progressive distillation's implicit curriculum (preset `{preset.name}`)",
        "",
        f"Sparse parity n = {preset.n}, k = {preset.k} (support: x_0..x_{preset.k - 1}); {preset.train_size} "
        f"training and {preset.test_size} test examples; batch {preset.batch_size}, {spe} steps an epoch; "
        f"plain SGD at lr {preset.lr:g}. Teacher: MLP width {preset.teacher_hidden}, "
        f"{preset.teacher_epochs} epochs, every epoch's checkpoint kept. Students: MLP width "
        f"{preset.student_hidden}, {preset.student_epochs} epochs; KD at τ = {preset.tau:g}, α = 0; "
        f"seeds {list(preset.seeds)}.",
        "",
        "## Teacher",
        "",
        f"- final test accuracy: {100 * teacher_acc:.2f} % (premise: ≥ {100 * preset.teacher_premise:.0f} %)",
        "- transition checkpoint (first to reach "
        f"{100 * preset.transition_accuracy:.0f} %): "
        + (
            f"epoch {transition} ({100 * teacher_accs[transition - 1]:.1f} %)"
            if transition
            else "none: the teacher has no intermediate checkpoint"
        ),
        "",
        f"## Students: steps to {100 * preset.target_accuracy:g} % test accuracy",
        "",
        "| setting | reached | steps, mean [± 2 SE] | samples, mean | final test acc | best test acc |",
        "|---|---|---|---|---|---|",
    ]
    for s in preset.settings:
        vals = steps.get(s, {})
        reached = [v for v in vals.values() if v is not None]
        finals = [a[-1] for a in curves.get(s, {}).values()]
        bests = [max(a) for a in curves.get(s, {}).values()]
        lines.append(
            f"| {s} | {len(reached)}/{len(vals)} | {_interval(reached)} | "
            f"{mean(reached) * preset.batch_size:,.0f} | {mean_std(finals)} | {mean_std(bests)} |"
            if reached
            else f"| {s} | 0/{len(vals)} | — | — | {mean_std(finals)} | {mean_std(bests)} |"
        )
    lines += [
        "",
        "Steps are counted at the end of the first epoch whose test accuracy reaches the target "
        f"(resolution {spe} steps); the interval is mean ± 2 standard errors over the seeds that reached it. "
        "Per seed: " + "; ".join(f"{s}: {dict(v)}" for s, v in steps.items()),
        "",
        "## The curriculum in the teacher's checkpoints",
        "",
        f"o = p(y = 1 | x) of the checkpoint in {preset.pid_bins} equal-width bins, on "
        f"{preset.probe_size} fresh inputs. I(o; x_i): support mean and the largest off-support value (the "
        "reference for a finite sample's bias); unique and synergy: BROJA PID of I(o; (x_i, y)), support "
        "mean; corr: |E[x_i (p − E p)]| (the paper's probe, centred); weight: the share of the first layer's "
        f"squared weights on the support inputs (k / n = {preset.k / preset.n:.3f} at random). Bits.",
        "",
        "| epoch | acc | I(o; y) | I(o; x_i) support | off max | unique x_i | synergy | corr support "
        "| corr off max | weight on support |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in sorted(curriculum):
        r = curriculum[e]
        mark = " ←" if e == transition else ""
        lines.append(
            f"| {e}{mark} | {100 * r['accuracy']:.1f} | {r['mi_label']:.3f} | {r['support_mi']:.4f} | "
            f"{r['off_mi_max']:.4f} | {r['support_unique_x']:.4f} | {r['support_synergy']:.3f} | "
            f"{r['support_corr']:.4f} | {r['off_corr_max']:.4f} | {r.get('support_weight', nan):.3f} |"
        )
    lines += [
        "",
        "## The paper's claims, checked on this run",
        "",
        "Rule (as in E1 and E2): a comparison **held** when the mean of its per-seed paired difference lies "
        "more than 2 standard errors beyond 0 in the claimed direction (a run that never reached the target "
        "counted one epoch past its end); with fewer than 2 seeds it is *undecided*. A claim whose premise "
        "(a teacher that learned the task) is not met is not judged.",
        "",
    ]
    for claim, held, numbers in claims:
        if held == "premise":
            word = "*premise not met*"
        elif held is None:
            word = "undecided (not run, or one seed)"
        else:
            word = "**held**" if held else "**did not hold**"
        lines.append(f"- {claim}: {word} ({numbers})")
    summary = {
        "teacher_accuracy": teacher_accs,
        "transition_epoch": transition,
        "steps": {s: {str(k): v for k, v in d.items()} for s, d in steps.items()},
        "claims": [{"claim": c, "held": h, "numbers": n} for c, h, n in claims],
    }
    return write_report(out, lines, plots, preset, summary)
