"""Benchmark: time of one distillation training step on CPU, as ratios to references from the same run.

Usage::

    OMP_WAIT_POLICY=PASSIVE python bench/train_step.py            # both pairs, full repeats
    OMP_WAIT_POLICY=PASSIVE python bench/train_step.py --quick    # small-CNN pair only (< 1 min)
    python bench/train_step.py --threads 2 --batch 64 --channels-last --bf16 --json out.json

Issue 4, "Performance targets": per training step on CPU, for WRN-40-2 -> WRN-16-1 at 3x32x32
(batch ``--batch``, default 64) and a small-CNN pair at 1x28x28 (teacher ``cnn-small`` width 64,
student ``cnn-small`` width 16, batch ``--cnn-batch``, default 128):

- VID and RID (phase 2, the student update) step time <= 1.3 x (student step + teacher forward);
- KD with cached teacher logits <= 1.1 x the student step.

A *step* is forward + backward + ``SGD.step`` (momentum 0.9, weight decay 5e-4) with
``zero_grad(set_to_none=True)``, on one fixed random batch. Rows, per pair:

- ``student step`` (reference a): the student alone, cross-entropy only;
- ``teacher forward`` (reference b): the frozen teacher (``freeze_teacher``: eval, no grad) under
  ``no_grad``; reference c = a + b;
- ``kd online``: KD with a teacher forward every step (reported against c, no target);
- ``kd cached``: KD with precomputed teacher logits (no teacher forward), against a;
- ``vid`` and ``rid phase 2``: teacher forward included, features of the last stage of both nets
  (``block3`` <-> ``block3`` for the WRNs, ``stage3`` <-> ``stage3`` for the CNNs) captured by
  :class:`~infodistill.models.FeatureExtractor` forward hooks (the teacher's detached), against c;
- ``rid phase 1``: the filter/head update of a round > 0 (so the matching term is on); the student is
  not trained in that phase, so its forward runs under ``no_grad``; against c, no target;
- ``vid, 1-layer regressor``: VID with ``regressor_layers=1`` (a single 1x1 conv C_s -> C_t instead of
  conv-ReLU-conv with hidden width C_s), against c, no target: how much of VID's cost is its regressor.

A third table (skip with ``--no-breakdown``) splits the extra time of VID and RID phase 2,
step - (a+b), into the method's adapters alone (its losses, backward and optimiser step on fixed
captured features: ``adapter alone``), the forward hooks (student step and teacher forward each
re-timed with a FeatureExtractor hook on the feature layer, minus a and b: ``hooks``), and the
remainder (``rest``: the gradient flowing from the loss back into the student, feature bookkeeping,
noise).

Every row has its own freshly seeded student, teacher, method and optimiser (identical initial
weights across rows), so no row shares hooks or optimiser state with another. The teachers are
randomly initialised (only their cost matters here); a random WRN-40-2's ``block3`` is an
un-normalised residual sum with std ~100, on which VID at lr 0.01 diverges to NaN within some
twenty steps on the fixed batch, so every row's weights, BatchNorm statistics and momentum buffers
are restored (untimed) before each timed chunk: all rows are timed at the same operating point, on
finite numbers. Timing: ``--warmup``
untimed steps per row, then ``--repeats`` rounds; a round times every row once, for a short chunk
of consecutive steps lasting at least ``--min-time`` seconds, in a rotating order (fine
interleaving spreads bursts of load from other processes over all rows alike). ``ms/step`` is the
median over rounds; a ratio is the median over rounds of the per-round ratio (row time / reference
time of the same round), which cancels most of the drift that both share.

``--channels-last`` (models, method adapters and the input in ``torch.channels_last``) and ``--bf16``
(``torch.autocast('cpu', dtype=torch.bfloat16)`` around forward and loss; backward and the optimiser
step outside it) apply to every row of the main table. A second table always compares fp32,
channels_last, bf16 and channels_last + bf16 for each pair's student step (and the teacher forward
in fp32 vs channels_last + bf16), to check rather than assume the "~3x faster WRN training with
channels_last + bf16 on CPU" claim.

Threads: ``torch.set_num_threads(--threads)`` (default 2, the cores of the reference machine). For
stable numbers on a shared machine set ``OMP_WAIT_POLICY=PASSIVE`` in the environment *before*
Python starts (OpenMP reads it once at start-up): with the default active waiting, idle OpenMP
threads spin and steal the cores other processes (or the other benchmark rows' threads) need, and
timings swing. Don't pass ``--threads`` above the free cores.

Exit status 0; with ``--strict``, 1 if any target fails.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from infodistill.methods import Batch, build_method, rid_schedule
from infodistill.models import FeatureExtractor, build_model, freeze_teacher, probe_shapes

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (the tests): bench/ is not on sys.path then
    sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402
from benchkit import fmt_or_dash, md_table, median_ratio, spread  # noqa: E402

NUM_CLASSES = 10
VID_RID_TARGET = 1.3  # x (student step + teacher forward)
KD_CACHED_TARGET = 1.1  # x student step
RID_TOTAL_EPOCHS = 20  # a 20-epoch run: rounds of 2 epochs, "filter" then "student"


@dataclass(frozen=True)
class PairSpec:
    name: str
    teacher: str
    teacher_kw: dict
    student: str
    student_kw: dict
    input_shape: tuple[int, int, int]
    batch: int
    student_layer: str
    teacher_layer: str


def pair_specs(args) -> list[PairSpec]:
    wrn = PairSpec(
        "wrn-40-2 -> wrn-16-1",
        "wrn-40-2",
        {},
        "wrn-16-1",
        {},
        (3, 32, 32),
        args.batch,
        "block3",
        "block3",
    )
    cnn = PairSpec(
        "cnn-small w64 -> w16",
        "cnn-small",
        {"width": 64},
        "cnn-small",
        {"width": 16},
        (1, 28, 28),
        args.cnn_batch,
        "stage3",
        "stage3",
    )
    return [cnn] if args.quick else [wrn, cnn]


@dataclass(frozen=True)
class Precision:
    channels_last: bool = False
    bf16: bool = False

    @property
    def label(self) -> str:
        parts = (["channels_last"] if self.channels_last else []) + (["bf16"] if self.bf16 else [])
        return " + ".join(parts) or "fp32"

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def module(self, m: nn.Module) -> nn.Module:
        return m.to(memory_format=torch.channels_last) if self.channels_last else m

    def input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


@dataclass
class Step:
    """One training step (``run``) and ``reset``, which puts the weights, BatchNorm statistics and
    momentum buffers back to their initial values (untimed, before every timed chunk), so every row
    is timed at the same operating point and no row drifts into overflow on the fixed batch."""

    run: Callable[[], torch.Tensor | None]
    reset: Callable[[], None] = lambda: None


def _restorer(modules: list[nn.Module], opt: torch.optim.Optimizer) -> Callable[[], None]:
    saved = [copy.deepcopy(m.state_dict()) for m in modules]

    def reset() -> None:
        with torch.no_grad():
            for m, state in zip(modules, saved, strict=True):
                for k, v in m.state_dict().items():
                    v.copy_(state[k])
            for st in opt.state.values():
                buf = st.get("momentum_buffer")
                if buf is not None:
                    buf.zero_()

    return reset


@dataclass
class Row:
    key: str
    step: Step
    samples: list[float] = field(default_factory=list)
    steps_per_chunk: int = 1
    last_loss: float | None = None
    nonfinite: int = 0  # timed chunks that ended on a non-finite loss


# ---------------------------------------------------------------------------------------------
# Building the rows


def _rid_epochs() -> tuple[int, int]:
    """(phase-1 epoch, phase-2 epoch) of a round > 0 in a RID_TOTAL_EPOCHS-epoch run."""
    sched = [rid_schedule(e, RID_TOTAL_EPOCHS) for e in range(RID_TOTAL_EPOCHS)]
    p1 = next(e for e, (r, ph) in enumerate(sched) if r > 0 and ph == "filter")
    p2 = next(e for e, (r, ph) in enumerate(sched) if r > 0 and ph == "student")
    return p1, p2


class PairBench:
    """Models and fixed data of one pair; makes step functions for each row."""

    def __init__(self, spec: PairSpec, prec: Precision, seed: int = 0):
        self.spec, self.prec, self.seed = spec, prec, seed
        g = torch.Generator().manual_seed(seed)
        x = torch.randn((spec.batch, *spec.input_shape), generator=g)
        self.x = prec.input(x)
        self.y = torch.randint(0, NUM_CLASSES, (spec.batch,), generator=g)
        probe_t, probe_s = self.teacher(), self.student()
        self.teacher_shapes = probe_shapes(probe_t, [spec.teacher_layer], spec.input_shape)
        self.student_shapes = probe_shapes(probe_s, [spec.student_layer], spec.input_shape)
        with torch.no_grad(), prec.autocast():
            self.cached_logits = probe_t(self.x).float()

    # Fresh, identically initialised models for every row.
    def teacher(self) -> nn.Module:
        s = self.spec
        t = build_model(
            s.teacher, NUM_CLASSES, s.input_shape[0], seed=self.seed + 1, **s.teacher_kw
        )  # stands in for a trained teacher: only its cost matters here
        return self.prec.module(freeze_teacher(t))

    def student(self) -> nn.Module:
        s = self.spec
        m = build_model(s.student, NUM_CLASSES, s.input_shape[0], seed=self.seed + 2, **s.student_kw)
        return self.prec.module(m.train())

    def method(self, name: str, epoch: int = 0, **hparams):
        kw = dict(hparams)
        if name in ("vid", "rid"):
            kw.update(
                pairs=[(self.spec.student_layer, self.spec.teacher_layer)],
                student_shapes=self.student_shapes,
                teacher_shapes=self.teacher_shapes,
            )
        m = build_method(name, num_classes=NUM_CLASSES, **kw)
        m.set_phase(epoch, RID_TOTAL_EPOCHS)
        return self.prec.module(m.train())

    @staticmethod
    def _sgd(params) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)

    # Reference steps ------------------------------------------------------------------------
    def student_step(self, *, hook: bool = False) -> Step:
        """Student alone, CE only; ``hook`` also captures its feature layer (hook cost only)."""
        student = self.student()
        opt = self._sgd(student.parameters())
        x, y, prec = self.x, self.y, self.prec
        fx = FeatureExtractor(student, [self.spec.student_layer]) if hook else None
        forward = fx if fx is not None else (lambda x: (student(x), None))

        def step() -> torch.Tensor:
            with prec.autocast():
                loss = F.cross_entropy(forward(x)[0].float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if fx is not None:
                fx.clear()
            return loss.detach()

        return Step(step, _restorer([student], opt))

    def teacher_forward(self, *, hook: bool = False) -> Step:
        """Frozen teacher under no_grad; ``hook`` also captures its feature layer (detached)."""
        teacher = self.teacher()
        x, prec = self.x, self.prec
        fx = FeatureExtractor(teacher, [self.spec.teacher_layer], detach=True) if hook else None
        forward = fx if fx is not None else teacher

        def step() -> None:
            with torch.no_grad(), prec.autocast():
                forward(x)
            if fx is not None:
                fx.clear()

        return Step(step)

    # Distillation steps ----------------------------------------------------------------------
    def distill_step(self, name: str, *, epoch: int = 0, cached: bool = False, **hparams) -> Step:
        """One full step of method ``name``: teacher forward (unless ``cached``), student forward
        with hooks, the method's losses, backward, SGD step over student + method parameters."""
        student, method = self.student(), self.method(name, epoch, **hparams)
        teacher = None if cached else self.teacher()
        opt = self._sgd([*student.parameters(), *method.parameters()])
        x, y, prec, spec = self.x, self.y, self.prec, self.spec
        feats = method.uses_teacher_features
        sfx = FeatureExtractor(student, [spec.student_layer]) if feats else None
        tfx = FeatureExtractor(teacher, [spec.teacher_layer], detach=True) if feats else None
        cached_logits = self.cached_logits if cached else None
        # The student is not trained in RID's phase 1: its forward (for the target f_s(S)) needs no graph.
        train_student = method.trainable_student()

        def step() -> torch.Tensor:
            with prec.autocast():
                if cached_logits is not None:
                    zt, tf = cached_logits, {}
                else:
                    with torch.no_grad():
                        zt, tf = tfx(x) if tfx is not None else (teacher(x), {})
                with nullcontext() if train_student else torch.no_grad():
                    zs, sf = sfx(x) if sfx is not None else (student(x), {})
                losses = method(Batch(y, zs, zt, sf, tf))
                total = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            if sfx is not None:
                sfx.clear()
                tfx.clear()
            return total.detach()

        return Step(step, _restorer([student, method], opt))

    def adapter_step(self, name: str, *, epoch: int = 0, **hparams) -> Step:
        """The method alone on fixed captured features and logits: its losses, the backward through
        its adapters (down to the student feature, as in a real step) and its optimiser step.
        This is the part of a distillation step that neither reference contains."""
        spec, prec, y = self.spec, self.prec, self.y
        method = self.method(name, epoch, **hparams)
        opt = self._sgd(method.parameters())
        with torch.no_grad(), prec.autocast():
            with FeatureExtractor(self.student(), [spec.student_layer]) as fx:
                zs, sf = fx(self.x)
            with FeatureExtractor(self.teacher(), [spec.teacher_layer], detach=True) as fx:
                zt, tf = fx(self.x)
        train_student = method.trainable_student()
        zs, s = zs.detach().requires_grad_(train_student), sf[spec.student_layer].detach()
        s.requires_grad_(train_student)
        leaves = [zs, s]

        def step() -> torch.Tensor:
            with prec.autocast():
                losses = method(Batch(y, zs, zt, {spec.student_layer: s}, tf))
                total = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            for t in leaves:
                t.grad = None
            total.backward()
            opt.step()
            return total.detach()

        return Step(step, _restorer([method], opt))


