"""Path-integral MD with a trained model: the ring-polymer integrator (`md/ring_polymer.py`) driven
by the model on all beads in one vmapped call, each bead with its own neighbour list, through the
MD engine (`md/engine.py`) as one more runner: beads are a batched axis like replicas.

A run is an optional equilibration stage (PILE-L) and a production stage (PILE-L, PILE-G or TRPMD);
every `every` steps the estimators are taken (potential, primitive and centroid-virial kinetic
energy, per-atom kinetic energy and radius of gyration, pressure) and, when asked, a frame of the
centroids (positions and momenta, for spectra). Averages and their standard errors (block
averaging) come from the production stage.
"""

from __future__ import annotations

import contextlib
import csv
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms
from ase.io import write

from legato_jax.analysis.timeseries import block_standard_error, mean_and_error
from legato_jax.data.graph import TypeMap
from legato_jax.errors import ConfigError
from legato_jax.md.energy import MDSystem, model_energy
from legato_jax.md.engine import Tally, block_scan, host_blocks, run_stages
from legato_jax.md.health import MDUnstable
from legato_jax.md.image_list import ImageList
from legato_jax.md.integrate import (
    FS,
    KB,
    Stage,
    allocate,
    reallocate_batch,
    rebuild_batch,
    update_batch,
)
from legato_jax.md.observers import EV_A3_TO_GPA
from legato_jax.md.recorder import progress_bar
from legato_jax.md.ring_polymer import (
    RingPolymerState,
    estimators,
    ring_polymer_langevin,
)
from legato_jax.md.run import with_precision
from legato_jax.md.systems import check_structure, initial_momenta, masses
from legato_jax.model.potential import Potential

THERMOSTATS = ("pile-l", "pile-g")
HEALTH = ("stop", "warn", "off")
HOLE_EV_PER_ATOM = 0.1  # the beads' mean potential this far below the classical start: a hole in the model


@dataclass(frozen=True)
class PIMDConfig:
    """A path-integral run: `beads`, temperature, time step, an equilibration stage (PILE-L) and a
    production stage (`thermostat`, or TRPMD: no centroid thermostat and internal-mode friction
    `pile_lambda` w_k, 0.5 by default)."""

    beads: int
    temperature_K: float
    dt_fs: float
    steps: int  # production
    equilibration_steps: int = 0
    thermostat: str = "pile-l"
    trpmd: bool = False
    tau_fs: float = 100.0  # centroid thermostat time
    pile_lambda: float | None = None  # None: 1 (PILE), 0.5 (TRPMD)
    seed: int = 0
    hydrogen_mass: float | None = None
    skin: float = 0.5
    capacity_multiplier: float = 1.25
    every: int = 10
    chunk_steps: int = 1000
    traj_every: int | None = None
    beads_every: int | None = None  # steps between bead frames (default: traj_every)
    precision: str | None = None
    health: str = "stop"  # a hole in the model (see HOLE_EV_PER_ATOM) stops the run, warns, or is not checked

    def __post_init__(self) -> None:
        if self.health not in HEALTH:
            raise ConfigError(f"--health {self.health!r}: choose one of {list(HEALTH)}")
        if self.beads < 1 or self.every < 1:
            raise ConfigError(f"--beads and --log-every must be >= 1, got {self.beads}, {self.every}")
        if not self.temperature_K > 0:
            raise ConfigError(f"--temperature must be > 0 K for path integrals, got {self.temperature_K}")
        if self.thermostat not in THERMOSTATS:
            raise ConfigError(f"--thermostat {self.thermostat!r}: choose one of {list(THERMOSTATS)}")
        if self.steps < 1 or self.equilibration_steps < 0:
            raise ConfigError(f"--steps must be >= 1 and --equilibrate >= 0, got {self.steps}, {self.equilibration_steps}")
        for name, n in (("--steps", self.steps), ("--equilibrate", self.equilibration_steps)):
            if n % self.every:
                raise ConfigError(f"{name} {n} is not a multiple of --log-every {self.every}")
        for option, value in (("--traj-every", self.traj_every), ("--beads-every", self.beads_every)):
            if value is not None and (value < 1 or value % self.every):
                raise ConfigError(f"{option} {value} must be a positive multiple of --log-every {self.every}")
        if self.precision not in (None, "float32", "float64"):
            raise ConfigError(f"--precision {self.precision!r}: choose float32 or float64")

    @property
    def lam(self) -> float:
        return self.pile_lambda if self.pile_lambda is not None else (0.5 if self.trpmd else 1.0)

    def stages(self) -> tuple[tuple[Stage, str], ...]:
        """(stage, thermostat) pairs: equilibration with PILE-L, then production."""
        kind = "none" if self.trpmd else self.thermostat
        prod = (Stage("langevin", self.steps, self.dt_fs, self.temperature_K, self.tau_fs), kind)
        if not self.equilibration_steps:
            return (prod,)
        return ((Stage("langevin", self.equilibration_steps, self.dt_fs, self.temperature_K, self.tau_fs), "pile-l"),
                prod)


