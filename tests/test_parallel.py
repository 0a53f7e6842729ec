"""Domain decomposition over host devices: energies and forces of 1x1x1, 2x1x1 and 2x2x2 grids
equal the single-domain values to rounding (float64); a decomposed Nose-Hoover + NVE run follows
the single-domain trajectory; bad grids are refused clearly."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.io import read
from ase.neighborlist import neighbor_list

from legato_jax.data.graph import TypeMap
from legato_jax.errors import ConfigError
from legato_jax.md.energy import model_energy
from legato_jax.data.ammonia import AMMONIA_CELL
from legato_jax.model.io import load_model
from legato_jax.parallel.domains import DomainGrid, decompose, default_capacity, gather
from legato_jax.parallel.energy import domain_mesh, mesh_energy_forces
from legato_jax.parallel.halo import forward
from legato_jax.parallel.layouts import MeshLayout
from legato_jax.parallel.lists import build_lists, estimate_capacities
from legato_jax.md.integrate import Stage
from legato_jax.md.run import MDConfig, initial_conditions, run_md
from legato_jax.parallel.run import initial_rows, run_md_decomposed
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
    caps = estimate_capacities(grid, len(atoms), pot.config.r_max)
    dec, _ = decompose(grid, R, species, caps.owned)
    with jax.enable_x64(True):
        energy, forces, overflow = mesh_energy_forces(pot, params, grid, caps, domain_mesh(grid))(dec)
    assert not bool(overflow)
    assert float(energy) == pytest.approx(e_ref, abs=1e-9 * len(atoms))
    np.testing.assert_allclose(gather(dec.ids, np.asarray(forces), len(atoms)), f_ref, atol=1e-9)


def test_a_face_over_capacity_is_flagged(reference):
    pot, params, atoms, species, R, *_ = reference
    grid = DomainGrid.for_cell((2, 1, 1), atoms.cell.array, pot.config.r_max + SKIN)
    caps = dataclasses.replace(estimate_capacities(grid, len(atoms), pot.config.r_max), faces=(4, 4, 4))
    dec, _ = decompose(grid, R, species, caps.owned)
    with jax.enable_x64(True):
        _, _, overflow = mesh_energy_forces(pot, params, grid, caps, domain_mesh(grid))(dec)
    assert bool(overflow)


def _domain_edges(grid, caps, cutoff, R, species):
    """Every domain's edges as (centre atom id, vector to the neighbour), and the overflow flags."""
    layout = MeshLayout(grid)

    def edges(r):
        lists = build_lists(layout.backend, grid, caps, cutoff, r.position, r.species, r.mask)
        X = forward(layout.backend, r.position, lists.plan)
        X = jnp.concatenate([X, jnp.zeros((1, 3), X.dtype)])
        return r.ids[jnp.minimum(lists.receivers, r.ids.shape[0] - 1)], X[lists.senders] - X[lists.receivers], \
            lists.edge_mask, lists.overflow[None]

    with jax.enable_x64(True):
        rows = layout.local(initial_rows(grid, R, np.zeros_like(R), np.ones(len(R)), species, caps.owned, np.float64))
        ids, vec, keep, overflow = jax.device_get(layout.spmd(edges)(rows))
    return ids[keep], vec[keep], overflow


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 2, 1), (2, 2, 2)])
def test_domain_edge_lists_equal_ase(reference, shape):
    """The binned search over owned + ghost rows finds exactly ASE's (i, vector) edges."""
    pot, _, atoms, species, R, *_ = reference
    cutoff = pot.config.r_max + SKIN
    grid = DomainGrid.for_cell(shape, atoms.cell.array, cutoff)
    caps = estimate_capacities(grid, len(atoms), pot.config.r_max)
    ids, vec, overflow = _domain_edges(grid, caps, cutoff, R, species)
    assert not overflow.any()
    probe = atoms.copy()
    probe.positions = R
    i, D = neighbor_list("iD", probe, cutoff)
    ours, theirs = np.lexsort((*np.round(vec, 4).T, ids)), np.lexsort((*np.round(D, 4).T, i))
    assert len(ids) == len(i)
    np.testing.assert_array_equal(ids[ours], i[theirs])
    np.testing.assert_allclose(vec[ours], D[theirs], atol=1e-6)


def test_a_full_search_bin_is_flagged(reference):
    pot, _, atoms, species, R, *_ = reference
    cutoff = pot.config.r_max + SKIN
    grid = DomainGrid.for_cell((2, 1, 1), atoms.cell.array, cutoff)
    caps = dataclasses.replace(estimate_capacities(grid, len(atoms), pot.config.r_max), per_bin=8)
    *_, overflow = _domain_edges(grid, caps, cutoff, R, species)
    assert overflow.all()


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


STAGES = (Stage("nose-hoover", 100, 1.0, 200.0, 50.0), Stage("nve", 100, 1.0))


@pytest.fixture(scope="module")
def md_reference():
    """100 Nose-Hoover + 100 NVE single-domain steps of a 512-atom box on jax-md (float64, m_H
    2.014), with positions and momenta after each 100-step chunk."""
    pot, params, _ = load_model(TINY)
    atoms = read(AMMONIA_CELL).repeat((2, 2, 2))
    cfg = MDConfig(STAGES, 200.0, hydrogen_mass=2.014, skin=SKIN, chunk_steps=100, precision="float64")
    seen = []
    result = run_md(pot, params, atoms, cfg, progress=False,
                    on_chunk=lambda state, obs: seen.append((np.asarray(state.position), np.asarray(state.momentum))))
    return pot, params, atoms, cfg, result, seen


