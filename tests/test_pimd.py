"""Path-integral MD: the harmonic oscillator's exact quantum kinetic energy, exact free ring-polymer
propagation, P = 1 against jax-md's Langevin, the beads' forces against the calculator, and a run
of the model end to end."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.io import read

from legato_jax.calculators import LegatoCalculator
from legato_jax.cli.main import main as cli
from legato_jax.data.ammonia import AMMONIA_CELL
from legato_jax.data.graph import TypeMap
from legato_jax.errors import ConfigError
from legato_jax.md.energy import model_energy
from legato_jax.md.integrate import FS, KB, Stage, allocate, make_integrator, rebuild_batch
from legato_jax.md.pimd import PIMDConfig, bead_forces, bead_placement, run_pimd
from legato_jax.md.ring_polymer import (HBAR, estimators, exact_harmonic_kinetic, free_ring_step, normal_mode_matrix,
                                        ring_frequencies, ring_polymer_langevin, to_modes)
from legato_jax.md.systems import initial_momenta, masses
from tests.test_md_run import tiny, tiny64  # noqa: F401  (fixtures)

HOLE = Path(__file__).parent / "data" / "legato-with-hole.npz"


def harmonic_kinetic(P: int, thermostat: str = "pile-l", blocks: int = 3000, seed: int = 0):
    """Centroid-virial kinetic energy per degree of freedom / exact, 64 oscillators at beta hbar w = 4."""
    kT, m, n = KB * 300.0, 1.0, 64
    omega = 4 * kT / HBAR
    init, apply = ring_polymer_langevin(lambda R, **kw: -m * omega**2 * R, 1.0 * FS, kT, P, tau=20 * FS,
                                        thermostat=thermostat)
    with jax.enable_x64(True):
        state = init(jax.random.PRNGKey(seed), jnp.zeros((n, 3)), jnp.full((n,), m))

        @jax.jit
        def run(state):
            def block(s, _):
                s = jax.lax.fori_loop(0, 10, lambda i, s: apply(s), s)
                e = estimators(s, jnp.zeros(P), kT)
                return s, (e.kinetic_virial, e.kinetic_primitive, e.bead_kinetic)
            return jax.lax.scan(block, state, None, length=blocks)[1]

        kv, kp, kb = (np.asarray(x)[blocks // 10:] / (3 * n) for x in run(state))
    exact = exact_harmonic_kinetic(omega, kT)
    return kv.mean() / exact, kp.mean() / exact, kb.mean() / (0.5 * P * P * kT)  # P beads at P T


def test_normal_modes_are_orthogonal_and_diagonalise_the_springs():
    kT, P = KB * 200.0, 6
    C = normal_mode_matrix(P)
    assert np.allclose(C.T @ C, np.eye(P), atol=1e-12)
    q = np.random.default_rng(0).normal(size=(P, 2, 3))
    m = np.array([[1.0], [14.0]])
    w_P = P * kT / HBAR
    springs = 0.5 * w_P**2 * np.sum(m[None] * (q - np.roll(q, -1, axis=0)) ** 2)
    with jax.enable_x64(True):
        modes = np.asarray(to_modes(jnp.asarray(q), jnp.asarray(C)))
    assert 0.5 * np.sum(ring_frequencies(P, kT)[:, None, None] ** 2 * m[None] * modes**2) == pytest.approx(springs, rel=1e-12)


def test_free_ring_polymer_conserves_its_energy_exactly():
    kT, P, n = KB * 200.0, 8, 5
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(1)
        m = jnp.asarray(np.linspace(1.0, 14.0, n))[:, None]
        q = jax.random.normal(key, (P, n, 3)) * 0.1
        p = jax.random.normal(jax.random.fold_in(key, 1), (P, n, 3)) * jnp.sqrt(m * P * kT)
        C, w = jnp.asarray(normal_mode_matrix(P)), jnp.asarray(ring_frequencies(P, kT))

        def energy(q, p):
            return 0.5 * jnp.sum(p**2 / m) + 0.5 * (P * kT / HBAR) ** 2 * jnp.sum(m * (q - jnp.roll(q, -1, 0)) ** 2)

        e0 = float(energy(q, p))
        for _ in range(1000):  # dt far beyond what a Verlet step of the stiffest mode allows
            q, p = free_ring_step(q, p, m, w, C, 5.0 * FS)
        assert abs(float(energy(q, p)) - e0) < 1e-10 * abs(e0)


def test_harmonic_centroid_virial_kinetic_energy_converges_to_the_exact_value():
    # measured (this machine, 3000 blocks of 10 steps): P = 8: 0.973, 16: 0.994, 32: 1.000 of the exact value
    classical = harmonic_kinetic(1)
    assert classical[0] == pytest.approx(0.482, rel=1e-3)  # kT / 2 per degree of freedom, the estimator's P = 1
    kv, kp, bead_T = harmonic_kinetic(16)
    assert kv == pytest.approx(1.0, abs=0.02)
    assert kp == pytest.approx(1.0, abs=0.05)  # the primitive estimator: the same mean, far noisier
    assert bead_T == pytest.approx(1.0, abs=0.02)  # BAOAB's end-of-step momenta: ~(w dt)^2 / 4 low
    kv_g, _, bead_T_g = harmonic_kinetic(16, "pile-g", seed=1)
    assert kv_g == pytest.approx(1.0, abs=0.02) and bead_T_g == pytest.approx(1.0, abs=0.02)


@pytest.fixture(scope="module")
def cell():
    return read(AMMONIA_CELL)


def test_one_bead_is_jax_mds_langevin(tiny64, cell):  # noqa: F811
    pot, params = tiny64
    with jax.enable_x64(True):
        species = TypeMap(tuple(pot.config.species)).indices(cell.numbers)
        system = model_energy(pot, params, species, cell.cell.array)
        R = system.wrap(jnp.asarray(cell.positions))
        nbrs = allocate(system, R)
        mass = jnp.asarray(masses(cell), jnp.float64)[:, None]
        p0 = initial_momenta(jax.random.PRNGKey(3), mass, 200.0)
        stage = Stage("langevin", 1, 0.5, 200.0, 50.0)
        init, apply = make_integrator(system, stage)
        key = jax.random.PRNGKey(7)
        classical = init(key, R, mass=mass, momenta=p0, neighbor=nbrs)
        place = bead_placement(system, nbrs)
        init_pi, apply_pi = ring_polymer_langevin(bead_forces(system, place), 0.5 * FS, KB * 200.0, 1, tau=50.0 * FS)
        lists = rebuild_batch(system, nbrs, R[None])
        ring = init_pi(key, R[None], mass, momenta=p0[None], neighbor=lists)
        step = jax.jit(lambda s, nb: (lambda s: (s, nb.update(s.position)))(apply(s, neighbor=nb)))
        step_pi = jax.jit(lambda s, nb: (lambda s: (s, jax.vmap(lambda n, r: n.update(place(r)))(nb, s.position)))(
            apply_pi(s, neighbor=nb)))
        for _ in range(200):
            classical, nbrs = step(classical, nbrs)
            ring, lists = step_pi(ring, lists)
        assert not bool(nbrs.did_buffer_overflow) and not bool(jnp.any(lists.did_buffer_overflow))
        assert float(jnp.max(jnp.abs(system.wrap(ring.position[0]) - classical.position))) < 1e-10
        assert float(jnp.max(jnp.abs(ring.momentum[0] - classical.momentum))) < 1e-10
        assert float(jnp.max(jnp.abs(classical.momentum))) > 0.1  # they moved


def test_bead_forces_equal_separate_calculator_calls(tiny, cell):  # noqa: F811
    pot, params = tiny
    P = 4
    species = TypeMap(tuple(pot.config.species)).indices(cell.numbers)
    system = model_energy(pot, params, species, cell.cell.array)
    R = jnp.asarray(cell.positions, jnp.float32)
    beads = R[None] + 0.05 * jax.random.normal(jax.random.PRNGKey(0), (P,) + R.shape)
    nbrs = allocate(system, system.wrap(R))
    place = bead_placement(system, nbrs)
    lists = rebuild_batch(system, nbrs, jax.vmap(place)(beads))
    forces = np.asarray(bead_forces(system, place)(beads, neighbor=lists))
    calc = LegatoCalculator(pot, params)
    for j in range(P):
        atoms = cell.copy()
        atoms.positions = np.asarray(beads[j], float)
        atoms.calc = calc
        assert np.abs(forces[j] - atoms.get_forces()).max() < 2e-4 * (1 + np.abs(atoms.get_forces()).max())


def test_pimd_run_end_to_end(tiny, cell, tmp_path):  # noqa: F811
    cfg = PIMDConfig(beads=4, temperature_K=200.0, dt_fs=0.5, steps=60, equilibration_steps=20, every=10,
                     chunk_steps=40, thermostat="pile-l", tau_fs=20.0)
    out = run_pimd(*tiny, cell, cfg, thermo_path=tmp_path / "pi.csv", traj_path=tmp_path / "centroid.extxyz")
    s = out.summary
    assert len(out.rows) == 8 and [r["stage"] for r in out.rows] == [0, 0] + [1] * 6
    assert s["beads"] == 4 and np.isfinite(s["kinetic_virial_eV"]) and s["kinetic_H_eV"] > 0
    assert s["gyration_H_A"] > s["gyration_N_A"] > 0  # light atoms spread more
    frames = read(tmp_path / "centroid.extxyz", ":")
    assert len(frames) == 6 and frames[0].has("momenta")
    assert np.allclose(frames[-1].get_masses(), masses(cell))
    assert (tmp_path / "pi.csv").read_text().count("\n") == 9
    trpmd = run_pimd(*tiny, cell, PIMDConfig(beads=2, temperature_K=200.0, dt_fs=0.5, steps=20, every=10, trpmd=True))
    assert trpmd.summary["thermostat"] == "trpmd" and trpmd.summary["pile_lambda"] == 0.5


def test_bad_pimd_settings_are_refused():
    with pytest.raises(ConfigError, match="--beads"):
        PIMDConfig(beads=0, temperature_K=200.0, dt_fs=0.5, steps=10)
    with pytest.raises(ConfigError, match="--thermostat"):
        PIMDConfig(beads=2, temperature_K=200.0, dt_fs=0.5, steps=10, thermostat="nose")
    with pytest.raises(ConfigError, match="multiple of --log-every"):
        PIMDConfig(beads=2, temperature_K=200.0, dt_fs=0.5, steps=15)
    with pytest.raises(ConfigError, match="> 0 K"):
        PIMDConfig(beads=2, temperature_K=0.0, dt_fs=0.5, steps=10)


def test_a_hole_in_the_model_stops_the_run(capsys):
    # a model with a known hole (tests/data/README.md): trained on the liquid only, it has a spurious
    # minimum for an isolated NH3 (H-N-H near 62 degrees, 1.8 eV below the true minimum; GFN1-xTB
    # puts it ~5 eV above): classical MD at 200 K stays away, eight beads find it within the first chunk
    args = ["pimd", "--model", str(HOLE), "--molecule", "NH3", "--temperature", "200", "--tau", "20", "--steps", "600",
            "--chunk", "200", "--seed", "1"]
    assert cli(args + ["--beads", "1"]) == 0
    assert cli(args + ["--beads", "8"]) == 3
    assert "spurious minimum" in capsys.readouterr().err


def test_pile_g_samples_a_free_molecule_at_the_target_temperature():
    # a harmonic dimer whose centre of mass moves freely: PILE-G conserves the total momentum, so
    # the rescaling must count 3N - 3 degrees of freedom (with 3N the dimer ran at twice T)
    kT, k_spring = KB * 300.0, 20.0

    def force(R, **kw):
        d = R[:, 0] - R[:, 1]
        return jnp.stack([-k_spring * d, k_spring * d], axis=1)

    with jax.enable_x64(True):
        for thermostat in ("pile-g", "pile-l"):
            init, apply = ring_polymer_langevin(force, 0.5 * FS, kT, 1, tau=10 * FS, thermostat=thermostat)
            state = init(jax.random.PRNGKey(2), jnp.array([[0.0, 0, 0], [1.0, 0, 0]]), jnp.array([1.0, 14.0]))

            @jax.jit
            def run(s):
                def block(s, _):
                    s = jax.lax.fori_loop(0, 5, lambda i, s: apply(s), s)
                    return s, 0.5 * k_spring * jnp.sum((s.position[0, 0] - s.position[0, 1]) ** 2)
                return jax.lax.scan(block, s, None, length=40000)[1]

            v = np.asarray(run(state))[4000:]
            assert v.mean() / (1.5 * kT) == pytest.approx(1.0, abs=0.05), thermostat
