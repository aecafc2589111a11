"""Brute-force references for the BROJA solver's building blocks, shared by tests/pid/
(imported as ``broja_brute``): each loops over the blocks the solver assembles in one go."""

import numpy as np

__all__ = ["brute_coupling"]


def brute_coupling(A_inv, pi, q, W):
    """Σ_t B_tᵀ A_t⁻¹ B_t by explicit loops over the pair blocks, as (s, y, e, z)."""
    Y, T, S = pi.shape
    out = np.zeros((S * Y, S * Y))
    for t in range(T):
        B = np.zeros((Y, S, Y))
        for s in range(S):
            B[:, s, :] = np.diag(q[:, t, s]) + W[t, s] * np.outer(pi[:, t, s], pi[:, t, s])
        B = B.reshape(Y, S * Y)
        out += B.T @ A_inv[t] @ B
    return out.reshape(S, Y, S, Y)
