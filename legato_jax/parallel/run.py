"""An MD run split into a grid of domains: the same stages, thermo, trajectory and summary as
`md.run.run_md`, over the devices of one process (`MeshLayout`, shard_map) or one domain per MPI
rank (`MPILayout`, mpi4jax). Between chunks the rows stay where they are; an overflow anywhere
grows every capacity, pads the rows and re-runs the chunk from its start."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from legato_jax.data.graph import TypeMap
from legato_jax.errors import ConfigError
from legato_jax.md.integrate import Observation
from legato_jax.md.observers import Thermo, Trajectory, stage_summary
from legato_jax.md.run import MDConfig, MDResult, MDUnstable, _progress, initial_conditions, with_precision
from legato_jax.md.systems import check_structure
from legato_jax.model.potential import Potential
from legato_jax.parallel.domains import DomainGrid, decompose, gather
from legato_jax.parallel.energy import domain_mesh
from legato_jax.parallel.halo import AXES, MeshBackend, MPIBackend
from legato_jax.parallel.integrate import Rows, make_domain_chunk, start_chain
from legato_jax.parallel.lists import Capacities, estimate_capacities


class MeshLayout:
    """Every domain in this process, one per device of a ('dx', 'dy', 'dz') mesh; rows are
    (P, C, ...) arrays sharded over it."""

    root = True
    name = "mesh"

    def __init__(self, grid: DomainGrid, devices=None):
        self.mesh = domain_mesh(grid, devices)
        self.backend = MeshBackend(grid.shape)
        self.sharding = NamedSharding(self.mesh, P(AXES))

    def local(self, rows: Rows) -> Rows:
        return jax.tree.map(lambda x: jax.device_put(x, self.sharding), rows)

    def compile(self, chunk: Callable) -> Callable:
        def body(rows, chain, n_active):
            rows, chain, obs, overflow = chunk(jax.tree.map(lambda x: x[0], rows), chain, n_active)
            frames = jax.tree.map(lambda x: x[None], obs.frames)
            return jax.tree.map(lambda x: x[None], rows), chain, obs._replace(frames=None), frames, overflow

        spec = P(AXES)
        return jax.jit(jax.shard_map(body, mesh=self.mesh, in_specs=(spec, P(), P()),
                                     out_specs=(spec, P(), P(), spec, P())))

    def spmd(self, fn: Callable) -> Callable:
        """jit of fn(per-domain args) -> per-domain outputs, one domain per device."""
        def body(*args):
            return jax.tree.map(lambda x: x[None], fn(*jax.tree.map(lambda x: x[0], args)))

        return jax.jit(jax.shard_map(body, mesh=self.mesh, in_specs=P(AXES), out_specs=P(AXES)))

    def pad(self, rows: Rows, capacity: int) -> Rows:
        return self.local(_pad(jax.device_get(rows), capacity, axis=1))

    def collect(self, ids, values, n_atoms: int) -> np.ndarray:
        """Per-domain rows -> global atom order."""
        return gather(np.asarray(ids), np.asarray(values), n_atoms)

    def total(self, x) -> float:
        return float(np.sum(np.asarray(x)))

    heartbeat = None

    def close(self) -> None:
        pass


class MPILayout:
    """One domain per MPI rank (row-major over the grid); rows are this rank's (C, ...) arrays.
    A watchdog ends the whole job when no block of steps has finished for `timeout_s` seconds,
    which is what a rank that died or hangs inside a blocking exchange looks like from the others
    (MPI's blocking calls have no timeout of their own)."""

    name = "mpi"

    def __init__(self, grid: DomainGrid, comm, timeout_s: float | None = None):
        from mpi4py import MPI

        self.comm = comm
        self.rank = comm.Get_rank()
        self.root = self.rank == 0
        MPIBackend(grid.shape, comm)  # refuses a grid that does not match the ranks, before any collective
        self.watchdog = Watchdog(self.rank, timeout_s) if timeout_s else None  # from here on, a hang ends the job
        self.backend = MPIBackend(grid.shape, comm.Clone())  # mpi4jax's own: host-side calls use `comm`

        devices = jax.local_devices()  # ranks on one node share its devices round-robin
        self.device = devices[comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank() % len(devices)]

    def local(self, rows: Rows) -> Rows:
        return jax.tree.map(lambda x: jax.device_put(x[self.rank], self.device), rows)

    def compile(self, chunk: Callable) -> Callable:
        def body(rows, chain, n_active):
            rows, chain, obs, overflow = chunk(rows, chain, n_active)
            return rows, chain, obs._replace(frames=None), obs.frames, overflow

        return jax.jit(body)

    def spmd(self, fn: Callable) -> Callable:
        return jax.jit(fn)

    def pad(self, rows: Rows, capacity: int) -> Rows:
        return jax.tree.map(lambda x: jax.device_put(x, self.device), _pad(jax.device_get(rows), capacity, axis=0))

    def collect(self, ids, values, n_atoms: int) -> np.ndarray | None:
        """Every rank's rows -> global atom order on rank 0 (None elsewhere)."""
        parts = self.comm.gather((np.asarray(ids), np.asarray(values)), root=0)
        if not self.root:
            return None
        return gather(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]), n_atoms)

    def total(self, x) -> float:
        from mpi4py import MPI

        return float(self.comm.allreduce(float(np.sum(np.asarray(x))), op=MPI.SUM))

    @property
    def heartbeat(self):
        return None if self.watchdog is None else self.watchdog.pet

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.close()


