"""One MD stage on one domain, written once for any halo backend: jax-md's velocity Verlet on the
domain's own atoms, Nose-Hoover chains driven by the all-reduced kinetic energy, migration and
list rebuilds when some atom anywhere has moved half a skin, and thermo observations every
`every` steps. A chunk is one compiled program: run inside shard_map (mesh) or jitted per MPI
rank."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax_md import simulate, space
from jax_md.util import f32

from legato_jax.errors import ConfigError
from legato_jax.md.engine import block_scan
from legato_jax.md.integrate import FS, KB, Stage, moving_dof, nose_hoover_invariant
from legato_jax.model.potential import Potential
from legato_jax.parallel.domains import DomainGrid
from legato_jax.parallel.energy import domain_energy_fn
from legato_jax.parallel.halo import HaloBackend
from legato_jax.parallel.lists import Capacities, Lists, build_lists, migrate

# jax-md's nvt_nose_hoover defaults, so that one domain and many give the same trajectory
CHAIN_LENGTH, CHAIN_STEPS, SY_STEPS = 5, 2, 3


class Rows(NamedTuple):
    """A domain's padded atom rows, carried from chunk to chunk. Empty rows: mask False, id -1,
    zero momentum, mass 1."""

    position: jax.Array  # (C, 3)
    momentum: jax.Array  # (C, 3)
    mass: jax.Array  # (C,)
    species: jax.Array  # (C,)
    ids: jax.Array  # (C,) global atom index
    mask: jax.Array  # (C,)


class DomainState(NamedTuple):
    md: simulate.NVEState | simulate.NVTNoseHooverState
    species: jax.Array
    ids: jax.Array
    mask: jax.Array
    lists: Lists


class DomainObservation(NamedTuple):
    """Global thermo at the end of each block (leading axis: blocks), and optional frames of this
    domain's rows."""

    potential: jax.Array
    kinetic: jax.Array
    conserved: jax.Array
    stress: jax.Array  # (3, 3) eV/Å^3, ASE sign, potential part
    rebuilds: jax.Array
    frames: tuple | None  # (position, momentum, force, ids) per block


def check_ensemble(stage: Stage) -> None:
    """Domains run NVE and Nose-Hoover stages (Langevin noise per domain is not wired)."""
    if stage.ensemble not in ("nve", "nose-hoover"):
        raise ConfigError(f"--domains runs nve and nose-hoover stages; this run has a {stage.ensemble} stage "
                          f"(use a Nose-Hoover preset or run it on one domain)")


def thermostat(stage: Stage):
    """jax-md's Nose-Hoover chain functions for a stage, with nvt_nose_hoover's settings."""
    dt, tau = f32(stage.dt_fs * FS), f32(stage.tau_fs * FS)
    return simulate.nose_hoover_chain(dt, CHAIN_LENGTH, CHAIN_STEPS, SY_STEPS, tau)


def start_chain(stage: Stage, n_atoms: int, kinetic: float, dtype):
    """The chain at rest at the start of a Nose-Hoover stage (None for NVE); `kinetic` is global."""
    if stage.ensemble == "nve":
        return None
    return thermostat(stage).initialize(moving_dof(n_atoms), jnp.asarray(kinetic, dtype), KB * stage.temperature_K)


