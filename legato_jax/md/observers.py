"""What an MD run reports: a thermo table (CSV), extxyz frames, and a summary of the run."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from legato_jax.data.ammonia import AMU_PER_A3_TO_G_PER_CM3
from legato_jax.md.integrate import Observation, Stage, pressure, temperature

EV_A3_TO_GPA = 160.21766208
THERMO_COLUMNS = ("step", "time_fs", "stage", "ensemble", "temperature_K", "kinetic_eV", "potential_eV",
                  "total_eV", "conserved_eV", "pressure_eV_A3", "nl_rebuilds", "volume_A3", "density_g_cm3")


@dataclass
class Thermo:
    """The thermo table of a run, kept in memory and optionally streamed to CSV."""

    n_atoms: int
    volume: float  # Å^3, where the observations carry none (fixed-volume runs)
    path: Path | None = None
    rows: list = field(default_factory=list)
    mass_amu: float | None = None  # of the system, for the density

    def __post_init__(self) -> None:
        self._fh = None
        if self.path is not None:
            self.path = Path(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", newline="")
            self._csv = csv.writer(self._fh)
            self._csv.writerow(THERMO_COLUMNS)

    def add(self, first_step: int, time0_fs: float, stage_index: int, stage: Stage, every: int,
            obs: Observation) -> list[tuple]:
        ke, pe = obs.kinetic.astype(float), obs.potential.astype(float)
        temp = temperature(ke, self.n_atoms)
        volume = np.broadcast_to(self.volume if obs.volume is None else obs.volume.astype(float), ke.shape)
        press = np.asarray(pressure(ke, obs.stress.astype(float), volume))
        density = (np.full(ke.shape, np.nan) if self.mass_amu is None
                   else self.mass_amu / volume * AMU_PER_A3_TO_G_PER_CM3)
        new = []
        for b in range(len(ke)):
            step = first_step + (b + 1) * every
            new.append((step, time0_fs + (b + 1) * every * stage.dt_fs, stage_index, stage.ensemble,
                        float(temp[b]), float(ke[b]), float(pe[b]), float(ke[b] + pe[b]),
                        float(obs.conserved[b]), float(press[b]), int(obs.rebuilds[b]), float(volume[b]),
                        float(density[b])))
        self.rows.extend(new)
        if self._fh is not None:
            self._csv.writerows(new)
            self._fh.flush()
        return new

    def column(self, name: str) -> np.ndarray:
        k = THERMO_COLUMNS.index(name)
        return np.array([r[k] for r in self.rows])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass
class Trajectory:
    """Frames every `every` steps to extxyz: positions, momenta (ASE units), energy, forces, and
    the step and simulated time (fs) in each frame's info."""

    path: Path
    template: Atoms
    every: int

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self.count = 0

    def add(self, first_step: int, block_every: int, obs: Observation, cell: np.ndarray, time0_fs: float = 0.0,
            dt_fs: float = 0.0) -> None:
        for b in range(len(obs.potential)):
            step = first_step + (b + 1) * block_every
            if step % self.every:
                continue
            atoms = self.template.copy()
            if obs.volume is not None:  # an NPT box scales isotropically
                cell = self.template.cell.array * (float(obs.volume[b]) / self.template.get_volume()) ** (1 / 3)
            atoms.set_cell(cell)
            atoms.positions = np.asarray(obs.position[b], float)
            # jax-md's metal time unit is ASE's time unit, so momenta carry over unchanged
            atoms.set_momenta(np.asarray(obs.momentum[b], float), apply_constraint=False)
            atoms.info = {"step": step, "time_fs": time0_fs + (b + 1) * block_every * dt_fs}
            atoms.calc = SinglePointCalculator(atoms, energy=float(obs.potential[b]),
                                               forces=np.asarray(obs.force[b], float))
            write(self.path, atoms, format="extxyz", append=True)
            self.count += 1


