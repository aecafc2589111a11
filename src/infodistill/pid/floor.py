"""The permutation floor of an estimated term, and the bias-centred bootstrap interval it is read
against: what the layer map, its pairing and the training stop rule call "at the floor".

For an :class:`~infodistill.pid.EstimateResult` with a permutation baseline (``n_perm >= 2``) and
bootstrap intervals (``n_boot >= 1``):

- the *floor* of a term is the mean of that term over label permutations plus ``FLOOR_SD_FACTOR``
  of their standard deviations plus ``FLOOR_MARGIN_BITS``: what a term whose true value is 0 reads
  at this n and k (the audit's rule for "no label information", applied to any term);
- the *bias-centred interval* is the percentile bootstrap interval shifted down by the bootstrap's
  mean shift (``EstimateResult.boot_shift``): its width is the sampling spread, its centre the
  estimate (see :mod:`infodistill.audit` for why the raw interval sits above the estimate);
- a term is *at its floor* when the upper end of its bias-centred interval is at most its floor:
  the estimate cannot tell it from the bias of a term that is 0.

Torch-free, like the rest of the pid package (the values are read off the result).
"""

from __future__ import annotations

from .measures import convert_units

__all__ = ["FLOOR_MARGIN_BITS", "FLOOR_SD_FACTOR", "at_floor", "centred_ci", "floor"]

#: Standard deviations of the permutation values above their mean.
FLOOR_SD_FACTOR = 2.0
#: Absolute margin above that (bits): a few hundredths of a bit is nothing a student can use.
FLOOR_MARGIN_BITS = 0.02


def _require(result, what: str) -> None:
    if result.bias is None or result.bias.get("n_perm", 0) < 2:
        raise ValueError(f"{what} needs a permutation baseline with n_perm >= 2 (estimate(..., n_perm=20))")
    if result.ci is None:
        raise ValueError(f"{what} needs bootstrap intervals (estimate(..., n_boot=100))")


def floor(result, term: str = "unique_t") -> float:
    """The permutation floor of ``term`` (in the result's unit)."""
    if result.bias is None or result.bias.get("n_perm", 0) < 2:
        raise ValueError("the floor needs a permutation baseline with n_perm >= 2 (estimate(..., n_perm=20))")
    margin = convert_units(FLOOR_MARGIN_BITS, "bits", result.settings["unit"])
    return float(result.bias["mean"][term] + FLOOR_SD_FACTOR * result.bias["sd"][term] + margin)


def centred_ci(result) -> dict:
    """``{term: (low, high)}``: the percentile intervals shifted down by the bootstrap mean shift."""
    if result.ci is None:
        raise ValueError("a bias-centred interval needs bootstrap intervals (estimate(..., n_boot=100))")
    shift = result.boot_shift
    return {t: (float(a - shift[t]), float(b - shift[t])) for t, (a, b) in result.ci.items()}


def at_floor(result, term: str = "unique_t") -> bool:
    """Whether the upper end of the bias-centred interval of ``term`` is at most its floor."""
    _require(result, "at_floor")
    return bool(centred_ci(result)[term][1] <= floor(result, term))
