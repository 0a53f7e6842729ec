"""Standard errors of correlated series: the integrated autocorrelation time of AR(1) processes
(known exactly) and the error it gives against the spread of many independent runs' means."""

import numpy as np

from legato_jax.analysis.timeseries import block_standard_error, integrated_autocorrelation_time, mean_and_error


def ar1(rng, phi: float, n: int, runs: int = 1) -> np.ndarray:
    """x_t = phi x_{t-1} + noise, started in its stationary distribution; tau = (1 + phi) / (1 - phi)."""
    x = np.empty((runs, n))
    x[:, 0] = rng.normal(size=runs) / np.sqrt(1 - phi**2)
    noise = rng.normal(size=(runs, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


def test_tau_of_ar1_processes():
    rng = np.random.default_rng(0)
    for phi in (0.0, 0.5, 0.9):
        tau, found = integrated_autocorrelation_time(ar1(rng, phi, 100_000)[0])
        assert found
        np.testing.assert_allclose(tau, (1 + phi) / (1 - phi), rtol=0.1)


def test_error_matches_the_spread_of_independent_means():
    rng = np.random.default_rng(1)
    runs = ar1(rng, 0.8, 4_000, runs=300)  # tau 9: 440 correlation times per run
    errors = np.array([mean_and_error(x).error for x in runs])
    spread = runs.mean(axis=1).std(ddof=1)
    np.testing.assert_allclose(np.median(errors), spread, rtol=0.15)
    # ten blocks of 400 (44 tau each) also work here; the naive error is 3x too small
    assert np.median(errors) > 2.5 * np.median(runs.std(axis=1) / np.sqrt(runs.shape[1]))
    assert abs(np.median([block_standard_error(x, 400) for x in runs]) / spread - 1) < 0.2


def test_a_run_shorter_than_its_correlation_is_flagged():
    rng = np.random.default_rng(2)
    short = mean_and_error(ar1(rng, 0.99, 500)[0])  # tau 199: 2.5 correlation times
    assert not short.reliable
    assert mean_and_error(ar1(rng, 0.5, 2_000)[0]).reliable  # tau 3
