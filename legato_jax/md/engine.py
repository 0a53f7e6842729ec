"""The one MD engine: the block scan, the stage/chunk/overflow loop and the runner protocol that
single systems, batches of replicas and decomposed domains implement.

A chunk is one compiled program of `blocks` blocks of `every` steps; blocks past the stage's end
are skipped by `lax.cond`, so a stage compiles once whatever its step count. After each chunk the
host asks the runner whether any fixed-capacity buffer overflowed; if so the runner enlarges its
capacities from the chunk's start state and the chunk is re-run, so no step computed with an
overflowed list is ever kept.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from legato_jax.errors import ConfigError

Carry = TypeVar("Carry")


def block_scan(block: Callable[[Carry], tuple[Carry, Any]], blocks: int) -> Callable:
    """scan(carry, n_active) -> (carry, observations): `block` applied `blocks` times, of which
    only the first `n_active` (a traced value) run; skipped blocks observe zeros."""

    def skipped(carry):
        # zeros_like keeps the shapes' varying-axis types inside shard_map
        return carry, jax.tree.map(jnp.zeros_like, jax.eval_shape(block, carry)[1])

    def scan(carry, n_active):
        def body(c, index):
            return lax.cond(index < n_active, block, skipped, c)

        return lax.scan(body, carry, jnp.arange(blocks))

    return scan


def host_blocks(obs, n_active: int):
    """A chunk's observations on the host, cut to the blocks that ran (leading axis: blocks)."""
    return jax.tree.map(lambda a: np.asarray(a)[:n_active], jax.device_get(obs))


class Runner(Protocol[Carry]):
    """One stage of one kind of system. `chunk` runs `n_active` blocks from `carry` and returns
    (carry at the end, host observations of those blocks, overflow anywhere); `enlarge` grows the
    capacities for a re-run from `carry`; `accept` takes a finished chunk (host bookkeeping such
    as failure records) and returns the carry to go on from; `stopped` ends the stage early."""

    def chunk(self, carry: Carry, n_active: int) -> tuple[Carry, Any, bool]: ...

    def enlarge(self, carry: Carry) -> Carry: ...

    def accept(self, carry: Carry, obs: Any, first_step: int) -> Carry: ...

    def stopped(self, carry: Carry) -> bool: ...


class CompileCounter:
    """Counts XLA compilations of chunk programs (jitted functions whose name ends in `chunk`) while active,
    from JAX's own monitoring events. Constants that tracing evaluates eagerly compile small
    programs of their own; those are not recompiles of a chunk and are not counted."""

    EVENT = "/jax/core/compile/backend_compile_duration"
    _active: list["CompileCounter"] = []
    _registered = False

    def __init__(self, name: str = "chunk") -> None:
        self.name, self.count = name, 0
        if not CompileCounter._registered:
            jax.monitoring.register_event_duration_secs_listener(CompileCounter._listen)
            CompileCounter._registered = True

    @staticmethod
    def _listen(event: str, duration: float, fun_name: str = "", **kwargs) -> None:
        if event == CompileCounter.EVENT:
            for counter in CompileCounter._active:
                counter.count += fun_name.endswith(f"{counter.name})")

    def __enter__(self) -> "CompileCounter":
        CompileCounter._active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        CompileCounter._active.remove(self)


class Tally:
    """What the loop counts across stages: re-runs after overflow, compiles, wall time."""

    def __init__(self) -> None:
        self.reallocations = 0
        self.compiles = CompileCounter()
        self.start = time.perf_counter()

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.start


def stage_chunks(runner: Runner, carry, steps: int, every: int, blocks: int, tally: Tally | None = None,
                 offset: int = 0, done: int = 0) -> Iterator[tuple[int, Any, Any]]:
    """Runs a stage of `steps` steps chunk by chunk from step `done` of it (a resumed stage);
    yields (first step of the chunk within the stage, carry after it, its host observations) once
    each chunk has run without overflow and been accepted (`accept` sees the step counted from the
    run's start, `offset` + first)."""
    if every < 1:
        raise ConfigError(f"the observation interval must be >= 1 step, got {every}")
    if steps % every:
        raise ConfigError(f"steps ({steps}) must be a multiple of the observation interval ({every})")
    if done % every or not 0 <= done <= steps:
        raise ConfigError(f"a stage resumed at step {done} of {steps} must resume at a check ({every} steps)")
    tally = tally or Tally()
    while done < steps and not runner.stopped(carry):
        n_active = min(blocks, (steps - done) // every)
        while True:
            with tally.compiles:
                new, obs, overflow = runner.chunk(carry, n_active)
            if not overflow:
                break
            tally.reallocations += 1
            carry = runner.enlarge(carry)
        carry = runner.accept(new, obs, offset + done)
        yield done, carry, obs
        done += n_active * every


def run_stages(begin: Callable[[int, Any, Any], tuple[Runner, Any]], carry, stages: Sequence, every: int,
               chunk_steps: int, on_chunk: Callable[[int, Any, int, Any, Any], None] | None = None,
               tally: Tally | None = None, resume: tuple[int, int] = (0, 0)):
    """Every stage in order: `begin(k, stage, carry)` gives the stage's runner and starting carry,
    `on_chunk(k, stage, first_step, carry, obs)` sees each accepted chunk (first_step counts from
    the run's start). Stops after a stage whose runner reports `stopped`. Returns the last carry.
    `resume=(k, done)` starts at step `done` of stage k (its `begin` gives the restored carry)."""
    blocks = max(1, chunk_steps // every)
    step0 = sum(s.steps for s in stages[: resume[0]])
    for k, stage in enumerate(stages):
        if k < resume[0]:
            continue
        runner, carry = begin(k, stage, carry)
        done = resume[1] if k == resume[0] else 0
        for first, carry, obs in stage_chunks(runner, carry, stage.steps, every, blocks, tally, step0, done):
            if on_chunk is not None:
                on_chunk(k, stage, step0 + first, carry, obs)
        step0 += stage.steps
        if runner.stopped(carry):
            break
    return carry
