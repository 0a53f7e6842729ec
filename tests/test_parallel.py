"""Domain decomposition over host devices: energies and forces of 1x1x1, 2x1x1 and 2x2x2 grids
equal the single-domain values to rounding (float64); bad grids are refused clearly."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.io import read

from legato_jax.data.graph import TypeMap
from legato_jax.errors import ConfigError
from legato_jax.md.energy import model_energy
from legato_jax.md.systems import AMMONIA_CELL
from legato_jax.model.io import load_model
from legato_jax.parallel.domains import DomainGrid, decompose, default_capacity, gather
from legato_jax.parallel.energy import DomainCapacities, domain_mesh, edge_capacity, mesh_energy_forces
from legato_jax.parallel.halo import face_capacities
from tests.test_md_run import TINY

SKIN = 0.5


@pytest.fixture(scope="module")
def reference():
    pot, params, _ = load_model(TINY)
    pot = dataclasses.replace(pot, config=dataclasses.replace(pot.config, dtype="float64"))
    atoms = read(AMMONIA_CELL).repeat((2, 2, 2))
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)  # off the lattice of copies
    species = TypeMap(("H", "N")).indices(atoms.numbers)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        system = model_energy(pot, params, species, atoms.cell.array, SKIN)
        R = system.wrap(jnp.asarray(atoms.positions))
        energy, grad = jax.value_and_grad(system.energy_fn)(R, system.neighbor_fn.allocate(R))
    return pot, params, atoms, species, np.asarray(R), float(energy), -np.asarray(grad)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 1, 1), (1, 2, 1), (2, 2, 2)])
def test_decomposed_energy_and_forces_equal_the_single_domain(reference, shape):
    pot, params, atoms, species, R, e_ref, f_ref = reference
    grid = DomainGrid.for_cell(shape, atoms.cell.array, pot.config.r_max + SKIN)
    cap = default_capacity(grid, len(atoms))
    dec, _ = decompose(grid, R, species, cap)
    caps = DomainCapacities(cap, face_capacities(grid, len(atoms)), edge_capacity(pot, grid, len(atoms), cap))
    with jax.enable_x64(True):
        energy, forces, overflow = mesh_energy_forces(pot, params, grid, caps, domain_mesh(grid))(dec)
    assert not bool(overflow)
    assert float(energy) == pytest.approx(e_ref, abs=1e-9 * len(atoms))
    np.testing.assert_allclose(gather(dec.ids, np.asarray(forces), len(atoms)), f_ref, atol=1e-9)


def test_a_face_over_capacity_is_flagged(reference):
    pot, params, atoms, species, R, *_ = reference
    grid = DomainGrid.for_cell((2, 1, 1), atoms.cell.array, pot.config.r_max + SKIN)
    cap = default_capacity(grid, len(atoms))
    dec, _ = decompose(grid, R, species, cap)
    caps = DomainCapacities(cap, (4, 4, 4), edge_capacity(pot, grid, len(atoms), cap))
    with jax.enable_x64(True):
        _, _, overflow = mesh_energy_forces(pot, params, grid, caps, domain_mesh(grid))(dec)
    assert bool(overflow)


def test_decompose_and_gather_keep_every_atom_once(reference):
    pot, _, atoms, species, R, *_ = reference
    grid = DomainGrid.for_cell((2, 2, 2), atoms.cell.array, pot.config.r_max + SKIN)
    dec, extra = decompose(grid, R, species, default_capacity(grid, len(atoms)), {"index": np.arange(len(atoms))})
    assert dec.mask.sum() == len(atoms)
    np.testing.assert_array_equal(gather(dec.ids, extra["index"], len(atoms)), np.arange(len(atoms)))
    owners = grid.owner(R)
    for d in range(grid.size):
        assert set(dec.ids[d][dec.mask[d]]) == set(np.flatnonzero(owners == d))


def test_bad_grids_are_refused(reference):
    pot, _, atoms, species, R, *_ = reference
    halo = pot.config.r_max + SKIN
    with pytest.raises(ConfigError, match="use at most 4 domains along that axis"):
        DomainGrid.for_cell((5, 1, 1), atoms.cell.array, halo)
    with pytest.raises(ConfigError, match="orthorhombic"):
        DomainGrid.for_cell((2, 1, 1), [[17.5, 0, 0], [3.0, 17.5, 0], [0, 0, 17.5]], halo)
    grid = DomainGrid.for_cell((4, 4, 1), atoms.cell.array, halo)
    with pytest.raises(ConfigError, match="needs 16 devices; 8 are visible"):
        domain_mesh(grid)
    with pytest.raises(ConfigError, match="over its capacity"):
        decompose(grid, R, species, 4)


@pytest.fixture(scope="module")
def nve_reference():
    """200 single-domain NVE steps of a 1,728-atom box on jax-md (float64, dt 1 fs, m_H 2.014)."""
    from legato_jax.md.integrate import Stage, make_integrator, start_stage
    from legato_jax.md.systems import initial_momenta, masses

    pot, params, _ = load_model(TINY)
    pot = dataclasses.replace(pot, config=dataclasses.replace(pot.config, dtype="float64"))
    atoms = read(AMMONIA_CELL).repeat((3, 3, 3))
    species = TypeMap(("H", "N")).indices(atoms.numbers)
    m = masses(atoms, 2.014)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        system = model_energy(pot, params, species, atoms.cell.array, SKIN, capacity_multiplier=2.0)
        R0 = system.wrap(jnp.asarray(atoms.positions))
        p0 = initial_momenta(jax.random.PRNGKey(0), jnp.asarray(m)[:, None], 200.0)
        init_fn, apply_fn = make_integrator(system, Stage("nve", 200, 1.0))
        nbrs = system.neighbor_fn.allocate(R0)
        state = start_stage(init_fn, jax.random.PRNGKey(1), R0, jnp.asarray(m)[:, None], p0, nbrs)
        trajectory = {}
        for block in range(2):
            def body(c, _):
                s, b = c
                s = apply_fn(s, neighbor=b)
                return (s, b.update(s.position)), None

            state, nbrs = jax.jit(lambda c: jax.lax.scan(body, c, None, length=100)[0])((state, nbrs))
            assert not bool(nbrs.did_buffer_overflow)
            trajectory[100 * (block + 1)] = (np.asarray(state.position), np.asarray(state.momentum))
    return pot, params, atoms, species, m, np.asarray(R0), np.asarray(p0), trajectory


def _close_positions(a, b, box):
    d = np.mod(a, box) - np.mod(b, box)
    return np.abs(d - box * np.round(d / box)).max()


def test_a_decomposed_nve_trajectory_equals_the_single_domain_and_conserves_atoms_and_momentum(nve_reference):
    from legato_jax.parallel.md import run_nve_decomposed

    pot, params, atoms, species, m, R0, p0, trajectory = nve_reference
    with jax.enable_x64(True):
        run = run_nve_decomposed(pot, params, R0, p0, m, species, atoms.cell.array, (2, 2, 2), 200, 1.0,
                                 skin=SKIN, chunk_steps=100)
    box = np.diag(atoms.cell.array)
    R_ref, p_ref = trajectory[200]
    assert run.rebuilds > 5  # atoms migrated between domains many times
    assert _close_positions(run.positions, R_ref, box) < 1e-9
    np.testing.assert_allclose(run.momenta, p_ref, atol=1e-9)
    np.testing.assert_allclose(run.momenta.sum(0), p0.sum(0), atol=1e-9)
    assert abs(run.total_energy[-1] - run.total_energy[0]) / len(atoms) < 2e-5  # eV/atom over 0.2 ps


def test_an_overflowing_domain_grows_its_capacities_and_reruns_the_chunk(nve_reference):
    from legato_jax.parallel.domains import DomainGrid
    from legato_jax.parallel.md import estimate_capacities, run_nve_decomposed

    pot, params, atoms, species, m, R0, p0, trajectory = nve_reference
    grid = DomainGrid.for_cell((2, 1, 1), atoms.cell.array, pot.config.r_max + SKIN)
    tight = estimate_capacities(grid, len(atoms), pot.config.r_max).grown(0.6)  # too small for the ghosts and edges
    with jax.enable_x64(True):
        run = run_nve_decomposed(pot, params, R0, p0, m, species, atoms.cell.array, (2, 1, 1), 100, 1.0,
                                 skin=SKIN, chunk_steps=100, capacities=tight)
    assert run.capacity_growths > 0
    assert _close_positions(run.positions, trajectory[100][0], np.diag(atoms.cell.array)) < 1e-9
