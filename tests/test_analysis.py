"""Trajectory analysis as physics: g(r) of an ideal gas is 1 and equals ASE's partial RDFs; the
MSD of free particles is v^2 t^2 across periodic boundaries, a random walk gives its D; the
shipped cell's density; `legato analyze` end to end."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.geometry.rdf import get_rdf
from ase.io import write

from legato_jax.analysis import density_g_cm3, diffusion_coefficient, msd, rdf, unwrap, without_drift
from legato_jax.cli.main import main as cli
from legato_jax.data.ammonia import liquid_ammonia


def box_frames(positions: np.ndarray, length: float, symbols: str, dt_fs: float = 10.0) -> list[Atoms]:
    """Frames of (T, N, 3) positions wrapped into a cubic box, with their times."""
    frames = []
    for t, pos in enumerate(positions):
        atoms = Atoms(symbols, positions=np.mod(pos, length), cell=[length] * 3, pbc=True)
        atoms.info["time_fs"] = t * dt_fs
        frames.append(atoms)
    return frames


def test_g_of_r_of_an_ideal_gas_is_one():
    rng = np.random.default_rng(0)
    frames = box_frames(rng.uniform(0, 14.0, (30, 600, 3)), 14.0, "HN" * 300)
    r, g = rdf(frames, [("H", "H"), ("H", "N"), ("N", "N")], rmax=6.0, nbins=30)
    for pair, values in g.items():
        tail = values[r > 1.5]
        assert abs(tail.mean() - 1.0) < 0.02 and np.all(np.abs(tail - 1.0) < 0.15), pair


def test_partial_rdfs_equal_ases():
    frames = [liquid_ammonia(128)]
    frames[0].rattle(0.05, seed=1)
    r, g = rdf(frames, [("N", "H"), ("H", "N"), ("N", "N")], rmax=7.0, nbins=70)
    for a, b in (("N", "H"), ("N", "N")):
        reference, r_ase = get_rdf(frames, 7.0, 70, elements=(a, b))
        np.testing.assert_allclose(g[f"{a}-{b}"], reference, atol=1e-10)
        np.testing.assert_allclose(r, r_ase, atol=1e-12)
    np.testing.assert_allclose(g["N-H"], g["H-N"], atol=1e-12)


def test_density_of_the_shipped_cell():
    np.testing.assert_allclose(density_g_cm3([liquid_ammonia(16), liquid_ammonia(16, 0.7)]), [0.68, 0.70], rtol=1e-3)


def test_msd_of_free_particles_across_the_boundaries():
    rng = np.random.default_rng(1)
    x0, v = rng.uniform(0, 8.0, (50, 3)), rng.normal(scale=0.3, size=(50, 3))  # Å per frame: many crossings
    t = np.arange(40)
    frames = box_frames(x0 + v * t[:, None, None], 8.0, "N" * 50)
    curve = msd(unwrap(frames))
    np.testing.assert_allclose(curve, np.mean(np.sum(v**2, axis=1)) * t**2, rtol=1e-9, atol=1e-9)
    # with the centre of mass held still, the relative velocities remain
    held = msd(without_drift(unwrap(frames), np.ones(50)))
    np.testing.assert_allclose(held, np.mean(np.sum((v - v.mean(0)) ** 2, axis=1)) * t**2, rtol=1e-9, atol=1e-9)


def test_a_random_walk_gives_its_diffusion_coefficient():
    rng = np.random.default_rng(2)
    d_true, dt_ps = 0.5, 0.01  # Å^2/ps
    steps = rng.normal(scale=np.sqrt(2 * d_true * dt_ps), size=(2000, 400, 3))
    positions = np.cumsum(steps, axis=0)
    lag = dt_ps * np.arange(1001)
    fit = diffusion_coefficient(lag, msd(positions, 1000))
    assert abs(fit.d_A2_per_ps - d_true) < 0.05 * d_true and fit.d_1e5_cm2_per_s == pytest.approx(10 * fit.d_A2_per_ps)


def test_analyze_command(tmp_path, capsys):
    rng = np.random.default_rng(3)
    walk = rng.uniform(0, 10.0, (1, 64, 3)) + np.cumsum(rng.normal(scale=0.2, size=(40, 64, 3)), axis=0)
    path = tmp_path / "traj.extxyz"
    write(path, box_frames(walk, 10.0, "NH3" * 16), format="extxyz")
    assert cli(["analyze", str(path), "--rdf", "N-H", "N-N", "--msd", "--skip", "4", "--json",
                str(tmp_path / "a.json"), "--plot", str(tmp_path / "a.png")]) == 0
    out = capsys.readouterr().out
    assert "36 frames of 64 atoms" in out and "diffusion N" in out and "g(r) N-H" in out
    result = json.loads((tmp_path / "a.json").read_text())
    assert set(result["rdf"]["g"]) == {"N-H", "N-N"} and set(result["diffusion"]) == {"all", "N", "H"}
    assert (tmp_path / "a.png").stat().st_size > 10_000
    assert cli(["analyze", str(path), "--rdf", "N-O"]) == 2
    assert "--rdf N-O" in capsys.readouterr().err
    assert cli(["analyze", str(path), "--rmax", "9"]) == 2
    assert "half the smallest cell width" in capsys.readouterr().err
