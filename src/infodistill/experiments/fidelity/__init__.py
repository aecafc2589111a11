"""E2 of [FID]: fidelity against generalisation (self-distillation and ensembles, distillation
data, initialisation near the teacher), one command (``infodistill reproduce fidelity``).

``presets.py`` holds the settings, ``run.py`` trains the members and runs every KD setting,
``report.py`` writes the tables, the claims' verdicts and the plots.
"""

from .run import (
    MEMBER_SEED_OFFSET,
    PRESETS,
    FidelityPreset,
    Setting,
    data_counts,
    distill_config,
    fit_to_data,
    member_dir,
    run_fidelity,
    run_name,
    teacher_accuracies,
    teacher_config,
)

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