class PIObservation(NamedTuple):
    """Estimators at the end of each block (leading axis: blocks)."""

    potential: jax.Array  # eV, bead average
    kinetic_primitive: jax.Array  # eV
    kinetic_virial: jax.Array  # eV
    kinetic_virial_atom: jax.Array  # (N,) eV
    gyration_atom: jax.Array  # (N,) Å
    bead_kinetic: jax.Array  # eV
    pressure: jax.Array  # eV/Å^3: centroid-virial kinetic part plus the beads' mean virial
    rebuilds: jax.Array
    centroid: jax.Array | None = None  # (N, 3) Å, when frames are kept
    centroid_momentum: jax.Array | None = None  # (N, 3), the bead mean: the physical momentum
    beads: jax.Array | None = None  # (P, N, 3) Å, when bead frames are kept


def bead_placement(system: MDSystem, nbrs) -> Callable:
    """How bead positions (kept unwrapped so that rings stay whole) enter the model: folded into
    the cell for minimum-image lists, as they are for the image-shift list (free-space positions)."""
    return (lambda r: r) if isinstance(nbrs, ImageList) else system.wrap


def bead_forces(system: MDSystem, place: Callable) -> Callable:
    """forces(R (P, N, 3), neighbor=stacked lists) -> (P, N, 3): the model on every bead in one call."""
    grad = jax.grad(system.energy_fn)
    return lambda R, neighbor, **kw: -jax.vmap(lambda r, nb: grad(place(r), nb))(R, neighbor)


def make_pimd_chunk(system: MDSystem, place: Callable, apply_fn: Callable, kT: float, every: int, blocks: int,
                    frames: bool, bead_frames: bool = False) -> Callable:
    """jit(state, nbrs, n_active) -> ((state, nbrs), PIObservation) over `blocks` blocks."""

    def step(_, carry):
        state, nbrs, rebuilds = carry
        state = apply_fn(state, neighbor=nbrs)
        new = update_batch(system, nbrs, jax.vmap(place)(state.position))
        rebuilt = jnp.any(new.reference_position != nbrs.reference_position, axis=(1, 2))
        return state, new, rebuilds + jnp.sum(rebuilt.astype(jnp.int32))

    def observe(state: RingPolymerState, nbrs, rebuilds) -> PIObservation:
        energy, stress = jax.vmap(lambda r, nb: system.energy_stress_fn(place(r), nb))(state.position, nbrs)
        est = estimators(state, energy, kT)
        press = 2.0 * est.kinetic_virial / (3.0 * system.volume) - jnp.trace(jnp.mean(stress, axis=0)) / 3.0
        extra = (jnp.mean(state.position, axis=0), jnp.mean(state.momentum, axis=0)) if frames else (None, None)
        return PIObservation(est.potential, est.kinetic_primitive, est.kinetic_virial, est.kinetic_virial_atom,
                             est.gyration_atom, est.bead_kinetic, press, rebuilds, *extra,
                             state.position if bead_frames else None)

    def block(carry):
        s, n, rebuilds = jax.lax.fori_loop(0, every, step, (*carry, jnp.int32(0)))
        return (s, n), observe(s, n, rebuilds)

    scan = block_scan(block, blocks)

    @jax.jit
    def chunk(state, nbrs, n_active):  # the name CompileCounter counts
        return scan((state, nbrs), n_active)

    return chunk


