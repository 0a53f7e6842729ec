"""Fidelity scaling: t_failure ~ N^-beta fitted to replicas of several system sizes, some of which
survive the step limit (right-censored).

The model is log-normal accelerated failure time: log t = a - beta log N + sigma z, z ~ N(0, 1).
A failed replica contributes the density of its log t, a censored one the probability of
surviving past its limit, so replicas that never failed pull the fit towards longer times instead
of being dropped or counted as failures at the limit. Confidence intervals come from a bootstrap
over replicas within each size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from legato_jax.errors import ConfigError


@dataclass(frozen=True)
class FidelityFit:
    beta: float
    beta_ci: tuple[float, float]
    log_prefactor: float
    sigma: float
    n_failed: int
    n_censored: int
    method: str = "log-normal AFT maximum likelihood with right censoring (sigma >= 1e-3); percentile bootstrap CI"


SIGMA_BOUNDS = (1e-3, 1e2)  # failure times are resolved only to the check interval: sigma never reaches 0


def _neg_log_likelihood(theta, log_n, log_t, failed):
    """-log L and its gradient in (a, beta, log sigma)."""
    a, beta, log_sigma = theta
    sigma = np.exp(log_sigma)
    z = (log_t - (a - beta * log_n)) / sigma
    ll = np.where(failed, stats.norm.logpdf(z) - log_sigma, stats.norm.logsf(z))
    dll_dz = np.where(failed, -z, -np.exp(stats.norm.logpdf(z) - stats.norm.logsf(z)))
    grad = np.array([np.sum(-dll_dz / sigma), np.sum(dll_dz * log_n / sigma),
                     np.sum(-dll_dz * z - failed)])
    return -np.sum(ll), -grad


def _mle(log_n, log_t, failed, start=None) -> np.ndarray:
    if start is None:
        slope, intercept = np.polyfit(log_n, log_t, 1) if np.ptp(log_n) > 0 else (0.0, log_t.mean())
        resid = log_t - (intercept + slope * log_n)
        start = np.array([intercept, -slope, np.log(np.clip(resid.std(), 0.05, None))])
    bounds = [(None, None), (None, None), tuple(np.log(SIGMA_BOUNDS))]
    res = optimize.minimize(_neg_log_likelihood, start, args=(log_n, log_t, failed), jac=True,
                            method="L-BFGS-B", bounds=bounds, options={"maxiter": 2000, "gtol": 1e-9})
    return res.x


def fit_beta(sizes, times, failed, n_boot: int = 500, confidence: float = 0.95, seed: int = 0) -> FidelityFit:
    """beta of t_failure ~ N^-beta from per-replica sizes, times (failure time, or the limit when
    censored) and a failed flag. Needs at least two sizes and one failure."""
    sizes, times = np.asarray(sizes, float), np.asarray(times, float)
    failed = np.asarray(failed, bool)
    if not (sizes.shape == times.shape == failed.shape) or sizes.ndim != 1:
        raise ValueError("sizes, times and failed must be 1-d arrays of one length")
    if len(np.unique(sizes)) < 2:
        raise ConfigError("--sizes: the fit of beta in t_failure ~ N^-beta needs at least two system sizes; give two or more")
    if not failed.any():
        raise ValueError("no replica failed: every time is censored, so beta is not identifiable")
    if np.any(times <= 0):
        raise ValueError("times must be > 0")
    log_n, log_t = np.log(sizes), np.log(times)
    a, beta, log_sigma = _mle(log_n, log_t, failed)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(sizes == s) for s in np.unique(sizes)]
    boot = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(g, len(g)) for g in groups])
        if failed[idx].any():
            boot.append(_mle(log_n[idx], log_t[idx], failed[idx], start=np.array([a, beta, log_sigma]))[1])
    q = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [q, 1 - q]) if boot else (np.nan, np.nan)
    return FidelityFit(float(beta), (float(lo), float(hi)), float(a), float(np.exp(log_sigma)),
                      int(failed.sum()), int((~failed).sum()))
