"""Standard errors of the mean of correlated MD time series: block averages, and the integrated
autocorrelation time with Sokal's self-consistent window (the estimator of emcee and pymbar's
statistical inefficiency), which also says when a run is too short to trust its own error."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class MeanError(NamedTuple):
    """A series' mean, its standard error, the integrated autocorrelation time (in samples; 1 for
    independent samples) and whether the series holds at least `min_times` such times."""

    mean: float
    error: float
    tau: float
    reliable: bool


def block_standard_error(x: np.ndarray, block: int) -> float:
    """Standard error of the mean of a correlated series by averaging blocks of `block` samples."""
    n_blocks = x.size // block
    if n_blocks < 2:
        return float(x.std() / np.sqrt(max(x.size, 1)))
    means = x[: n_blocks * block].reshape(n_blocks, block).mean(axis=1)
    return float(means.std(ddof=1) / np.sqrt(n_blocks))


def autocorrelation(x: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation function of a series at lags 0..n-1 (zero-padded FFT)."""
    x = np.asarray(x, dtype=float) - np.mean(x)
    n = x.size
    f = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[:n]
    return acf / acf[0] if acf[0] > 0 else np.zeros(n)


def integrated_autocorrelation_time(x: np.ndarray, c: float = 5.0) -> tuple[float, bool]:
    """tau = 1 + 2 sum_t rho(t), summed to the first window M >= c tau(M) (Sokal); the flag is
    False when no such window exists within the series (tau is then a lower bound)."""
    acf = autocorrelation(x)
    if acf.size < 2 or acf[0] == 0:
        return 1.0, acf.size >= 2
    tau = 2.0 * np.cumsum(acf) - 1.0
    ok = np.arange(acf.size) >= c * tau
    if not ok.any():
        return float(max(tau[-1], 1.0)), False
    return float(max(tau[np.argmax(ok)], 1.0)), True


def mean_and_error(x: np.ndarray, min_times: float = 50.0) -> MeanError:
    """Mean and its standard error sqrt(var tau / n) from the integrated autocorrelation time;
    `reliable` needs a window and n >= `min_times` tau (emcee's rule of thumb)."""
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return MeanError(float(x.mean()) if x.size else float("nan"), float("nan"), float("nan"), False)
    tau, found = integrated_autocorrelation_time(x)
    err = float(np.std(x, ddof=1) * np.sqrt(tau / x.size))
    return MeanError(float(x.mean()), err, tau, bool(found and x.size >= min_times * tau))
