"""MD on jax-md with a small trained ammonia model: conservation, thermostats, neighbour lists,
overflow re-runs, agreement with ASE, outputs and bad input."""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms, units
from ase.io import read
from ase.md.verlet import VelocityVerlet
from ase.neighborlist import neighbor_list

from legato_jax.calculators import LegatoCalculator
from legato_jax.cli.main import main as cli
from legato_jax.data.graph import TypeMap
from legato_jax.errors import ConfigError, DataError
from legato_jax.md.energy import model_energy
from legato_jax.md.integrate import Stage, StageRunner, make_integrator, start_stage
from legato_jax.md.run import MDConfig, load_preset, run_md
from legato_jax.data.ammonia import AMMONIA_CELL, ammonia_density, liquid_ammonia
from legato_jax.md.systems import initial_momenta, masses
from legato_jax.model.io import load_model

TINY = Path(__file__).parent / "data" / "ammonia-tiny.npz"


@pytest.fixture(scope="module")
def tiny():
    pot, params, _ = load_model(TINY)
    return pot, params


@pytest.fixture(scope="module")
def tiny64(tiny):
    pot, params = tiny
    pot = dataclasses.replace(pot, config=dataclasses.replace(pot.config, dtype="float64"))
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
    return pot, params


@pytest.fixture(scope="module")
def cell():
    return read(AMMONIA_CELL)


def nve(steps, dt=0.5, every=10, **kw):
    return MDConfig((Stage("nve", steps, dt),), 200.0, every=every, **kw)


def test_nve_float64_conserves_energy(tiny64, cell):
    # measured (64 atoms, 200 K, 1 ps): drift -1.2e-5 eV/atom/ps at dt 1 fs, -3.0e-6 at 0.5 fs;
    # the fluctuation of E_total falls 5.7x when dt halves (velocity Verlet: 4x, i.e. dt^2)
    runs = {dt: run_md(*tiny64, cell, nve(int(1000 / dt), dt), progress=False) for dt in (1.0, 0.5)}
    s = runs[0.5].summary["stages"][0]
    assert abs(s["conserved_drift_eV_per_atom_ps"]) < 3e-5
    assert s["conserved_max_dev_eV_per_atom"] < 1e-3
    std = {dt: np.std(r.thermo.column("total_eV")) for dt, r in runs.items()}
    assert std[1.0] / std[0.5] > 3.0
    assert runs[0.5].summary["nl_rebuilds"] > 50  # conservation held through the list's rebuilds


def test_nose_hoover_conserves_its_invariant(tiny64, cell):
    # measured: drift 1.6e-5 eV/atom/ps, max deviation 1.8e-4 eV/atom (dt 0.5 fs, 1 ps, 200 -> 300 K)
    cfg = MDConfig((Stage("nose-hoover", 2000, 0.5, 300.0, 50.0),), 200.0, every=10)
    s = run_md(*tiny64, cell, cfg, progress=False).summary["stages"][0]
    assert abs(s["conserved_drift_eV_per_atom_ps"]) < 2e-4
    assert s["conserved_max_dev_eV_per_atom"] < 2e-3
    assert s["temperature_K"] > 250  # it did heat towards the target while conserving


