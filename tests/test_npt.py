"""NPT (jax-md's Nose-Hoover thermostat and isotropic barostat on the one engine): an ideal gas
(the model with every weight zero: no forces, no virial) reaches the volume its pressure asks
for, <V> = (N + 1) kT / P, and its mean pressure is the target; two seeds of a weakly interacting
gas agree within their errors; a liquid's run conserves the NPT invariant; the thermo log and
frames carry volume and density."""

from pathlib import Path

import jax
import numpy as np
import pytest
from ase import Atoms

from legato_jax.cli.main import main as cli
from legato_jax.errors import ConfigError
from legato_jax.md.health import HealthLimits
from legato_jax.md.integrate import BAR, KB, Stage
from legato_jax.md.run import MDConfig, run_md
from legato_jax.model.io import load_model

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "ammonia-tiny.npz"
N, T, L0 = 125, 300.0, 16.0  # atoms, K, Å: an ideal gas at this volume has the pressure below
P_BAR = N * KB * T / L0**3 / BAR


def gas_run(seed: int, weight: float = 0.0, steps: int = 2500):
    """NPT of N nitrogen atoms on a jittered grid with the tiny model's weights times `weight`:
    0 is an ideal gas (no forces, no virial), a small value a weakly interacting one whose runs
    depend on the seed (an ideal gas's volume depends on its kinetic energy alone)."""
    potential, params, _ = load_model(TINY)
    scaled = jax.tree.map(lambda x: weight * x, params)
    rng = np.random.default_rng(seed)
    grid = (np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * L0 / 5
    gas = Atoms("N" * N, positions=grid + rng.uniform(-0.5, 0.5, (N, 3)), cell=[L0] * 3, pbc=True)
    stage = Stage("npt", steps, 2.0, T, 100.0, pressure_bar=P_BAR, barostat_tau_fs=200.0)
    cfg = MDConfig((stage,), T, seed=seed, every=10, chunk_steps=500, skin=0.3,
                   health=HealthLimits("off"))  # gas atoms pass close to each other
    result = run_md(potential, scaled, gas, cfg, progress=False)
    keep = slice(len(result.thermo.rows) // 5, None)  # the first fifth: equilibration
    return result.thermo.column("volume_A3")[keep], result.thermo.column("pressure_eV_A3")[keep] / BAR, result


def mean_and_error(x: np.ndarray, blocks: int = 10) -> tuple[float, float]:
    """Mean and its standard error from block averages (the samples are correlated)."""
    means = np.array([b.mean() for b in np.array_split(x, blocks)])
    return float(x.mean()), float(means.std(ddof=1) / np.sqrt(blocks))


@pytest.mark.slow
def test_an_ideal_gas_reaches_its_volume_and_pressure():
    volume, pressure, result = gas_run(0)
    mean, err = mean_and_error(volume)
    expected = (N + 1) / N * L0**3  # <V> = (N + 1) kT / P for the isothermal-isobaric ideal gas
    assert abs(mean - expected) < 4 * err and err < 0.03 * expected, (mean, err, expected)
    p_mean, p_err = mean_and_error(pressure)
    assert abs(p_mean - P_BAR) < 4 * p_err and p_err < 0.1 * P_BAR, (p_mean, p_err, P_BAR)
    stage = result.summary["stages"][0]
    assert abs(stage["temperature_K"] - T) < 15 and stage["target_bar"] == pytest.approx(P_BAR)


@pytest.mark.slow
def test_two_seeds_give_equal_averages_within_their_errors():
    runs = [mean_and_error(gas_run(seed, weight=0.2, steps=2000)[0]) for seed in (0, 1)]
    (m0, e0), (m1, e1) = runs
    assert m0 != m1  # independent runs, not one run twice
    assert abs(m0 - m1) < 4 * np.hypot(e0, e1) and max(e0, e1) < 0.03 * m0, runs


def test_a_liquid_npt_run_conserves_its_invariant_and_logs_volume_and_density(tmp_path, capsys):
    log = tmp_path / "npt.csv"
    assert cli(["md", "--model", str(TINY), "--ammonia", "128", "--ensemble", "npt", "--pressure", "1",
                "--temperature", "200", "--dt", "1", "--steps", "100", "--barostat-tau", "200", "--precision",
                "float64", "--log", str(log), "--out", str(tmp_path / "npt.extxyz"), "--no-progress", "--json"]) == 0
    import csv
    import json

    summary = json.loads(capsys.readouterr().out)
    stage = summary["stages"][0]
    assert stage["ensemble"] == "npt" and stage["target_bar"] == 1.0
    assert abs(stage["conserved_drift_eV_per_atom_ps"]) < 1e-3
    rows = list(csv.DictReader(open(log)))
    volume = np.array([float(r["volume_A3"]) for r in rows])
    density = np.array([float(r["density_g_cm3"]) for r in rows])
    assert np.ptp(volume) > 0 and np.allclose(density * volume, density[0] * volume[0])
    from ase.io import read

    frames = read(tmp_path / "npt.extxyz", ":")
    np.testing.assert_allclose([f.get_volume() for f in frames], volume, rtol=1e-6)  # a frame per row


def test_a_shrinking_box_rebuilds_its_list(tmp_path):
    # 50 kbar squeezes the box by 10 % in 100 fs; a missed pair would stop the run with status 3.
    # (Atoms' own motion rebuilds this list often enough that it passes without the box rule too.)
    log = tmp_path / "npt.csv"
    assert cli(["md", "--model", str(TINY), "--ammonia", "64", "--ensemble", "npt", "--pressure", "50000", "--skin", "0.3",
                "--temperature", "200", "--dt", "1", "--steps", "100", "--barostat-tau", "200", "--log", str(log),
                "--no-progress"]) == 0
    import csv

    volume = np.array([float(r["volume_A3"]) for r in csv.DictReader(open(log))])
    assert volume[-1] < 0.9 * volume[0]  # the box shrank by far more than the skin


def test_npt_refusals(capsys):
    base = ["md", "--model", str(TINY), "--temperature", "200", "--dt", "1", "--steps", "10", "--no-progress"]
    assert cli(base + ["--ammonia", "16", "--ensemble", "npt", "--pressure", "1"]) == 2
    assert "NPT needs every cell width" in capsys.readouterr().err
    assert cli(base + ["--ammonia", "64", "--ensemble", "npt"]) == 2
    assert "--pressure BAR goes with --ensemble npt" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--pressure"):
        Stage("nose-hoover", 10, 1.0, 200.0, pressure_bar=1.0)
