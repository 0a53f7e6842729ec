"""Many independent replicas of one system advanced together: one jitted, vmapped step over the
replica axis, each replica with its own velocities, neighbour list and failure record.

Every `every` steps the failure criteria are checked; a replica whose criterion fires records the
step for that criterion, and once every criterion in `stop_on` has fired the replica is frozen
(its state stops changing), so a blown-up replica never feeds NaNs to the others. A criterion
that never fired is censored where its replica stopped. When at most
half of the batch is still running, the batch is compacted to the running replicas at the next
chunk boundary, so failed replicas stop costing compute (the smaller batch compiles once more).
Overflow of any replica's list reallocates all lists (sized for the largest) and re-runs the
chunk from its start. With a checkpoint file the batch (integrator states, lists, failure record)
is saved after every chunk, and a later call with the same key continues from it exactly. The
stage/chunk loop is the MD engine's (`md/engine.py`); this module is its replica runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms

from legato_jax.errors import ConfigError
from legato_jax.experiments.failure import CRITERIA, FailureCriteria, make_checks
from legato_jax.md.energy import MDSystem
from legato_jax.md.engine import block_scan, host_blocks, run_stages
from legato_jax.md.integrate import (Stage, Start, allocate, kinetic_energy, make_integrator, reallocate_batch,
                                     start_stage, temperature, update_batch)
from legato_jax.md.recorder import Recorder
from legato_jax.md.systems import initial_momenta, masses
from legato_jax.outputs import atomic_write_npz


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
    compiles: int = 0

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


def _chunk_fn(system: MDSystem, apply_fn: Callable, check: Callable, stop_mask, every: int, blocks: int) -> Callable:
    """chunk(states, nbrs, seen, n_active) -> ((states, nbrs, seen), fired[blocks, replicas, criteria],
    overflow of any replica's list);
    `seen` marks the criteria that have fired so far in each replica."""
    n = system.n_atoms

    def step(_, carry):
        s, b = carry
        s = jax.vmap(lambda st, nb: apply_fn(st, neighbor=nb))(s, b)
        return s, update_batch(system, b, s.position)

    def judge(state, nb, new_s, new_b, alive):
        energy = system.energy_fn(new_s.position, new_b)
        T = temperature(kinetic_energy(new_s.momentum, new_s.mass), n)
        fired = check(new_s.position, new_b, T, energy, new_s.force)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(alive, a, b), new, old)  # noqa: E731
        return keep(new_s, state), keep(new_b, nb), fired & alive

    def block(carry):
        s, b, seen = carry
        alive = ~jnp.all(seen | ~stop_mask, axis=1)
        new_s, new_b = jax.lax.fori_loop(0, every, step, (s, b))
        s, b, fired = jax.vmap(judge)(s, b, new_s, new_b, alive)
        return (s, b, seen | fired), fired

    scan = block_scan(block, blocks)

    def chunk(states, nbrs, seen, n_active):
        (states, nbrs, seen), fired = scan((states, nbrs, seen), n_active)
        return (states, nbrs, seen), fired, jnp.any(nbrs.did_buffer_overflow)

    return jax.jit(chunk)


class ReplicaCarry(NamedTuple):
    """The batch between chunks: integrator states, lists and fired criteria per batch row, and
    which replica each row holds."""

    states: Any
    nbrs: Any
    seen: jax.Array  # (rows, criteria)
    rows: np.ndarray  # batch row -> replica


@dataclass
class ReplicaRecord:
    """Host-side record of every replica: when each criterion fired, where it stopped."""

    first: np.ndarray  # (replicas, criteria), -1 never
    stopped: np.ndarray  # (replicas,)
    final: np.ndarray  # (replicas, n, 3)


@dataclass
class ReplicaRunner:
    """The engine's runner for a batch of replicas through one stage: failed replicas are frozen,
    and the batch is compacted once at most half of it still runs."""

    system: MDSystem
    chunk_fn: Callable
    stop_mask: jax.Array
    every: int
    record: ReplicaRecord
    template: Any = None  # the single-replica list whose capacity the batch shares
    recorder: Recorder | None = None
    on_chunk: Callable | None = None
    seen_before: Any = None  # fired criteria at the start of the chunk in flight

    def running(self, seen) -> np.ndarray:
        return ~np.all(np.asarray(seen) | ~np.asarray(self.stop_mask), axis=1)

    def chunk(self, carry: ReplicaCarry, n_active: int):
        self.seen_before = carry.seen
        (states, nbrs, seen), fired, overflow = self.chunk_fn(carry.states, carry.nbrs, carry.seen, n_active)
        return ReplicaCarry(states, nbrs, seen, carry.rows), host_blocks(fired, n_active), bool(overflow)

    def enlarge(self, carry: ReplicaCarry) -> ReplicaCarry:
        self.template, nbrs = reallocate_batch(self.system, carry.states.position, self.template)
        return carry._replace(nbrs=nbrs)

    def accept(self, new: ReplicaCarry, fired: np.ndarray, first_step: int) -> ReplicaCarry:
        rec, rows = self.record, new.rows
        sub = rec.first[rows]
        for b in range(fired.shape[0]):  # fired: (blocks, rows, criteria)
            sub[fired[b] & (sub < 0)] = first_step + (b + 1) * self.every
        rec.first[rows] = sub
        was_running = self.running(self.seen_before)
        ended = was_running & ~self.running(new.seen)
        rec.stopped[rows[ended]] = np.max(np.where(np.asarray(self.stop_mask), sub, -1), axis=1)[ended]
        rec.final[rows] = np.asarray(new.states.position)
        if self.recorder is not None:
            self.recorder.advance(fired.shape[0] * self.every)
        if self.on_chunk is not None:
            self.on_chunk(first_step + fired.shape[0] * self.every, rec.first)
        keep = np.flatnonzero(self.running(new.seen))
        if 0 < len(keep) <= len(rows) // 2:  # compact: stopped replicas stop costing compute
            return ReplicaCarry(_rows(new.states, keep), _rows(new.nbrs, keep), new.seen[keep], rows[keep])
        return new

    def stopped(self, carry: ReplicaCarry) -> bool:
        return not self.running(carry.seen).any()


CHECKPOINT_FORMAT = "legato-replicas-checkpoint-1"


def _flat(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _unflat(like, leaves: list[np.ndarray]):
    """`leaves` in the structure of `like`, or None where their number or shapes differ."""
    own, treedef = jax.tree_util.tree_flatten(like)
    if len(own) != len(leaves) or any(np.shape(a) != b.shape for a, b in zip(own, leaves)):
        return None
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(b, dtype=jnp.asarray(a).dtype)
                                                  for a, b in zip(own, leaves)])


def save_checkpoint(path: Path, key: str, stage: int, done: int, carry: ReplicaCarry, record: ReplicaRecord,
                    wall_s: float) -> None:
    """The batch after `done` steps of stage `stage`, written through a temporary file and a rename."""
    states, nbrs = _flat(carry.states), _flat(carry.nbrs)
    data = {"format": np.array(CHECKPOINT_FORMAT), "key": np.array(key), "stage": np.array(stage),
            "done": np.array(done), "rows": carry.rows, "seen": np.asarray(carry.seen), "first": record.first,
            "stopped": record.stopped, "final": record.final, "wall_s": np.array(wall_s),
            **{f"state_{i}": a for i, a in enumerate(states)}, **{f"nbrs_{i}": a for i, a in enumerate(nbrs)}}
    atomic_write_npz(path, data, compressed=True)


def load_checkpoint(path: Path, key: str) -> dict | None:
    """A checkpoint written for `key`, or None where there is none or it belongs to another run."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError):
        return None
    if str(data.get("format")) != CHECKPOINT_FORMAT or str(data.get("key")) != key:
        return None
    for part in ("state", "nbrs"):
        data[part] = [data.pop(f"{part}_{i}") for i in range(sum(k.startswith(f"{part}_") for k in data))]
    return data


def run_replicas(system: MDSystem, atoms: Atoms, stages: Stage | Sequence[Stage], replicas: int, *,
                 seed: int = 0, temperature_K: float | None = None, hydrogen_mass: float | None = None,
                 criteria: FailureCriteria = FailureCriteria(), stop_on: tuple[str, ...] = CRITERIA,
                 every: int = 10, chunk_steps: int = 1000, on_chunk: Callable | None = None,
                 replica_ids=None, progress: bool = False, checkpoint: str | Path | None = None,
                 checkpoint_key: str = "") -> ReplicaResult:
    """Advance `replicas` copies of `atoms` through `stages` in order (velocities at `temperature_K`,
    default the first stage's, from keys fold_in(seed, id), ids 0..replicas-1 unless `replica_ids`
    names them) and return when each criterion first fired in each replica.

    `on_chunk(step, first_failure)` is called after every chunk with the global step reached;
    `progress` shows a bar over the steps of the longest-running replica. With `checkpoint`, the
    batch is saved there after every chunk and a checkpoint of the same `checkpoint_key` (which
    should name everything that decides the run) is continued; the caller removes it when done."""
    stages = (stages,) if isinstance(stages, Stage) else tuple(stages)
    for s in stages:
        if s.steps % every:
            raise ConfigError(f"a stage of {s.steps} steps is not a multiple of the check interval {every}")
    if chunk_steps % every:
        raise ConfigError(f"chunk ({chunk_steps}) must be a multiple of every ({every})")
    if not set(stop_on) <= set(CRITERIA) or not stop_on:
        raise ConfigError(f"stop_on must name some of {list(CRITERIA)}, got {list(stop_on)}")
    ids = np.arange(replicas) if replica_ids is None else np.asarray(replica_ids)
    if ids.shape != (replicas,):
        raise ConfigError(f"replica_ids must name {replicas} replicas")
    recorder = Recorder(stages, every, system.n_atoms * replicas, system.volume, name=f"{replicas} replicas",
                        progress=progress, thermo=False)
    R0 = system.wrap(jnp.asarray(atoms.positions, jnp.result_type(float)))  # the x64 setting's float
    mass = jnp.asarray(masses(atoms, hydrogen_mass), R0.dtype)[:, None]
    t0 = stages[0].temperature_K if temperature_K is None else temperature_K
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.PRNGKey(seed), r))(jnp.asarray(ids))
    momenta = jax.vmap(lambda k: initial_momenta(k, mass, t0))(keys)
    nbrs = allocate(system, R0)
    check = make_checks(criteria, atoms, system.displacement_fn, system.cutoff)
    stop_mask = jnp.asarray([c in stop_on for c in CRITERIA])
    record = ReplicaRecord(np.full((replicas, len(CRITERIA)), -1), np.full(replicas, sum(s.steps for s in stages)),
                           np.array(_stack(R0, replicas)))
    blocks = max(1, chunk_steps // every)
    runner = ReplicaRunner(system, None, stop_mask, every, record, nbrs, recorder, on_chunk)

    checkpoint = None if checkpoint is None else Path(checkpoint)
    saved = None if checkpoint is None else load_checkpoint(checkpoint, checkpoint_key)
    wall_before = 0.0 if saved is None else float(saved["wall_s"])

    def begin(k: int, stage: Stage, carry: ReplicaCarry):
        init_fn, apply_fn = make_integrator(system, stage)
        stage_keys = jax.vmap(lambda key: jax.random.fold_in(key, k + 1))(keys[carry.rows])
        states = jax.vmap(lambda key, R, p, nb: start_stage(init_fn, key, R, mass, p, nb))(
            stage_keys, carry.states.position, carry.states.momentum, carry.nbrs)
        runner.chunk_fn = _chunk_fn(system, apply_fn, check, stop_mask, every, blocks)
        if saved is not None and k == int(saved["stage"]):
            return runner, restored(states)
        return runner, carry._replace(states=states)

    def restored(states) -> ReplicaCarry:
        rows = saved["rows"]
        states = _unflat(_rows(states, rows), saved["state"])
        if states is None:
            raise ConfigError(f"{checkpoint}: its integrator state does not fit this run; delete it to start again")
        nbrs_saved = _unflat(_stack(nbrs, len(rows)), saved["nbrs"])
        if nbrs_saved is None:  # the lists had grown: rebuild them at the saved positions
            runner.template, nbrs_saved = reallocate_batch(system, states.position, runner.template)
        record.first[:], record.stopped[:], record.final[:] = saved["first"], saved["stopped"], saved["final"]
        return ReplicaCarry(states, nbrs_saved, jnp.asarray(saved["seen"]), rows)

    def save(k: int, stage: Stage, first_step: int, carry: ReplicaCarry, obs) -> None:
        done = first_step + obs.shape[0] * every - sum(s.steps for s in stages[:k])
        save_checkpoint(checkpoint, checkpoint_key, k, done, carry, record, wall_before + recorder.tally.wall_s)

    start = ReplicaCarry(Start(_stack(R0, replicas), momenta), _stack(nbrs, replicas),
                         jnp.zeros((replicas, len(CRITERIA)), bool), np.arange(replicas))
    resume = (0, 0) if saved is None else (int(saved["stage"]), int(saved["done"]))
    try:
        run_stages(begin, start, stages, every, chunk_steps, on_chunk=None if checkpoint is None else save,
                   tally=recorder.tally, resume=resume)
    finally:
        recorder.close()
    summary = recorder.summary()
    return ReplicaResult(record.first, record.stopped, stages, record.final, reallocations=summary["nl_reallocations"],
                         wall_s=wall_before + summary["wall_s"], compiles=summary["compiles"])