def make_domain_chunk(potential: Potential, params, grid: DomainGrid, caps: Capacities, skin: float, stage: Stage,
                      backend: HaloBackend, n_atoms: int, every: int, blocks: int, frames: bool = False,
                      heartbeat: Callable[[], None] | None = None) -> Callable:
    """chunk(rows, chain, n_active) -> (rows, chain, DomainObservation, overflow): `blocks` blocks of
    `every` steps of which the first `n_active` run. Lists are built at the chunk's start;
    `heartbeat` is called on the host after every block (a watchdog's sign of progress)."""
    check_ensemble(stage)
    energy = domain_energy_fn(potential, params, backend, caps.model_edges)
    cutoff = potential.config.r_max + skin
    dt, kT, dof = f32(stage.dt_fs * FS), KB * stage.temperature_K, moving_dof(n_atoms)
    _, shift = space.free()

    def force(R, lists, mask):
        """Forces and the exact-edge buffer's overflow."""
        grad, overflow = jax.grad(energy, has_aux=True)(R, lists, mask)
        return -grad, overflow

    def local_kinetic(md):
        return 0.5 * jnp.sum(md.momentum**2 / md.mass)

    def verlet(md, lists, mask):
        """jax-md's velocity Verlet (simulate.velocity_verlet) from its own steps, so that the
        force call's overflow flag comes out with the state."""
        md = simulate.momentum_step(md, f32(dt / 2))
        md = simulate.position_step(md, shift, dt)
        f, overflow = force(md.position, lists, mask)
        return simulate.momentum_step(md.set(force=f), f32(dt / 2)), overflow

    if stage.ensemble == "nve":
        apply_md = verlet
    else:
        chain_fns = thermostat(stage)

        def apply_md(md, lists, mask):
            chain = chain_fns.update_mass(md.chain, kT)
            p, chain = chain_fns.half_step(md.momentum, chain, kT)
            md, overflow = verlet(md.set(momentum=p), lists, mask)
            chain = chain.set(kinetic_energy=backend.sum(local_kinetic(md)))
            p, chain = chain_fns.half_step(md.momentum, chain, kT)
            return md.set(momentum=p, chain=chain), overflow

    def start(rows: Rows, chain) -> DomainState:
        lists = build_lists(backend, grid, caps, cutoff, rows.position, rows.species, rows.mask)
        f, overflow = force(rows.position, lists, rows.mask)
        lists = lists._replace(overflow=lists.overflow | overflow)
        args = (rows.position, rows.momentum, f, rows.mass[:, None])
        md = simulate.NVEState(*args) if chain is None else simulate.NVTNoseHooverState(*args, chain)
        return DomainState(md, rows.species, rows.ids, rows.mask, lists)

    def rebuild(state: DomainState) -> DomainState:
        md = state.md
        moving = {"position": md.position, "momentum": md.momentum, "force": md.force, "mass": md.mass,
                  "species": state.species, "ids": state.ids}
        moved, mask, overflow = migrate(backend, grid, caps, moving, state.mask)
        md = md.set(position=moved["position"], momentum=moved["momentum"], force=moved["force"],
                    mass=jnp.where(mask[:, None], moved["mass"], 1.0))
        lists = build_lists(backend, grid, caps, cutoff, moved["position"], moved["species"], mask)
        lists = lists._replace(overflow=lists.overflow | overflow | state.lists.overflow)
        return DomainState(md, moved["species"], jnp.where(mask, moved["ids"], -1), mask, lists)

    def step(_, carry):
        state, rebuilds = carry
        md = state.md
        moved = jnp.max(jnp.where(state.mask, jnp.sum((md.position - state.lists.reference) ** 2, -1), 0.0))
        need = backend.sum((moved > (0.5 * skin) ** 2).astype(jnp.int32)) > 0
        state = lax.cond(need, rebuild, lambda s: s, state)
        md, overflow = apply_md(state.md, state.lists, state.mask)
        lists = state.lists._replace(overflow=state.lists.overflow | overflow)
        return state._replace(md=md, lists=lists), rebuilds + need.astype(jnp.int32)

    def observe(state: DomainState, rebuilds) -> DomainObservation:
        md = state.md
        zero = backend.per_domain(jnp.zeros((3, 3), md.position.dtype))
        (pe, _), d_strain = jax.value_and_grad(energy, argnums=3, has_aux=True)(md.position, state.lists, state.mask, zero)
        pe, d_strain, ke = backend.sum(pe), backend.sum(d_strain), backend.sum(local_kinetic(md))
        stress = 0.5 * (d_strain + d_strain.T) / float(grid.box[0] * grid.box[1] * grid.box[2])
        conserved = pe + ke if stage.ensemble == "nve" else nose_hoover_invariant(pe, ke, md.chain, kT, dof)
        shot = (md.position, md.momentum, md.force, state.ids) if frames else None
        return DomainObservation(pe, ke, conserved, stress, rebuilds, shot)

    def block(s):
        s, rebuilds = lax.fori_loop(0, every, step, (s, jnp.int32(0)))
        obs = observe(s, rebuilds)
        if heartbeat is not None:
            jax.debug.callback(lambda _: heartbeat(), obs.potential)
        return s, obs

    scan = block_scan(block, blocks)

    def chunk(rows: Rows, chain, n_active):
        state = start(rows, chain)
        state, obs = scan(state, n_active)
        md = state.md
        out = Rows(md.position, md.momentum, md.mass[:, 0], state.species, state.ids, state.mask)
        overflow = backend.sum(state.lists.overflow.astype(jnp.int32)) > 0
        return out, (md.chain if chain is not None else None), obs, overflow

    return chunk