WATCHER = """
import os, select, signal, sys
pid, timeout, rank = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
while True:
    if not select.select([0], [], [], timeout)[0]:
        print(f"legato md: error: rank {rank} saw no progress for {timeout:.0f} s (another rank died or hangs "
              f"in an exchange); ending it so that mpirun stops every rank (raise --rank-timeout if blocks "
              f"are just slow)", file=sys.stderr, flush=True)
        os.kill(pid, signal.SIGKILL)
        break
    if not os.read(0, 65536):
        break
"""


class Watchdog:
    """A small separate process that kills this rank when no heartbeat has come for `timeout_s`
    seconds; mpirun then ends every rank. A process, not a thread: a rank blocked inside an MPI
    call can hold the interpreter lock, and a thread would never wake."""

    def __init__(self, rank: int, timeout_s: float):
        self.proc = subprocess.Popen([sys.executable, "-c", WATCHER, str(os.getpid()), str(float(timeout_s)),
                                      str(rank)], stdin=subprocess.PIPE)

    def pet(self, *unused) -> None:
        try:
            self.proc.stdin.write(b".")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def initial_rows(grid: DomainGrid, positions, momenta, masses, species, capacity: int, dtype) -> Rows:
    """Every domain's padded rows (leading axis: domain) of atoms in global order, on the host."""
    n = len(species)
    dec, extra = decompose(grid, np.mod(positions, np.asarray(grid.box)), species, capacity,
                           {"momentum": np.asarray(momenta), "mass": np.asarray(masses), "ids": np.arange(n)})
    return Rows(dec.positions.astype(dtype), extra["momentum"].astype(dtype),
                np.where(dec.mask, extra["mass"], 1.0).astype(dtype), dec.species.astype(np.int32),
                np.where(dec.mask, extra["ids"], -1).astype(np.int32), dec.mask)


def _pad(rows: Rows, capacity: int, axis: int) -> Rows:
    def grow(x, fill):
        x = np.asarray(x)
        width = [(0, 0)] * x.ndim
        width[axis] = (0, capacity - x.shape[axis])
        return np.pad(x, width, constant_values=fill)

    return Rows(grow(rows.position, 0), grow(rows.momentum, 0), grow(rows.mass, 1), grow(rows.species, 0),
                grow(rows.ids, -1), grow(rows.mask, False))


