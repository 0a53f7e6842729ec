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


PAPER_BETA_DIFFERENCE = 0.15  # the paper's beta, Allegro 0.29 against Allegro-Legato 0.14
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
    if not _identifiable(log_n, failed):
        raise ValueError("replicas failed at one size only: beta is not identifiable (run longer or add sizes)")
    a, beta, log_sigma = _mle(log_n, log_t, failed)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(sizes == s) for s in np.unique(sizes)]
    boot = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(g, len(g)) for g in groups])
        if _identifiable(log_n[idx], failed[idx]):
            boot.append(_mle(log_n[idx], log_t[idx], failed[idx], start=np.array([a, beta, log_sigma]))[1])
    q = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [q, 1 - q]) if boot else (np.nan, np.nan)
    return FidelityFit(float(beta), (float(lo), float(hi)), float(a), float(np.exp(log_sigma)),
                      int(failed.sum()), int((~failed).sum()))


@dataclass(frozen=True)
class BetaDifference:
    """beta_a - beta_b of two models' fits, with a bootstrap interval and a likelihood-ratio test
    of one shared beta (each model keeping its own prefactor and sigma)."""

    beta_a: float
    beta_b: float
    difference: float
    difference_ci: tuple[float, float]
    lr_statistic: float
    p_value: float  # chi^2 with one degree of freedom
    paired: bool  # replicas resampled by index in both models (equal replica counts per size)
    method: str = ("log-normal AFT fits with right censoring; percentile bootstrap of the difference over replicas "
                   "within each size; likelihood-ratio test of a shared beta (chi^2, 1 dof)")


def _identifiable(log_n: np.ndarray, failed: np.ndarray) -> bool:
    """beta has a finite maximum-likelihood value only with failures at two sizes or more."""
    return len(np.unique(log_n[failed])) >= 2


def _arrays(data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes, times, failed = (np.asarray(x) for x in data)
    return np.log(sizes.astype(float)), np.log(times.astype(float)), failed.astype(bool)


def _shared_beta_nll(theta, a_data, b_data):
    """-log L of two models with their own (a, log sigma) and one beta: theta = (a_a, a_b, beta,
    log sigma_a, log sigma_b)."""
    a_a, a_b, beta, ls_a, ls_b = theta
    f_a, g_a = _neg_log_likelihood((a_a, beta, ls_a), *a_data)
    f_b, g_b = _neg_log_likelihood((a_b, beta, ls_b), *b_data)
    return f_a + f_b, np.array([g_a[0], g_b[0], g_a[1] + g_b[1], g_a[2], g_b[2]])


def _lr_statistic(a_data, b_data, theta_a, theta_b) -> float:
    """2 (log L of separate betas - log L of a shared one), >= 0."""
    full = _neg_log_likelihood(theta_a, *a_data)[0] + _neg_log_likelihood(theta_b, *b_data)[0]
    start = np.array([theta_a[0], theta_b[0], 0.5 * (theta_a[1] + theta_b[1]), theta_a[2], theta_b[2]])
    bounds = [(None, None)] * 3 + [tuple(np.log(SIGMA_BOUNDS))] * 2
    res = optimize.minimize(_shared_beta_nll, start, args=(a_data, b_data), jac=True, method="L-BFGS-B",
                            bounds=bounds, options={"maxiter": 2000, "gtol": 1e-9})
    return float(max(0.0, 2.0 * (res.fun - full)))


def compare_betas(a, b, n_boot: int = 500, confidence: float = 0.95, seed: int = 0) -> BetaDifference:
    """beta_a - beta_b for two models' replicas, each given as (sizes, times, failed) as in
    `fit_beta`. The bootstrap resamples replicas within each size; where both models have the same
    replica count at every size (replica k of both starting from the same velocities), one draw of
    indices serves both, keeping the pairs together. The likelihood-ratio test treats the models as
    independent; with paired replicas whose times correlate it is conservative."""
    a_data, b_data = _arrays(a), _arrays(b)
    for d in (a_data, b_data):
        if not (d[0].shape == d[1].shape == d[2].shape) or not np.all(np.isfinite(d[1])):
            raise ValueError("sizes, times and failed must be 1-d arrays of one length, times > 0")
        if not _identifiable(d[0], d[2]):
            raise ValueError("each model needs failures at two sizes or more for beta to be identifiable")
    theta_a, theta_b = _mle(*a_data), _mle(*b_data)
    statistic = _lr_statistic(a_data, b_data, theta_a, theta_b)
    groups_a = [np.flatnonzero(a_data[0] == s) for s in np.unique(a_data[0])]
    groups_b = [np.flatnonzero(b_data[0] == s) for s in np.unique(b_data[0])]
    paired = len(groups_a) == len(groups_b) and all(
        len(ga) == len(gb) and a_data[0][ga[0]] == b_data[0][gb[0]] for ga, gb in zip(groups_a, groups_b))
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        draw_a = [rng.integers(0, len(g), len(g)) for g in groups_a]
        draw_b = draw_a if paired else [rng.integers(0, len(g), len(g)) for g in groups_b]
        ia = np.concatenate([g[k] for g, k in zip(groups_a, draw_a)])
        ib = np.concatenate([g[k] for g, k in zip(groups_b, draw_b)])
        if _identifiable(a_data[0][ia], a_data[2][ia]) and _identifiable(b_data[0][ib], b_data[2][ib]):
            beta_a = _mle(*(x[ia] for x in a_data), start=theta_a)[1]
            beta_b = _mle(*(x[ib] for x in b_data), start=theta_b)[1]
            boot.append(beta_a - beta_b)
    q = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [q, 1 - q]) if boot else (np.nan, np.nan)
    return BetaDifference(float(theta_a[1]), float(theta_b[1]), float(theta_a[1] - theta_b[1]), (float(lo), float(hi)),
                          statistic, float(stats.chi2.sf(statistic, 1)), paired)


