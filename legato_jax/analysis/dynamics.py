"""Dynamics of a trajectory: unwrapped positions, the mean-squared displacement over all time
origins (the FFT form, O(T log T) per atom), and the diffusion coefficient from its slope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms

from legato_jax.errors import ConfigError


def frame_times_ps(frames: Sequence[Atoms], dt_fs: float | None = None) -> np.ndarray:
    """Each frame's time (ps): its `time_fs` (written by `legato md`), or `step` x `dt_fs`."""
    if all("time_fs" in f.info for f in frames):
        t = np.array([float(f.info["time_fs"]) for f in frames])
    elif dt_fs is not None and all("step" in f.info for f in frames):
        t = np.array([float(f.info["step"]) * dt_fs for f in frames])
    else:
        raise ConfigError("the frames carry no time_fs; give --dt (fs per step) for frames with a step, "
                          "or the time between frames")
    return 1e-3 * t


def unwrap(frames: Sequence[Atoms]) -> np.ndarray:
    """(T, N, 3) positions following atoms across periodic boundaries: each frame-to-frame move
    is taken as its minimum image (frames must be closer than half a cell width apart)."""
    frac = np.stack([f.get_scaled_positions(wrap=False) for f in frames])
    step = np.diff(frac, axis=0)
    step -= np.round(step)
    cells = np.stack([f.cell.array for f in frames])
    out = np.empty_like(frac)
    out[0] = frames[0].positions
    out[1:] = frames[0].positions + np.cumsum(np.einsum("tni,tij->tnj", step, cells[1:]), axis=0)
    return out


def without_drift(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """(T, N, 3) positions with the centre of mass's motion taken out (a thermostat or numerical
    noise can move it; diffusion is relative to it)."""
    com = np.einsum("tni,n->ti", positions, masses) / masses.sum()
    return positions - (com - com[0])[:, None, :]


def msd(positions: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """Mean-squared displacement (Å^2) of (T, N, 3) unwrapped positions for lags 0..max_lag
    frames, averaged over atoms and all time origins: MSD(k) = S1(k) - 2 S2(k), S2 by FFT."""
    x = positions
    n = x.shape[0]
    max_lag = n - 1 if max_lag is None else min(max_lag, n - 1)
    sq = np.sum(x**2, axis=2)  # (T, N)
    # S2(k) = sum_t x(t).x(t+k) / (n - k), by zero-padded FFT along time
    f = np.fft.rfft(x, n=2 * n, axis=0)
    s2 = np.fft.irfft(f * np.conj(f), axis=0)[:n].sum(axis=2) / (n - np.arange(n))[:, None]
    # S1(k) = (sum over origins of x(t)^2 + x(t+k)^2) / (n - k), by a running sum
    total = 2 * sq.sum(axis=0)
    s1 = np.empty_like(s2)
    for k in range(n):
        if k:
            total = total - sq[k - 1] - sq[n - k]
        s1[k] = total / (n - k)
    return (s1 - 2 * s2)[: max_lag + 1].mean(axis=1)


@dataclass(frozen=True)
class Diffusion:
    """D from MSD = 6 D t + c, fitted over lags [t_from, t_to] ps."""

    d_A2_per_ps: float
    stderr_A2_per_ps: float
    t_from_ps: float
    t_to_ps: float

    @property
    def d_1e5_cm2_per_s(self) -> float:  # the unit experiments report: 1 Å^2/ps = 10 x 1e-5 cm^2/s
        return 10.0 * self.d_A2_per_ps


def diffusion_coefficient(lag_ps: np.ndarray, msd_A2: np.ndarray, window: tuple[float, float] = (0.2, 0.6)) -> Diffusion:
    """Slope / 6 of a straight line through the MSD over the `window` fractions of the lags (past
    the ballistic start, before the noisy tail)."""
    lo, hi = (int(round(w * (len(lag_ps) - 1))) for w in window)
    if hi - lo < 2:
        raise ConfigError(f"{len(lag_ps)} lag times are too few for a diffusion coefficient; write more frames")
    t, y = lag_ps[lo: hi + 1], msd_A2[lo: hi + 1]
    (slope, intercept), cov = np.polyfit(t, y, 1, cov=True)
    return Diffusion(slope / 6, float(np.sqrt(cov[0, 0])) / 6, float(t[0]), float(t[-1]))
