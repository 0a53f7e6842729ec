"""Many independent replicas of one system advanced together: one jitted, vmapped step over the
replica axis, each replica with its own velocities, neighbour list and failure record.

Every `every` steps the failure criteria are checked; a replica whose criterion fires records the
step for that criterion, and once every criterion in `stop_on` has fired the replica is frozen
(its state stops changing), so a blown-up replica never feeds NaNs to the others. A criterion
that never fired is censored where its replica stopped. When at most
half of the batch is still running, the batch is compacted to the running replicas at the next
chunk boundary, so failed replicas stop costing compute. Overflow of any replica's list
reallocates all lists (sized for the largest) and re-runs the chunk from its start.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms

from legato_jax.experiments.failure import CRITERIA, FailureCriteria, make_checks
from legato_jax.md.energy import MDSystem
from legato_jax.md.integrate import Stage, kinetic_energy, make_integrator, reallocate, start_stage, temperature
from legato_jax.md.systems import initial_momenta, masses


@dataclass
class ReplicaResult:
    """Per replica and criterion: the step at which it first fired, or -1 if it never did."""

    first_failure: np.ndarray  # (replicas, len(CRITERIA)) int
    stopped_at: np.ndarray  # (replicas,) the step at which each replica stopped (frozen or at the limit)
    stages: tuple[Stage, ...]
    positions: np.ndarray  # (replicas, n, 3): final (or frozen at failure) positions
    criteria: tuple[str, ...] = CRITERIA
    reallocations: int = 0
    wall_s: float = 0.0

    @property
    def steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def time_fs(self, step) -> np.ndarray:
        """Simulated time (fs) at a global step count, through stages of different dt."""
        ends = np.cumsum([0] + [s.steps for s in self.stages])
        t_ends = np.cumsum([0.0] + [s.steps * s.dt_fs for s in self.stages])
        return np.interp(np.asarray(step, float), ends, t_ends)

    def times(self, criterion: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps, time in ps, failed flag) per replica: a censored replica carries the step it
        stopped at (the limit, or where its other stopping criteria had all fired)."""
        k = self.criteria.index(criterion)
        failed = self.first_failure[:, k] >= 0
        steps = np.where(failed, self.first_failure[:, k], self.stopped_at)
        return steps, self.time_fs(steps) / 1000.0, failed

    def times_ps(self, criterion: str) -> tuple[np.ndarray, np.ndarray]:
        _, t, failed = self.times(criterion)
        return t, failed


def _stack(tree, n: int):
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), tree)


def _rows(tree, rows):
    return jax.tree.map(lambda x: x[rows], tree)


def _rebuilt(nbrs, position, half_diagonal):
    """`nbrs` rebuilt at `position` (its reference moved half a cell away forces the rebuild)."""
    return dataclasses.replace(nbrs, reference_position=position + half_diagonal).update(position)


def _reallocate_all(system: MDSystem, positions, old):
    """A list roomy enough for every replica (>= 1.25x the old), rebuilt for each of them."""
    sizes = [system.neighbor_fn.allocate(p).idx.shape[-1] for p in positions]
    big = reallocate(system, positions[int(np.argmax(sizes))], old)
    half = jnp.asarray(0.5 * np.sum(system.cell, axis=0), positions.dtype)
    return big, jax.vmap(lambda p: _rebuilt(big, p, half))(positions)


def _chunk_fn(system: MDSystem, apply_fn: Callable, check: Callable, stop_mask, every: int) -> Callable:
    """chunk(states, nbrs, seen, blocks) -> ((states, nbrs, seen), fired[blocks, replicas, criteria]);
    `seen` marks the criteria that have fired so far in each replica."""
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

    def chunk(states, nbrs_b, seen, blocks):
        def body(carry, _):
            s, b, seen = carry
            alive = ~jnp.all(seen | ~stop_mask, axis=1)
            s, b, fired = jax.vmap(one_block)(s, b, alive)
            return (s, b, seen | fired), fired

        return jax.lax.scan(body, (states, nbrs_b, seen), None, length=blocks)

    return jax.jit(chunk, static_argnums=3)


