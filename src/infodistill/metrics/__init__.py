"""Fidelity (teacher–student agreement, predictive KL) and generalisation metrics."""

from .fidelity import FidelityAccumulator, fidelity_metrics, linear_cka

__all__ = ["FidelityAccumulator", "fidelity_metrics", "linear_cka"]
