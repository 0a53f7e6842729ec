"""Ghost atoms by six staged directional exchanges (x, then y, then z, each both ways), so that
atoms near edges and corners arrive through two or three hops. Written against a small backend
interface, so the same code runs over a device mesh (ppermute in shard_map) or MPI ranks
(mpi4jax). Every step is differentiable: the transpose of the exchange returns ghost forces to
their owners under jax.grad."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from legato_jax.parallel.domains import DomainGrid

AXES = ("dx", "dy", "dz")


class HaloBackend(Protocol):
    def coord(self, axis: int) -> jax.Array: ...  # this domain's grid coordinate along an axis

    def shift(self, tree, axis: int, direction: int): ...  # send to coord + direction, receive from coord - direction

    def sum(self, x): ...  # over all domains

    def per_domain(self, x): ...  # x as a value of this domain alone (its gradients are not summed)


class MeshBackend:
    """Domains are devices of a mesh with axes ('dx', 'dy', 'dz'); call inside jax.shard_map."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = tuple(shape)

    def coord(self, axis: int) -> jax.Array:
        return lax.axis_index(AXES[axis])

    def shift(self, tree, axis: int, direction: int):
        n = self.shape[axis]
        perm = [(i, (i + direction) % n) for i in range(n)]
        return jax.tree.map(lambda x: lax.ppermute(x, AXES[axis], perm), tree)

    def sum(self, x):
        return lax.psum(x, AXES)

    def per_domain(self, x):
        # an unmarked value is replicated, and shard_map's autodiff sums gradients w.r.t. it
        return lax.pcast(x, AXES, to="varying")


def face_capacities(grid: DomainGrid, n_atoms: int, slack: float = 1.5) -> tuple[int, int, int]:
    """Ghost slots per face and stage: the expected count in the halo slab (which grows by the
    ghosts of earlier stages) with `slack` headroom."""
    w, h = grid.width, grid.halo
    density = n_atoms / float(np.prod(grid.box))
    areas = (w[1] * w[2], (w[0] + 2 * h) * w[2], (w[0] + 2 * h) * (w[1] + 2 * h))
    return tuple(int(np.ceil(slack * density * h * a)) + 8 for a in areas)


class HaloPlan(NamedTuple):
    """What each of the six exchanges sends: rows of the growing local array and the periodic
    offset added along the exchange axis. Fixed between neighbour-list rebuilds."""

    idx: tuple  # six (capacity,) int arrays, stage order x+, x-, y+, y-, z+, z-
    offset: tuple  # six (capacity,) float arrays


def exchange(backend: HaloBackend, grid: DomainGrid, positions, species, mask, capacities):
    """Owned atoms (C rows) -> owned + ghosts (C + 2 sum(capacities) rows) of this domain, with
    ghost positions as the periodic images this domain sees; the plan that repeats it; and
    whether any face overflowed."""
    box = jnp.asarray(grid.box, positions.dtype)
    width = jnp.asarray(grid.width, positions.dtype)
    h = grid.halo
    overflow = jnp.array(False)
    idxs, offsets = [], []
    for axis in range(3):
        c = backend.coord(axis)
        lo = c.astype(positions.dtype) * width[axis]
        hi = lo + width[axis]
        n_rows = positions.shape[0]
        pos_pad = jnp.concatenate([positions, jnp.zeros((1, 3), positions.dtype)])
        spec_pad = jnp.concatenate([species, jnp.zeros((1,), species.dtype)])
        received = []
        for direction in (+1, -1):
            x = positions[:, axis]
            near = mask & ((x >= hi - h) if direction > 0 else (x < lo + h))
            overflow = overflow | (jnp.sum(near) > capacities[axis])
            (idx,) = jnp.nonzero(near, size=capacities[axis], fill_value=n_rows)
            valid = idx < n_rows
            crosses = (c == grid.shape[axis] - 1) if direction > 0 else (c == 0)
            offset = jnp.where(valid & crosses, -direction * box[axis], 0.0)
            send = pos_pad[idx].at[:, axis].add(offset)
            idxs.append(idx)
            offsets.append(offset)
            received.append(backend.shift((send, spec_pad[idx], valid), axis, direction))
        positions = jnp.concatenate([positions] + [r[0] for r in received])
        species = jnp.concatenate([species] + [r[1] for r in received])
        mask = jnp.concatenate([mask] + [r[2] for r in received])
    return positions, species, mask, HaloPlan(tuple(idxs), tuple(offsets)), overflow


def forward(backend: HaloBackend, positions, plan: HaloPlan):
    """Owned positions -> owned + ghost positions along a fixed plan (every step between rebuilds)."""
    k = 0
    for axis in range(3):
        pos_pad = jnp.concatenate([positions, jnp.zeros((1, 3), positions.dtype)])
        received = []
        for direction in (+1, -1):
            send = pos_pad[plan.idx[k]].at[:, axis].add(plan.offset[k])
            received.append(backend.shift(send, axis, direction))
            k += 1
        positions = jnp.concatenate([positions] + received)
    return positions


class MPIBackend:
    """One domain per MPI rank (row-major over the grid), exchanges by mpi4jax sendrecv."""

    def __init__(self, shape: tuple[int, int, int], comm):
        from legato_jax.errors import ConfigError

        self.shape = tuple(shape)
        self.comm = comm
        if comm.Get_size() != int(np.prod(self.shape)):
            raise ConfigError(f"--domains {' '.join(map(str, self.shape))} makes {int(np.prod(self.shape))} domains "
                              f"but mpirun started {comm.Get_size()} ranks; they must match")
        self.coords = np.unravel_index(comm.Get_rank(), self.shape)

    def coord(self, axis: int) -> jax.Array:
        return jnp.int32(self.coords[axis])

    def _rank(self, axis: int, step: int) -> int:
        c = list(self.coords)
        c[axis] = (c[axis] + step) % self.shape[axis]
        return int(np.ravel_multi_index(c, self.shape))

    def shift(self, tree, axis: int, direction: int):
        import mpi4jax

        dest, source = self._rank(axis, direction), self._rank(axis, -direction)

        def one(x):
            wire = x.astype(jnp.int8) if x.dtype == jnp.bool_ else x  # MPI has no bool type here
            got = mpi4jax.sendrecv(wire, wire, source=source, dest=dest, comm=self.comm)  # recvbuf=sendbuf: see libraries.md 4.3
            return got.astype(jnp.bool_) if x.dtype == jnp.bool_ else got

        return jax.tree.map(one, tree)

    def sum(self, x):
        import mpi4jax
        from mpi4py import MPI

        return mpi4jax.allreduce(x, op=MPI.SUM, comm=self.comm)

    def per_domain(self, x):
        return x
