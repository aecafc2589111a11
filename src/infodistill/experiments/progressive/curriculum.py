"""The curriculum in the teacher's trajectory, measured on its checkpoints' outputs.

For each checkpoint, on fresh inputs: o = the bin of p(y = 1 | x) (``bins`` equal-width bins of
[0, 1]); for every input coordinate x_j the mutual information I(o; x_j) and, with the PID engine,
the BROJA decomposition of I(o; (x_j, y)) into what x_j and the label y carry about o redundantly,
uniquely and synergistically; and the paper's own probe, the correlation of x_j with p(y = 1 | x)
(``probing.py`` of the reference code takes |E[x_j p]| on 100 000 inputs; here p is centred,
|E[x_j (p - E p)]|, which removes the sample mean of x_j times E p from the noise). On the sparse
parity x_j is independent of y for every j (k >= 2), so a checkpoint whose output depends on a
support coordinate by itself shows it as I(o; x_j) > 0 and as x_j's unique information; the
off-support coordinates are the reference for what shows when the task puts nothing there. The
hidden units are measured by their input weights: the share on the support coordinates
(:func:`support_weight`).
"""

from __future__ import annotations

from statistics import mean

import numpy as np
import torch

from ...data import load_sparse_parity
from ...pid import decompose, mutual_information
from ...training.runs import model_from_run, prepare_data
from .presets import checkpoint_path, teacher_config


def output_bins(p: np.ndarray, bins: int) -> np.ndarray:
    """Bin index (0..bins-1) of each probability in ``p`` (equal-width bins of [0, 1])."""
    return np.minimum((np.asarray(p, dtype=np.float64) * bins).astype(np.int64), bins - 1)


def joint_counts(o: np.ndarray, x: np.ndarray, y: np.ndarray, bins: int) -> np.ndarray:
    """Counts[o, x, y] with o in 0..bins-1 and x, y in {0, 1} (x = 1 where the coordinate is -1)."""
    counts = np.zeros((bins, 2, 2))
    np.add.at(counts, (o, (x < 0).astype(np.int64), y.astype(np.int64)), 1.0)
    return counts


def measure_checkpoint(p: np.ndarray, x: np.ndarray, y: np.ndarray, k: int, bins: int, n_pid: int) -> dict:
    """The information measures of one checkpoint, from its p(y = 1 | x) on inputs ``x`` (N, n) in
    {-1, +1} with labels ``y``. The decomposition runs on the k support coordinates and on the first
    ``n_pid`` off-support ones; the mutual information and the correlation on every coordinate."""
    o = output_bins(p, bins)
    n = x.shape[1]
    label_counts = np.zeros((bins, 2))
    np.add.at(label_counts, (o, y.astype(np.int64)), 1.0)
    label_counts /= label_counts.sum()
    row: dict = {
        "accuracy": float(((p >= 0.5).astype(np.int64) == y).mean()),
        "mi_label": mutual_information(label_counts, 0, 1),
        "mi": [],
        "corr": [float(abs(np.mean(x[:, j] * (p - p.mean())))) for j in range(n)],
        "pid": {},
    }
    for j in range(n):
        c = joint_counts(o, x[:, j], y, bins)
        row["mi"].append(mutual_information(c / c.sum(), 0, 1))
        if j < k + n_pid:
            r = decompose(c, counts=True)
            row["pid"][j] = {
                "redundancy": r.redundancy,
                "unique_x": r.unique_t,
                "unique_y": r.unique_s,
                "synergy": r.synergy,
            }
    support, off = range(k), range(k, n)
    row["support_mi"] = mean(row["mi"][j] for j in support)
    row["off_mi_max"] = max((row["mi"][j] for j in off), default=0.0)
    row["support_corr"] = mean(row["corr"][j] for j in support)
    row["off_corr_max"] = max((row["corr"][j] for j in off), default=0.0)
    pid_off = [j for j in row["pid"] if j >= k]
    for term in ("unique_x", "synergy"):
        row[f"support_{term}"] = mean(row["pid"][j][term] for j in support)
        row[f"off_{term}_max"] = max((row["pid"][j][term] for j in pid_off), default=0.0)
    row["pid"] = {str(j): v for j, v in row["pid"].items()}
    return row


def teacher_trajectory(preset, out, epochs: list[int], n_pid: int | None = None) -> dict:
    """{epoch: measures} of the teacher's checkpoints after each of ``epochs``, on ``probe_size``
    fresh inputs (a draw of their own: seed ``data_seed + 1``)."""
    cfg = teacher_config(preset, out)
    train, _ = prepare_data(cfg.data, cfg.run.seed)
    _, probe = load_sparse_parity(preset.n, preset.k, 1, preset.probe_size, preset.data_seed + 1)
    x = probe.x.flatten(1)
    xs, ys = x.numpy().astype(np.float64), probe.y.numpy()
    rows = {}
    with torch.no_grad():
        for epoch in epochs:
            model = model_from_run(checkpoint_path(out, epoch), cfg.model, train).eval()
            p = torch.softmax(model(x).double(), dim=1)[:, 1].numpy()
            rows[epoch] = measure_checkpoint(p, xs, ys, preset.k, preset.pid_bins, n_pid or preset.k)
            rows[epoch]["support_weight"] = support_weight(model.layer1[0].weight, preset.k)
    return rows


def support_weight(weight, k: int) -> float:
    """The share of the first layer's squared weights on the k support inputs (columns 0..k-1 of the
    (hidden, n) weight): k / n at a random initialisation, 1 when the hidden units read the support
    alone (the features the paper's MLP teachers learn)."""
    w2 = weight.detach().double().pow(2)
    return float(w2[:, :k].sum() / w2.sum())
