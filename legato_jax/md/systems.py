"""MD systems: liquid-ammonia boxes replicated from an equilibrated cell, structures from files,
masses, and initial velocities."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms

from legato_jax.data.io import _check_min_distance, _read_images
from legato_jax.errors import ConfigError, DataError

AMMONIA_CELL = Path(__file__).parent / "structures" / "ammonia_64.extxyz"
AMMONIA_CELL_MOLECULES = 16
NH3_MASS_G_PER_MOL = 17.031
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


def load_structure(path: str | Path, index: int = -1, min_distance: float = 0.5) -> Atoms:
    """One frame of any ASE-readable file (compressed extxyz included), checked for MD."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such structure file")
    try:
        atoms = _read_images(path, str(index), None)
    except Exception as exc:  # ASE raises many types on malformed files
        raise DataError(f"{path}: cannot read a structure ({type(exc).__name__}: {exc})") from exc
    check_structure(atoms, f"{path}, frame {index}", min_distance)
    return Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc,
                 momenta=atoms.get_momenta() if atoms.has("momenta") else None)


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
        _check_min_distance(pos, atoms.cell.array, atoms.pbc, min_distance, where)


def replicate(atoms: Atoms, reps: Sequence[int]) -> Atoms:
    """The cell repeated a x b x c times."""
    reps = tuple(int(r) for r in reps)
    if len(reps) != 3 or min(reps) < 1:
        raise ConfigError(f"--replicate needs three integers >= 1, got {list(reps)}")
    return atoms.repeat(reps)


def ammonia_box(n_molecules: int, density: float | None = None) -> Atoms:
    """Liquid ammonia with `n_molecules` molecules: the shipped equilibrated 16-molecule cell
    (GFN1-xTB, 200 K, 0.68 g/cm^3) replicated a x b x c, as close to cubic as the count allows;
    optionally rescaled (molecules rigid, centres scaled) to `density` in g/cm^3."""
    base = AMMONIA_CELL_MOLECULES
    if n_molecules < base or n_molecules % base:
        raise ConfigError(
            f"--ammonia {n_molecules}: the box is built by replicating the equilibrated "
            f"{base}-molecule cell, so the count must be {base} x a x b x c "
            f"(e.g. {base * 8} or {base * 27}); or give --structure FILE"
        )
    atoms = replicate(_read_images(AMMONIA_CELL, "0", None), _near_cubic(n_molecules // base))
    if density is not None:
        atoms = set_density(atoms, density)
    return atoms


def _near_cubic(k: int) -> tuple[int, int, int]:
    """a <= b <= c with a*b*c = k and the smallest spread."""
    best = (1, 1, k)
    for a in range(1, round(k ** (1 / 3)) + 2):
        if k % a:
            continue
        for b in range(a, int(np.sqrt(k // a)) + 1):
            if (k // a) % b == 0:
                c = k // a // b
                if c - a < best[2] - best[0]:
                    best = (a, b, c)
    return best


def ammonia_density(atoms: Atoms) -> float:
    """Mass density in g/cm^3 (with standard masses)."""
    return float(np.sum(Atoms(atoms.numbers).get_masses()) / atoms.cell.volume * AMU_PER_A3_TO_G_PER_CM3)


def set_density(atoms: Atoms, density: float) -> Atoms:
    """Scale the cell isotropically to `density` g/cm^3, moving each NH3 rigidly with its N."""
    if not density > 0:
        raise ConfigError(f"--density must be > 0 g/cm^3, got {density}")
    scale = (ammonia_density(atoms) / density) ** (1 / 3)
    out = atoms.copy()
    pos = out.positions
    n_idx = np.flatnonzero(out.numbers == 7)
    if len(n_idx) == 0:
        raise ConfigError("--density rescales NH3 molecules, but the structure has no nitrogen")
    d = out.get_distances  # per-H nearest N under minimum image
    owner = np.array([n_idx[np.argmin(d(i, n_idx, mic=True))] if z != 7 else i for i, z in enumerate(out.numbers)])
    offset = np.array([out.get_distance(owner[i], i, mic=True, vector=True) for i in range(len(out))])
    new_n = pos[owner] * scale
    out.set_cell(out.cell.array * scale, scale_atoms=False)
    out.positions = new_n + offset
    out.wrap()
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
