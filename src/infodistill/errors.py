"""The base class of the package's user errors: ``InfodistillError``.

Every exception the package raises for a user's mistake or an unusable environment (a config, a
data set, a checkpoint, a run directory, a run that cannot continue, a torchrun setup, a command
line) derives from it, with the built-in type its callers would expect as a second base
(``ConfigError`` is a ``ValueError``, ``TrainingError`` a ``RuntimeError``). Its message is one
line naming the problem and the fix, so the CLI prints it as is, in one place
(``cli.main``), without a traceback. Standard library only: every layer may import it.
"""

from __future__ import annotations

__all__ = ["InfodistillError"]


class InfodistillError(Exception):
    """A user's mistake or an unusable environment, stated in one line with its fix."""
