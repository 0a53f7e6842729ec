"""MD systems: structures from files checked for MD, replication, masses, and initial velocities.
The ammonia builders live in `legato_jax.data.ammonia`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms

from legato_jax.data.io import check_min_distance, read_images
from legato_jax.errors import ConfigError, DataError

__all__ = ["check_structure", "initial_momenta", "load_structure", "masses", "replicate", "with_masses"]


def load_structure(path: str | Path, index: int = -1, min_distance: float = 0.5) -> Atoms:
    """One frame of any ASE-readable file (compressed extxyz included), checked for MD."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such structure file")
    try:
        images = read_images(path, ":")
    except DataError:
        raise
    except Exception as exc:  # ASE raises many types on malformed files
        raise DataError(f"{path}: cannot read a structure ({type(exc).__name__}: {exc})") from exc
    if not images:
        raise DataError(f"{path}: contains no frames")
    if not -len(images) <= index < len(images):
        raise DataError(f"{path}: has {len(images)} frames, so --frame {index} does not exist "
                        f"(give 0..{len(images) - 1}, or -1 for the last)")
    atoms = images[index]
    check_structure(atoms, f"{path}, frame {index}", min_distance)
    out = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc,
                momenta=atoms.get_momenta() if atoms.has("momenta") else None,
                masses=atoms.get_masses() if atoms.has("masses") else None)
    if "step" in atoms.info:
        out.info["step"] = int(atoms.info["step"])
    return out


def check_structure(atoms: Atoms, where: str, min_distance: float = 0.5) -> None:
    """Positions finite, a periodic cell with volume, no atoms on top of each other."""
    if len(atoms) == 0:
        raise DataError(f"{where}: the structure has no atoms")
    pos = atoms.positions
    if not np.all(np.isfinite(pos)):
        bad = int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
        raise DataError(f"{where}: atom {bad} has a non-finite position {pos[bad].tolist()}")
    if not atoms.pbc.all():
        raise DataError(f"{where}: MD here needs a fully periodic cell (pbc is {atoms.pbc.tolist()}); "
                        f"put the system in a box")
    if abs(atoms.cell.volume) < 1e-6:
        raise DataError(f"{where}: the cell has zero volume; set the Lattice of the structure")
    if min_distance > 0:
        check_min_distance(pos, atoms.cell.array, atoms.pbc, min_distance, where)


def replicate(atoms: Atoms, reps: Sequence[int]) -> Atoms:
    """The cell repeated a x b x c times."""
    reps = tuple(int(r) for r in reps)
    if len(reps) != 3 or min(reps) < 1:
        raise ConfigError(f"--replicate needs three integers >= 1, got {list(reps)}")
    return atoms.repeat(reps)


def with_masses(atoms: Atoms, mass) -> Atoms:
    """A copy of `atoms` carrying the run's masses (n,) or (n, 1), so that frames written from it
    restart with the same physics."""
    out = atoms.copy()
    out.set_masses(np.asarray(mass, float).reshape(len(atoms)))
    return out


def masses(atoms: Atoms, hydrogen_mass: float | None = None) -> np.ndarray:
    """Atomic masses (amu), hydrogen replaced by `hydrogen_mass` (the paper: 2.014, deuterium)."""
    m = Atoms(atoms.numbers).get_masses()
    if hydrogen_mass is not None:
        if not hydrogen_mass > 0:
            raise ConfigError(f"--hydrogen-mass must be > 0 amu, got {hydrogen_mass}")
        m = np.where(atoms.numbers == 1, hydrogen_mass, m)
    return m


def initial_momenta(key: jax.Array, mass: jax.Array, temperature_K: float) -> jax.Array:
    """Maxwell-Boltzmann momenta (amu Å / jax-md time unit) at exactly `temperature_K` over
    3N - 3 degrees of freedom, with the centre-of-mass motion removed."""
    from legato_jax.md.integrate import KB

    mass = jnp.reshape(mass, (-1, 1))
    n = mass.shape[0]
    p = jnp.sqrt(mass * KB * temperature_K) * jax.random.normal(key, (n, 3), mass.dtype)
    p = p - mass * jnp.sum(p, axis=0) / jnp.sum(mass)
    if temperature_K <= 0 or n < 2:
        return jnp.zeros_like(p)
    ke = 0.5 * jnp.sum(p**2 / mass)
    return p * jnp.sqrt(0.5 * (3 * n - 3) * KB * temperature_K / ke)
