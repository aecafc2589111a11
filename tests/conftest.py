"""Suite-wide settings.

Layout: the tests mirror the package, one folder per room of ``src/infodistill/`` (``pid/``,
``data/``, ``models/``, ``methods/``, ``metrics/``, ``training/``, ``audit/``, ``experiments/``,
``cli/``), plus ``contract/`` (the hostile-input suites: every entry point, library and command line,
fed broken and malicious input), ``bench/`` (the bench scripts on tiny sizes) and, here at the top,
the repository-wide checks (layers, public names, the code blocks of the README and the docs).
Data files a test reads lie beside it (``pid/fixtures/``).

Imports: ``tests/`` and each of its folders are packages (an empty ``__init__.py``), so pytest
imports a test file by its dotted name (``tests.training.test_rundir``) and a file may take the
name of the module it tests in any folder. Code that several test files share lives in
``tests/helpers/`` (``gates``, ``datafiles``, ``interrupts``, ``broja_brute``), which
``pythonpath = ["tests/helpers"]`` in pyproject.toml's ``[tool.pytest.ini_options]`` puts on
``sys.path`` before anything is collected, whichever folder or file is run; a test imports a helper
by name (``from gates import AND_RED``), never another test file. Fixtures that several folders
share belong in this file, those of one folder in that folder's ``conftest.py``.

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
