"""An MD run split into a grid of domains: the same stages, thermo, trajectory and summary as
`md.run.run_md`, through the same engine, over the devices of one process or one domain per MPI
rank (`parallel/layouts.py`). Between chunks the rows stay where they are; an overflow anywhere
grows every capacity, pads the rows and re-runs the chunk from its start."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms

from legato_jax.data.graph import TypeMap
from legato_jax.md.engine import host_blocks, run_stages
from legato_jax.md.integrate import Observation, Stage
from legato_jax.md.recorder import Recorder
from legato_jax.md.run import MDConfig, MDResult, initial_conditions, with_precision
from legato_jax.md.systems import check_structure, with_masses
from legato_jax.model.potential import Potential
from legato_jax.parallel.domains import DomainGrid, decompose
from legato_jax.parallel.integrate import Rows, check_ensemble, make_domain_chunk, start_chain
from legato_jax.parallel.layouts import MeshLayout, MPILayout
from legato_jax.parallel.lists import Capacities, estimate_capacities


def initial_rows(grid: DomainGrid, positions, momenta, masses, species, capacity: int, dtype) -> Rows:
    """Every domain's padded rows (leading axis: domain) of atoms in global order, on the host."""
    n = len(species)
    dec, extra = decompose(grid, np.mod(positions, np.asarray(grid.box)), species, capacity,
                           {"momentum": np.asarray(momenta), "mass": np.asarray(masses), "ids": np.arange(n)})
    return Rows(dec.positions.astype(dtype), extra["momentum"].astype(dtype),
                np.where(dec.mask, extra["mass"], 1.0).astype(dtype), dec.species.astype(np.int32),
                np.where(dec.mask, extra["ids"], -1).astype(np.int32), dec.mask)


class DomainCarry(NamedTuple):
    """Between chunks: every domain's rows, the (shared) Nose-Hoover chain, the capacities."""

    rows: Rows
    chain: Any
    caps: Capacities


@dataclass
class DomainRunner:
    """The engine's runner for one stage over a grid of domains; compiles the stage's chunk once
    per set of capacities."""

    make_chunk: Callable[[Capacities], Callable]  # capacities -> per-domain chunk of this stage
    layout: Any
    n_atoms: int
    frames: bool
    compiled: Callable | None = None
    compiled_for: Capacities | None = None

    def chunk(self, carry: DomainCarry, n_active: int):
        if self.compiled_for != carry.caps:
            self.compiled, self.compiled_for = self.layout.compile(self.make_chunk(carry.caps)), carry.caps
        if self.layout.heartbeat is not None:
            self.layout.heartbeat()
        rows, chain, obs, frames, overflow = self.compiled(carry.rows, carry.chain, jnp.int32(n_active))
        overflow = bool(overflow)
        obs = host_blocks(obs, n_active)
        shots = _frames(self.layout, frames, n_active, self.n_atoms) if self.frames and not overflow else (None,) * 3
        obs = Observation(obs.potential, obs.kinetic, obs.conserved, obs.stress, obs.rebuilds, *shots)
        return DomainCarry(rows, chain, carry.caps), obs, overflow

    def enlarge(self, carry: DomainCarry) -> DomainCarry:
        caps = carry.caps.grown()
        return DomainCarry(self.layout.pad(carry.rows, caps.owned), carry.chain, caps)

    def accept(self, carry: DomainCarry, obs, first_step: int) -> DomainCarry:
        return carry

    def stopped(self, carry: DomainCarry) -> bool:
        return False


