"""The bench scripts (``bench/*.py``, not a package) loaded by path for tests/bench/ (imported as
``benchscripts``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__all__ = ["BENCH", "load_bench"]

#: the repository's bench/ folder
BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_bench(name: str):
    """``bench/<name>.py`` as a fresh module (registered in ``sys.modules`` under a test name, as
    dataclasses need their module there)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}_under_test", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
