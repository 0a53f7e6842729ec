"""Liquid-ammonia boxes: random packings of intact NH3 molecules at a given density."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.geometry import get_distances

from legato_jax.errors import ConfigError

NH3_MASS_AMU = 14.007 + 3 * 1.008
AVOGADRO = 6.02214076e23
_NH_BOND = 1.012  # Å, gas-phase N-H length
_HNH_ANGLE = np.deg2rad(106.7)


def nh3_molecule() -> Atoms:
    """One ammonia molecule centred on its nitrogen, C3 axis along z."""
    # The three H lie on a cone of half-angle theta around -z; |H-H| fixes theta.
    sin_theta = np.sqrt(2 * (1 - np.cos(_HNH_ANGLE)) / 3)
    cos_theta = np.sqrt(1 - sin_theta**2)
    phis = 2 * np.pi * np.arange(3) / 3
    h = _NH_BOND * np.stack(
        [sin_theta * np.cos(phis), sin_theta * np.sin(phis), -cos_theta * np.ones(3)], axis=1
    )
    return Atoms("NH3", positions=np.vstack([np.zeros(3), h]))


def box_length(n_molecules: int, density: float) -> float:
    """Edge (Å) of the cube holding `n_molecules` NH3 at `density` g/cm^3."""
    if n_molecules < 1:
        raise ConfigError(f"n_molecules must be >= 1, got {n_molecules}")
    if not density > 0:
        raise ConfigError(f"density must be > 0 g/cm^3, got {density}")
    volume_cm3 = n_molecules * NH3_MASS_AMU / AVOGADRO / density
    return (volume_cm3 * 1e24) ** (1.0 / 3.0)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def random_ammonia_box(
    n_molecules: int,
    density: float,
    rng: np.random.Generator,
    min_distance: float = 2.0,
    max_tries: int = 100_000,
) -> Atoms:
    """Insert rigid NH3 molecules at random positions and orientations into a periodic cube.

    A molecule is accepted only if all its atoms are at least `min_distance` Å (minimum image)
    from every atom already placed, so molecules are intact and do not overlap.
    """
    length = box_length(n_molecules, density)
    template = nh3_molecule()
    atoms = Atoms(cell=np.eye(3) * length, pbc=True)
    tries = 0
    while len(atoms) < 4 * n_molecules:
        tries += 1
        if tries > max_tries:
            raise ConfigError(
                f"could not pack {n_molecules} NH3 at {density} g/cm^3 with min_distance "
                f"{min_distance} Å after {max_tries} tries; lower the density or min_distance"
            )
        pos = template.positions @ _random_rotation(rng).T + rng.uniform(0, length, 3)
        if len(atoms):
            _, d = get_distances(pos, atoms.positions, cell=atoms.cell, pbc=True)
            if d.min() < min_distance:
                continue
        atoms += Atoms(template.symbols, positions=pos)
    atoms.wrap()
    return atoms


def nh_bond_lengths(atoms: Atoms) -> np.ndarray:
    """For each H, the (minimum-image) distance to its nearest N."""
    n_idx = np.flatnonzero(atoms.numbers == 7)
    h_idx = np.flatnonzero(atoms.numbers == 1)
    _, d = get_distances(
        atoms.positions[h_idx], atoms.positions[n_idx], cell=atoms.cell, pbc=atoms.pbc
    )
    return d.min(axis=1)


def molecules_intact(atoms: Atoms, max_nh: float = 1.3) -> bool:
    """True when every N has exactly three H within `max_nh` Å and every H belongs to one N."""
    n_idx = np.flatnonzero(atoms.numbers == 7)
    h_idx = np.flatnonzero(atoms.numbers == 1)
    _, d = get_distances(
        atoms.positions[h_idx], atoms.positions[n_idx], cell=atoms.cell, pbc=atoms.pbc
    )
    bonded = d < max_nh
    return bool(np.all(bonded.sum(axis=1) == 1) and np.all(bonded.sum(axis=0) == 3))
