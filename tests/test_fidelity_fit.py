"""The fidelity-scaling fit recovers a known exponent from synthetic failure times; the comparison
of two models finds a known difference of exponents and none where they are equal."""

import numpy as np
import pytest

from legato_jax.errors import ConfigError
from legato_jax.experiments.fidelity import compare_betas, fit_beta, replicas_to_resolve, simulated_power


def synthetic(beta, limit=None, replicas=40, seed=0):
    rng = np.random.default_rng(seed)
    sizes = np.repeat([432.0, 3456.0, 27648.0], replicas)
    t = np.exp(np.log(5e4) - beta * np.log(sizes / 432.0) + 0.4 * rng.standard_normal(len(sizes)))
    if limit is None:
        return sizes, t, np.ones(len(t), bool)
    return sizes, np.minimum(t, limit), t < limit


@pytest.mark.parametrize("beta", [0.14, 0.29, 1.0])
def test_beta_is_recovered_without_censoring(beta):
    fit = fit_beta(*synthetic(beta), n_boot=200)
    assert fit.beta == pytest.approx(beta, abs=0.06)
    assert fit.beta_ci[0] < beta < fit.beta_ci[1]
    assert fit.n_censored == 0 and fit.sigma == pytest.approx(0.4, abs=0.08)


def test_beta_is_recovered_with_heavy_censoring_where_naive_fits_fail():
    sizes, t, failed = synthetic(0.29, limit=4e4, seed=1)
    assert 0.2 < (~failed).mean() < 0.7 and (~failed[:40]).mean() > 0.5  # most small boxes survive
    fit = fit_beta(sizes, t, failed, n_boot=200)
    assert fit.beta == pytest.approx(0.29, abs=0.08)
    assert fit.beta_ci[0] < 0.29 < fit.beta_ci[1]
    naive = -np.polyfit(np.log(sizes), np.log(t), 1)[0]  # censored times taken as failures
    assert abs(naive - 0.29) > abs(fit.beta - 0.29)


def test_unidentifiable_inputs_are_refused():
    with pytest.raises(ConfigError, match="--sizes: .*two system sizes"):
        fit_beta([64, 64], [10.0, 20.0], [True, True])
    with pytest.raises(ValueError, match="no replica failed"):
        fit_beta([64, 512], [10.0, 10.0], [False, False])


SIZES = np.array([64.0, 128, 256, 512, 1024, 1728])


def two_models(beta_a, beta_b, replicas=16, limit=np.inf, seed=0):
    """Replica k of both models at a size shares its noise draw's seed but not its value."""
    rng = np.random.default_rng(seed)
    n = np.repeat(SIZES, replicas)
    out = []
    for beta in (beta_a, beta_b):
        t = np.exp(np.log(3e3) - beta * np.log(n / 64) + 0.3 * rng.standard_normal(len(n)))
        out.append((n, np.minimum(t, limit), t < limit))
    return out


def test_a_known_difference_of_betas_is_found_through_censoring():
    a, b = two_models(0.5, 0.15, limit=3.5e3, seed=3)
    assert 0.1 < (~a[2]).mean() + (~b[2]).mean() < 1.2  # some replicas of each model survive
    d = compare_betas(a, b, n_boot=200)
    assert d.paired and d.difference == pytest.approx(0.35, abs=0.1)
    assert d.difference_ci[0] < 0.35 < d.difference_ci[1] and d.difference_ci[0] > 0
    assert d.p_value < 1e-3


def test_equal_betas_are_reported_as_no_difference_at_the_tests_level():
    """Over 20 synthetic experiments with one true beta the test rejects at about its 5 % level,
    and the interval of the difference holds 0 as often."""
    results = [compare_betas(*two_models(0.3, 0.3, seed=s), n_boot=60, seed=s) for s in range(20)]
    assert sum(r.p_value < 0.05 for r in results) <= 3
    assert sum(r.difference_ci[0] < 0 < r.difference_ci[1] for r in results) >= 17


def test_the_power_estimate_agrees_with_simulation():
    """Replicas enough for 80 % power (uncensored, least squares) give about 80 % in simulation."""
    r = replicas_to_resolve(SIZES, 0.3, 0.3, difference=0.15)
    assert 5 < r < 40
    assert simulated_power(SIZES, r, 0.3, 0.15, 0.3, 0.3, trials=100) == pytest.approx(0.8, abs=0.12)
    assert simulated_power(SIZES, r // 4, 0.3, 0.15, 0.3, 0.3, trials=100) < 0.6