# ---------------------------------------------------------------------------------------------
# Timing


def measure(rows: list[Row], *, warmup: int, repeats: int, min_time: float) -> None:
    """Warm up each row, size its chunk to ``min_time``, then time ``repeats`` interleaved rounds."""
    timed = benchkit.time_rounds(
        rows,
        lambda row: row.step.run(),
        prepare=lambda row: row.step.reset(),
        warmup=warmup,
        rounds=repeats,
        min_time=min_time,
    )
    for row, t in zip(rows, timed, strict=True):
        row.samples += t.samples
        row.steps_per_chunk = t.steps_per_chunk
        for out in t.outputs:
            if out is not None:
                row.last_loss = float(out)
                if not math.isfinite(row.last_loss):
                    row.nonfinite += 1


# ---------------------------------------------------------------------------------------------
# The two benchmarks


# (key, reference, target, shown in the main table); reference "a" = student step, "a+b" = student
# step + teacher forward; the diagnostic rows (not shown) feed the breakdown table.
MAIN_ROWS = (
    ("student step", None, None, True),
    ("teacher forward", None, None, True),
    ("kd online", "a+b", None, True),
    ("kd cached", "a", KD_CACHED_TARGET, True),
    ("vid", "a+b", VID_RID_TARGET, True),
    ("rid phase 2", "a+b", VID_RID_TARGET, True),
    ("rid phase 1", "a+b", None, True),
    ("vid, 1-layer regressor", "a+b", None, True),
    ("student step + hook", None, None, False),
    ("teacher forward + hook", None, None, False),
    ("adapter: vid", None, None, False),
    ("adapter: rid phase 2", None, None, False),
    ("adapter: vid, 1-layer regressor", None, None, False),
)
BREAKDOWN = ("vid", "rid phase 2", "vid, 1-layer regressor")


