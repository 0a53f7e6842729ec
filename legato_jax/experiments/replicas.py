"""Many independent replicas of one system advanced together: one jitted, vmapped step over the
replica axis, each replica with its own velocities, neighbour list and failure record.

Every `every` steps the failure criteria are checked; a replica whose criterion fires records the
step for that criterion, and once any criterion in `stop_on` has fired the replica is frozen
(its state stops changing), so a blown-up replica never feeds NaNs to the others. Overflow of any
replica's list reallocates all lists (sized for the largest) and re-runs the chunk from its start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms

from legato_jax.experiments.failure import CRITERIA, FailureCriteria, make_checks
from legato_jax.md.energy import MDSystem
from legato_jax.md.integrate import Stage, kinetic_energy, make_integrator, reallocate, temperature
from legato_jax.md.systems import initial_momenta, masses


@dataclass
class ReplicaResult:
    """Per replica and criterion: the step at which it first fired, or -1 if it never did."""

    first_failure: np.ndarray  # (replicas, len(CRITERIA)) int
    steps: int  # the step limit every surviving replica reached
    dt_fs: float
    positions: np.ndarray  # (replicas, n, 3): final (or frozen at failure) positions
    criteria: tuple[str, ...] = CRITERIA
    reallocations: int = 0

    def times_ps(self, criterion: str) -> tuple[np.ndarray, np.ndarray]:
        """(time in ps, failed flag): censored replicas carry the limit."""
        k = self.criteria.index(criterion)
        step = self.first_failure[:, k]
        failed = step >= 0
        return np.where(failed, step, self.steps) * self.dt_fs / 1000.0, failed


def _stack(tree, n: int):
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), tree)


def _rebuilt(nbrs, position, half_diagonal):
    """`nbrs` rebuilt at `position` (its reference moved half a cell away forces the rebuild)."""
    return dataclasses.replace(nbrs, reference_position=position + half_diagonal).update(position)


def _reallocate_all(system: MDSystem, positions, old):
    """A list roomy enough for every replica (>= 1.25x the old), rebuilt for each of them."""
    sizes = [system.neighbor_fn.allocate(p).idx.shape[-1] for p in positions]
    big = reallocate(system, positions[int(np.argmax(sizes))], old)
    half = jnp.asarray(0.5 * np.sum(system.cell, axis=0), positions.dtype)
    return big, jax.vmap(lambda p: _rebuilt(big, p, half))(positions)


def run_replicas(system: MDSystem, atoms: Atoms, stage: Stage, replicas: int, *, seed: int = 0,
                 temperature_K: float | None = None, hydrogen_mass: float | None = None,
                 criteria: FailureCriteria = FailureCriteria(), stop_on: tuple[str, ...] = CRITERIA,
                 every: int = 10, chunk_steps: int = 1000, on_chunk: Callable | None = None,
                 replica_ids=None) -> ReplicaResult:
    """Advance `replicas` copies of `atoms` (velocities from keys fold_in(seed, id), ids 0..replicas-1
    unless `replica_ids` names them) for `stage.steps` steps and return when each criterion first
    fired in each replica."""
    if stage.steps % every or chunk_steps % every:
        raise ValueError(f"steps ({stage.steps}) and chunk ({chunk_steps}) must be multiples of every ({every})")
    init_fn, apply_fn = make_integrator(system, stage)
    R0 = system.wrap(jnp.asarray(atoms.positions, jnp.result_type(float)))  # the x64 setting's float
    mass = jnp.asarray(masses(atoms, hydrogen_mass), R0.dtype)[:, None]
    t0 = stage.temperature_K if temperature_K is None else temperature_K
    ids = jnp.arange(replicas) if replica_ids is None else jnp.asarray(replica_ids)
    if ids.shape != (replicas,):
        raise ValueError(f"replica_ids must name {replicas} replicas")
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.PRNGKey(seed), r))(ids)
    momenta = jax.vmap(lambda k: initial_momenta(k, mass, t0))(keys)
    nbrs = system.neighbor_fn.allocate(R0)
    while bool(nbrs.did_buffer_overflow):
        nbrs = reallocate(system, R0, nbrs)
    states = jax.vmap(lambda k, p: init_fn(k, R0, mass=mass, momenta=p, neighbor=nbrs))(keys, momenta)
    batch_nbrs = _stack(nbrs, replicas)
    check = make_checks(criteria, atoms, system.displacement_fn, system.cutoff)
    stop_mask = jnp.asarray([c in stop_on for c in CRITERIA])
    n = system.n_atoms

    def one_block(state, nb, alive):
        def step(_, carry):
            s, b = carry
            s = apply_fn(s, neighbor=b)
            return s, b.update(s.position)

        new_s, new_b = jax.lax.fori_loop(0, every, step, (state, nb))
        energy = system.energy_fn(new_s.position, new_b)
        T = temperature(kinetic_energy(new_s.momentum, new_s.mass), n)
        fired = check(new_s.position, new_b, T, energy, new_s.force)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(alive, a, b), new, old)  # noqa: E731
        return keep(new_s, state), keep(new_b, nb), fired & alive

    def chunk(states, nbrs_b, alive, blocks):
        def body(carry, _):
            s, b, a = carry
            s, b, fired = jax.vmap(one_block)(s, b, a)
            a = a & ~jnp.any(fired & stop_mask, axis=1)
            return (s, b, a), fired

        return jax.lax.scan(body, (states, nbrs_b, alive), None, length=blocks)

    chunk_jit = jax.jit(chunk, static_argnums=3)
    first = np.full((replicas, len(CRITERIA)), -1)
    alive = jnp.ones(replicas, bool)
    done, reallocs = 0, 0
    while done < stage.steps and bool(jnp.any(alive)):
        blocks = min(chunk_steps, stage.steps - done) // every
        while True:
            (new_states, new_nbrs, new_alive), fired = chunk_jit(states, batch_nbrs, alive, blocks)
            if not bool(jnp.any(new_nbrs.did_buffer_overflow)):
                break
            reallocs += 1
            nbrs, batch_nbrs = _reallocate_all(system, states.position, nbrs)
        fired = np.asarray(fired)  # (blocks, replicas, criteria)
        for b in range(fired.shape[0]):
            hit = fired[b] & (first < 0)
            first[hit] = done + (b + 1) * every
        states, batch_nbrs, alive = new_states, new_nbrs, new_alive
        done += blocks * every
        if on_chunk is not None:
            on_chunk(done, first)
    return ReplicaResult(first, stage.steps, stage.dt_fs, np.asarray(states.position), reallocations=reallocs)
