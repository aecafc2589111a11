"""E1 of [PID-KD]: trained, untrained and noisy teachers x {baseline, KD, VID, RID, TED} and
their PID, one command (``infodistill reproduce rid``).

``presets.py`` holds the settings (the paper's and the quick ones), ``run.py`` trains the teachers
and runs every distillation, ``report.py`` writes the tables, the claims' verdicts and the plots.
"""

# The driver's names (run.py re-exports the presets' too), looked up here by the CLI at call time.
from . import run as _run
from .run import *  # noqa: F403

__all__ = list(_run.__all__)