def replicas_to_resolve(sizes, sigma_a: float, sigma_b: float, difference: float = PAPER_BETA_DIFFERENCE, alpha: float = 0.05,
                        power: float = 0.8) -> int:
    """Replicas per size and model for a two-sided test at level `alpha` to detect a beta
    difference of `difference` with probability `power`, every replica failing (censoring only adds
    to it): the least-squares variance of a slope, sigma^2 / (R sum (log N - mean)^2), per model."""
    log_n = np.log(np.unique(np.asarray(sizes, float)))
    if len(log_n) < 2 or difference <= 0:
        raise ValueError("the replicas to resolve a difference need two sizes or more and a difference > 0")
    spread = np.sum((log_n - log_n.mean()) ** 2)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return max(2, int(np.ceil(z**2 * (sigma_a**2 + sigma_b**2) / (difference**2 * spread))))


def simulated_power(sizes, replicas: int, beta_a: float, beta_b: float, sigma_a: float, sigma_b: float,
                    limit: float = np.inf, log_prefactor: float = 0.0, trials: int = 200, alpha: float = 0.05,
                    seed: int = 0) -> float:
    """The fraction of simulated experiments (log-normal times, censored at `limit`) in which the
    likelihood-ratio test rejects a shared beta at level `alpha`: the power with censoring."""
    rng = np.random.default_rng(seed)
    n = np.repeat(np.asarray(sizes, float), replicas)
    hits = 0
    for _ in range(trials):
        data = []
        for beta, sigma in ((beta_a, sigma_a), (beta_b, sigma_b)):
            t = np.exp(log_prefactor - beta * np.log(n) + sigma * rng.standard_normal(len(n)))
            data.append((np.log(n), np.log(np.minimum(t, limit)), t < limit))
        if not all(_identifiable(d[0], d[2]) for d in data):
            continue  # counted as not rejected
        statistic = _lr_statistic(data[0], data[1], _mle(*data[0]), _mle(*data[1]))
        hits += stats.chi2.sf(statistic, 1) < alpha
    return hits / trials