@pytest.mark.parametrize("ensemble", ["langevin", "nose-hoover"])
def test_thermostats_reach_the_target_temperature(tiny, cell, ensemble):
    # 200 K: the tiny test model (33 meV/Å) finds holes at 300 K within 3.5 ps in 2 of 5 seeds
    # (measured, Nose-Hoover, at 1 and 0.5 fs); at 200 K it ran 6 of 6 (liquid ammonia's range)
    target, n = 200.0, len(cell)
    cfg = MDConfig((Stage(ensemble, 500, 1.0, target, 25.0), Stage(ensemble, 3000, 1.0, target, 25.0)), 100.0,
                   every=10)
    res = run_md(*tiny, cell, cfg, progress=False)
    T = res.thermo.column("temperature_K")[res.thermo.column("stage") == 1]
    # canonical fluctuation of the kinetic temperature: T sqrt(2 / (3N - 3)); rows 10 fs apart are
    # correlated, so the standard error uses blocks of 10 rows
    blocks = T[: len(T) // 10 * 10].reshape(-1, 10).mean(axis=1)
    err = blocks.std(ddof=1) / np.sqrt(len(blocks))
    assert abs(T.mean() - target) < 4 * err + 0.01 * target, (T.mean(), err)
    assert T.std() == pytest.approx(target * np.sqrt(2 / (3 * n - 3)), rel=0.35)


def brute_pairs(R, cell, cutoff):
    atoms = Atoms("H" * len(R), positions=R, cell=cell, pbc=True)
    i, j = neighbor_list("ij", atoms, cutoff)
    return set(zip(i.tolist(), j.tolist()))


def list_pairs(nbrs, R, cell, cutoff):
    recv, send = np.asarray(nbrs.idx)
    keep = recv < len(R)
    recv, send = recv[keep], send[keep]
    d = R[send] - R[recv]
    d -= np.round(d @ np.linalg.inv(cell)) @ cell  # minimum image (the cell is wider than 2 cutoffs)
    close = np.linalg.norm(d, axis=1) < cutoff
    return set(zip(recv[close].tolist(), send[close].tolist()))


@pytest.mark.parametrize("reps", [(1, 1, 1), (2, 2, 2)])
def test_neighbour_list_equals_brute_force_at_every_step(tiny, cell, reps):
    pot, params = tiny
    atoms = cell.repeat(reps)
    species = TypeMap(("H", "N")).indices(atoms.numbers)
    system = model_energy(pot, params, species, atoms.cell.array, skin=0.3)
    stage = Stage("nve", 40, 2.0)
    init, apply = make_integrator(system, stage)
    mass = jnp.asarray(masses(atoms), jnp.float32)[:, None]
    R = system.wrap(jnp.asarray(atoms.positions, jnp.float32))
    nbrs = system.neighbor_fn.allocate(R)
    assert (nbrs.cell_list_fn is not None) == (reps == (2, 2, 2))  # 17.5 Å sides hold 4 cells of 3.8 Å
    state = start_stage(init, jax.random.PRNGKey(0), R, mass,
                        initial_momenta(jax.random.PRNGKey(1), mass, 400.0), nbrs)
    runner = StageRunner(system, stage, apply, every=1, chunk_steps=1)
    rebuilds = 0
    for _, state, nbrs, obs in runner.chunks(state, nbrs, stage.steps):
        R_now = np.asarray(state.position, float)
        assert list_pairs(nbrs, R_now, atoms.cell.array, 3.5) == brute_pairs(R_now, atoms.cell.array, 3.5)
        rebuilds += int(obs.rebuilds.sum())
    assert rebuilds > 0


def test_overflow_is_rerun_and_matches_a_run_that_never_overflowed(tiny64, cell):
    pot, params = tiny64
    species = TypeMap(("H", "N")).indices(cell.numbers)
    stage = Stage("nve", 200, 1.0)
    finals = {}
    with jax.enable_x64(True):
        for name, multiplier in (("roomy", 2.0), ("tight", 1.0)):  # tight: exactly the first frame's pairs
            system = model_energy(pot, params, species, cell.cell.array, skin=0.2, capacity_multiplier=multiplier)
            init, apply = make_integrator(system, stage)
            mass = jnp.asarray(masses(cell), jnp.float64)[:, None]
            R = system.wrap(jnp.asarray(cell.positions))
            nbrs = system.neighbor_fn.allocate(R)
            state = start_stage(init, jax.random.PRNGKey(0), R, mass,
                                initial_momenta(jax.random.PRNGKey(1), mass, 300.0), nbrs)
            runner = StageRunner(system, stage, apply, every=10, chunk_steps=50)
            for _, state, nbrs, _ in runner.chunks(state, nbrs, stage.steps):
                assert not bool(nbrs.did_buffer_overflow)
            finals[name] = (np.asarray(state.position), runner.reallocations)
    assert finals["roomy"][1] == 0 and finals["tight"][1] >= 1
    np.testing.assert_allclose(finals["tight"][0], finals["roomy"][0], atol=1e-9)


def test_first_100_steps_agree_with_ase_velocity_verlet(tiny64, cell):
    pot, params = tiny64
    start = cell.copy()
    with jax.enable_x64(True):
        p0 = np.asarray(initial_momenta(jax.random.PRNGKey(5), jnp.asarray(start.get_masses())[:, None], 200.0))
    start.set_momenta(p0)
    res = run_md(pot, params, start, MDConfig((Stage("nve", 100, 1.0),), 0.0, every=10), progress=False)
    ref = start.copy()
    with jax.enable_x64(True):
        ref.calc = LegatoCalculator(pot, params)
        # jax-md keeps dt in float32 (simulate.nve: dt = f32(dt)), so give ASE the same rounded step;
        # with the exact 1 fs the runs differ by 6e-8 Å after 100 steps, 8e-10 after one
        VelocityVerlet(ref, timestep=float(np.float32(1.0 * units.fs))).run(100)
    dx = ref.get_positions() - res.atoms.get_positions()
    dx -= np.round(dx @ np.linalg.inv(cell.cell.array)) @ cell.cell.array  # jax-md wraps positions
    assert np.abs(dx).max() < 1e-11  # measured 2.2e-14 Å
    np.testing.assert_allclose(res.atoms.get_momenta(), ref.get_momenta(), atol=1e-11)


def test_initial_momenta_exact_temperature_zero_momentum_and_masses(cell):
    m = masses(cell, hydrogen_mass=2.014)
    assert np.allclose(m[cell.numbers == 1], 2.014) and np.allclose(m[cell.numbers == 7], 14.007)
    p = np.asarray(initial_momenta(jax.random.PRNGKey(0), jnp.asarray(m)[:, None], 250.0))
    ke = 0.5 * np.sum(p**2 / m[:, None])
    assert 2 * ke / ((3 * len(m) - 3) * 8.617333262e-5) == pytest.approx(250.0, rel=1e-5)
    np.testing.assert_allclose(p.sum(axis=0), 0.0, atol=1e-4)


def test_ammonia_boxes_replicate_the_equilibrated_cell():
    box = liquid_ammonia(16 * 12)
    assert len(box) == 768 and np.allclose(sorted(box.cell.lengths() / 8.73038586075516), [2, 2, 3])
    assert ammonia_density(box) == pytest.approx(0.68, abs=0.01)
    dense = liquid_ammonia(16 * 8, density=0.75)
    assert ammonia_density(dense) == pytest.approx(0.75, rel=1e-6)
    d = dense.get_all_distances(mic=True)
    nh = d[np.ix_(dense.numbers == 7, dense.numbers == 1)].min(axis=0)
    assert nh.max() < 1.2  # molecules moved rigidly
    with pytest.raises(ConfigError, match=r"16 x a x b x c"):
        liquid_ammonia(100)


def test_presets_and_a_two_stage_run_with_outputs(tiny, cell, tmp_path):
    code = load_preset("paper-code", steps=2000)
    assert code["hydrogen_mass"] == 2.014 and code["stages"][0].dt_fs == 2.5 and code["stages"][0].steps == 2000
    text = load_preset("paper-text", steps=3000)
    assert [(s.ensemble, s.steps, s.dt_fs) for s in text["stages"]] == [("nose-hoover", 1000, 2.0), ("nve", 2000, 2.0)]
    preset = tmp_path / "short.yaml"
    preset.write_text("temperature: 250\ndt: 1.0\nstages:\n  - {ensemble: langevin, steps: 40, tau: 20}\n"
                      "  - {ensemble: nve, steps: null}\n")
    cfg = MDConfig(**load_preset(str(preset), steps=100), every=10, chunk_steps=20, traj_every=20)
    res = run_md(*tiny, cell, cfg, thermo_path=tmp_path / "t.csv", traj_path=tmp_path / "t.extxyz", progress=False)
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rows[0].startswith("step,time_fs,stage,ensemble,temperature_K") and len(rows) == 1 + 10
    assert rows[-1].split(",")[:4] == ["100", "100.0", "1", "nve"] and rows[4].split(",")[3] == "langevin"
    frames = read(tmp_path / "t.extxyz", ":")
    assert [f.info["step"] for f in frames] == [20, 40, 60, 80, 100]
    last = frames[-1]
    np.testing.assert_allclose(last.get_momenta(), res.atoms.get_momenta(), atol=1e-5)
    assert last.get_potential_energy() == pytest.approx(res.thermo.column("potential_eV")[-1], abs=1e-3)
    assert last.get_forces().shape == (64, 3) and np.abs(last.get_forces()).max() > 0.1
    assert res.summary["compiles"] == 2  # one per stage; no recompiles after warm-up


def test_bad_input_is_refused_before_anything_runs(tiny, cell, tmp_path):
    pot, params = tiny
    water = cell.copy()
    water.numbers[0] = 8
    with pytest.raises(DataError, match=r"unknown species \['O'\]"):
        run_md(pot, params, water, nve(10), progress=False)
    nan = cell.copy()
    nan.positions[3, 1] = np.nan
    with pytest.raises(DataError, match="atom 3 has a non-finite position"):
        run_md(pot, params, nan, nve(10), progress=False)
    close = cell.copy()
    close.positions[5] = close.positions[4] + [0.1, 0.0, 0.0]
    with pytest.raises(DataError, match="atoms 4 and 5 are 0.100 Å apart"):
        run_md(pot, params, close, nve(10), progress=False)
    thin = Atoms("NH3", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], cell=[6, 6, 0.8], pbc=True)
    with pytest.raises(ConfigError, match="width 0.800 Å along lattice vector 2 is too narrow.*replicate"):
        run_md(pot, params, thin, nve(10), progress=False)
    with pytest.raises(ConfigError, match="not a multiple of the thermo interval"):
        nve(15)


