"""Partial information decomposition (BROJA) and information measures on joint arrays.

This subpackage imports numpy, scipy and scikit-learn only (never torch), and can be used on its own.
"""

from .decompose import PIDResult, decompose, decompose_batch
from .estimate import Discretized, EstimateResult, SweepResult, discretize, estimate, sweep
from .measures import (
    as_joint,
    co_information,
    conditional_entropy,
    conditional_mutual_information,
    convert_units,
    entropy,
    marginal,
    mutual_information,
)

__all__ = [
    "PIDResult",
    "decompose",
    "decompose_batch",
    "Discretized",
    "EstimateResult",
    "SweepResult",
    "discretize",
    "estimate",
    "sweep",
    "as_joint",
    "co_information",
    "conditional_entropy",
    "conditional_mutual_information",
    "convert_units",
    "entropy",
    "marginal",
    "mutual_information",
]
