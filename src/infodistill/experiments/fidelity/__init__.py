"""E2 of [FID]: fidelity against generalisation (self-distillation and ensembles, distillation
data, initialisation near the teacher), one command (``infodistill reproduce fidelity``).

``presets.py`` holds the settings, ``run.py`` trains the members and runs every KD setting,
``report.py`` writes the tables, the claims' verdicts and the plots.
"""

# The driver's names (run.py re-exports the presets' too), looked up here by the CLI at call time.
from . import run as _run
from .run import *  # noqa: F403

__all__ = list(_run.__all__)
