"""The model's energy of one domain's own atoms, and energy + forces of a decomposed system over a
device mesh or MPI ranks. Allegro is strictly local (an atom's energy depends only on the edges
centred on it), so owned atoms with ghosts out to r_max give exactly the single-domain energies."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from legato_jax.errors import ConfigError
from legato_jax.md.energy import pack_edges
from legato_jax.model.potential import Potential
from legato_jax.parallel.domains import Decomposed, DomainGrid
from legato_jax.parallel.halo import AXES, HaloBackend, MeshBackend, MPIBackend, forward
from legato_jax.parallel.lists import Capacities, Lists, build_lists


def domain_energy_fn(potential: Potential, params, backend: HaloBackend, model_edges: int | None = None) -> Callable:
    """E(owned positions, lists, mask, strain=None) -> (the model's energy of this domain's own
    atoms, edge overflow). Ghost positions come from the owners through the halo plan, so jax.grad
    (has_aux) returns the ghosts' forces to their owners; `strain` (3, 3) deforms every edge, for
    the stress. With `model_edges`, the list's pairs within r_max are packed into that many slots
    first (the exact-edge buffer, as in single-domain MD); more pairs than slots set the overflow."""
    r_max = potential.config.r_max
    far_x = 2.0 * r_max + 1.0

    def energy(positions, lists: Lists, mask, strain=None):
        X = forward(backend, positions, lists.plan)
        X_pad = jnp.concatenate([X, jnp.zeros((1, 3), X.dtype)])
        senders, receivers, edge_mask = lists.senders, lists.receivers, lists.edge_mask
        vec = X_pad[senders] - X_pad[receivers]
        overflow = jnp.array(False)
        if model_edges is not None and model_edges < senders.shape[0]:
            vec, senders, receivers, edge_mask, count = pack_edges(vec, senders, receivers, edge_mask, r_max,
                                                                   model_edges, X.shape[0])
            overflow = count > model_edges
        if strain is not None:
            vec = vec @ (jnp.eye(3, dtype=X.dtype) + strain)
        vec = jnp.where(edge_mask[:, None], vec, jnp.asarray([far_x, 0.0, 0.0], X.dtype))
        node_mask = jnp.concatenate([lists.valid, jnp.array([False])])
        spec = jnp.concatenate([lists.species, jnp.zeros((1,), lists.species.dtype)])
        with jax.default_matmul_precision("highest"):
            atom = potential.atomic_energies(params, vec, spec, senders, receivers, edge_mask, node_mask)
        return jnp.sum(jnp.where(mask, atom[: positions.shape[0]], 0.0)), overflow

    return energy


def domain_energy_forces(potential: Potential, params, grid: DomainGrid, caps: Capacities,
                         backend: HaloBackend) -> Callable:
    """f(positions (C, 3), species (C,), mask (C,)) of one domain -> (total energy over all domains,
    forces on this domain's atoms, overflow anywhere). Lists are built at r_max (no skin)."""
    energy = domain_energy_fn(potential, params, backend)
    r_max = potential.config.r_max

    def energy_forces(positions, species, mask):
        lists = build_lists(backend, grid, caps, r_max, positions, species, mask)
        (e, _), grad = jax.value_and_grad(energy, has_aux=True)(positions, lists, mask)
        return backend.sum(e), -grad, backend.sum(lists.overflow.astype(jnp.int32)) > 0

    return energy_forces


def domain_mesh(grid: DomainGrid, devices=None) -> Mesh:
    """A ('dx', 'dy', 'dz') mesh of the first grid.size devices; refuses too few."""
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) < grid.size:
        raise ConfigError(f"--domains {' '.join(map(str, grid.shape))} needs {grid.size} devices; "
                          f"{len(devices)} are visible (on CPU set XLA_FLAGS=--xla_force_host_platform_device_count={grid.size})")
    return Mesh(np.asarray(devices[: grid.size]).reshape(grid.shape), AXES)


def mesh_energy_forces(potential: Potential, params, grid: DomainGrid, caps: Capacities, mesh: Mesh) -> Callable:
    """f(Decomposed) -> (total energy, forces (P, C, 3), overflow), one domain per mesh device."""
    local = domain_energy_forces(potential, params, grid, caps, MeshBackend(grid.shape))
    spec = P(AXES)

    def per_domain(positions, species, mask):
        e, f, overflow = local(positions[0], species[0], mask[0])
        return e, f[None], overflow

    jitted = jax.jit(jax.shard_map(per_domain, mesh=mesh, in_specs=(spec, spec, spec), out_specs=(P(), spec, P())))
    put = NamedSharding(mesh, spec)

    def run(dec: Decomposed):
        args = (jnp.asarray(dec.positions, potential.dtype), jnp.asarray(dec.species, jnp.int32), jnp.asarray(dec.mask))
        return jitted(*(jax.device_put(a, put) for a in args))

    return run


def mpi_energy_forces(potential: Potential, params, grid: DomainGrid, caps: Capacities, comm) -> Callable:
    """jitted f(positions (C, 3), species (C,), mask (C,)) of this rank's domain -> (total energy,
    forces on its own atoms, overflow anywhere)."""
    return jax.jit(domain_energy_forces(potential, params, grid, caps, MPIBackend(grid.shape, comm)))
