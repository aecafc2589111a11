"""BLAS thread limits for the numerical work of the PID engine."""

from __future__ import annotations

import contextlib

from threadpoolctl import ThreadpoolController

_CONTROLLER = None


def blas_threads(n: int | None):
    """Context manager limiting the BLAS libraries to ``n`` threads (``None``: leave them as they are).

    On the 2-core machines this project targets, one thread beat two for the BROJA Newton systems
    and for the PCA/k-means of an audit (threading overhead and a core shared with other work).
    The controller is made at first use, when numpy's and scipy's BLAS are both loaded.
    """
    global _CONTROLLER
    if n is None:
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=n, user_api="blas")
