"""The fidelity-scaling fit recovers a known exponent from synthetic failure times."""

import numpy as np
import pytest

from legato_jax.errors import ConfigError
from legato_jax.experiments.fidelity import fit_beta


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
