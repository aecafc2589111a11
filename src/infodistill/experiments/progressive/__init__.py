"""E3 of [PROG]: progressive distillation's implicit curriculum on the sparse parity, one command
(``infodistill reproduce progressive``).

``presets.py`` holds the settings, ``run.py`` trains the teacher and the students,
``curriculum.py`` measures what the teacher's checkpoints carry about each input variable, and
``report.py`` writes the tables, the claims' verdicts and the plots.
"""

from . import run as _run
from .run import *  # noqa: F403

__all__ = list(_run.__all__)