def _close_positions(a, b, box):
    d = np.mod(a, box) - np.mod(b, box)
    return np.abs(d - box * np.round(d / box)).max()


def test_a_decomposed_run_follows_the_single_domain_and_conserves_atoms_and_momentum(md_reference):
    pot, params, atoms, cfg, ref, _ = md_reference
    run = run_md_decomposed(pot, params, atoms, cfg, (2, 2, 2))
    box = np.diag(atoms.cell.array)
    assert run.summary["nl_rebuilds"] > 5  # atoms migrated between domains many times
    assert _close_positions(run.atoms.positions, ref.atoms.positions, box) < 1e-9
    np.testing.assert_allclose(run.atoms.get_momenta(), ref.atoms.get_momenta(), atol=1e-9)
    with jax.enable_x64(True):
        p0 = np.asarray(initial_conditions(atoms, cfg, jnp.float64)[1])
    np.testing.assert_allclose(run.atoms.get_momenta().sum(0), p0.sum(0), atol=1e-9)
    for column in ("temperature_K", "potential_eV", "conserved_eV", "pressure_eV_A3"):
        np.testing.assert_allclose(run.thermo.column(column), ref.thermo.column(column), rtol=1e-9, atol=1e-12)


def test_an_overflowing_domain_grows_its_capacities_and_reruns_the_chunk(md_reference):
    pot, params, atoms, cfg, ref, seen = md_reference
    grid = DomainGrid.for_cell((2, 1, 1), atoms.cell.array, pot.config.r_max + SKIN)
    tight = estimate_capacities(grid, len(atoms), pot.config.r_max).grown(0.6)  # too small for ghosts and edges
    first = dataclasses.replace(cfg, stages=STAGES[:1])
    run = run_md_decomposed(pot, params, atoms, first, (2, 1, 1), capacities=tight)
    assert run.summary["nl_reallocations"] > 0
    assert _close_positions(run.atoms.positions, seen[0][0], np.diag(atoms.cell.array)) < 1e-9


def test_langevin_is_refused_on_domains(md_reference):
    pot, params, atoms, cfg, *_ = md_reference
    with pytest.raises(ConfigError, match="nve and nose-hoover stages"):
        run_md_decomposed(pot, params, atoms, dataclasses.replace(cfg, stages=(Stage("langevin", 10, 1.0),)),
                          (2, 1, 1))


def test_legato_md_with_domains_on_host_devices(capsys, tmp_path):
    from legato_jax.cli.main import main

    args = ["md", "--model", str(TINY), "--ammonia", "128", "--ensemble", "nose-hoover", "--temperature", "200",
            "--dt", "1", "--steps", "20", "--no-progress", "--json"]
    assert main(args + ["--domains", "2", "1", "1", "--out", str(tmp_path / "domains.extxyz")]) == 0
    decomposed = json.loads(capsys.readouterr().out)
    assert main(args + ["--out", str(tmp_path / "single.extxyz")]) == 0
    single = json.loads(capsys.readouterr().out)
    assert decomposed["domains"] == "2x1x1" and decomposed["backend"] == "mesh"
    assert decomposed["stages"][0]["temperature_K"] == pytest.approx(single["stages"][0]["temperature_K"], rel=1e-4)
    frames = read(tmp_path / "domains.extxyz", ":")
    reference = read(tmp_path / "single.extxyz", ":")
    assert [f.info["step"] for f in frames] == [10, 20] and len(frames[0]) == 512
    for a, b in zip(frames, reference):  # frames in the global atom order, float32 model
        assert _close_positions(a.positions, b.positions, np.diag(a.cell.array)) < 1e-3
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-3)
    assert main(args + ["--domains", "5", "1", "1"]) == 2
    assert "use at most 4 domains along that axis" in capsys.readouterr().err
    assert main(args + ["--domains", "0", "1", "1"]) == 2
    assert "--domains: must be a positive integer, got 0" in capsys.readouterr().err


def test_domains_evaluate_only_pairs_within_r_max_and_regrow_a_full_exact_edge_buffer(reference):
    """MD on domains packs each step's pairs within r_max into the exact-edge buffer, as one
    domain does: a buffer too small for them overflows, grows and re-runs the chunk, and the run
    still equals the single-domain one (float64)."""
    pot, params, atoms, *_ = reference
    cfg = MDConfig((Stage("nve", 40, 1.0),), 200.0, hydrogen_mass=2.014, skin=SKIN, chunk_steps=20,
                   precision="float64")
    grid = DomainGrid.for_cell((2, 1, 1), atoms.cell.array, pot.config.r_max + SKIN)
    caps = estimate_capacities(grid, len(atoms), pot.config.r_max, positions=np.mod(atoms.positions, grid.box))
    assert caps.model_edges < 0.75 * caps.edges  # r_max 3.5 of 4.0 Å, 5 % spare against 25 %
    tight = dataclasses.replace(caps, model_edges=int(0.8 * caps.model_edges))
    single = run_md(pot, params, atoms, cfg, progress=False)
    run = run_md_decomposed(pot, params, atoms, cfg, (2, 1, 1), capacities=tight)
    assert run.summary["nl_reallocations"] == 1 and run.summary["capacities"]["model_edges"] > caps.model_edges
    assert _close_positions(run.atoms.positions, single.atoms.positions, np.diag(atoms.cell.array)) < 1e-10
    np.testing.assert_allclose(run.thermo.column("potential_eV"), single.thermo.column("potential_eV"), rtol=1e-12)
