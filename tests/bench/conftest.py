"""Where the bench tests find the scripts they load: ``bench/`` at the repository root.

``test_bench_gpu.py`` and ``test_bench_scaling.py`` compute ``BENCH`` as
``Path(__file__).parents[1] / "bench" / NAME``, which was the repository's ``bench/`` while they
lay in ``tests/``; from ``tests/bench/`` it names ``tests/bench/NAME``, which does not exist.
Until their own line says ``parents[2]`` (their contents are being edited on another branch), this
points a ``BENCH`` that does not exist at the same script under the repository's ``bench/``; a
``BENCH`` that exists is left alone, so the fixture does nothing once the files are fixed and can
then be deleted. It is module-scoped and autouse, so it runs before a module's own fixtures (the
scaling tests load their script in a module-scoped fixture).
"""

from __future__ import annotations

from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(autouse=True, scope="module")
def _bench_script_under_repository_bench(request) -> None:
    script = getattr(request.module, "BENCH", None)
    if isinstance(script, Path) and not script.exists():
        request.module.BENCH = BENCH_DIR / script.name
