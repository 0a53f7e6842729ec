"""Failure criteria of ML-driven MD, evaluated together on one snapshot so that one run gives a
time-to-failure for each: the paper's temperature window, non-finite energy or forces, and local
structural criteria for ammonia (a stretched N-H bond, a hydrogen away from every nitrogen, two
atoms closer than a minimum distance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms

from legato_jax.data.ammonia import bonded_nitrogen, mean_nh_length
from legato_jax.errors import ConfigError

CRITERIA = ("temperature", "non_finite", "nh_bond", "lone_hydrogen", "min_distance")


@dataclass(frozen=True)
class FailureCriteria:
    """Thresholds (K, Å). `nh_equilibrium` None: the mean N-H bond length of the start structure."""

    t_low: float = 100.0
    t_high: float = 300.0
    nh_stretch: float = 0.5
    nh_equilibrium: float | None = None
    lone_hydrogen: float = 2.5
    min_distance: float = 0.6

    def __post_init__(self) -> None:
        if not 0 <= self.t_low < self.t_high:
            raise ConfigError(f"temperature window [{self.t_low}, {self.t_high}] K is empty")
        for name in ("nh_stretch", "lone_hydrogen", "min_distance"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"failure criterion {name} must be > 0 Å, got {getattr(self, name)}")


def make_checks(criteria: FailureCriteria, atoms: Atoms, displacement: Callable,
                max_pair_cutoff: float) -> Callable:
    """check(R, neighbor, temperature, energy, forces) -> bool per criterion (in CRITERIA order).

    Pair criteria use the MD's Sparse neighbour list, so `lone_hydrogen` and `min_distance` must
    lie within its cutoff (r_max + skin)."""
    if criteria.lone_hydrogen > max_pair_cutoff:
        raise ConfigError(f"lone-hydrogen distance {criteria.lone_hydrogen} Å exceeds the neighbour-list "
                          f"cutoff {max_pair_cutoff:.2f} Å")
    owner = bonded_nitrogen(atoms)
    is_h = jnp.asarray(owner >= 0)
    is_n = jnp.asarray(np.append(atoms.numbers == 7, False))  # padded slot N is not a nitrogen
    h_rows = np.flatnonzero(owner >= 0)
    r_eq = criteria.nh_equilibrium if criteria.nh_equilibrium is not None else mean_nh_length(atoms)
    nh_limit = r_eq + criteria.nh_stretch
    n = len(atoms)
    h_rows_j, owners_j = jnp.asarray(h_rows), jnp.asarray(owner[h_rows])

    def check(R, neighbor, temperature, energy, forces):
        recv, send = neighbor.idx
        valid = recv < n
        R_pad = jnp.concatenate([R, jnp.zeros((1, 3), R.dtype)])
        d = jnp.linalg.norm(jax.vmap(displacement)(R_pad[send], R_pad[recv]), axis=-1)
        d = jnp.where(valid, d, jnp.inf)
        temperature, energy = jnp.asarray(temperature), jnp.asarray(energy)
        temp_bad = ~((temperature >= criteria.t_low) & (temperature <= criteria.t_high))
        finite_bad = ~(jnp.isfinite(energy) & jnp.all(jnp.isfinite(forces)))
        if len(h_rows):
            nh = jnp.linalg.norm(jax.vmap(displacement)(R[h_rows_j], R[owners_j]), axis=-1)
            nh_bad = jnp.any(nh > nh_limit) | ~jnp.all(jnp.isfinite(nh))
            to_n = jnp.where(is_n[send] & valid, d, jnp.inf)
            nearest_n = jax.ops.segment_min(to_n, jnp.where(valid, recv, n), num_segments=n + 1)[:n]
            lone_bad = jnp.any(is_h & ~(nearest_n <= criteria.lone_hydrogen))
        else:
            nh_bad = lone_bad = jnp.array(False)
        close_bad = jnp.any(d < criteria.min_distance) | ~jnp.all(jnp.isfinite(jnp.where(valid, d, 0.0)))
        return jnp.stack([temp_bad, finite_bad, nh_bad, lone_bad, close_bad])

    return check