@dataclass
class PIMDRunner:
    """The engine's runner for one ring polymer through one stage; the carry is (state, lists).
    `floor` is the potential energy below which the beads have found a hole in the model: path
    integrals spread light atoms far beyond classical thermal motion, where a model never trained
    may have spurious minima, and zero-point motion can only raise the mean potential energy."""

    system: MDSystem
    chunk_fn: Callable
    template: Any  # the single-bead list whose capacity the beads share
    place: Callable
    floor: float = -float("inf")
    health: str = "stop"
    warnings: list = field(default_factory=list)

    def chunk(self, carry, n_active: int):
        (state, nbrs), obs = self.chunk_fn(*carry, n_active)
        return (state, nbrs), host_blocks(obs, n_active), bool(jnp.any(nbrs.did_buffer_overflow))

    def enlarge(self, carry):
        state, _ = carry
        placed = jax.vmap(self.place)(state.position)
        self.template, nbrs = reallocate_batch(self.system, placed, self.template)
        return state, nbrs

    def accept(self, carry, obs, first_step: int):
        if not np.all(np.isfinite(obs.potential)):
            raise MDUnstable(f"the path-integral run turned non-finite near step {first_step}: lower --dt")
        low = np.flatnonzero(obs.potential < self.floor)
        if self.health != "off" and len(low) and not self.warnings:
            drop = (self.floor - obs.potential[low[0]]) / self.system.n_atoms + HOLE_EV_PER_ATOM
            line = (f"the beads' mean potential energy fell {drop:.2f} eV/atom below the classical start within the "
                    f"chunk from step {first_step}: "
                    "the model has a spurious minimum where the ring polymers reach (outside its training data); "
                    "results past this point are not physical")
            self.warnings.append(line)
            if self.health == "stop":
                raise MDUnstable(f"{line} (--health warn runs on)")
            print(f"legato pimd: warning: {line}", file=sys.stderr, flush=True)
        return carry

    def stopped(self, carry) -> bool:
        return False


@dataclass
class PIMDResult:
    rows: list[dict]  # the thermo table: one row per block
    summary: dict
    state: RingPolymerState | None = None


def species_columns(numbers: np.ndarray) -> dict[str, np.ndarray]:
    """Atom indices of each element, in order of atomic number."""
    from ase.data import chemical_symbols

    return {chemical_symbols[z]: np.flatnonzero(numbers == z) for z in sorted(set(numbers.tolist()))}


def thermo_rows(obs: PIObservation, first_step: int, time0_fs: float, stage_index: int, stage: Stage, every: int,
                groups: dict[str, np.ndarray], beads: int, n_atoms: int) -> list[dict]:
    rows = []
    for b in range(len(obs.potential)):
        row = {"step": first_step + (b + 1) * every, "time_fs": time0_fs + (b + 1) * every * stage.dt_fs,
               "stage": stage_index, "potential_eV": float(obs.potential[b]),
               "kinetic_virial_eV": float(obs.kinetic_virial[b]), "kinetic_primitive_eV": float(obs.kinetic_primitive[b]),
               "bead_temperature_K": float(2 * obs.bead_kinetic[b] / (3 * n_atoms * beads * KB) / beads),
               "pressure_GPa": float(obs.pressure[b] * EV_A3_TO_GPA), "nl_rebuilds": int(obs.rebuilds[b])}
        for sym, idx in groups.items():
            row[f"kinetic_{sym}_eV"] = float(np.mean(obs.kinetic_virial_atom[b][idx]))
            row[f"gyration_{sym}_A"] = float(np.mean(obs.gyration_atom[b][idx]))
        rows.append(row)
    return rows


