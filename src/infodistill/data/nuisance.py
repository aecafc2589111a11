"""Task-irrelevant structure for image data sets: fixed random smooth patterns added to each image.

[PID-KD] contrasts a teacher that knows the task with one whose representation carries no label
information (its untrained teacher, and a teacher that "encodes nuisance"). On Fashion-MNIST a
random conv net's last stage keeps most of what the pixels say about the label, so an untrained
teacher is not uninformative there (docs/e1.md, *Premises and regimes*). Adding to every image a
pattern drawn independently of the image and its label gives the input variation that a random
network represents and a trained one learns to ignore, as MNIST-1D's correlated noise does for
signals.
"""

from __future__ import annotations

import numpy as np

#: the patterns' plane waves per image and their frequency range, in cycles per image side
WAVES = 3
CYCLES = (0.5, 3.0)


def nuisance_fields(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """``n`` patterns of shape (height, width), float32, each with mean ~0 and standard deviation 1.

    Each is the sum of :data:`WAVES` plane waves cos(2π f (u cos θ + v sin θ) + φ) over the image's
    coordinates u, v in [0, 1), with f ~ U(:data:`CYCLES`) cycles per side, θ ~ U(0, π) and
    φ ~ U(0, 2π) drawn per wave and image from ``numpy.random.default_rng(seed)``; then divided
    by its own standard deviation. The same (n, height, width, seed) gives the same patterns.
    """
    rng = np.random.default_rng(seed)
    u = np.arange(width, dtype=np.float64) / width  # columns
    v = np.arange(height, dtype=np.float64) / height  # rows
    out = np.zeros((n, height, width), dtype=np.float32)
    for _ in range(WAVES):
        f = rng.uniform(*CYCLES, n)[:, None]
        theta = rng.uniform(0.0, np.pi, n)[:, None]
        phase = rng.uniform(0.0, 2 * np.pi, n)[:, None]
        # cos(a + b) = cos a cos b - sin a sin b, with a along the columns and b along the rows:
        # two outer products per wave instead of a cosine per pixel
        a = 2 * np.pi * f * np.cos(theta) * u + phase  # (n, width)
        b = 2 * np.pi * f * np.sin(theta) * v  # (n, height)
        ca, sa, cb, sb = (t.astype(np.float32) for t in (np.cos(a), np.sin(a), np.cos(b), np.sin(b)))
        out += cb[:, :, None] * ca[:, None, :] - sb[:, :, None] * sa[:, None, :]
    out /= np.maximum(out.reshape(n, -1).std(axis=1), 1e-12)[:, None, None]
    return out


def add_nuisance(x: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """``x`` (N, C, H, W) plus ``scale`` times one pattern of :func:`nuisance_fields` per image
    (the same in every channel); ``scale`` 0 returns ``x`` unchanged."""
    if not scale:
        return x
    n, _, h, w = x.shape
    return x + scale * nuisance_fields(n, h, w, seed)[:, None]


__all__ = ["CYCLES", "WAVES", "add_nuisance", "nuisance_fields"]
