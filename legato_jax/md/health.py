"""An MD run watching its own health: each accepted chunk is checked before anything of it is
written, so that a run which blows up (even while staying finite) stops in one line naming the
step and the quantity, and its thermo log and trajectory end at the last good block."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from legato_jax.errors import ConfigError, LegatoError
from legato_jax.md.integrate import Observation, Stage, temperature

MODES = ("stop", "warn", "off")
REFERENCE_FLOOR_K = 100.0  # a run started cold is not "hot" at a few tens of K


class MDUnstable(LegatoError):
    """The dynamics left the range where its results mean anything; the run was stopped."""

    exit_status = 3


@dataclass(frozen=True)
class HealthLimits:
    """When a run warns (once per quantity) or stops. `mode` "warn" turns the stops of the
    physical checks into warnings and "off" skips them; non-finite energies and forces computed
    with a neighbour list that missed a pair stop the run in every mode."""

    mode: str = "stop"
    hot_warn: float = 2.0  # temperature above this multiple of the reference
    hot_stop: float = 10.0
    contact_warn: float = 0.7  # closest pair below this fraction of its covalent radius sum
    contact_stop: float = 0.5
    drift_warn_eV_per_atom: float = 0.01  # conserved energy away from its value at the stage's start
    drift_stop_eV_per_atom: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--health {self.mode!r}: choose one of {list(MODES)}")
        pairs = ((self.hot_warn, self.hot_stop, "temperature"), (self.contact_stop, self.contact_warn, "contact"),
                 (self.drift_warn_eV_per_atom, self.drift_stop_eV_per_atom, "drift"))
        for low, high, what in pairs:
            if not 0 < low <= high:
                raise ConfigError(f"health limits for {what}: need 0 < {low} <= {high}")


@dataclass
class HealthWatch:
    """Checks chunks as they come: `check` gives how many leading blocks are good and the stop
    (an `MDUnstable`) if any; warnings are kept in `warnings` and handed to `warn` once each."""

    limits: HealthLimits
    stages: tuple[Stage, ...]
    n_atoms: int
    start_temperature_K: float = 0.0
    name: str = "model"
    warn: object = None  # callable(str) or None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        targets = [s.temperature_K for s in self.stages if s.ensemble != "nve"]
        self.reference_K = max([REFERENCE_FLOOR_K, self.start_temperature_K, *targets])
        self._warned: set[str] = set()
        self._stage_start: dict[int, float] = {}

    def check(self, k: int, stage: Stage, first_step: int, every: int, obs: Observation) -> tuple[int, MDUnstable | None]:
        for b in range(len(obs.potential)):
            step = first_step + (b + 1) * every
            stop = self._block(k, stage, step, obs, b)
            if stop is not None:
                return b, MDUnstable(f"step {step} (model {self.name}): {stop}")
        return len(obs.potential), None

    def _block(self, k: int, stage: Stage, step: int, obs: Observation, b: int) -> str | None:
        pe, ke = float(obs.potential[b]), float(obs.kinetic[b])
        if not (np.isfinite(pe) and np.isfinite(ke)):
            return "non-finite energy; the dynamics blew up: lower --dt or check the model on this structure"
        if obs.missed is not None and int(obs.missed[b]):
            return ("the neighbour list missed a pair in range (atoms moved more than half the skin between "
                    "list checks), so forces were wrong: raise --skin")
        if self.limits.mode == "off":
            return None
        temp = float(temperature(ke, self.n_atoms))
        issues = [("temperature", temp / self.reference_K, self.limits.hot_warn, self.limits.hot_stop,
                   f"temperature {temp:.4g} K is {temp / self.reference_K:.3g} x the run's reference "
                   f"{self.reference_K:.0f} K (the hotter of the targets and the start)")]
        if obs.contact is not None and np.isfinite(obs.contact[b]):
            c = float(obs.contact[b])
            # smaller is worse: compare inverses so that all checks read "above the limit"
            issues.append(("contact", 1.0 / max(c, 1e-12), 1.0 / self.limits.contact_warn, 1.0 / self.limits.contact_stop,
                           f"two atoms are {c:.2f} x their covalent radius sum apart"))
        if stage.ensemble != "langevin" and np.isfinite(obs.conserved[b]):
            e0 = self._stage_start.setdefault(k, float(obs.conserved[b]))
            drift = abs(float(obs.conserved[b]) - e0) / self.n_atoms
            name = "total energy" if stage.ensemble == "nve" else "Nose-Hoover invariant"
            issues.append(("drift", drift, self.limits.drift_warn_eV_per_atom, self.limits.drift_stop_eV_per_atom,
                           f"the {name} moved {drift:.3g} eV/atom from the stage's first block: lower --dt"))
        if self.limits.mode == "stop":
            for _, value, _, stop_at, text in issues:
                if value > stop_at:
                    return text
        for quantity, value, warn_at, _, text in issues:
            if value > warn_at and quantity not in self._warned:
                self._warned.add(quantity)
                line = f"step {step} (model {self.name}): {text}"
                self.warnings.append(line)
                if self.warn is not None:
                    self.warn(line)
        return None
