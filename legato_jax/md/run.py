"""An MD run: a model, a structure and a list of stages (presets in configs/md) -> thermo,
trajectory and a summary."""

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

from legato_jax.data.graph import TypeMap
from legato_jax.errors import ConfigError, LegatoError
from legato_jax.md.energy import MDSystem, model_energy
from legato_jax.md.integrate import Stage, StageRunner, allocate, make_integrator, start_stage
from legato_jax.md.observers import Thermo, Trajectory, format_summary, stage_summary
from legato_jax.md.systems import check_structure, initial_momenta, masses
from legato_jax.model.potential import Potential
from legato_jax.yaml_io import read_mapping

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "md"


class MDUnstable(LegatoError):
    """The dynamics produced a non-finite energy."""


@dataclass(frozen=True)
class MDConfig:
    """Everything about a run except the model and the structure."""

    stages: tuple[Stage, ...]
    temperature_K: float  # initial velocities
    seed: int = 0
    hydrogen_mass: float | None = None  # amu; None keeps 1.008
    skin: float = 0.5  # Å, jax-md dr_threshold
    capacity_multiplier: float = 1.25
    every: int = 10  # steps between thermo rows
    chunk_steps: int = 1000  # steps per compiled scan
    traj_every: int | None = None
    precision: str | None = None  # None: the model's dtype; "float64" runs the model in double

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError("an MD run needs at least one stage")
        if self.temperature_K < 0:
            raise ConfigError(f"--temperature must be >= 0 K, got {self.temperature_K}")
        if self.precision not in (None, "float32", "float64"):
            raise ConfigError(f"--precision {self.precision!r}: choose float32 or float64")
        for s in self.stages:
            if s.steps % self.every:
                raise ConfigError(f"stage of {s.steps} {s.ensemble} steps is not a multiple of the "
                                  f"thermo interval --log-every {self.every}")
        if self.traj_every is not None and (self.traj_every < 1 or self.traj_every % self.every):
            raise ConfigError(f"--traj-every {self.traj_every} must be a positive multiple of --log-every {self.every}")

    @property
    def steps(self) -> int:
        return sum(s.steps for s in self.stages)


PRESET_KEYS = {"description", "temperature", "dt", "hydrogen_mass", "steps", "stages"}
STAGE_KEYS = {"ensemble", "steps", "dt", "tau", "temperature"}


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return path
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"--preset {name!r}: no such preset; known presets are {known} (or give a YAML path)")
    return path


def load_preset(name: str, steps: int | None = None, temperature: float | None = None) -> dict:
    """A preset as MDConfig keyword arguments. `steps` is the total: stages with `steps: null`
    take what the fixed stages leave."""
    path = preset_path(name)
    raw = read_mapping(path, "MD preset")
    _check_keys(raw, PRESET_KEYS, str(path))
    if not isinstance(raw.get("stages"), list) or not raw["stages"]:
        raise ConfigError(f"{path}: 'stages' must be a non-empty list of {{ensemble, steps, dt, tau, temperature}}")
    total = int(steps if steps is not None else raw.get("steps", 0))
    temp = float(temperature if temperature is not None else raw["temperature"])
    fixed = sum(int(s["steps"]) for s in raw["stages"] if s.get("steps") is not None)
    free = [s for s in raw["stages"] if s.get("steps") is None]
    if total < fixed or (free and total == fixed and len(raw["stages"]) > 1):
        raise ConfigError(f"{path}: the preset's fixed stages take {fixed} steps; --steps must be larger than that")
    stages = []
    for k, s in enumerate(raw["stages"]):
        _check_keys(s, STAGE_KEYS, f"{path} stage {k}")
        n = int(s["steps"]) if s.get("steps") is not None else (total - fixed) // max(len(free), 1)
        dt = float(s.get("dt", raw.get("dt", 1.0)))
        stages.append(Stage(s["ensemble"], n, dt, float(s.get("temperature", temp)), float(s.get("tau", 100.0))))
    return {"stages": tuple(stages), "temperature_K": temp, "hydrogen_mass": raw.get("hydrogen_mass")}


def _check_keys(data: dict, valid: set, where: str) -> None:
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(valid)}")


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


def run_md(potential: Potential, params, atoms: Atoms, cfg: MDConfig, *, thermo_path: str | Path | None = None,
           traj_path: str | Path | None = None, progress: bool = True, name: str = "model",
           where: str = "structure", on_chunk: Callable | None = None) -> MDResult:
    """Run the stages in order from `atoms` (velocities drawn from `cfg.seed` at `cfg.temperature_K`
    unless the structure carries momenta and the temperature is 0)."""
    check_structure(atoms, where)
    species = TypeMap(tuple(potential.config.species)).indices(atoms.numbers, where)
    double = (cfg.precision or potential.config.dtype) == "float64"
    ctx = jax.enable_x64(True) if double else contextlib.nullcontext()
    with ctx:
        potential, params = with_precision(potential, params, cfg.precision)
        system = model_energy(potential, params, species, atoms.cell.array, cfg.skin, cfg.capacity_multiplier, where)
        return _run(system, potential, atoms, cfg, thermo_path, traj_path, progress, name, on_chunk)