def drift_per_atom_ps(time_fs: np.ndarray, energy: np.ndarray, n_atoms: int) -> float:
    """Least-squares slope of an energy series in eV per atom per ps."""
    if len(time_fs) < 2:
        return float("nan")
    slope = np.polyfit(np.asarray(time_fs) / 1000.0, np.asarray(energy), 1)[0]
    return float(slope / n_atoms)


def stage_summary(thermo: Thermo, stage_index: int, stage: Stage) -> dict:
    """Means and fluctuations of one stage and the drift of its conserved quantity."""
    sel = thermo.column("stage") == stage_index
    t = thermo.column("time_fs")[sel]
    out = {"ensemble": stage.ensemble, "steps": stage.steps, "dt_fs": stage.dt_fs}
    if stage.ensemble != "nve":
        out["target_K"] = stage.temperature_K
    if not sel.any():
        return out
    temp, cons = thermo.column("temperature_K")[sel], thermo.column("conserved_eV")[sel]
    out.update({
        "temperature_K": float(np.mean(temp)), "temperature_std_K": float(np.std(temp)),
        "potential_eV_per_atom": float(np.mean(thermo.column("potential_eV")[sel]) / thermo.n_atoms),
        "pressure_GPa": float(np.mean(thermo.column("pressure_eV_A3")[sel]) * EV_A3_TO_GPA),
        "pressure_std_GPa": float(np.std(thermo.column("pressure_eV_A3")[sel]) * EV_A3_TO_GPA),
    })
    if stage.ensemble == "npt":
        dens = thermo.column("density_g_cm3")[sel]
        out.update({"target_bar": stage.pressure_bar, "pressure_bar": out["pressure_GPa"] * 1e4,
                    "volume_A3": float(np.mean(thermo.column("volume_A3")[sel])),
                    "density_g_cm3": float(np.mean(dens)), "density_std_g_cm3": float(np.std(dens))})
    if stage.ensemble != "langevin":  # npt: jax-md's NPT invariant
        out["conserved_drift_eV_per_atom_ps"] = drift_per_atom_ps(t, cons, thermo.n_atoms)
        out["conserved_max_dev_eV_per_atom"] = float(np.ptp(cons) / thermo.n_atoms)
    return out


def format_summary(summary: dict) -> str:
    """The summary as a few readable lines."""
    lines = [f"{summary['model']}: {summary['n_atoms']} atoms, {summary['steps']} steps "
             f"({summary['time_ps']:.3f} ps) in {summary['wall_s']:.1f} s, "
             f"{summary['atom_steps_per_s']:.3g} atom-steps/s; neighbour list: {summary['nl_rebuilds']} rebuilds, "
             f"{summary['nl_reallocations']} reallocations, " + (
                 f"{summary['domains']} domains ({summary['backend']})" if "domains" in summary
                 else summary.get("neighbour_list", f"cell list {'on' if summary['cell_list'] else 'off'}"))]
    for k, s in enumerate(summary["stages"]):
        if "temperature_K" not in s:
            continue
        line = (f"  stage {k} {s['ensemble']:<11} dt {s['dt_fs']} fs: T {s['temperature_K']:.1f} ± "
                f"{s['temperature_std_K']:.1f} K")
        if "target_K" in s:
            line += f" (target {s['target_K']:.0f})"
        line += f", E_pot {s['potential_eV_per_atom']:.5f} eV/atom, P {s['pressure_GPa']:.3f} GPa"
        if "density_g_cm3" in s:
            line += (f" (target {s['target_bar']:g} bar), density {s['density_g_cm3']:.4f} ± "
                     f"{s['density_std_g_cm3']:.4f} g/cm^3")
        if "conserved_drift_eV_per_atom_ps" in s:
            name = "E_total" if s["ensemble"] == "nve" else "NH invariant"
            line += f", {name} drift {s['conserved_drift_eV_per_atom_ps']:.2e} eV/atom/ps"
        lines.append(line)
    return "\n".join(lines)