def summarize(rows: list[dict], stage_index: int, n_atoms: int, groups: dict[str, np.ndarray]) -> dict:
    """Production averages. `_err`: the standard error from the integrated autocorrelation time
    (`_tau_fs`; `_reliable` False when the run holds fewer than 50 such times, so that its error
    is itself uncertain); `_block_err`: from 10 block averages, as earlier versions reported."""
    prod = [r for r in rows if r["stage"] == stage_index]
    keys = ["potential_eV", "kinetic_virial_eV", "kinetic_primitive_eV", "bead_temperature_K", "pressure_GPa"]
    keys += [f"kinetic_{s}_eV" for s in groups] + [f"gyration_{s}_A" for s in groups]
    interval = prod[1]["time_fs"] - prod[0]["time_fs"] if len(prod) > 1 else float("nan")
    out = {}
    for k in keys:
        x = np.array([r[k] for r in prod])
        m = mean_and_error(x)
        out[k], out[k + "_err"], out[k + "_tau_fs"], out[k + "_reliable"] = m.mean, m.error, m.tau * interval, m.reliable
        out[k + "_block_err"] = block_standard_error(x, max(1, len(x) // 10)) if len(x) else float("nan")
    out["kinetic_virial_eV_per_atom"] = out["kinetic_virial_eV"] / n_atoms
    out["potential_eV_per_atom"] = out["potential_eV"] / n_atoms
    return out


def run_pimd(potential: Potential, params, atoms: Atoms, cfg: PIMDConfig, *, thermo_path: str | Path | None = None,
             traj_path: str | Path | None = None, beads_path: str | Path | None = None, progress: bool = False,
             name: str = "model", where: str = "structure") -> PIMDResult:
    """Path-integral MD of `atoms` with the model: every bead starts at the structure's positions
    with momenta drawn at the bead temperature P T (from `cfg.seed`). `traj_path` receives centroid
    frames, `beads_path` every bead's positions (P frames per time: the quantum g(r))."""
    check_structure(atoms, where)
    species = TypeMap(tuple(potential.config.species)).indices(atoms.numbers, where)
    double = (cfg.precision or potential.config.dtype) == "float64"
    with jax.enable_x64(True) if double else contextlib.nullcontext():
        potential, params = with_precision(potential, params, cfg.precision)
        system = model_energy(potential, params, species, atoms.cell.array, cfg.skin, cfg.capacity_multiplier, where)
        return _run(system, potential, atoms, cfg, thermo_path, traj_path, beads_path, progress, name)


def _run(system: MDSystem, potential: Potential, atoms: Atoms, cfg: PIMDConfig, thermo_path, traj_path, beads_path,
         progress, name) -> PIMDResult:
    dtype = potential.dtype
    P, n = cfg.beads, system.n_atoms
    kT = KB * cfg.temperature_K
    mass = jnp.asarray(masses(atoms, cfg.hydrogen_mass), dtype)[:, None]
    R = system.wrap(jnp.asarray(atoms.positions, dtype))  # every bead starts here, so the rings are whole
    key = jax.random.PRNGKey(cfg.seed)
    nbrs0 = allocate(system, R)
    place = bead_placement(system, nbrs0)
    beads = jnp.broadcast_to(R, (P, n, 3))
    nbrs = rebuild_batch(system, nbrs0, jax.vmap(place)(beads))
    momenta = jax.vmap(lambda k: initial_momenta(k, mass, P * cfg.temperature_K))(jax.random.split(key, P))
    force = bead_forces(system, place)
    groups = species_columns(atoms.numbers)
    stages = cfg.stages()
    frames, bead_frames = traj_path is not None, beads_path is not None
    blocks = max(1, cfg.chunk_steps // cfg.every)
    start_energy = float(system.energy_fn(place(R), nbrs0))
    runner = PIMDRunner(system, None, nbrs0, place, start_energy - HOLE_EV_PER_ATOM * n, cfg.health)
    tally = Tally()
    rows: list[dict] = []
    bar = progress_bar(sum(s.steps for s, _ in stages), f"pimd {name}", progress)
    traj_every = cfg.traj_every or cfg.every
    beads_every = cfg.beads_every or traj_every
    handle = _thermo_writer(thermo_path)
    for path in (traj_path, beads_path):
        if path is not None:
            Path(path).unlink(missing_ok=True)

    def begin(k: int, stage: Stage, carry):
        state, nbrs = carry
        _, thermostat = stages[k]
        lam = cfg.lam if k == len(stages) - 1 else 1.0  # equilibration: PILE-L at critical damping
        init_fn, apply_fn = ring_polymer_langevin(force, stage.dt_fs * FS, kT, P, tau=stage.tau_fs * FS,
                                                  thermostat=thermostat, pile_lambda=lam)
        start = init_fn(jax.random.fold_in(key, k + 1), state.position, mass, momenta=state.momentum, neighbor=nbrs)
        runner.chunk_fn = make_pimd_chunk(system, place, apply_fn, kT, cfg.every, blocks, frames, bead_frames)
        return runner, (start, nbrs)

    starts = np.cumsum([0] + [s.steps for s, _ in stages])

    def record(k, stage, first, carry, obs):
        time0 = first * stage.dt_fs
        new = thermo_rows(obs, first, time0, k, stage, cfg.every, groups, P, n)
        rows.extend(new)
        if handle is not None:
            handle(new)
        if k == len(stages) - 1:
            _write_frames(traj_path, beads_path, atoms, mass, obs, new, first - starts[k], cfg.every, traj_every,
                          beads_every)
        bar.update(len(new) * cfg.every)
        clock.append((first + len(new) * cfg.every, tally.wall_s, tally.compiles.count))

    clock: list[tuple[int, float, int]] = []  # (steps done, wall s, compiles so far) after each chunk
    start = RingPolymerState(beads, momenta, jnp.zeros_like(beads), mass, key)
    try:
        state, nbrs = run_stages(begin, (start, nbrs), [s for s, _ in stages], cfg.every, cfg.chunk_steps,
                                 on_chunk=record, tally=tally)
    finally:
        bar.close()
        if handle is not None:
            handle(None)
    steps = int(starts[-1])
    # time per step of the chunks that compiled nothing (not a stage's first, not one re-run with a larger list)
    warm = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(clock, clock[1:]) if b[2] == a[2]]
    step_s = sum(t for _, t in warm) / sum(n for n, _ in warm) if warm else tally.wall_s / steps
    summary = {"model": name, "n_atoms": n, "beads": P, "temperature_K": cfg.temperature_K, "dt_fs": cfg.dt_fs,
               "steps": steps, "production_steps": cfg.steps, "thermostat": "trpmd" if cfg.trpmd else cfg.thermostat,
               "pile_lambda": cfg.lam, "wall_s": tally.wall_s, "step_s": step_s,
               "bead_atom_steps_per_s": P * n / step_s, "nl_reallocations": tally.reallocations,
               "compiles": tally.compiles.count, "precision": potential.config.dtype,
               "hydrogen_mass": cfg.hydrogen_mass, "warnings": list(runner.warnings), "config": asdict(cfg)}
    summary.update(summarize(rows, len(stages) - 1, n, groups))
    return PIMDResult(rows, summary, state)


def _thermo_writer(path) -> Callable | None:
    """add(rows) appends rows to the thermo CSV (header from the first row); add(None) closes it."""
    if path is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w", newline="")
    writer: list = []

    def add(rows):
        if rows is None:
            fh.close()
            return
        if not writer:
            writer.append(csv.DictWriter(fh, fieldnames=list(rows[0])))
            writer[0].writeheader()
        writer[0].writerows(rows)
        fh.flush()

    return add


def _write_frames(path, beads_path, atoms: Atoms, mass, obs: PIObservation, rows: list[dict], first: int, every: int,
                  traj_every: int, beads_every: int) -> None:
    """Every `traj_every` production steps a centroid frame (positions, momenta with the run's
    masses) to `path`; every `beads_every` steps each bead's positions to `beads_path`."""
    centroids, beads = [], []
    for b, row in enumerate(rows):
        step = first + (b + 1) * every
        info = {"step": row["step"], "time_fs": row["time_fs"]}
        if path is not None and step % traj_every == 0:
            frame = Atoms(atoms.numbers, np.asarray(obs.centroid[b], float), cell=atoms.cell, pbc=atoms.pbc)
            frame.set_masses(np.asarray(mass[:, 0], float))
            frame.set_momenta(np.asarray(obs.centroid_momentum[b], float), apply_constraint=False)
            frame.info = dict(info, centroid=True)
            centroids.append(frame)
        if beads_path is not None and step % beads_every == 0:
            for j, q in enumerate(np.asarray(obs.beads[b], float)):
                frame = Atoms(atoms.numbers, q, cell=atoms.cell, pbc=atoms.pbc)
                frame.info = dict(info, bead=j)
                beads.append(frame)
    for out, items in ((path, centroids), (beads_path, beads)):
        if out is not None and items:
            write(out, items, format="extxyz", append=True)


def format_pimd_summary(s: dict) -> str:
    lines = [f"{s['model']}: {s['n_atoms']} atoms x {s['beads']} beads, {s['thermostat']} at {s['temperature_K']:g} K, "
             f"{s['steps']} steps of {s['dt_fs']} fs in {s['wall_s']:.1f} s ({s['step_s'] * 1e3:.1f} ms/step)",
             f"  production: E_pot {s['potential_eV_per_atom']:.5f} eV/atom, quantum kinetic (centroid virial) "
             f"{s['kinetic_virial_eV']:.4f} ± {s['kinetic_virial_eV_err']:.4f} eV (primitive "
             f"{s['kinetic_primitive_eV']:.4f} ± {s['kinetic_primitive_eV_err']:.4f}), bead T "
             f"{s['bead_temperature_K']:.1f} K, P {s['pressure_GPa']:.3f} GPa"]
    for k in s:
        if k.startswith("kinetic_") and k.endswith("_eV") and k not in ("kinetic_virial_eV", "kinetic_primitive_eV"):
            sym = k.split("_")[1]
            short = "" if s[k + "_reliable"] else ", run < 50 correlation times: error uncertain"
            lines.append(f"  {sym}: kinetic {s[k] * 1e3:.2f} ± {s[k + '_err'] * 1e3:.2f} meV/atom "
                         f"(correlation time {s[k + '_tau_fs']:.0f} fs{short}; classical "
                         f"{1.5 * KB * s['temperature_K'] * 1e3:.2f}), ring radius of gyration "
                         f"{s[f'gyration_{sym}_A']:.4f} Å")
    return "\n".join(lines)


