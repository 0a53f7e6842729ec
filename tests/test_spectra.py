"""Vibrational density of states: a known signal's lines at their frequencies, and `legato
spectrum` and `legato pimd` on real trajectories."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.io import write
from scipy.signal import find_peaks

from legato_jax.analysis.spectra import FS_TO_CM1, band_centroids, band_peaks, vdos
from legato_jax.cli.main import main as cli
from legato_jax.errors import DataError
from tests.test_md_run import TINY


def cosines(freqs_cm1, amplitudes, frames=4000, dt_fs=1.0, atoms=8, seed=0):
    t = np.arange(frames)[:, None, None] * dt_fs
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, (len(freqs_cm1), atoms, 3))
    return sum(a * np.cos(2 * np.pi * f / FS_TO_CM1 * t + p) for f, a, p in zip(freqs_cm1, amplitudes, phase))


def test_vdos_of_a_sum_of_cosines_peaks_at_their_frequencies():
    v = cosines([1000.0, 3300.0], [1.0, 0.5])
    freq, d = vdos(v, 1.0, max_lag=1000)
    assert np.trapezoid(d, freq) == pytest.approx(1.0)
    peaks, _ = find_peaks(d, height=0.05 * d.max())
    width = freq[1] - freq[0]
    assert len(peaks) == 2
    assert np.allclose(freq[peaks], [1000.0, 3300.0], atol=width)
    assert d[peaks[1]] / d[peaks[0]] == pytest.approx(0.25, abs=0.03)  # power: amplitude squared
    bands = band_peaks(freq, d)
    assert bands["umbrella"] == freq[peaks[0]] and bands["stretch"] == freq[peaks[1]]
    assert "bend" not in bands  # no line there: no peak reported
    assert band_centroids(freq, d)["stretch"] == pytest.approx(3300.0, abs=width)
    with pytest.raises(DataError):
        vdos(v[:2], 1.0)


def test_spectrum_cli_on_frames_with_momenta(tmp_path, capsys):
    v = cosines([1600.0], [1.0], frames=600, dt_fs=2.0, atoms=4)  # Å/fs
    from ase import units

    frames = []
    for k, vk in enumerate(v):
        atoms = Atoms("NH3", positions=np.zeros((4, 3)), cell=[10, 10, 10], pbc=True)
        atoms.set_velocities(vk / units.fs)
        atoms.info = {"time_fs": 2.0 * k, "step": k}
        frames.append(atoms)
    write(tmp_path / "t.extxyz", frames)
    out = tmp_path / "s.json"
    assert cli(["spectrum", str(tmp_path / "t.extxyz"), "--labels", "signal", "--max-lag-fs", "400",
                "--plot", str(tmp_path / "s.png"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| signal | H |" in text and (tmp_path / "s.png").stat().st_size > 0
    peaks = json.loads(out.read_text())["peaks_cm1"]["signal"]
    assert abs(peaks["H"]["bend"] - 1600.0) < 50 and abs(peaks["N"]["bend"] - 1600.0) < 50
    assert cli(["spectrum", str(tmp_path / "t.extxyz"), "--species", "O"]) == 2


@pytest.mark.slow
def test_pimd_cli_convergence_table_and_trpmd_centroid_spectrum(tmp_path, capsys):
    assert cli(["pimd", "--model", str(TINY), "--molecule", "NH3", "--beads", "1", "4", "--steps", "100",
                "--temperature", "200", "--dt", "0.5", "--health", "warn", "--json", str(tmp_path / "c.json")]) == 0
    table = capsys.readouterr().out
    assert "| 1 | 25.85 ± 0.00" in table and "| 4 |" in table
    runs = json.loads((tmp_path / "c.json").read_text())["runs"]
    assert runs[1]["kinetic_H_eV"] > runs[0]["kinetic_H_eV"]  # zero-point motion of the N-H stretch and bends
    traj = tmp_path / "trpmd.extxyz"
    assert cli(["pimd", "--model", str(TINY), "--molecule", "NH3", "--beads", "2", "--steps", "100", "--trpmd", "--health", "off",
                "--temperature", "200", "--dt", "0.5", "--log-every", "2", "--out", str(traj),
                "--beads-out", str(tmp_path / "beads.extxyz"), "--log", str(tmp_path / "pi.csv")]) == 0
    assert cli(["spectrum", str(traj), "--max-lag-fs", "20"]) == 0
    assert cli(["spectrum", str(traj), "--max-lag-fs", "40"]) == 2  # longer than half the run
    assert cli(["pimd", "--model", str(TINY), "--molecule", "XX9", "--beads", "2", "--steps", "10"]) == 2
    assert cli(["pimd", "--model", str(TINY), "--molecule", "NH3", "--beads", "2", "4", "--steps", "10",
                "--out", str(traj)]) == 2