def initial_conditions(atoms: Atoms, cfg: MDConfig, dtype) -> tuple[jax.Array, jax.Array]:
    """Masses (n, 1) and momenta (n, 3): drawn from `cfg.seed` at `cfg.temperature_K`, or the
    structure's own momenta (rescaled to the run's masses) when the temperature is 0."""
    mass = jnp.asarray(masses(atoms, cfg.hydrogen_mass), dtype)[:, None]
    if cfg.temperature_K == 0 and atoms.has("momenta"):
        momentum = jnp.asarray(atoms.get_momenta(), dtype) * mass / jnp.asarray(atoms.get_masses(), dtype)[:, None]
    else:
        momentum = initial_momenta(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0), mass, cfg.temperature_K)
    return mass, momentum


def _run(system: MDSystem, potential: Potential, atoms: Atoms, cfg: MDConfig, thermo_path, traj_path,
         progress: bool, name: str, on_chunk) -> MDResult:
    key = jax.random.PRNGKey(cfg.seed)
    mass, momentum = initial_conditions(atoms, cfg, potential.dtype)
    R = system.wrap(jnp.asarray(atoms.positions, potential.dtype))
    t_alloc = time.perf_counter()
    nbrs = allocate(system, R)
    alloc_s = time.perf_counter() - t_alloc
    thermo = Thermo(system.n_atoms, system.volume, thermo_path)
    traj = Trajectory(traj_path, atoms, cfg.traj_every or cfg.every) if traj_path else None
    bar = _progress(cfg.steps, system.n_atoms, name, progress)
    step0, time0, rebuilds, reallocs, compiles = 0, 0.0, 0, 0, 0
    start = time.perf_counter()
    state = None
    try:
        for k, stage in enumerate(cfg.stages):
            init_fn, apply_fn = make_integrator(system, stage)
            state = start_stage(init_fn, jax.random.fold_in(key, k + 1), R, mass, momentum, nbrs)
            runner = StageRunner(system, stage, apply_fn, cfg.every, cfg.chunk_steps, frames=traj is not None)
            for first, state, nbrs, obs in runner.chunks(state, nbrs, stage.steps):
                rows = thermo.add(step0 + first, time0 + first * stage.dt_fs, k, stage, cfg.every, obs)
                if traj is not None:
                    traj.add(step0 + first, cfg.every, obs, atoms.cell.array)
                rebuilds += int(obs.rebuilds.sum())
                bar.update(len(rows) * cfg.every)
                elapsed = time.perf_counter() - start
                bar.set_postfix_str(f"T {rows[-1][4]:.0f} K, {system.n_atoms * bar.n / elapsed:.3g} atom-steps/s")
                bad = ~np.isfinite(obs.potential) | ~np.isfinite(obs.kinetic)
                if bad.any():
                    step = step0 + first + (int(np.argmax(bad)) + 1) * cfg.every
                    raise MDUnstable(f"{name}: MD became unstable at step {step} (non-finite energy); "
                                     f"lower --dt or check the model on this structure")
                if on_chunk is not None:
                    on_chunk(state, obs)
            R, momentum = state.position, state.momentum
            reallocs += runner.reallocations
            compiles += runner.compiles
            step0 += stage.steps
            time0 += stage.steps * stage.dt_fs
    finally:
        bar.close()
        thermo.close()
    wall = time.perf_counter() - start
    final = atoms.copy()
    final.positions = np.asarray(R, float)
    final.set_masses(np.asarray(mass[:, 0], float))
    final.set_momenta(np.asarray(momentum, float), apply_constraint=False)
    summary = {
        "model": name, "n_atoms": system.n_atoms, "steps": cfg.steps, "time_ps": time0 / 1000.0,
        "wall_s": wall, "atom_steps_per_s": system.n_atoms * cfg.steps / wall if wall > 0 else float("nan"),
        "nl_rebuilds": rebuilds, "nl_reallocations": reallocs, "nl_capacity": int(nbrs.idx.shape[-1]),
        "nl_allocate_s": alloc_s, "cell_list": nbrs.cell_list_fn is not None, "compiles": compiles,
        "precision": potential.config.dtype, "hydrogen_mass": cfg.hydrogen_mass,
        "stages": [stage_summary(thermo, k, s) for k, s in enumerate(cfg.stages)],
    }
    return MDResult(final, thermo, summary, state)


def _progress(total: int, n_atoms: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"md {name}", unit="step", disable=not enabled, unit_scale=False,
                dynamic_ncols=True, mininterval=1.0, postfix="", bar_format=(
                    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, "
                    "{rate_fmt}{postfix}]"))


__all__ = ["MDConfig", "MDResult", "MDUnstable", "format_summary", "load_preset", "run_md"]
