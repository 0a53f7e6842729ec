"""Where a decomposed run's domains live: every domain on a device of this process (`MeshLayout`,
shard_map) or one domain per MPI rank (`MPILayout`, mpi4jax, with a watchdog that ends the job
when a rank hangs). A layout places rows, compiles a domain chunk, and gathers results."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from legato_jax.parallel.domains import DomainGrid, gather
from legato_jax.parallel.energy import domain_mesh
from legato_jax.parallel.halo import AXES, MeshBackend, MPIBackend
from legato_jax.parallel.integrate import Rows


class MeshLayout:
    """Every domain in this process, one per device of a ('dx', 'dy', 'dz') mesh; rows are
    (P, C, ...) arrays sharded over it."""

    root = True
    name = "mesh"
    block_axis = 1  # frames are (domain, block, ...)
    heartbeat = None

    def __init__(self, grid: DomainGrid, devices=None):
        self.mesh = domain_mesh(grid, devices)
        self.backend = MeshBackend(grid.shape)
        self.sharding = NamedSharding(self.mesh, P(AXES))

    def local(self, rows: Rows) -> Rows:
        return jax.tree.map(lambda x: jax.device_put(x, self.sharding), rows)

    def shared(self, tree):
        """A value every domain holds (the thermostat chain), replicated over the mesh as the
        chunk returns it, so that the next chunk does not compile again for a new placement."""
        return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(self.mesh, P())), tree)

    def compile(self, chunk: Callable) -> Callable:
        def domain_chunk(rows, chain, n_active):  # the engine counts compiles of functions named "chunk"
            rows, chain, obs, overflow = chunk(jax.tree.map(lambda x: x[0], rows), chain, n_active)
            frames = jax.tree.map(lambda x: x[None], obs.frames)
            return jax.tree.map(lambda x: x[None], rows), chain, obs._replace(frames=None), frames, overflow

        spec = P(AXES)
        return jax.jit(jax.shard_map(domain_chunk, mesh=self.mesh, in_specs=(spec, P(), P()),
                                     out_specs=(spec, P(), P(), spec, P())))

    def spmd(self, fn: Callable) -> Callable:
        """jit of fn(per-domain args) -> per-domain outputs, one domain per device."""
        def body(*args):
            return jax.tree.map(lambda x: x[None], fn(*jax.tree.map(lambda x: x[0], args)))

        return jax.jit(jax.shard_map(body, mesh=self.mesh, in_specs=P(AXES), out_specs=P(AXES)))

    def pad(self, rows: Rows, capacity: int) -> Rows:
        return self.local(pad_rows(jax.device_get(rows), capacity, axis=1))

    def collect(self, ids, values, n_atoms: int) -> np.ndarray:
        """Per-domain rows -> global atom order."""
        return gather(np.asarray(ids), np.asarray(values), n_atoms)

    def total(self, x) -> float:
        return float(np.sum(np.asarray(x)))

    def close(self) -> None:
        pass


class MPILayout:
    """One domain per MPI rank (row-major over the grid); rows are this rank's (C, ...) arrays.
    A watchdog ends the whole job when no block of steps has finished for `timeout_s` seconds,
    which is what a rank that died or hangs inside a blocking exchange looks like from the others
    (MPI's blocking calls have no timeout of their own)."""

    name = "mpi"
    block_axis = 0  # frames are this rank's (block, ...)

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

    def shared(self, tree):
        return jax.tree.map(lambda x: jax.device_put(x, self.device), tree)

    def compile(self, chunk: Callable) -> Callable:
        def domain_chunk(rows, chain, n_active):
            rows, chain, obs, overflow = chunk(rows, chain, n_active)
            return rows, chain, obs._replace(frames=None), obs.frames, overflow

        return jax.jit(domain_chunk)

    def spmd(self, fn: Callable) -> Callable:
        return jax.jit(fn)

    def pad(self, rows: Rows, capacity: int) -> Rows:
        return jax.tree.map(lambda x: jax.device_put(x, self.device), pad_rows(jax.device_get(rows), capacity, axis=0))

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


def pad_rows(rows: Rows, capacity: int, axis: int) -> Rows:
    def grow(x, fill):
        x = np.asarray(x)
        width = [(0, 0)] * x.ndim
        width[axis] = (0, capacity - x.shape[axis])
        return np.pad(x, width, constant_values=fill)

    return Rows(grow(rows.position, 0), grow(rows.momentum, 0), grow(rows.mass, 1), grow(rows.species, 0),
                grow(rows.ids, -1), grow(rows.mask, False))
