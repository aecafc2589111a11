"""E2 [FID]: how faithfully does a student imitate its teacher, and does fidelity buy accuracy?

Stanton et al., *Does Knowledge Distillation Really Work?* (NeurIPS 2021). Self-distillation: teacher
members and student share one architecture and one training set (the distillation data), so the
student could copy a member exactly. The grid (each setting × seed is a resumable run directory):

* ``independent``: the student trained on the labels only; its agreement with the teacher is the
  reference for what two independently trained networks share;
* ``ens{m}-tau{τ}``: KD with α = 0 from an ensemble of m ∈ {1, 3, 5} members, τ ∈ {1, 4};
* ``ens1-tau{τ}-{data}``: the same with crop-flip or mixup distillation data;
* ``lambda{λ}``: the student initialised at λ·teacher + (1 − λ)·random, then KD (τ = 1).

``run_fidelity(preset, out_dir)`` trains the members, records the members' and ensembles' test
accuracy, runs the grid and writes the report (:mod:`.report`).

The presets and configs are defined in :mod:`.presets` and re-exported here.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path

import torch

from ...data.loader import BatchReader, auto_eval_batch
from ...methods import ensemble_logits
from ...training.rundir import RunDir
from ...training.runs import distill, model_from_run, prepare_data, train_teacher
from ..common import (
    atomic_write,
    check_models_fit,
    load_full_data,
    run_unfinished,
)
from .presets import (
    MEMBER_SEED_OFFSET,
    PRESETS,
    FidelityPreset,
    Setting,
    data_counts,
    distill_config,
    fit_to_data,
    member_dir,
    run_name,
    teacher_config,
)
from .report import write_fidelity_report

__all__ = [
    "FidelityPreset",
    "MEMBER_SEED_OFFSET",
    "PRESETS",
    "Setting",
    "data_counts",
    "distill_config",
    "fit_to_data",
    "member_dir",
    "run_fidelity",
    "run_name",
    "teacher_accuracies",
    "teacher_config",
]


def teacher_accuracies(p: FidelityPreset, out: Path) -> dict:
    """Test accuracy of every member and of the ensembles of the first m members (written once)."""
    path = out / "teachers.json"
    if path.exists():
        return json.loads(path.read_text())
    cfg = teacher_config(p, member_dir(out, 0), 0)
    train, test = prepare_data(cfg.data, 0)
    eval_batch = auto_eval_batch(train, cfg.data.batch_size, cfg.data.eval_batch_size)
    logits = []
    with torch.no_grad(), BatchReader(test, cfg.data.workers) as reader:
        for i in range(p.n_members):
            model = model_from_run(member_dir(out, i), cfg.model, train).eval()
            batches = reader.sequential(eval_batch)
            logits.append(torch.cat([model(xb) for _, xb, _ in batches]).float())
    y = test.y
    acc = {f"member{i}": float((z.argmax(1) == y).float().mean()) for i, z in enumerate(logits)}
    for m in p.ensembles:
        z = ensemble_logits(logits[:m]) if m > 1 else logits[0]
        acc[f"ensemble{m}"] = float((z.argmax(1) == y).float().mean())
    atomic_write(path, json.dumps(acc, indent=2))
    return acc


def run_fidelity(preset: FidelityPreset, out_dir: str | Path, progress: bool = True) -> Path:
    """Run (or finish) every run of the preset and write the report; returns the report path."""
    if any(lam is not None and not 0 <= lam <= 1 for lam in preset.lambdas):
        raise ValueError(f"lambdas must lie in [0, 1], got {list(preset.lambdas)}")
    out = Path(out_dir)
    train, test = load_full_data(preset.data, preset.data_root)
    preset = fit_to_data(preset, train.input_shape)
    # Every config is built (and so checked) before anything trains: a bad seed or data name fails now.
    members = [teacher_config(preset, member_dir(out, i), i) for i in range(preset.n_members)]
    grid = [
        distill_config(preset, s, seed, out / run_name(s.name, seed))
        for s, seed in itertools.product(preset.settings(), preset.seeds)
    ]
    check_models_fit({"model": members[0].model}, train, preset.name)
    counts = data_counts(preset, len(train), len(test))
    with RunDir(out).locked():
        atomic_write(out / "preset.json", json.dumps(asdict(preset), indent=2))
        run_unfinished(members, train_teacher, "E2 teachers", progress)
        teacher_accuracies(preset, out)
        run_unfinished(grid, distill, "E2 runs", progress)
        return write_fidelity_report(preset, out, counts)