def _steps(pb: PairBench, breakdown: bool) -> dict[str, Step]:
    p1, p2 = _rid_epochs()
    steps = {
        "student step": pb.student_step(),
        "teacher forward": pb.teacher_forward(),
        "kd online": pb.distill_step("kd"),
        "kd cached": pb.distill_step("kd", cached=True),
        "vid": pb.distill_step("vid"),
        "rid phase 2": pb.distill_step("rid", epoch=p2),
        "rid phase 1": pb.distill_step("rid", epoch=p1),
        "vid, 1-layer regressor": pb.distill_step("vid", regressor_layers=1),
    }
    if breakdown:
        steps.update(
            {
                "student step + hook": pb.student_step(hook=True),
                "teacher forward + hook": pb.teacher_forward(hook=True),
                "adapter: vid": pb.adapter_step("vid"),
                "adapter: rid phase 2": pb.adapter_step("rid", epoch=p2),
                "adapter: vid, 1-layer regressor": pb.adapter_step("vid", regressor_layers=1),
            }
        )
    return steps


def bench_pair(spec: PairSpec, prec: Precision, args) -> tuple[list[dict], list[dict]]:
    """Main-table rows and breakdown rows of one pair."""
    pb = PairBench(spec, prec, seed=args.seed)
    rows = [Row(key, step) for key, step in _steps(pb, not args.no_breakdown).items()]
    measure(rows, warmup=args.warmup, repeats=args.repeats, min_time=args.min_time)
    by = {r.key: r for r in rows}
    a, b = by["student step"].samples, by["teacher forward"].samples
    c = [ai + bi for ai, bi in zip(a, b, strict=True)]
    ref_samples = {"a": a, "a+b": c}
    out = []
    for key, ref, target, shown in MAIN_ROWS:
        if key not in by or not shown:
            continue
        row = by[key]
        rec = {
            "pair": spec.name,
            "batch": spec.batch,
            "method": key,
            "ms": 1e3 * statistics.median(row.samples),
            "spread": spread(row.samples),
            "steps_per_round": row.steps_per_chunk,
            "samples_ms": [1e3 * t for t in row.samples],
            "last_loss": row.last_loss,
            "nonfinite_chunks": row.nonfinite,
            "reference": ref,
            "reference_ms": None if ref is None else 1e3 * statistics.median(ref_samples[ref]),
            "ratio": None if ref is None else median_ratio(row.samples, ref_samples[ref]),
            "target": target,
            "passed": None,
        }
        if target is not None:
            rec["passed"] = rec["ratio"] <= target
        if row.nonfinite:
            print(
                f"warning: {spec.name} / {key}: {row.nonfinite} chunk(s) ended on a non-finite loss",
                file=sys.stderr,
            )
        out.append(rec)
        if key == "teacher forward":
            out.append(
                {
                    "pair": spec.name,
                    "batch": spec.batch,
                    "method": "(a+b: student step + teacher forward)",
                    "ms": 1e3 * statistics.median(c),
                    "spread": spread(c),
                    "samples_ms": [1e3 * t for t in c],
                    "reference": None,
                    "ratio": None,
                    "target": None,
                    "passed": None,
                }
            )
    breakdown = []
    if not args.no_breakdown:
        a_h, b_h = by["student step + hook"].samples, by["teacher forward + hook"].samples
        hooks = 1e3 * statistics.median(ah + bh - ct for ah, bh, ct in zip(a_h, b_h, c, strict=True))
        for key in BREAKDOWN:
            row = by[key]
            extra = 1e3 * statistics.median(t - ct for t, ct in zip(row.samples, c, strict=True))
            adapter = 1e3 * statistics.median(by[f"adapter: {key}"].samples)
            breakdown.append(
                {
                    "pair": spec.name,
                    "batch": spec.batch,
                    "method": key,
                    "ms": 1e3 * statistics.median(row.samples),
                    "reference_ms": 1e3 * statistics.median(c),
                    "extra_ms": extra,
                    "adapter_ms": adapter,
                    "hooks_ms": hooks,
                    "rest_ms": extra - adapter - hooks,
                }
            )
    return out, breakdown