def run_md_decomposed(potential: Potential, params, atoms: Atoms, cfg: MDConfig, shape, *, comm=None,
                      devices=None, rank_timeout_s: float | None = None, capacities: Capacities | None = None,
                      thermo_path=None, traj_path=None, progress: bool = False, name: str = "model",
                      where: str = "structure") -> MDResult | None:
    """`run_md` over `shape` (px, py, pz) domains: over `devices` of this process, or over the ranks
    of `comm` when given. Returns the result on the root (rank 0 under MPI), None on other ranks."""
    check_structure(atoms, where)
    for s in cfg.stages:
        if s.ensemble not in ("nve", "nose-hoover"):
            raise ConfigError(f"--domains runs nve and nose-hoover stages; this run has a {s.ensemble} stage "
                              f"(use a Nose-Hoover preset or run it on one domain)")
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
    caps = caps or estimate_capacities(grid, n, potential.config.r_max)
    caps = dataclasses.replace(caps, owned=max(caps.owned, int(np.bincount(grid.owner(R)).max())))
    rows = layout.local(initial_rows(grid, R, momentum, mass[:, 0], species, caps.owned, dtype))
    volume = float(np.prod(grid.box))
    thermo = Thermo(n, volume, thermo_path if layout.root else None)
    traj = Trajectory(traj_path, atoms, cfg.traj_every or cfg.every) if traj_path and layout.root else None
    bar = _progress(cfg.steps, n, name, progress and layout.root)
    blocks = max(1, cfg.chunk_steps // cfg.every)
    step0, time0, rebuilds, growths, compiles = 0, 0.0, 0, 0, 0
    start = time.perf_counter()
    try:
        for k, stage in enumerate(cfg.stages):
            kinetic = layout.total(0.5 * np.sum(np.asarray(rows.momentum) ** 2 / np.asarray(rows.mass)[..., None]))
            chain = start_chain(stage, n, kinetic, dtype)
            compiled, done = None, 0
            while done < stage.steps:
                n_active = min(blocks, (stage.steps - done) // cfg.every)
                while True:
                    if compiled is None:
                        chunk = make_domain_chunk(potential, params, grid, caps, cfg.skin, stage, layout.backend, n,
                                                  cfg.every, blocks, frames=traj_path is not None,
                                                  heartbeat=layout.heartbeat)
                        compiled, compiles = layout.compile(chunk), compiles + 1
                    if layout.heartbeat is not None:
                        layout.heartbeat()
                    new_rows, new_chain, obs, frames, overflow = compiled(rows, chain, jnp.int32(n_active))
                    if not bool(overflow):
                        break
                    caps, growths, compiled = caps.grown(), growths + 1, None
                    rows = layout.pad(rows, caps.owned)
                rows, chain = new_rows, new_chain
                obs = jax.tree.map(lambda a: np.asarray(a)[:n_active], jax.device_get(obs))
                frame_arrays = _frames(layout, frames, n_active, n) if traj_path is not None else (None,) * 3
                rebuilds += int(obs.rebuilds.sum())
                if layout.root:
                    full = Observation(obs.potential, obs.kinetic, obs.conserved, obs.stress, obs.rebuilds,
                                       *frame_arrays)
                    table = thermo.add(step0 + done, time0 + done * stage.dt_fs, k, stage, cfg.every, full)
                    if traj is not None:
                        traj.add(step0 + done, cfg.every, full, atoms.cell.array)
                    bar.update(len(table) * cfg.every)
                bad = ~np.isfinite(obs.potential) | ~np.isfinite(obs.kinetic)
                if bad.any():
                    step = step0 + done + (int(np.argmax(bad)) + 1) * cfg.every
                    raise MDUnstable(f"{name}: MD became unstable at step {step} (non-finite energy); "
                                     f"lower --dt or check the model on this structure")
                done += n_active * cfg.every
            step0 += stage.steps
            time0 += stage.steps * stage.dt_fs
    finally:
        bar.close()
        thermo.close()
        layout.close()
    wall = time.perf_counter() - start
    host = jax.device_get(rows)
    positions = layout.collect(host.ids, host.position, n)
    momenta = layout.collect(host.ids, host.momentum, n)
    if not layout.root:
        return None
    final = atoms.copy()
    final.positions = np.asarray(positions, float)
    final.set_masses(mass[:, 0].astype(float))
    final.set_momenta(np.asarray(momenta, float), apply_constraint=False)
    summary = {
        "model": name, "n_atoms": n, "steps": cfg.steps, "time_ps": time0 / 1000.0, "wall_s": wall,
        "atom_steps_per_s": n * cfg.steps / wall if wall > 0 else float("nan"),
        "nl_rebuilds": rebuilds, "nl_reallocations": growths, "cell_list": False, "compiles": compiles,
        "domains": "x".join(map(str, grid.shape)), "backend": layout.name, "capacities": dataclasses.asdict(caps),
        "precision": potential.config.dtype, "hydrogen_mass": cfg.hydrogen_mass,
        "stages": [stage_summary(thermo, k, s) for k, s in enumerate(cfg.stages)],
    }
    return MDResult(final, thermo, summary)


def _frames(layout, frames, n_active: int, n_atoms: int):
    """Per-domain frames of each block -> (positions, momenta, forces) in global order on the root."""
    position, momentum, force, ids = (np.asarray(x) for x in jax.device_get(frames))
    axis = 1 if isinstance(layout, MeshLayout) else 0  # the block axis
    out = [[], [], []]
    for b in range(n_active):
        take = lambda x: np.take(x, b, axis=axis)  # noqa: E731
        for k, values in enumerate((position, momentum, force)):
            out[k].append(layout.collect(take(ids), take(values), n_atoms))
    return tuple(np.stack(x) if layout.root else None for x in out)
