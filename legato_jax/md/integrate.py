"""jax-md integrators run in `lax.scan` chunks, with neighbour-list overflow detection and re-runs.

Inside a block of `every` steps the integrator steps and updates the neighbour list; at its end
the thermo quantities (and optionally a frame) are taken. The chunk loop, the skipped blocks and
the overflow re-runs are the engine's (`md/engine.py`); this module is the single-system runner.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ase import units as ase_units
from jax_md import simulate

from legato_jax.errors import ConfigError
from legato_jax.md.energy import MDSystem
from legato_jax.md.engine import Tally, block_scan, host_blocks, stage_chunks

FS = ase_units.fs  # one femtosecond in jax-md's metal time unit = ASE's, sqrt(amu Å^2 / eV)
KB = 8.617333262e-5  # eV/K
BAR = 1.0 / 1.602176634e6  # one bar in eV/Å^3
ENSEMBLES = ("nve", "nose-hoover", "langevin", "npt")


@dataclass(frozen=True)
class Stage:
    """One segment of a run: an ensemble, a number of steps and a time step.

    `tau_fs` is the Nose-Hoover thermostat time (LAMMPS' Tdamp) or the Langevin friction time
    1/gamma; `temperature_K` is the thermostat target (ignored by NVE). NPT (jax-md's Nose-Hoover
    thermostat and isotropic barostat) holds `pressure_bar` with the barostat time `barostat_tau_fs`
    (LAMMPS' Pdamp)."""

    ensemble: str
    steps: int
    dt_fs: float
    temperature_K: float = 300.0
    tau_fs: float = 100.0
    pressure_bar: float | None = None
    barostat_tau_fs: float = 1000.0

    def __post_init__(self) -> None:
        if self.ensemble not in ENSEMBLES:
            raise ConfigError(f"ensemble {self.ensemble!r}: choose one of {list(ENSEMBLES)}")
        if not self.dt_fs > 0:
            raise ConfigError(f"dt must be > 0 fs, got {self.dt_fs}")
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")
        if self.ensemble != "nve" and not (self.temperature_K > 0 and self.tau_fs > 0):
            raise ConfigError(f"{self.ensemble}: temperature ({self.temperature_K} K) and tau "
                              f"({self.tau_fs} fs) must be > 0")
        if (self.ensemble == "npt") != (self.pressure_bar is not None):
            raise ConfigError("--pressure (bar) goes with --ensemble npt, and npt needs it")
        if self.ensemble == "npt" and not self.barostat_tau_fs > 0:
            raise ConfigError(f"npt: the barostat time must be > 0 fs, got {self.barostat_tau_fs}")


def make_integrator(system: MDSystem, stage: Stage) -> tuple[Callable, Callable]:
    """(init_fn, apply_fn) of the jax-md integrator for a stage."""
    dt, kT = stage.dt_fs * FS, KB * stage.temperature_K
    if stage.ensemble == "nve":
        init, apply = simulate.nve(system.energy_fn, system.shift_fn, dt)
        return (lambda key, R, **kw: init(key, R, 0.0, **kw)), apply
    if (stage.ensemble == "npt") != system.fractional:
        raise ConfigError("NPT runs are NPT from start to end (every stage npt); run fixed-volume stages "
                          "separately (--restart from the NPT run's last frame)")
    if stage.ensemble == "nose-hoover":
        init, apply = simulate.nvt_nose_hoover(system.energy_fn, system.shift_fn, dt, kT, tau=stage.tau_fs * FS)
        return (lambda key, R, **kw: conserving_momentum(init(key, R, **kw), "chain")), apply
    if stage.ensemble == "npt":
        init, apply = simulate.npt_nose_hoover(system.energy_fn, system.shift_fn, dt, stage.pressure_bar * BAR, kT,
                                               barostat_kwargs={"tau": stage.barostat_tau_fs * FS},
                                               thermostat_kwargs={"tau": stage.tau_fs * FS})
        box = system.box0
        return (lambda key, R, **kw: conserving_momentum(init(key, R, box, **kw), "thermostat")), apply
    return simulate.nvt_langevin(system.energy_fn, system.shift_fn, dt, kT, gamma=1.0 / (stage.tau_fs * FS))


def conserving_momentum(state, field: str):
    """The state with its Nose-Hoover chain (`state.<field>`) acting on 3N - 3 degrees of freedom.

    jax-md's chains count 3N, but the dynamics conserve the total momentum (zero here), so only
    3N - 3 move: with 3N the chain holds their kinetic temperature at 3N / (3N - 3) x the target
    (+1.6 % at 64 atoms). The chain masses follow the count at every step."""
    chain = getattr(state, field)
    return state.set(**{field: dataclasses.replace(chain, degrees_of_freedom=moving_dof(state.position.shape[0]))})


class Start(NamedTuple):
    """Where a stage starts from: the previous stage's end, or the initial conditions."""

    position: jax.Array
    momentum: jax.Array


def start_stage(init_fn: Callable, key: jax.Array, position, mass, momentum, nbrs) -> Any:
    """The integrator's state from positions and momenta (the thermostat starts at rest)."""
    return init_fn(key, position, mass=mass, momenta=momentum, neighbor=nbrs)


class Observation(NamedTuple):
    """Quantities at the end of each block (leading axis: blocks)."""

    potential: jax.Array  # eV
    kinetic: jax.Array  # eV
    conserved: jax.Array  # eV: total energy (NVE), the Nose-Hoover invariant, NaN for Langevin
    stress: jax.Array  # (3, 3) eV/Å^3, ASE sign, potential part only
    rebuilds: jax.Array  # neighbour-list rebuilds inside the block
    position: jax.Array | None = None  # frames, when recorded
    momentum: jax.Array | None = None
    force: jax.Array | None = None
    contact: jax.Array | None = None  # closest pair at the block's end, in units of its covalent radius sum
    missed: jax.Array | None = None  # steps of the block whose forces used a list that missed a pair
    volume: jax.Array | None = None  # Å^3


def kinetic_energy(momentum, mass):
    """sum p^2 / 2m in eV, in the state's dtype (jax-md's version asks for float64 sums, which
    warns in float32 runs)."""
    return 0.5 * jnp.sum(momentum**2 / mass)


def nose_hoover_invariant(potential, kinetic, chain, kT: float, dof: int):
    """The extended Hamiltonian of a Nose-Hoover chain (as jax-md's `nvt_nose_hoover_invariant`,
    from energies already at hand)."""
    e = potential + kinetic + chain.momentum[0] ** 2 / (2 * chain.mass[0]) + dof * kT * chain.position[0]
    return e + jnp.sum(chain.momentum[1:] ** 2 / (2 * chain.mass[1:]) + kT * chain.position[1:])


def moving_dof(n_atoms: int) -> int:
    """Degrees of freedom of N atoms whose total momentum is conserved: 3N - 3."""
    return 3 * n_atoms - 3


def temperature(kinetic, n_atoms: int):
    """Kinetic temperature (K) over 3N - 3 degrees of freedom (momentum is conserved)."""
    return 2.0 * kinetic / (moving_dof(n_atoms) * KB)


def pressure(kinetic, stress, volume: float):
    """Pressure in eV/Å^3: the kinetic part 2K/3V minus the trace of the (ASE-sign) stress / 3."""
    return 2.0 * kinetic / (3.0 * volume) - jnp.trace(stress, axis1=-2, axis2=-1) / 3.0


def make_chunk(system: MDSystem, stage: Stage, apply_fn: Callable, every: int, blocks: int,
               frames: bool) -> Callable:
    """jit(state, nbrs, n_active) -> ((state, nbrs), Observation) over `blocks` blocks, of which
    only the first `n_active` run."""
    kT = KB * stage.temperature_K

    npt = stage.ensemble == "npt"

    def box_kw(state) -> dict:  # the NPT box where the system is in fractional coordinates
        return {"box": simulate.npt_box(state)} if npt else {}

    def pairs_in_range(nbrs, position, kw):
        length, mask, _ = system.pair_geometry(position, nbrs, **kw)
        return jnp.sum(mask & (length < system.r_max))

    skin = system.cutoff - system.r_max

    def step(_, carry):
        state, nbrs, rebuilds, missed, built_volume = carry
        state = apply_fn(state, neighbor=nbrs)  # forces at the new positions, from the list `nbrs`
        kw = box_kw(state)
        given = nbrs
        if npt:  # a shrinking box brings pairs closer without moving atoms: rebuild once it has used
            # its half of the skin (the NPT list leaves the other half to the atoms' own motion)
            volume = jnp.abs(jnp.linalg.det(kw["box"]))
            shrunk = (1.0 - (volume / built_volume) ** (1.0 / 3.0)) * system.cutoff > 0.5 * skin
            given = jax.lax.cond(shrunk, lambda n: n.set(reference_position=n.reference_position + 0.5),
                                 lambda n: n, nbrs)  # half a box away in fractional coordinates: rebuild
        new = given.update(state.position, **kw)
        rebuilt = jnp.any(new.reference_position != nbrs.reference_position)
        # the rebuilt list holds every pair in range at these positions: had the old one (which
        # gave the forces) fewer, atoms moved more than the skin allows between checks
        stale = jax.lax.cond(rebuilt, lambda: pairs_in_range(nbrs, state.position, kw) < pairs_in_range(
            new, state.position, kw), lambda: jnp.bool_(False))
        if npt:
            built_volume = jnp.where(rebuilt, volume, built_volume)
        return state, new, rebuilds + rebuilt.astype(jnp.int32), missed + stale.astype(jnp.int32), built_volume

    def observe(state, nbrs, rebuilds, missed) -> Observation:
        kw = box_kw(state)
        pe, stress = system.energy_stress_fn(state.position, nbrs, **kw)
        ke = kinetic_energy(state.momentum, state.mass)
        if stage.ensemble == "nve":
            conserved = pe + ke
        elif stage.ensemble == "nose-hoover":
            conserved = nose_hoover_invariant(pe, ke, state.chain, kT, state.chain.degrees_of_freedom)
        elif npt:
            # jax-md's invariant counts 3N degrees of freedom in the chain's first term; ours has 3N - 3
            conserved = simulate.npt_nose_hoover_invariant(system.energy_fn, state, stage.pressure_bar * BAR, kT,
                                                           neighbor=nbrs) - (
                (state.position.size - state.thermostat.degrees_of_freedom) * kT * state.thermostat.position[0])
        else:
            conserved = jnp.full_like(pe, jnp.nan)
        position = system.real_positions(state.position, **kw)
        extra = (position, state.momentum, state.force) if frames else (None, None, None)
        length, mask, radii = system.pair_geometry(state.position, nbrs, **kw)
        contact = jnp.min(jnp.where(mask, length / jnp.where(mask, radii, 1.0), jnp.inf))
        volume = jnp.abs(jnp.linalg.det(kw["box"])) if npt else jnp.asarray(system.volume, pe.dtype)
        return Observation(pe, ke, conserved, stress, rebuilds, *extra, contact, missed, volume)

    def block(carry):
        # NPT: the volume the list was built at is not carried between blocks, so each block's first
        # step rebuilds (an infinite volume reads as a fully shrunk box)
        s, n, rebuilds, missed, _ = jax.lax.fori_loop(
            0, every, step, (*carry, jnp.int32(0), jnp.int32(0), jnp.asarray(jnp.inf, carry[0].position.dtype)))
        return (s, n), observe(s, n, rebuilds, missed)

    scan = block_scan(block, blocks)

    @jax.jit
    def chunk(state, nbrs, n_active):
        return scan((state, nbrs), n_active)

    return chunk


@dataclass
class StageRunner:
    """The engine's runner for one system through one stage; the carry is (state, nbrs).
    Overflowed chunks are re-run after reallocating the list from the chunk's start."""

    system: MDSystem
    stage: Stage
    apply_fn: Callable
    every: int = 10
    chunk_steps: int = 1000
    frames: bool = False

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"the observation interval must be >= 1 step, got {self.every}")
        self.blocks = max(1, self.chunk_steps // self.every)
        self._chunk = make_chunk(self.system, self.stage, self.apply_fn, self.every, self.blocks, self.frames)
        self.tally = Tally()

    @property
    def reallocations(self) -> int:
        return self.tally.reallocations

    @property
    def compiles(self) -> int:
        return self.tally.compiles.count

    def chunk(self, carry, n_active: int):
        (state, nbrs), obs = self._chunk(*carry, n_active)
        return (state, nbrs), host_blocks(obs, n_active), bool(nbrs.did_buffer_overflow)

    def enlarge(self, carry):
        state, nbrs = carry
        return state, reallocate(self.system, state.position, nbrs)

    def accept(self, carry, obs, first_step: int):
        return carry

    def stopped(self, carry) -> bool:
        return False

    def chunks(self, state, nbrs, steps: int):
        """Yields (first_step, state, nbrs, Observation on the host) after each completed chunk."""
        for first, (state, nbrs), obs in stage_chunks(self, (state, nbrs), steps, self.every, self.blocks,
                                                      self.tally):
            yield first, state, nbrs, obs


def allocate(system: MDSystem, position) -> Any:
    """A neighbour list for `position` that holds every pair (grown until it does)."""
    nbrs = system.neighbor_fn.allocate(position)
    while bool(nbrs.did_buffer_overflow):
        nbrs = reallocate(system, position, nbrs)
    return nbrs


def reallocate(system: MDSystem, position, old) -> Any:
    """A fresh list for `position` with at least 25 % more room than the one that overflowed."""
    fresh = system.neighbor_fn.allocate(position)
    need = old.idx.shape[-1] * 1.25
    if fresh.idx.shape[-1] < need:
        extra = math.ceil((need - fresh.idx.shape[-1]) / system.n_atoms)  # Sparse: extra is per atom
        fresh = system.neighbor_fn.allocate(position, extra_capacity=extra)
    return fresh


def rebuild_batch(system: MDSystem, template, positions) -> Any:
    """The list `template` rebuilt for each of a batch of positions (replicas, beads): its reference
    moved half a cell away forces every rebuild."""
    half = jnp.asarray(0.5 * np.sum(system.cell, axis=0), positions.dtype)
    return jax.vmap(lambda p: dataclasses.replace(template, reference_position=p + half).update(p))(positions)


def reallocate_batch(system: MDSystem, positions, old) -> tuple[Any, Any]:
    """(template, lists): one list roomy enough for every member of a batch (>= 1.25x the old
    template), rebuilt for each of them."""
    sizes = [system.neighbor_fn.allocate(p).idx.shape[-1] for p in positions]
    big = reallocate(system, positions[int(np.argmax(sizes))], old)
    return big, rebuild_batch(system, big, positions)


def update_batch(system: MDSystem, nbrs, positions) -> Any:
    """The lists of a batch (replicas, beads) updated to `positions` (batch, N, 3). Under vmap,
    jax-md's rebuild-or-keep `cond` turns into a select that rebuilds every list at every step; here
    the batched update runs only once some member has moved near half the skin (it then keeps or
    rebuilds each list as its own update decides), and otherwise only the exact-edge check runs."""
    near_sq = (0.45 * (system.cutoff - system.r_max)) ** 2  # below jax-md's (skin / 2)^2: never late
    step = jax.vmap(jax.vmap(system.displacement_fn))(positions, nbrs.reference_position.astype(positions.dtype))
    moved = jnp.any(jnp.sum(step**2, axis=-1) > near_sq)  # any(): a NaN member (a frozen failed replica) blocks no one
    check = system.edge_check or (lambda R, nb: nb)
    return jax.lax.cond(moved, lambda: jax.vmap(lambda nb, R: nb.update(R))(nbrs, positions),
                        lambda: jax.vmap(check)(positions, nbrs))