def run_replicas(system: MDSystem, atoms: Atoms, stages: Stage | Sequence[Stage], replicas: int, *,
                 seed: int = 0, temperature_K: float | None = None, hydrogen_mass: float | None = None,
                 criteria: FailureCriteria = FailureCriteria(), stop_on: tuple[str, ...] = CRITERIA,
                 every: int = 10, chunk_steps: int = 1000, on_chunk: Callable | None = None,
                 replica_ids=None) -> ReplicaResult:
    """Advance `replicas` copies of `atoms` through `stages` in order (velocities at `temperature_K`,
    default the first stage's, from keys fold_in(seed, id), ids 0..replicas-1 unless `replica_ids`
    names them) and return when each criterion first fired in each replica.

    `on_chunk(step, first_failure)` is called after every chunk with the global step reached."""
    stages = (stages,) if isinstance(stages, Stage) else tuple(stages)
    for s in stages:
        if s.steps % every:
            raise ValueError(f"a stage of {s.steps} steps is not a multiple of the check interval {every}")
    if chunk_steps % every:
        raise ValueError(f"chunk ({chunk_steps}) must be a multiple of every ({every})")
    start = time.perf_counter()
    R0 = system.wrap(jnp.asarray(atoms.positions, jnp.result_type(float)))  # the x64 setting's float
    mass = jnp.asarray(masses(atoms, hydrogen_mass), R0.dtype)[:, None]
    t0 = stages[0].temperature_K if temperature_K is None else temperature_K
    ids = np.arange(replicas) if replica_ids is None else np.asarray(replica_ids)
    if ids.shape != (replicas,):
        raise ValueError(f"replica_ids must name {replicas} replicas")
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.PRNGKey(seed), r))(jnp.asarray(ids))
    momenta = jax.vmap(lambda k: initial_momenta(k, mass, t0))(keys)
    positions = _stack(R0, replicas)
    nbrs = system.neighbor_fn.allocate(R0)
    while bool(nbrs.did_buffer_overflow):
        nbrs = reallocate(system, R0, nbrs)
    batch_nbrs = _stack(nbrs, replicas)
    check = make_checks(criteria, atoms, system.displacement_fn, system.cutoff)
    stop_mask = jnp.asarray([c in stop_on for c in CRITERIA])

    if not set(stop_on) <= set(CRITERIA) or not stop_on:
        raise ValueError(f"stop_on must name some of {CRITERIA}, got {stop_on}")
    first = np.full((replicas, len(CRITERIA)), -1)
    stopped = np.full(replicas, sum(s.steps for s in stages))
    final = np.array(positions)
    rows = np.arange(replicas)  # batch row -> replica
    seen = jnp.zeros((replicas, len(CRITERIA)), bool)
    running = lambda seen: ~np.all(np.asarray(seen) | ~np.asarray(stop_mask), axis=1)  # noqa: E731
    done, reallocs = 0, 0
    for k, stage in enumerate(stages):
        init_fn, apply_fn = make_integrator(system, stage)
        stage_keys = jax.vmap(lambda key: jax.random.fold_in(key, k + 1))(keys[rows])
        states = jax.vmap(lambda key, R, p, nb: start_stage(init_fn, key, R, mass, p, nb))(
            stage_keys, positions, momenta, batch_nbrs)
        chunk = _chunk_fn(system, apply_fn, check, stop_mask, every)
        stage_done = 0
        while stage_done < stage.steps and running(seen).any():
            blocks = min(chunk_steps, stage.steps - stage_done) // every
            while True:
                (new_states, new_nbrs, new_seen), fired = chunk(states, batch_nbrs, seen, blocks)
                if not bool(jnp.any(new_nbrs.did_buffer_overflow)):
                    break
                reallocs += 1
                nbrs, batch_nbrs = _reallocate_all(system, states.position, nbrs)
            fired = np.asarray(fired)  # (blocks, rows, criteria)
            was_running = running(seen)
            sub = first[rows]
            for b in range(fired.shape[0]):
                sub[fired[b] & (sub < 0)] = done + stage_done + (b + 1) * every
            first[rows] = sub
            ended = was_running & ~running(new_seen)
            stopped[rows[ended]] = np.max(np.where(np.asarray(stop_mask), sub, -1), axis=1)[ended]
            states, batch_nbrs, seen = new_states, new_nbrs, new_seen
            stage_done += blocks * every
            final[rows] = np.asarray(states.position)
            if on_chunk is not None:
                on_chunk(done + stage_done, first)
            keep = np.flatnonzero(running(seen))
            if 0 < len(keep) <= len(rows) // 2:  # compact: stopped replicas stop costing compute
                states, batch_nbrs, seen, rows = _rows(states, keep), _rows(batch_nbrs, keep), seen[keep], rows[keep]
        positions, momenta = states.position, states.momentum
        done += stage.steps
        if not running(seen).any():
            break
    return ReplicaResult(first, stopped, stages, final, reallocations=reallocs, wall_s=time.perf_counter() - start)