def run_md_decomposed(potential: Potential, params, atoms: Atoms, cfg: MDConfig, shape, *, comm=None,
                      devices=None, rank_timeout_s: float | None = None, capacities: Capacities | None = None,
                      thermo_path=None, traj_path=None, progress: bool = False, name: str = "model",
                      where: str = "structure") -> MDResult | None:
    """`run_md` over `shape` (px, py, pz) domains: over `devices` of this process, or over the ranks
    of `comm` when given. Returns the result on the root (rank 0 under MPI), None on other ranks."""
    check_structure(atoms, where)
    for s in cfg.stages:
        check_ensemble(s)
    species = TypeMap(tuple(potential.config.species)).indices(atoms.numbers, where)
    double = (cfg.precision or potential.config.dtype) == "float64"
    with jax.enable_x64(True) if double else contextlib.nullcontext():
        potential, params = with_precision(potential, params, cfg.precision)
        grid = DomainGrid.for_cell(shape, atoms.cell.array, potential.config.r_max + cfg.skin)
        layout = MeshLayout(grid, devices) if comm is None else MPILayout(grid, comm, rank_timeout_s)
        return _run(potential, params, atoms, species, cfg, grid, layout, capacities, thermo_path, traj_path,
                    progress, name)


def _run(potential, params, atoms, species, cfg: MDConfig, grid: DomainGrid, layout, caps, thermo_path, traj_path,
         progress, name) -> MDResult | None:
    n, dtype = len(atoms), potential.dtype
    mass, momentum = (np.asarray(x) for x in initial_conditions(atoms, cfg, dtype))
    R = np.mod(atoms.positions, np.asarray(grid.box))
    caps = caps or estimate_capacities(grid, n, potential.config.r_max, positions=R)
    caps = dataclasses.replace(caps, owned=max(caps.owned, int(np.bincount(grid.owner(R)).max())))
    rows = layout.local(initial_rows(grid, R, momentum, mass[:, 0], species, caps.owned, dtype))
    recorder = Recorder(cfg.stages, cfg.every, n, float(np.prod(grid.box)), name=name, progress=progress,
                        thermo_path=thermo_path, traj_path=traj_path, template=with_masses(atoms, mass), traj_every=cfg.traj_every,
                        root=layout.root, health=cfg.health, start_temperature_K=cfg.temperature_K)
    blocks = max(1, cfg.chunk_steps // cfg.every)
    frames = traj_path is not None

    def begin(k: int, stage: Stage, carry: DomainCarry):
        r = carry.rows
        kinetic = layout.total(0.5 * np.sum(np.asarray(r.momentum) ** 2 / np.asarray(r.mass)[..., None]))

        def make(caps: Capacities):
            return make_domain_chunk(potential, params, grid, caps, cfg.skin, stage, layout.backend, n, cfg.every,
                                     blocks, frames=frames, heartbeat=layout.heartbeat)

        return DomainRunner(make, layout, n, frames), carry._replace(chain=layout.shared(start_chain(stage, n, kinetic, dtype)))

    try:
        carry = run_stages(begin, DomainCarry(rows, None, caps), cfg.stages, cfg.every, cfg.chunk_steps,
                           on_chunk=recorder, tally=recorder.tally)
    finally:
        recorder.close()
        layout.close()
    host = jax.device_get(carry.rows)
    positions = layout.collect(host.ids, host.position, n)
    momenta = layout.collect(host.ids, host.momentum, n)
    if not layout.root:
        return None
    final = atoms.copy()
    final.positions = np.asarray(positions, float)
    final.set_masses(mass[:, 0].astype(float))
    final.set_momenta(np.asarray(momenta, float), apply_constraint=False)
    summary = recorder.summary(cell_list=False, domains="x".join(map(str, grid.shape)), backend=layout.name,
                               capacities=dataclasses.asdict(carry.caps), precision=potential.config.dtype,
                               hydrogen_mass=cfg.hydrogen_mass)
    return MDResult(final, recorder.thermo, summary)


def _frames(layout, frames, n_active: int, n_atoms: int):
    """Per-domain frames of each block -> (positions, momenta, forces) in global order on the root."""
    position, momentum, force, ids = (np.asarray(x) for x in jax.device_get(frames))
    out = [[], [], []]
    for b in range(n_active):
        take = lambda x: np.take(x, b, axis=layout.block_axis)  # noqa: E731
        for k, values in enumerate((position, momentum, force)):
            out[k].append(layout.collect(take(ids), take(values), n_atoms))
    return tuple(np.stack(x) if layout.root else None for x in out)
