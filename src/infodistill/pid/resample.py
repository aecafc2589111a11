"""The histogram of (label, teacher symbol, student symbol) and its resampled decompositions: the
bootstrap and the label-permutation baseline.

Imports numpy only (and the decomposition).
"""

from __future__ import annotations

import numpy as np

from .decompose import PIDResult, decompose_batch
from .estimate_inputs import _Options
from .measures import convert_units
from .terms import TERMS

#: Certified tolerance (bits) for the resampled decompositions (bootstrap and permutation baseline).
#: Their spread is orders of magnitude larger, and the solver needs ~3x fewer Newton steps than at
#: the 1e-8 default, which is what keeps ``n_boot=100`` within a few seconds.
RESAMPLE_TOL_BITS = 1e-6


def _cells(y, ct, cs, shape) -> np.ndarray:
    """Flat histogram cell of every (y, cluster_t, cluster_s) triple."""
    return (y * shape[1] + ct) * shape[2] + cs


def _counts(cells: np.ndarray, shape) -> np.ndarray:
    return np.bincount(cells, minlength=shape[0] * shape[1] * shape[2]).reshape(shape)


def _resample_tol(opts: _Options) -> float:
    tol_bits = RESAMPLE_TOL_BITS
    if opts.tol is not None:
        tol_bits = max(tol_bits, convert_units(opts.tol, opts.unit, "bits"))
    return convert_units(tol_bits, "bits", opts.unit)


def _term_vector(res: PIDResult) -> np.ndarray:
    return np.array([getattr(res, t) for t in TERMS])


#: Resampled histograms held at once (drawn, then decomposed together): at most this many cells.
RESAMPLE_CHUNK_CELLS = 2_000_000


def _resampled_terms_batch(draw, n: int, shape, opts: _Options, tol: float) -> np.ndarray:
    """The terms of ``n`` resampled histograms, as rows: ``draw()`` gives the next one (in order,
    so the draws are those of a loop), in chunks decomposed by ``decompose_batch`` (each resample
    with its own certificate: the same values as ``decompose`` one by one, within the two gaps)."""
    chunk = max(1, RESAMPLE_CHUNK_CELLS // int(np.prod(shape)))
    rows = []
    for lo in range(0, n, chunk):
        stack = np.stack([draw() for _ in range(min(chunk, n - lo))])
        rows += [_term_vector(r) for r in decompose_batch(stack, unit=opts.unit, counts=True, tol=tol)]
    return np.array(rows)
