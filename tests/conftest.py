"""Suite-wide settings.

Hypothesis runs derandomised by default, so CI and every developer see the same examples. Passing
``--hypothesis-seed N`` switches to the ``seeded`` profile (random examples from seed N), which is
how the suite is shaken for examples the fixed seed never draws; ``--hypothesis-profile NAME``
picks a profile explicitly.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("derandomized", derandomize=True, deadline=None)
settings.register_profile("seeded", derandomize=False, deadline=None, database=None)


def pytest_configure(config) -> None:
    if config.getoption("hypothesis_profile", None):
        return  # the user's explicit choice, loaded by hypothesis' own plugin
    seeded = config.getoption("hypothesis_seed", None) is not None
    settings.load_profile("seeded" if seeded else "derandomized")
