"""Vibrational density of states from the velocity autocorrelation function (Wiener-Khinchin, with
numpy's FFT): per element, windowed, in cm^-1, normalised to unit area; and the peak of each
ammonia band. From classical trajectories, or TRPMD centroid velocities (whose autocorrelation
is the Kubo-transformed one, the quantum-dynamics approximation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms
from scipy.signal import get_window

from legato_jax.errors import ConfigError, DataError

FS_TO_CM1 = 1e15 / 2.99792458e10  # a frequency of 1/fs in cm^-1
# bands of liquid ammonia (cm^-1): librations, umbrella (symmetric bend), H-N-H bend, N-H stretch
AMMONIA_BANDS = {"libration": (150.0, 700.0), "umbrella": (800.0, 1300.0), "bend": (1350.0, 1800.0),
                 "stretch": (2900.0, 3700.0)}


def autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    """<x(t) . x(t + k)> for lags k = 0..max_lag - 1 of (T, ...) data, averaged over every time
    origin and the trailing axes (zero-padded FFT, unbiased by the origins at each lag)."""
    T = x.shape[0]
    flat = x.reshape(T, -1)
    f = np.fft.rfft(flat, n=2 * T, axis=0)
    acf = np.fft.irfft(f * np.conj(f), axis=0)[:max_lag].sum(axis=1)
    return acf / ((T - np.arange(max_lag)) * flat.shape[1])


def vdos(velocities: np.ndarray, dt_fs: float, max_lag: int | None = None, window: str = "hann",
         weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(frequency cm^-1, density) from (T, N, 3) velocities `dt_fs` apart: the cosine transform of
    the autocorrelation up to `max_lag` frames (default T / 2) tapered by the right half of a
    symmetric `window` (scipy name, or "none"); `weights` (N,) weight atoms (e.g. masses)."""
    v = np.asarray(velocities, float)
    if v.ndim != 3 or v.shape[0] < 4:
        raise DataError(f"velocities need shape (frames >= 4, atoms, 3), got {v.shape}")
    T = v.shape[0]
    max_lag = T // 2 if max_lag is None else int(max_lag)
    if not 2 <= max_lag <= T:
        raise ConfigError(f"the correlation length must be 2..{T} frames, got {max_lag}")
    if weights is not None:
        v = v * np.sqrt(np.asarray(weights, float))[None, :, None]
    acf = autocorrelation(v, max_lag)
    if window != "none":
        try:
            acf = acf * get_window(window, 2 * max_lag - 1, fftbins=False)[max_lag - 1:]
        except ValueError as exc:
            raise ConfigError(f"--window {window!r}: {exc}") from None
    even = np.concatenate([acf, acf[-2:0:-1]])  # the correlation at negative lags
    density = np.fft.rfft(even).real
    freq = np.fft.rfftfreq(len(even), d=dt_fs) * FS_TO_CM1
    area = np.trapezoid(density, freq)
    return freq, density / area if area > 0 else density


@dataclass
class Spectrum:
    label: str
    frequency: np.ndarray  # cm^-1
    density: dict[str, np.ndarray]  # element -> unit-area density (and "all", mass-weighted)
    dt_fs: float
    frames: int


def frame_velocities(frames: Sequence[Atoms], where: str) -> tuple[np.ndarray, float]:
    """(T, N, 3) velocities (Å/fs) of frames with momenta and masses, and the time between frames."""
    from ase import units

    if not all(f.has("momenta") for f in frames):
        raise DataError(f"{where}: the frames carry no momenta; write them with legato md --out or legato pimd --out")
    if "time_fs" not in frames[0].info or len(frames) < 2 or "time_fs" not in frames[1].info:
        raise DataError(f"{where}: the frames carry no time_fs, so the time between them is unknown")
    t = np.array([float(f.info["time_fs"]) for f in frames])
    steps = np.diff(t)
    if not np.allclose(steps, steps[0], rtol=1e-6):
        raise DataError(f"{where}: frames are not evenly spaced in time ({steps.min():g}-{steps.max():g} fs); "
                        "give one run's frames")
    v = np.stack([f.get_velocities() for f in frames]) * units.fs  # ASE velocity unit -> Å/fs
    return v, float(steps[0])


def spectrum_of(frames: Sequence[Atoms], label: str, max_lag_fs: float | None = None, window: str = "hann",
                where: str = "trajectory") -> Spectrum:
    """Per-element VDOS of a trajectory and the mass-weighted total."""
    from ase.data import chemical_symbols

    v, dt = frame_velocities(frames, where)
    longest = (len(frames) // 2) * dt
    if max_lag_fs is not None and max_lag_fs > longest:
        raise ConfigError(f"{where}: a correlation length of {max_lag_fs:g} fs needs at least {2 * max_lag_fs:g} fs of "
                          f"frames (every lag averaged over half the run or more); this one spans "
                          f"{(len(frames) - 1) * dt:g} fs: give --max-lag-fs {longest:g} or less")
    max_lag = None if max_lag_fs is None else max(2, int(round(max_lag_fs / dt)))
    numbers, masses = frames[0].numbers, frames[0].get_masses()
    density = {}
    for z in sorted(set(numbers.tolist())):
        freq, density[chemical_symbols[z]] = vdos(v[:, numbers == z], dt, max_lag, window)
    freq, density["all"] = vdos(v, dt, max_lag, window, weights=masses)
    return Spectrum(label, freq, density, dt, len(frames))


def band_peaks(freq: np.ndarray, density: np.ndarray, bands: dict = AMMONIA_BANDS) -> dict[str, float]:
    """The frequency (cm^-1) of the highest peak inside each band (a local maximum standing out by
    1 % of the spectrum's maximum, so not a ripple); a band with none (a shoulder of a neighbouring
    band, or the diffusive wing at low frequency) is left out."""
    from scipy.signal import find_peaks

    peaks, _ = find_peaks(density, prominence=0.01 * float(np.max(density)))
    out = {}
    for name, (lo, hi) in bands.items():
        inside = peaks[(freq[peaks] >= lo) & (freq[peaks] <= hi)]
        if len(inside):
            out[name] = float(freq[inside[np.argmax(density[inside])]])
    return out


def band_centroids(freq: np.ndarray, density: np.ndarray, bands: dict = AMMONIA_BANDS) -> dict[str, float]:
    """The density-weighted mean frequency (cm^-1) of each band: robust where a band holds two
    lines (the symmetric and antisymmetric N-H stretches) or one line shifts and broadens."""
    out = {}
    for name, (lo, hi) in bands.items():
        sel = (freq >= lo) & (freq <= hi)
        weight = np.clip(density[sel], 0.0, None)
        if sel.any() and weight.sum() > 0:
            out[name] = float(np.sum(freq[sel] * weight) / weight.sum())
    return out