def test_cli_runs_md_and_reports_bad_input_in_one_line(tmp_path, capsys):
    structure = tmp_path / "cell.extxyz"
    read(AMMONIA_CELL).write(structure)
    log, out = tmp_path / "thermo.csv", tmp_path / "traj.extxyz"
    rc = cli(["md", "--model", str(TINY), "--structure", str(structure), "--ensemble", "langevin",
              "--temperature", "250", "--dt", "1", "--steps", "40", "--log", str(log), "--out", str(out),
              "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ammonia-tiny: 64 atoms, 40 steps" in printed and "stage 0 langevin" in printed
    assert len(log.read_text().splitlines()) == 5 and len(read(out, ":")) == 4
    rc = cli(["md", "--model", str(TINY), "--ammonia", "16", "--replicate", "1", "1", "1", "--ensemble", "nve",
              "--temperature", "100", "--dt", "1", "--steps", "10", "--json", "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["n_atoms"] == 64 and summary["stages"][0]["ensemble"] == "nve"
    rc = cli(["md", "--model", str(TINY), "--structure", str(structure), "--preset", "nope", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no such preset; known presets are ['demo', 'paper-code', 'paper-text', 'stressed']" in err


def test_nose_hoover_invariant_equals_jax_md(tiny64, cell):
    from jax_md import simulate

    from legato_jax.md.integrate import kinetic_energy, nose_hoover_invariant

    pot, params = tiny64
    with jax.enable_x64(True):
        system = model_energy(pot, params, TypeMap(("H", "N")).indices(cell.numbers), cell.cell.array)
        stage = Stage("nose-hoover", 20, 1.0, 300.0, 20.0)
        init, apply = make_integrator(system, stage)
        R = jnp.asarray(cell.positions)
        nbrs = system.neighbor_fn.allocate(R)
        mass = jnp.asarray(masses(cell))[:, None]
        state = start_stage(init, jax.random.PRNGKey(0), R, mass,
                            initial_momenta(jax.random.PRNGKey(1), mass, 100.0), nbrs)
        for _ in range(20):
            state = apply(state, neighbor=nbrs)
        kT = 300.0 * 8.617333262e-5
        ours = nose_hoover_invariant(system.energy_fn(state.position, nbrs), kinetic_energy(state.momentum, state.mass),
                                     state.chain, kT, state.position.size)
        ref = simulate.nvt_nose_hoover_invariant(system.energy_fn, state, kT, neighbor=nbrs)
    assert float(ours) == pytest.approx(float(ref), abs=1e-10)


def test_a_preset_longer_than_steps_is_cut_in_order_with_a_note():
    from legato_jax.md.config import load_preset

    notes = []
    stages = load_preset("demo", 120, note=notes.append)["stages"]  # NVT 100, then NVE for the rest
    assert [(s.ensemble, s.steps) for s in stages] == [("nose-hoover", 100), ("nve", 20)]
    assert not notes
    stages = load_preset("demo", 60, note=notes.append)["stages"]
    assert [(s.ensemble, s.steps) for s in stages] == [("nose-hoover", 60)] and "60 steps run nose-hoover 60" in notes[0]
    load_preset("paper-code", note=notes.append)
    assert "runs 1,000,000 steps; give --steps" in notes[-1]
