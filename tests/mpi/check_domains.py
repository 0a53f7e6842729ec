"""Run under `mpirun -n 2`: a 2x1x1 decomposition through mpi4jax gives the single-domain energy
and forces (float64) on every rank's own atoms; 50 Nose-Hoover + 50 NVE steps over the two ranks
follow the single-domain run with atoms and momentum conserved; a grid that does not match the
ranks is refused."""

import os

os.environ.setdefault("MPI4JAX_NO_WARN_JAX_VERSION", "1")

import dataclasses
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np
from ase.io import read
from mpi4py import MPI

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from legato_jax.data.graph import TypeMap  # noqa: E402
from legato_jax.errors import ConfigError  # noqa: E402
from legato_jax.md.energy import model_energy  # noqa: E402
from legato_jax.data.ammonia import AMMONIA_CELL  # noqa: E402
from legato_jax.model.io import load_model  # noqa: E402
from legato_jax.md.integrate import Stage  # noqa: E402
from legato_jax.md.run import MDConfig, run_md  # noqa: E402
from legato_jax.parallel.domains import DomainGrid, decompose  # noqa: E402
from legato_jax.parallel.energy import mpi_energy_forces  # noqa: E402
from legato_jax.parallel.halo import MPIBackend  # noqa: E402
from legato_jax.parallel.lists import estimate_capacities  # noqa: E402
from legato_jax.parallel.run import run_md_decomposed  # noqa: E402

comm = MPI.COMM_WORLD.Clone()
rank, size = comm.Get_rank(), comm.Get_size()
assert size == 2, "run with mpirun -n 2"

tiny, tiny_params, _ = load_model(ROOT / "tests" / "data" / "ammonia-tiny.npz")
pot = dataclasses.replace(tiny, config=dataclasses.replace(tiny.config, dtype="float64"))
params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tiny_params)
atoms = read(AMMONIA_CELL).repeat((2, 2, 2))
atoms.positions += np.random.default_rng(0).normal(scale=0.05, size=atoms.positions.shape)
species = TypeMap(("H", "N")).indices(atoms.numbers)
system = model_energy(pot, params, species, atoms.cell.array, 0.5)
R = system.wrap(jnp.asarray(atoms.positions))
e_ref, g = jax.value_and_grad(system.energy_fn)(R, system.neighbor_fn.allocate(R))

grid = DomainGrid.for_cell((2, 1, 1), atoms.cell.array, pot.config.r_max + 0.5)
caps = estimate_capacities(grid, len(atoms), pot.config.r_max)
dec, _ = decompose(grid, np.asarray(R), species, caps.owned)
energy, forces, overflow = mpi_energy_forces(pot, params, grid, caps, comm)(
    jnp.asarray(dec.positions[rank]), jnp.asarray(dec.species[rank], jnp.int32), jnp.asarray(dec.mask[rank]))
own = dec.ids[rank][dec.mask[rank]]
assert not bool(overflow)
assert abs(float(energy) - float(e_ref)) < 1e-9 * len(atoms), (float(energy), float(e_ref))
df = np.abs(np.asarray(forces)[dec.mask[rank]] - (-np.asarray(g))[own]).max()
assert df < 1e-9, df

cfg = MDConfig((Stage("nose-hoover", 50, 1.0, 200.0, 50.0), Stage("nve", 50, 1.0)), 200.0, hydrogen_mass=2.014,
               chunk_steps=50, precision="float64")
box = read(AMMONIA_CELL).repeat((2, 2, 2))
ref = run_md(tiny, tiny_params, box, cfg, progress=False) if rank == 0 else None
comm.Barrier()  # rank 1 waits here, not inside the decomposed run's watched collectives
run = run_md_decomposed(tiny, tiny_params, box, cfg, (2, 1, 1), comm=comm, rank_timeout_s=300)
if rank == 0:
    L = np.diag(box.cell.array)
    d = np.mod(run.atoms.positions, L) - np.mod(ref.atoms.positions, L)
    dx = np.abs(d - L * np.round(d / L)).max()
    dp = np.abs(run.atoms.get_momenta() - ref.atoms.get_momenta()).max()
    dT = np.abs(run.thermo.column("temperature_K") - ref.thermo.column("temperature_K")).max()
    assert dx < 1e-9 and dp < 1e-9 and dT < 1e-7, (dx, dp, dT)
    assert np.abs(run.atoms.get_momenta().sum(0)).max() < 1e-9 and run.summary["nl_rebuilds"] > 0
    print(f"md over 2 ranks, {len(box)} atoms, 100 steps: max |dx| {dx:.1e} A, |dp| {dp:.1e}, |dT| {dT:.1e} K")
else:
    assert run is None
try:
    MPIBackend((2, 2, 1), comm)
    raise AssertionError("a 4-domain grid on 2 ranks was accepted")
except ConfigError as exc:
    assert "must match" in str(exc)
print(f"rank {rank}: {len(own)} atoms, |dE| {abs(float(energy) - float(e_ref)):.1e} eV, max |dF| {df:.1e} eV/A: ok")
