"""MD restarts continue exactly: checkpoints carry the full state (thermostat included) at full
precision, trajectory frames carry masses, and a conflicting hydrogen mass is refused."""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.io import read

from legato_jax.cli.main import main as cli
from legato_jax.data.ammonia import AMMONIA_CELL
from legato_jax.md.integrate import Stage
from legato_jax.md.restart import read_restart
from legato_jax.md.run import MDConfig, run_md
from legato_jax.model.io import load_model

TINY = Path(__file__).parent / "data" / "ammonia-tiny.npz"


@pytest.fixture(scope="module")
def tiny64():
    pot, params, _ = load_model(TINY)
    pot = dataclasses.replace(pot, config=dataclasses.replace(pot.config, dtype="float64"))
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
    return pot, params


@pytest.mark.parametrize("ensemble", ["nve", "nose-hoover", "langevin"])
def test_checkpoint_restart_equals_the_uninterrupted_run(tiny64, tmp_path, ensemble):
    cell = read(AMMONIA_CELL)

    def cfg(steps):
        return MDConfig((Stage(ensemble, steps, 1.0, 250.0, 20.0),), 250.0, every=10, chunk_steps=50,
                        hydrogen_mass=2.014)

    whole = run_md(*tiny64, cell, cfg(200), progress=False)
    ckpt = tmp_path / "state.npz"
    run_md(*tiny64, cell, cfg(100), checkpoint_path=ckpt, progress=False)
    restart = read_restart(ckpt)
    assert restart.step == 100 and np.allclose(restart.atoms.get_masses()[restart.atoms.numbers == 1], 2.014)
    resumed = run_md(*tiny64, restart, dataclasses.replace(cfg(100), hydrogen_mass=None), progress=False)
    np.testing.assert_allclose(resumed.atoms.positions, whole.atoms.positions, rtol=0, atol=1e-10)
    np.testing.assert_allclose(resumed.atoms.get_momenta(), whole.atoms.get_momenta(), rtol=0, atol=1e-10)
    assert resumed.summary["restarted_from"]["step"] == 100


def test_trajectory_frames_carry_masses_and_restart_at_the_same_temperature(tmp_path, capsys):
    out, log = tmp_path / "traj.extxyz", tmp_path / "thermo.csv"
    base = ["md", "--model", str(TINY), "--ensemble", "nose-hoover", "--temperature", "200", "--dt", "1",
            "--log-every", "10", "--no-progress"]
    assert cli(base + ["--ammonia", "16", "--steps", "50", "--hydrogen-mass", "2.014", "--out", str(out)]) == 0
    last = read(out, -1)
    assert np.allclose(last.get_masses()[last.numbers == 1], 2.014) and last.info["step"] == 50
    capsys.readouterr()
    assert cli(base + ["--restart", str(out), "--steps", "10", "--log", str(log), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    first = np.genfromtxt(log, delimiter=",", names=True)
    t_frame = 2 * last.get_kinetic_energy() / (3 * len(last) * 8.617333262e-5)
    # one block of 10 steps on from the frame: the same physics keeps the temperature near the frame's
    assert abs(np.atleast_1d(first["temperature_K"])[0] - t_frame) < 0.25 * t_frame
    assert summary["restarted_from"]["step"] == 50
    rc = cli(base + ["--restart", str(out), "--steps", "10", "--hydrogen-mass", "1.008"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--hydrogen-mass 1.008 differs from the hydrogen mass 2.014" in err


def test_a_frame_without_momenta_or_a_foreign_npz_is_refused(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    for path, text in [(AMMONIA_CELL, "has no momenta"), (tmp_path / "x.npz", "not a legato MD checkpoint")]:
        rc = cli(["md", "--model", str(TINY), "--restart", str(path), "--ensemble", "nve", "--temperature", "100",
                  "--dt", "1", "--steps", "10", "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and text in err, err
