"""E1 of [PID-KD]: trained, untrained and noisy teachers x {baseline, KD, VID, RID, TED} and
their PID, one command (``infodistill reproduce rid``).

``presets.py`` holds the settings (the paper's and the quick ones), ``run.py`` trains the teachers
and runs every distillation, ``report.py`` writes the tables, the claims' verdicts and the plots.
"""

from .run import (
    LAST_PAIR_ONLY,
    LOGIT_METHODS,
    METHODS,
    PRESETS,
    RID_VARIANTS,
    STAGES,
    STOPPED,
    TEACHER_KINDS,
    VID_VARIANTS,
    RIDPreset,
    check_method_param,
    data_counts,
    distill_config,
    distill_or_record,
    fit_to_data,
    paper_method_params,
    read_stopped,
    run_name,
    run_rid,
    stage_pairs,
    teacher_config,
)

__all__ = [
    "LAST_PAIR_ONLY",
    "LOGIT_METHODS",
    "METHODS",
    "PRESETS",
    "RIDPreset",
    "RID_VARIANTS",
    "STAGES",
    "STOPPED",
    "TEACHER_KINDS",
    "VID_VARIANTS",
    "check_method_param",
    "data_counts",
    "distill_config",
    "distill_or_record",
    "fit_to_data",
    "paper_method_params",
    "read_stopped",
    "run_name",
    "run_rid",
    "stage_pairs",
    "teacher_config",
]
