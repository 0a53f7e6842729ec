"""The model's energy of one domain's own atoms, and energy + forces of a decomposed system over
a device mesh. Allegro is strictly local (an atom's energy depends only on the edges centred on
it), so owned atoms with ghosts out to r_max give exactly the single-domain energies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from legato_jax.model.potential import Potential
from legato_jax.parallel.domains import Decomposed, DomainGrid
from legato_jax.parallel.halo import AXES, HaloBackend, MeshBackend, exchange


@dataclass(frozen=True)
class DomainCapacities:
    owned: int  # atoms per domain
    faces: tuple[int, int, int]  # ghosts per face and stage
    edges: int  # edges centred on owned atoms


def edge_capacity(potential: Potential, grid: DomainGrid, n_atoms: int, owned: int, slack: float = 1.4) -> int:
    """Edges within r_max of the owned atoms: mean neighbours x owned slots, with headroom."""
    density = n_atoms / float(np.prod(grid.box))
    per_atom = density * 4.0 / 3.0 * np.pi * potential.config.r_max**3
    return int(np.ceil(slack * per_atom * owned)) + 64


def local_energy_fn(potential: Potential, params, grid: DomainGrid, caps: DomainCapacities,
                    backend: HaloBackend) -> Callable:
    """f(positions (C, 3), species (C,), mask (C,)) -> (energy of the owned atoms, overflow)."""
    module = potential.module
    r_max = potential.config.r_max

    def energy(positions, species, mask):
        X, spec, valid, _, overflow = exchange(backend, grid, positions, species, mask, caps.faces)
        m, c = X.shape[0], positions.shape[0]
        d = jnp.linalg.norm(X[None, :c] - X[:, None], axis=-1)[:, :c]  # (m, c): rows neighbours, cols centres
        pair = (d < r_max) & valid[:, None] & mask[None, :] & (jnp.arange(m)[:, None] != jnp.arange(c)[None, :])
        overflow = overflow | (jnp.sum(pair) > caps.edges)
        senders, receivers = jnp.nonzero(pair, size=caps.edges, fill_value=m)
        edge_mask = senders < m
        X_pad = jnp.concatenate([X, jnp.zeros((1, 3), X.dtype)])
        far = jnp.asarray([2.0 * r_max + 1.0, 0.0, 0.0], X.dtype)
        vec = jnp.where(edge_mask[:, None], X_pad[senders] - X_pad[receivers], far)
        node_mask = jnp.concatenate([valid, jnp.array([False])])
        spec_pad = jnp.concatenate([spec, jnp.zeros((1,), spec.dtype)])
        with jax.default_matmul_precision("highest"):
            atom = module.apply(params, vec, spec_pad, senders, receivers, edge_mask, node_mask)
        return jnp.sum(jnp.where(mask, atom[:c], 0.0)), overflow

    return energy


def domain_mesh(grid: DomainGrid, devices=None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) < grid.size:
        from legato_jax.errors import ConfigError

        raise ConfigError(f"--domains {' '.join(map(str, grid.shape))} needs {grid.size} devices; "
                          f"{len(devices)} are visible (on CPU set XLA_FLAGS=--xla_force_host_platform_device_count={grid.size})")
    return Mesh(np.asarray(devices[: grid.size]).reshape(grid.shape), AXES)


def mesh_energy_forces(potential: Potential, params, grid: DomainGrid, caps: DomainCapacities,
                       mesh: Mesh) -> Callable:
    """jitted f(Decomposed arrays) -> (total energy, forces (P, C, 3), overflow) over the mesh."""
    local = local_energy_fn(potential, params, grid, caps, MeshBackend(grid.shape))
    spec = P(AXES)

    def per_domain(positions, species, mask):
        e, overflow = local(positions[0], species[0], mask[0])
        return jax.lax.psum(e, AXES), jax.lax.psum(overflow.astype(jnp.int32), AXES) > 0

    sharded = jax.shard_map(per_domain, mesh=mesh, in_specs=(spec, spec, spec), out_specs=(P(), P()))

    def energy_forces(positions, species, mask):
        (e, overflow), grad = jax.value_and_grad(sharded, has_aux=True)(positions, species, mask)
        return e, -grad, overflow

    put = NamedSharding(mesh, spec)
    jitted = jax.jit(energy_forces)

    def run(dec: Decomposed):
        args = (jnp.asarray(dec.positions, potential.dtype), jnp.asarray(dec.species, jnp.int32), jnp.asarray(dec.mask))
        return jitted(*(jax.device_put(a, put) for a in args))

    return run


def mpi_energy_forces(potential: Potential, params, grid: DomainGrid, caps: DomainCapacities, comm) -> Callable:
    """jitted f(positions (C, 3), species (C,), mask (C,)) of this rank's domain -> (total energy,
    forces on its own atoms, overflow anywhere)."""
    from legato_jax.parallel.halo import MPIBackend

    backend = MPIBackend(grid.shape, comm)
    local = local_energy_fn(potential, params, grid, caps, backend)

    def total(positions, species, mask):
        e, overflow = local(positions, species, mask)
        return backend.sum(e), backend.sum(overflow.astype(jnp.int32)) > 0

    @jax.jit
    def energy_forces(positions, species, mask):
        (e, overflow), grad = jax.value_and_grad(total, has_aux=True)(positions, species, mask)
        return e, -grad, overflow

    return energy_forces
