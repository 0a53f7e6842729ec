"""What every MD run reports as it goes, the same for one system, replicas and domains: a
progress bar, the non-finite check, the thermo table, trajectory frames and the summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import jax
import numpy as np
from ase import Atoms

from legato_jax.md.engine import Tally
from legato_jax.md.health import HealthLimits, HealthWatch
from legato_jax.md.integrate import Observation, Stage, temperature
from legato_jax.md.observers import Thermo, Trajectory, stage_summary


def progress_bar(total: int, name: str, enabled: bool):
    """A tqdm bar over steps (disabled when not `enabled`)."""
    from tqdm import tqdm  # plain text, also in notebooks (tqdm.auto warns without ipywidgets)

    return tqdm(total=total, desc=f"md {name}", unit="step", disable=not enabled, unit_scale=False,
                dynamic_ncols=True, mininterval=1.0, postfix="", bar_format=(
                    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, "
                    "{rate_fmt}{postfix}]"))


class Recorder:
    """Records the accepted chunks of a run: call it as the engine's `on_chunk`. Each chunk is
    checked by the health watch first; only its good blocks are written, then a stop is raised.
    `root` False (an MPI rank other than 0) keeps the checks and counts but writes and shows nothing."""

    def __init__(self, stages: Sequence[Stage], every: int, n_atoms: int, volume: float, *, name: str = "model",
                 progress: bool = True, thermo_path: str | Path | None = None, traj_path: str | Path | None = None,
                 template: Atoms | None = None, traj_every: int | None = None, root: bool = True,
                 thermo: bool = True, health: HealthLimits = HealthLimits(mode="off"),
                 start_temperature_K: float = 0.0) -> None:
        self.stages, self.every, self.n_atoms, self.name = tuple(stages), every, n_atoms, name
        self.starts = np.cumsum([0] + [s.steps for s in self.stages])
        self.start_times = np.cumsum([0.0] + [s.steps * s.dt_fs for s in self.stages])
        mass = None if template is None else float(template.get_masses().sum())
        self.thermo = Thermo(n_atoms, volume, thermo_path if root else None, mass_amu=mass) if thermo else None
        self.traj = Trajectory(traj_path, template, traj_every or every) if traj_path and root else None
        self.cell = None if template is None else template.cell.array
        self.bar = progress_bar(int(self.starts[-1]), name, progress and root)
        self.tally = Tally()
        self.rebuilds = 0
        self.steps_done = 0
        self.health = HealthWatch(health, self.stages, n_atoms, start_temperature_K, name,
                                  warn=self._warn if root else None)

    def _warn(self, line: str) -> None:
        self.bar.write(f"legato md: warning: {line}", file=sys.stderr)

    def __call__(self, k: int, stage: Stage, first_step: int, carry, obs: Observation) -> None:
        good, stop = self.health.check(k, stage, first_step, self.every, obs)
        obs = jax.tree.map(lambda a: a[:good], obs)
        time0 = self.start_times[k] + (first_step - self.starts[k]) * stage.dt_fs
        if good and self.thermo is not None:
            self.thermo.add(first_step, float(time0), k, stage, self.every, obs)
        if good and self.traj is not None:
            self.traj.add(first_step, self.every, obs, self.cell, float(time0), stage.dt_fs)
        self.rebuilds += int(np.sum(obs.rebuilds))
        if good:
            self.advance(good * self.every, obs.kinetic[-1])
        if stop is not None:
            raise stop

    def advance(self, steps: int, kinetic: float | None = None) -> None:
        """Move the bar on by `steps` steps (with the temperature when `kinetic` is given)."""
        self.steps_done += steps
        self.bar.update(steps)
        rate = self.n_atoms * self.steps_done / max(self.tally.wall_s, 1e-9)
        temp = "" if kinetic is None else f"T {float(temperature(kinetic, self.n_atoms)):.0f} K, "
        self.bar.set_postfix_str(f"{temp}{rate:.3g} atom-steps/s")

    def close(self) -> None:
        self.bar.close()
        if self.thermo is not None:
            self.thermo.close()

    def summary(self, **extra) -> dict:
        """The run's summary: sizes, speed, list counts, compiles, and each stage's thermo."""
        steps, wall = int(self.starts[-1]), self.tally.wall_s
        out = {"model": self.name, "n_atoms": self.n_atoms, "steps": steps,
               "time_ps": float(self.start_times[-1]) / 1000.0, "wall_s": wall,
               "atom_steps_per_s": self.n_atoms * steps / wall if wall > 0 else float("nan"),
               "nl_rebuilds": self.rebuilds, "nl_reallocations": self.tally.reallocations,
               "compiles": self.tally.compiles.count}
        out.update(extra)
        out["warnings"] = list(self.health.warnings)
        if self.thermo is not None:
            out["stages"] = [stage_summary(self.thermo, k, s) for k, s in enumerate(self.stages)]
        return out
