"""An MD run: a model, a structure and an `MDConfig` (stages; presets in md/presets) -> thermo,
trajectory and a summary, through the engine with the single-system runner."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms
from jax_md import simulate

from legato_jax.data.graph import TypeMap
from legato_jax.errors import ConfigError
from legato_jax.md.config import MDConfig, load_preset
from legato_jax.md.energy import MDSystem, list_kind, model_energy
from legato_jax.md.engine import run_stages
from legato_jax.md.integrate import Stage, StageRunner, Start, allocate, make_integrator, start_stage
from legato_jax.md.observers import Thermo, format_summary
from legato_jax.md.health import MDUnstable
from legato_jax.md.recorder import Recorder
from legato_jax.md.restart import Restart, check_masses, write_checkpoint
from legato_jax.md.systems import check_structure, initial_momenta, masses, with_masses
from legato_jax.model.potential import Potential

@dataclass
class MDResult:
    atoms: Atoms  # final positions and momenta
    thermo: Thermo
    summary: dict
    state: Any = field(repr=False, default=None)


def with_precision(potential: Potential, params, precision: str | None):
    """The model and parameters cast to `precision` (None keeps the model's own)."""
    if precision is None or precision == potential.config.dtype:
        return potential, params
    pot = Potential(dataclasses.replace(potential.config, dtype=precision), potential.stats)
    return pot, jax.tree.map(lambda x: jnp.asarray(x, pot.dtype), params)


def run_md(potential: Potential, params, atoms: Atoms | Restart, cfg: MDConfig, *,
           thermo_path: str | Path | None = None, traj_path: str | Path | None = None,
           checkpoint_path: str | Path | None = None, progress: bool = True, name: str = "model",
           where: str = "structure", on_chunk: Callable | None = None) -> MDResult:
    """Run the stages in order from `atoms` (velocities drawn from `cfg.seed` at `cfg.temperature_K`
    unless the structure carries momenta and the temperature is 0), or continue a `Restart`
    exactly: its positions, momenta, masses and thermostat state. `checkpoint_path` receives the
    full state after every chunk (see `md.restart`)."""
    restart = atoms if isinstance(atoms, Restart) else None
    if restart is not None:
        check_masses(restart, cfg.hydrogen_mass, "hydrogen_mass")
        atoms, where = restart.atoms, restart.source or where
    check_structure(atoms, where)
    species = TypeMap(tuple(potential.config.species)).indices(atoms.numbers, where)
    double = (cfg.precision or potential.config.dtype) == "float64"
    ctx = jax.enable_x64(True) if double else contextlib.nullcontext()
    with ctx:
        potential, params = with_precision(potential, params, cfg.precision)
        npt = any(s.ensemble == "npt" for s in cfg.stages)
        if npt and restart is not None:
            raise ConfigError("NPT runs start fresh for now; --restart continues fixed-volume runs")
        system = model_energy(potential, params, species, atoms.cell.array, cfg.skin, cfg.capacity_multiplier, where,
                              npt=npt)
        return _run(system, potential, atoms, cfg, thermo_path, traj_path, progress, name, on_chunk, restart,
                    checkpoint_path)


def initial_conditions(atoms: Atoms, cfg: MDConfig, dtype, restart: Restart | None = None
                       ) -> tuple[jax.Array, jax.Array]:
    """Masses (n, 1) and momenta (n, 3): a restart's own, or drawn from `cfg.seed` at
    `cfg.temperature_K`, or the structure's momenta (rescaled to the run's masses) when the
    temperature is 0."""
    if restart is not None:
        return (jnp.asarray(atoms.get_masses(), dtype)[:, None], jnp.asarray(atoms.get_momenta(), dtype))
    mass = jnp.asarray(masses(atoms, cfg.hydrogen_mass), dtype)[:, None]
    if cfg.temperature_K == 0 and atoms.has("momenta"):
        momentum = jnp.asarray(atoms.get_momenta(), dtype) * mass / jnp.asarray(atoms.get_masses(), dtype)[:, None]
    else:
        momentum = initial_momenta(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0), mass, cfg.temperature_K)
    return mass, momentum


