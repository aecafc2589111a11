"""E1 [PID-KD]: trained / untrained / noisy teacher × {baseline, VID, RID, TED}, several seeds.

``run_rid(preset, out_dir)`` trains the teacher, runs every (teacher, method, seed) distillation in
its own run directory (finished runs are skipped, interrupted ones resumed), then writes the report
(`report.md`, plots) from the logs. The qualitative claims of the paper are checked from the
numbers of this run, not asserted.

The presets and configs are defined in :mod:`.presets` and re-exported here.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path

from ...layer_map import auto_pairs
from ...training.config import DistillConfig, to_dict
from ...training.rundir import RunDir, TrainingError
from ...training.runs import distill, train_teacher
from ..common import (
    atomic_write,
    check_models_fit,
    load_full_data,
    run_unfinished,
)
from .presets import (
    CLAIM_RUNS,
    LAST_PAIR_ONLY,
    LOGIT_METHODS,
    METHODS,
    PRESETS,
    RID_VARIANTS,
    STAGES,
    TEACHER_KINDS,
    VID_VARIANTS,
    RIDPreset,
    check_method_param,
    data_counts,
    distill_config,
    fit_to_data,
    paper_method_params,
    run_name,
    stage_pairs,
    teacher_budget,
    teacher_config,
)
from .report import write_rid_report

__all__ = [
    "CLAIM_RUNS",
    "LAST_PAIR_ONLY",
    "LOGIT_METHODS",
    "METHODS",
    "PRESETS",
    "RIDPreset",
    "RID_VARIANTS",
    "STAGES",
    "TEACHER_KINDS",
    "VID_VARIANTS",
    "check_method_param",
    "data_counts",
    "distill_config",
    "distill_or_record",
    "fit_to_data",
    "paper_method_params",
    "run_name",
    "run_rid",
    "stage_pairs",
    "teacher_budget",
    "teacher_config",
]


def distill_or_record(cfg: DistillConfig, progress: bool = False, resume: bool = True) -> None:
    """Run ``distill``; a run that stops on a non-finite loss is a result (recorded in stopped.json,
    with the epoch it stopped at), not the end of the experiment. A recorded stop of the same config
    is not rerun: training is deterministic given the seed, so it would stop again."""

    run = RunDir(cfg.run.out_dir)
    stopped = run.read_stop()
    if stopped is not None and stopped.get("config") == to_dict(cfg):
        return
    run.clear_stop()
    try:
        resolver = auto_pairs if cfg.method.pairs == "auto" else None  # the pairs chosen from the map
        distill(cfg, progress=progress, resume=resume, pair_resolver=resolver)
    except TrainingError as exc:
        record = {"epoch": run.last_epoch() + 1, "error": str(exc).splitlines()[0], "config": to_dict(cfg)}
        run.record_stop(record)


def run_rid(preset: RIDPreset, out_dir: str | Path, progress: bool = True) -> Path:
    """Run (or finish) every run of the preset and write the report; returns the report path."""
    out = Path(out_dir)
    train, test = load_full_data(preset.data, preset.data_root, preset.data_kwargs)
    preset = teacher_budget(fit_to_data(preset, train.input_shape), len(train))
    teacher_dir = out / "teacher"
    # Every config is built (and so checked) before anything trains: a bad seed or data name fails now.
    t_cfg = teacher_config(preset, teacher_dir)
    grid = [
        distill_config(preset, teacher_dir, kind, method, seed, out / run_name(kind, method, seed))
        for (kind, method), seed in itertools.product(preset.grid(), preset.seeds)
    ]
    check_models_fit({"teacher model": t_cfg.model, "student model": grid[0].student}, train, preset.name)
    counts = data_counts(preset, len(train), len(test))
    if counts["pid_samples"] < preset.pid_k:
        raise ValueError(
            f"the PID needs at least pid_k = {preset.pid_k} test examples, but {preset.data!r} leaves "
            f"{counts['pid_samples']}: use a larger data set"
        )
    with RunDir(out).locked():
        atomic_write(out / "preset.json", json.dumps(asdict(preset), indent=2))
        run_unfinished([t_cfg], train_teacher, "E1 teacher", progress=False)
        run_unfinished(grid, distill_or_record, "E1 runs", progress)
        return write_rid_report(preset, out, counts)