PRECISIONS = (
    Precision(),
    Precision(channels_last=True),
    Precision(bf16=True),
    Precision(channels_last=True, bf16=True),
)


def bench_precision(spec: PairSpec, args) -> list[dict]:
    rows, meta = [], []
    for prec in PRECISIONS:
        pb = PairBench(spec, prec, seed=args.seed)
        rows.append(Row(f"student step, {prec.label}", pb.student_step()))
        meta.append(("student step", prec.label))
        if prec in (PRECISIONS[0], PRECISIONS[-1]):
            rows.append(Row(f"teacher forward, {prec.label}", pb.teacher_forward()))
            meta.append(("teacher forward", prec.label))
    measure(rows, warmup=args.warmup, repeats=args.repeats, min_time=args.min_time)
    base = {what: row for row, (what, label) in zip(rows, meta, strict=True) if label == "fp32"}
    out = []
    for row, (what, label) in zip(rows, meta, strict=True):
        out.append(
            {
                "pair": spec.name,
                "batch": spec.batch,
                "what": what,
                "precision": label,
                "ms": 1e3 * statistics.median(row.samples),
                "spread": spread(row.samples),
                "samples_ms": [1e3 * s for s in row.samples],
                "speedup": median_ratio(base[what].samples, row.samples),
                "last_loss": row.last_loss,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# Output


def main_table(rows: list[dict]) -> str:
    body = []
    for r in rows:
        ref = "—" if r["reference"] is None else f"{r['reference']} = {r['reference_ms']:.1f} ms"
        verdict = "—" if r["passed"] is None else ("pass" if r["passed"] else "**FAIL**")
        target = "—" if r["target"] is None else f"≤ {r['target']:.2f}"
        body.append(
            [
                f"{r['pair']} (B={r['batch']})",
                r["method"],
                f"{r['ms']:.1f}",
                ref,
                fmt_or_dash(r["ratio"], ".3f"),
                target,
                verdict,
            ]
        )
    header = ["pair", "method", "ms/step", "reference", "ratio", "target", "pass/fail"]
    return md_table(header, body, ["---", "---", "---:", "---", "---:", "---:", "---"])


def breakdown_table(rows: list[dict]) -> str:
    body = [
        [
            f"{r['pair']} (B={r['batch']})",
            r["method"],
            f"{r['ms']:.1f}",
            f"{r['reference_ms']:.1f}",
            f"{r['extra_ms']:+.1f}",
            f"{r['adapter_ms']:.1f}",
            f"{r['hooks_ms']:+.1f}",
            f"{r['rest_ms']:+.1f}",
        ]
        for r in rows
    ]
    header = ["pair", "method", "ms/step", "a+b", "extra", "adapter alone", "hooks", "rest"]
    return md_table(header, body, ["---", "---"] + ["---:"] * 6)


def precision_table(rows: list[dict]) -> str:
    body = [
        [
            f"{r['pair']} (B={r['batch']})",
            r["what"],
            r["precision"],
            f"{r['ms']:.1f}",
            f"{r['speedup']:.2f}×",
        ]
        for r in rows
    ]
    header = ["pair", "step", "precision", "ms/step", "speedup vs fp32"]
    return md_table(header, body, ["---", "---", "---", "---:", "---:"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small-CNN pair only, fewer repeats (< 1 min)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--batch", type=int, default=64, help="WRN pair batch size (default 64)")
    ap.add_argument("--cnn-batch", type=int, default=128, help="small-CNN pair batch size (default 128)")
    ap.add_argument("--channels-last", action="store_true", help="channels_last memory format in all rows")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on CPU in all rows")
    ap.add_argument("--repeats", type=int, help="timed rounds per row (default 15)")
    ap.add_argument("--warmup", type=int, help="untimed steps per row first (default 3; --quick 2)")
    ap.add_argument(
        "--min-time", type=float, help="seconds per timed chunk of steps (default 0.15; --quick 0.05)"
    )
    ap.add_argument("--no-precision-table", action="store_true", help="skip the fp32 vs bf16 table")
    ap.add_argument(
        "--no-breakdown", action="store_true", help="skip the hook / adapter rows and their table"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the data and weights (default 0)")
    ap.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    ap.add_argument("--strict", action="store_true", help="exit with status 1 if a target fails")
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 15
    if args.warmup is None:
        args.warmup = 2 if args.quick else 3
    if args.min_time is None:
        args.min_time = 0.05 if args.quick else 0.15
    if args.threads < 1 or args.repeats < 1 or args.batch < 1 or args.cnn_batch < 1:
        ap.error("--threads, --repeats, --batch and --cnn-batch must be >= 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    prec = Precision(channels_last=args.channels_last, bf16=args.bf16)
    omp_wait = os.environ.get("OMP_WAIT_POLICY")
    meta = {
        "machine": benchkit.machine_info(),
        "precision": prec.label,
        "quick": args.quick,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "min_time_s": args.min_time,
    }
    print(benchkit.machine_line(meta["machine"]))
    print(f"precision: {prec.label}, {args.repeats} rounds x >= {args.min_time} s per row")
    if omp_wait is None:
        print("note: set OMP_WAIT_POLICY=PASSIVE before starting Python for steadier timings")

    t_start = time.perf_counter()
    specs = pair_specs(args)
    rows: list[dict] = []
    breakdown: list[dict] = []
    for spec in specs:
        main_rows, extra_rows = bench_pair(spec, prec, args)
        rows += main_rows
        breakdown += extra_rows
    print()
    print(f"## Training step on CPU ({prec.label}); ratio = median over rounds of row / reference")
    print()
    print(main_table(rows))
    for r in rows:
        if r["method"].startswith("(a+b"):
            t = sorted(r["samples_ms"])
            print(
                f"\n{r['pair']}: a+b per round min {t[0]:.1f} / median {statistics.median(t):.1f} / "
                f"max {t[-1]:.1f} ms (a max far above the median means other processes took cores)"
            )
    if breakdown:
        print()
        print("## Where the extra time goes: step - (a+b), per round, median")
        print()
        print(breakdown_table(breakdown))

    prec_rows: list[dict] = []
    if not args.no_precision_table:
        for spec in specs:
            prec_rows += bench_precision(spec, args)
        print()
        print("## Student step (and teacher forward): fp32 vs channels_last / bf16 autocast")
        print()
        print(precision_table(prec_rows))

    failed = [r for r in rows if r["passed"] is False]
    print()
    if failed:
        print(
            "targets failed: " + "; ".join(f"{r['pair']} / {r['method']} ({r['ratio']:.3f})" for r in failed)
        )
    else:
        print("all targets met")
    meta["seconds"] = round(time.perf_counter() - t_start, 1)
    print(f"total {meta['seconds']} s")
    if args.json:
        benchkit.write_json(
            args.json, {"meta": meta, "rows": rows, "breakdown": breakdown, "precision": prec_rows}
        )
        print(f"saved {args.json}")
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
