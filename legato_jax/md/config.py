"""What an MD run does besides the model and the structure: `MDConfig` (stages, seed, list and
output settings) and the YAML presets shipped in `md/presets/` (or any YAML path)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from legato_jax.errors import ConfigError
from legato_jax.md.health import HealthLimits
from legato_jax.md.integrate import Stage
from legato_jax.yaml_io import check_keys, read_mapping

PRESET_DIR = Path(__file__).parent / "presets"


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
    health: HealthLimits = HealthLimits()  # when the run warns about or stops itself

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError("an MD run needs at least one stage")
        counts = {"--log-every": (self.every, 1), "--chunk": (self.chunk_steps, 1),
                  "--steps": (self.steps, 1)}
        for option, (value, least) in counts.items():
            if value < least:
                raise ConfigError(f"{option} must be >= {least}, got {value}")
        if not self.skin >= 0 or not self.capacity_multiplier >= 1:
            raise ConfigError(f"--skin must be >= 0 Å (got {self.skin}) and the capacity multiplier >= 1 "
                              f"(got {self.capacity_multiplier})")
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
STAGE_KEYS = {"ensemble", "steps", "dt", "tau", "temperature", "pressure_bar", "barostat_tau"}


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return path
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"--preset {name!r}: no such preset; known presets are {known} (or give a YAML path)")
    return path


LONG_RUN = 100_000  # steps: a preset this long run without --steps gets a note


def stderr_note(text: str) -> None:
    """How `legato md` tells a user what a preset did with their --steps."""
    print(f"legato md: note: {text}", file=sys.stderr, flush=True)


def load_preset(name: str, steps: int | None = None, temperature: float | None = None,
                note: Callable[[str], None] | None = None) -> dict:
    """A preset as MDConfig keyword arguments. `steps` is the total: stages with `steps: null`
    take what the fixed stages leave; a total shorter than the fixed stages cuts them in order.
    `note` hears about a cut and about a long run taken without `steps`."""
    note = note or (lambda text: None)
    path = preset_path(name)
    raw = read_mapping(path, "MD preset")
    check_keys(PRESET_KEYS, raw, str(path))
    if not isinstance(raw.get("stages"), list) or not raw["stages"]:
        raise ConfigError(f"{path}: 'stages' must be a non-empty list of {{ensemble, steps, dt, tau, temperature}}")
    total = int(steps if steps is not None else raw.get("steps", 0))
    if total < 1:
        raise ConfigError(f"{path}: a run needs at least one step; give --steps or the preset's 'steps'")
    if steps is None and total >= LONG_RUN:
        note(f"preset {name} runs {total:,} steps; give --steps for a shorter run")
    temp = float(temperature if temperature is not None else raw["temperature"])
    fixed = sum(int(s["steps"]) for s in raw["stages"] if s.get("steps") is not None)
    free = [s for s in raw["stages"] if s.get("steps") is None]
    stages, left = [], total
    for k, s in enumerate(raw["stages"]):
        check_keys(STAGE_KEYS, s, f"{path} stage {k}")
        n = int(s["steps"]) if s.get("steps") is not None else max(total - fixed, 0) // len(free)
        n = min(n, left)
        left -= n
        dt = float(s.get("dt", raw.get("dt", 1.0)))
        if n > 0:
            pressure = s.get("pressure_bar")
            stages.append(Stage(s["ensemble"], n, dt, float(s.get("temperature", temp)), float(s.get("tau", 100.0)),
                                None if pressure is None else float(pressure), float(s.get("barostat_tau", 1000.0))))
    if total <= fixed and (free or total < fixed):
        note(f"preset {name}'s fixed stages take {fixed} steps; {total} steps run "
             + " + ".join(f"{s.ensemble} {s.steps}" for s in stages))
    return {"stages": tuple(stages), "temperature_K": temp, "hydrogen_mass": raw.get("hydrogen_mass")}
