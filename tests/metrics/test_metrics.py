"""Fidelity metrics against hand computations and closed forms."""

import math

import numpy as np
import pytest
import torch

from infodistill.metrics import FidelityAccumulator, fidelity_metrics, linear_cka


def two_class_logits(conf_class0):
    """Logits whose softmax gives exactly p(class 0) = c."""
    c = torch.tensor(conf_class0, dtype=torch.float64)
    return torch.stack([c.log(), (1 - c).log()], dim=1)


def test_ece_on_constructed_predictions():
    # Confidences 0.95 (right), 0.95 (wrong), 0.55 (right), 0.35 -> predicts class 1 with 0.65 (wrong).
    logits = two_class_logits([0.95, 0.95, 0.55, 0.35])
    labels = torch.tensor([0, 1, 0, 0])
    m = fidelity_metrics(logits, labels)
    # bin 9: acc 0.5, conf 0.95 (2 of 4); bin 5: acc 1, conf 0.55; bin 6: acc 0, conf 0.65
    expected = 0.5 * 0.45 + 0.25 * 0.45 + 0.25 * 0.65
    assert m["ece"] == pytest.approx(expected, abs=1e-12)
    assert m["accuracy"] == pytest.approx(0.5)
    nll = -(math.log(0.95) + math.log(0.05) + math.log(0.55) + math.log(0.35)) / 4
    assert m["nll"] == pytest.approx(nll, abs=1e-12)


def test_agreement_and_kl_against_numpy():
    rng = np.random.default_rng(0)
    zs, zt = rng.normal(size=(50, 7)), rng.normal(size=(50, 7))
    labels = rng.integers(0, 7, 50)
    ps = np.exp(zs) / np.exp(zs).sum(1, keepdims=True)
    pt = np.exp(zt) / np.exp(zt).sum(1, keepdims=True)
    m = fidelity_metrics(torch.tensor(zs), torch.tensor(labels), torch.tensor(zt))
    assert m["agreement"] == pytest.approx(np.mean(ps.argmax(1) == pt.argmax(1)))
    assert m["kl_teacher_student"] == pytest.approx(np.mean((pt * np.log(pt / ps)).sum(1)), abs=1e-12)
    assert m["accuracy"] == pytest.approx(np.mean(ps.argmax(1) == labels))


def test_identical_teacher_and_student():
    z = torch.randn(30, 5, generator=torch.Generator().manual_seed(1))
    m = fidelity_metrics(z, torch.zeros(30, dtype=torch.long), z)
    assert m["agreement"] == 1.0
    assert m["kl_teacher_student"] == pytest.approx(0.0, abs=1e-12)


def test_full_set_not_mean_of_batch_means():
    g = torch.Generator().manual_seed(2)
    zs, zt = torch.randn(37, 4, generator=g), torch.randn(37, 4, generator=g)
    y = torch.randint(0, 4, (37,), generator=g)
    full = fidelity_metrics(zs, y, zt)
    acc = FidelityAccumulator()
    for a, b in [(0, 1), (1, 30), (30, 37)]:  # very uneven batches
        acc.update(zs[a:b], y[a:b], zt[a:b])
    for k, v in full.items():
        assert acc.result()[k] == pytest.approx(v, abs=1e-12), k
    halves = FidelityAccumulator()
    halves.update(zs[:20], y[:20], zt[:20])
    other = FidelityAccumulator()
    other.update(zs[20:], y[20:], zt[20:])
    assert halves.merge(other).result()["kl_teacher_student"] == pytest.approx(full["kl_teacher_student"])


def test_empty_set_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        FidelityAccumulator().result()


def _cka_by_hsic(x, y):
    """Linear CKA via centred Gram matrices (HSIC form), a second algorithm."""
    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def test_linear_cka():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=(6, 9)) + 0.5 * rng.normal(size=(40, 9))
    assert linear_cka(torch.tensor(x), torch.tensor(y)) == pytest.approx(_cka_by_hsic(x, y), abs=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(torch.tensor(x), torch.tensor(3.0 * x @ q)) == pytest.approx(1.0, abs=1e-10)
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(torch.tensor(x), torch.tensor(y[:5]))
