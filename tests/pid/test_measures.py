"""Plug-in information measures against closed forms and hand calculations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from infodistill.pid import (
    as_joint,
    co_information,
    conditional_entropy,
    conditional_mutual_information,
    convert_units,
    entropy,
    mutual_information,
)
from infodistill.pid.gates import GATES

LN2 = math.log(2.0)


XOR = GATES["XOR"].joint()
RDN = GATES["RDN"].joint()


# ---------------------------------------------------------------- entropy


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_entropy_uniform(n):
    assert entropy(np.full(n, 1.0 / n)) == pytest.approx(math.log2(n), abs=1e-12)
    assert entropy(np.full(n, 1.0 / n), unit="nats") == pytest.approx(math.log(n), abs=1e-12)


def test_entropy_uniform_joint_and_marginals():
    p = np.full((2, 4, 8), 1.0 / 64)
    assert entropy(p) == pytest.approx(6.0, abs=1e-12)
    assert entropy(p, axes=1) == pytest.approx(2.0, abs=1e-12)
    assert entropy(p, axes=(0, 2)) == pytest.approx(4.0, abs=1e-12)


def test_entropy_point_mass_is_zero():
    p = np.zeros((3, 4))
    p[2, 1] = 1.0
    assert entropy(p) == 0.0
    assert entropy(p, axes=0) == 0.0


def test_entropy_hand_calculation():
    # H(1/2, 1/4, 1/4) = 1.5 bits
    assert entropy([0.5, 0.25, 0.25]) == pytest.approx(1.5, abs=1e-12)
    # zeros contribute nothing
    assert entropy([0.5, 0.0, 0.25, 0.25, 0.0]) == pytest.approx(1.5, abs=1e-12)


def test_conditional_entropy():
    # Y = T xor S: H(Y | T) = 1, H(Y | T, S) = 0
    assert conditional_entropy(XOR, 0, 1) == pytest.approx(1.0, abs=1e-12)
    assert conditional_entropy(XOR, 0, (1, 2)) == pytest.approx(0.0, abs=1e-12)
    assert conditional_entropy(RDN, 0, 1) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- mutual information


@pytest.mark.parametrize("n", [2, 3, 5])
def test_mi_of_copy_is_entropy(n):
    rng = np.random.default_rng(n)
    px = rng.dirichlet(np.ones(n))
    p = np.diag(px)  # Y = X
    assert mutual_information(p, 0, 1) == pytest.approx(entropy(px), abs=1e-12)


def test_mi_independent_is_zero():
    rng = np.random.default_rng(0)
    a, b = rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(5))
    p = np.outer(a, b)
    assert mutual_information(p, 0, 1) == pytest.approx(0.0, abs=1e-12)


def test_mi_xor():
    # pairwise independent, jointly determined
    assert mutual_information(XOR, 0, 1) == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(XOR, 0, 2) == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(XOR, 0, (1, 2)) == pytest.approx(1.0, abs=1e-12)


def test_mi_binary_symmetric_channel():
    eps = 0.1
    p = 0.5 * np.array([[1 - eps, eps], [eps, 1 - eps]])
    h = -(eps * math.log2(eps) + (1 - eps) * math.log2(1 - eps))
    assert mutual_information(p, 0, 1) == pytest.approx(1.0 - h, abs=1e-12)


def test_cmi_xor():
    assert conditional_mutual_information(XOR, 0, 1, 2) == pytest.approx(1.0, abs=1e-12)
    assert conditional_mutual_information(XOR, 0, 2, 1) == pytest.approx(1.0, abs=1e-12)


def test_cmi_rdn_is_zero():
    assert conditional_mutual_information(RDN, 0, 1, 2) == pytest.approx(0.0, abs=1e-12)


def test_co_information():
    assert co_information(XOR, 0, 1, 2) == pytest.approx(-1.0, abs=1e-12)
    assert co_information(RDN, 0, 1, 2) == pytest.approx(1.0, abs=1e-12)
    # symmetric in its arguments
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(24)).reshape(2, 3, 4)
    vals = [co_information(p, *perm) for perm in itertools.permutations(range(3))]
    assert np.ptp(vals) < 1e-12


def test_chain_rule_on_random_joint():
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(60)).reshape(3, 4, 5)
    lhs = mutual_information(p, 0, (1, 2))
    rhs = mutual_information(p, 0, 2) + conditional_mutual_information(p, 0, 1, 2)
    assert lhs == pytest.approx(rhs, abs=1e-12)


# ---------------------------------------------------------------- units


def test_convert_units():
    assert convert_units(1.0, "bits", "nats") == pytest.approx(LN2, abs=1e-15)
    assert convert_units(LN2, "nats", "bits") == pytest.approx(1.0, abs=1e-15)
    assert convert_units(2.5, "bits", "bits") == 2.5
    np.testing.assert_allclose(convert_units(np.array([1.0, 2.0]), "bits", "nats"), [LN2, 2 * LN2])


def test_measures_in_nats():
    assert mutual_information(XOR, 0, (1, 2), unit="nats") == pytest.approx(LN2, abs=1e-12)
    assert co_information(XOR, 0, 1, 2, unit="nats") == pytest.approx(-LN2, abs=1e-12)


def test_unknown_unit_rejected():
    with pytest.raises(ValueError, match="unit"):
        entropy([0.5, 0.5], unit="dits")
    with pytest.raises(ValueError, match="unit"):
        convert_units(1.0, "bits", "hartleys")


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    "bad, match",
    [
        ([0.5, -0.1, 0.6], "negative"),
        ([0.5, np.nan, 0.5], "NaN"),
        ([0.5, np.inf, 0.5], "NaN or infinite"),
        (np.zeros((0, 3)), "empty"),
        ([0.5, 0.6], "sums to"),
        ([0.2, 0.2], "sums to"),
        ([0.5, 0.5 + 2e-6], "sums to"),
    ],
)
def test_invalid_input_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        as_joint(bad)
    with pytest.raises(ValueError, match=match):
        entropy(bad)


def test_non_numeric_rejected():
    with pytest.raises(ValueError, match="numeric"):
        as_joint(["a", "b"])


def test_wrong_ndim_rejected():
    with pytest.raises(ValueError, match="3-D"):
        as_joint(np.full((2, 2), 0.25), ndim=3)


def test_normalisation_slack_accepted_and_renormalised():
    p = np.array([0.5, 0.5 + 1e-8])
    q = as_joint(p)
    assert q.sum() == pytest.approx(1.0, abs=1e-15)
    assert entropy(p) == pytest.approx(1.0, abs=1e-7)
    # float32 histograms land within ~1e-7 of 1
    p32 = np.full(7, 1 / 7, dtype=np.float32)
    assert entropy(p32) == pytest.approx(math.log2(7), abs=1e-6)


def test_counts_accepted():
    counts = np.array([[3, 1], [0, 4]])
    q = as_joint(counts, counts=True)
    np.testing.assert_allclose(q, counts / 8)
    with pytest.raises(ValueError, match="total 0"):
        as_joint(np.zeros(3), counts=True)
    with pytest.raises(ValueError, match="negative"):
        as_joint([3, -1], counts=True)


def test_input_not_modified():
    p = np.array([0.25, 0.25, 0.5 + 1e-9])
    before = p.copy()
    entropy(p)
    as_joint(p)
    np.testing.assert_array_equal(p, before)
