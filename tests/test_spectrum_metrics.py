"""Spectrum metrics (REFERENCE.md section 4) against direct float64 evaluation of the formulas."""

import numpy as np
import pytest

from jaxcontext import spectrum


def tau_by_loop(s, d0, beta):
    s2 = np.asarray(s, np.float64) ** 2
    vals = []
    for d in range(1, d0 + 1):
        first = np.inf if s2[d] >= 1 else 1.0 / (1.0 - s2[d])  # s2[d] is s_{d+1}^2
        vals.append(first + beta * s2[:d].sum() / s2[:d0].sum())
    return np.array(vals)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_tau_matches_formula(rng, beta):
    s = np.sort(rng.uniform(0, 0.99, 80))[::-1]
    r = spectrum.tau(s, d0=64, beta=beta)
    ref = tau_by_loop(s, 64, beta)
    np.testing.assert_allclose(r.tau_d, ref, rtol=1e-12)
    assert r.d == int(np.argmin(ref)) + 1 and r.tau == pytest.approx(ref.min())


def test_tau_extreme_association_is_infinite_until_the_ones_end():
    s = np.r_[np.ones(3), 0.5 ** np.arange(1, 20)]
    r = spectrum.tau(s, d0=10)
    assert np.all(np.isinf(r.tau_d[:2])) and np.isfinite(r.tau_d[2]) and r.d >= 3


def test_tau_rejects_bad_input():
    with pytest.raises(ValueError, match="needs"):
        spectrum.tau(np.linspace(0.9, 0.1, 10), d0=10)
    with pytest.raises(ValueError, match="descending"):
        spectrum.tau(np.linspace(0.1, 0.9, 20), d0=5)
    with pytest.raises(ValueError, match="lie in"):
        spectrum.tau(np.r_[1.5, np.linspace(0.9, 0.1, 20)], d0=5)
    with pytest.raises(ValueError, match="NaN"):
        spectrum.tau(np.r_[np.nan, np.linspace(0.9, 0.1, 20)], d0=5)
    with pytest.raises(ValueError, match="zero"):
        spectrum.tau(np.zeros(20), d0=5)


@pytest.mark.parametrize("lam", [0.05, 0.3, 1.2])
def test_decay_rate_recovers_exponential(lam):
    i = np.arange(1, 60)
    est, r2 = spectrum.decay_rate(np.exp(-lam * i / 2))
    assert est == pytest.approx(lam, rel=1e-10) and r2 == pytest.approx(1.0)


def test_decay_rate_needs_two_nonzero():
    with pytest.raises(ValueError, match="two"):
        spectrum.decay_rate([0.5, 0.0, 0.0])


def test_worst_case_error_formula_and_range():
    s = np.array([0.9, 0.8, 0.5, 0.3, 0.1])
    lo, hi = 1 - 0.9, 1 - np.sqrt((0.81 + 0.64) / 2)
    for eps in np.linspace(lo, hi, 5):
        for d in (1, 2, 3):
            ref = (0.81 - (1 - eps) ** 2) / (0.81 - s[d] ** 2)
            assert spectrum.worst_case_error(s, d, eps) == pytest.approx(ref, rel=1e-12)
    # at eps = 1 - s_1 the contexture is exact: zero error
    assert spectrum.worst_case_error(s, 2, lo) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="Theorem 16"):
        spectrum.worst_case_error(s, 2, 0.5)
    with pytest.raises(ValueError, match="need"):
        spectrum.worst_case_error(s, 5, lo)