def _run(system: MDSystem, potential: Potential, atoms: Atoms, cfg: MDConfig, thermo_path, traj_path,
         progress: bool, name: str, on_chunk, restart: Restart | None, checkpoint_path) -> MDResult:
    key = jax.random.PRNGKey(cfg.seed)
    mass, momentum = initial_conditions(atoms, cfg, potential.dtype, restart)
    R = system.wrap(jnp.asarray(atoms.positions, potential.dtype))
    t_alloc = time.perf_counter()
    nbrs = allocate(system, R)
    alloc_s = time.perf_counter() - t_alloc
    recorder = Recorder(cfg.stages, cfg.every, system.n_atoms, system.volume, name=name, progress=progress,
                        thermo_path=thermo_path, traj_path=traj_path, template=with_masses(atoms, mass), traj_every=cfg.traj_every,
                        health=cfg.health, start_temperature_K=cfg.temperature_K)

    def begin(k: int, stage: Stage, carry):
        previous, nbrs = carry
        init_fn, apply_fn = make_integrator(system, stage)
        state = start_stage(init_fn, jax.random.fold_in(key, k + 1), previous.position, mass, previous.momentum, nbrs)
        if k == 0 and restart is not None:
            state = resume_thermostat(state, restart)
        return StageRunner(system, stage, apply_fn, cfg.every, cfg.chunk_steps, frames=traj_path is not None), (state, nbrs)

    step0 = 0 if restart is None else restart.step

    def record(k, stage, first, carry, obs):
        recorder(k, stage, first, carry, obs)
        if checkpoint_path is not None:
            write_checkpoint(checkpoint_path, final_atoms(atoms, carry[0], mass, system), step0 + recorder.steps_done,
                             carry[0])
        if on_chunk is not None:
            on_chunk(carry[0], obs)

    try:
        state, nbrs = run_stages(begin, (Start(R, momentum), nbrs), cfg.stages, cfg.every, cfg.chunk_steps,
                                 on_chunk=record, tally=recorder.tally)
    finally:
        recorder.close()
    final = final_atoms(atoms, state, mass, system)
    summary = recorder.summary(nl_capacity=int(nbrs.idx.shape[-1]), nl_allocate_s=alloc_s,
                               cell_list=getattr(nbrs, "cell_list_fn", None) is not None, neighbour_list=list_kind(nbrs),
                               precision=potential.config.dtype, hydrogen_mass=cfg.hydrogen_mass)
    if restart is not None:
        summary["restarted_from"] = {"source": restart.source, "step": restart.step}
    return MDResult(final, recorder.thermo, summary, state)


def final_atoms(atoms: Atoms, state, mass, system: MDSystem | None = None) -> Atoms:
    """`atoms` at the integrator state's positions and momenta (and box, for NPT), with the
    run's masses."""
    final = atoms.copy()
    if system is not None and system.fractional:
        box = simulate.npt_box(state)
        final.set_cell(np.asarray(box, float).T)
        final.positions = np.asarray(system.real_positions(state.position, box), float)
    else:
        final.positions = np.asarray(state.position, float)
    final.set_masses(np.asarray(mass[:, 0], float))
    final.set_momenta(np.asarray(state.momentum, float), apply_constraint=False)
    return final


def resume_thermostat(state, restart: Restart):
    """The first stage's state with the restart's Nose-Hoover chain or Langevin key, where it
    carries one that fits (same chain length); otherwise the thermostat starts at rest."""
    chain = getattr(state, "chain", None)
    if chain is not None and restart.chain_position is not None and restart.chain_position.shape == chain.position.shape:
        dtype = chain.position.dtype
        state = state.set(chain=chain.set(position=jnp.asarray(restart.chain_position, dtype),
                                          momentum=jnp.asarray(restart.chain_momentum, dtype)))
    if getattr(state, "rng", None) is not None and restart.rng is not None and restart.rng.shape == state.rng.shape:
        state = state.set(rng=jnp.asarray(restart.rng, state.rng.dtype))
    return state


__all__ = ["MDConfig", "MDResult", "MDUnstable", "Restart", "format_summary", "load_preset", "run_md"]
