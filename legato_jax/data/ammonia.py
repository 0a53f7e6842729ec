"""Liquid ammonia: the systems every part of legato builds, and which nitrogen each hydrogen
belongs to.

Builders, by what they build:
- `liquid_ammonia(n_molecules)`: the shipped equilibrated 16-molecule cell (GFN1-xTB, 200 K,
  0.68 g/cm^3) replicated a x b x c; the MD and time-to-failure systems.
- `random_ammonia_packing(n_molecules, density, rng)`: rigid NH3 at random positions and
  orientations in a cube; the start of reference-data generation.
- `tiled_ammonia_packing(n_atoms)`: a random packing counted in atoms, tiled when the count allows;
  the benchmark systems.

Ownership: `bonded_nitrogen` (each hydrogen's nearest nitrogen, minimum image) is the one rule;
`set_density`, the N-H failure criteria and `molecules_intact` all use it or its distances.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.geometry import find_mic, get_distances

from legato_jax.data.io import read_images
from legato_jax.errors import ConfigError

ATOMS_PER_MOLECULE = 4
NH3_MASS_AMU = 14.007 + 3 * 1.008
AVOGADRO = 6.02214076e23
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660
AMMONIA_CELL = Path(__file__).parent / "structures" / "ammonia_64.extxyz"
AMMONIA_CELL_MOLECULES = 16
_NH_BOND = 1.012  # Å, gas-phase N-H length
_HNH_ANGLE = np.deg2rad(106.7)


# -- the equilibrated liquid ----------------------------------------------------------------
def liquid_ammonia(n_molecules: int, density: float | None = None) -> Atoms:
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
    atoms = read_images(AMMONIA_CELL, "0").repeat(_near_cubic(n_molecules // base))
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
    """Scale the cell isotropically to `density` g/cm^3, moving each NH3 rigidly with its N (each
    hydrogen with its `bonded_nitrogen`; any other atom scales with the cell)."""
    if not density > 0:
        raise ConfigError(f"--density must be > 0 g/cm^3, got {density}")
    if not np.any(atoms.numbers == 7):
        raise ConfigError("--density rescales NH3 molecules, but the structure has no nitrogen")
    scale = (ammonia_density(atoms) / density) ** (1 / 3)
    out = atoms.copy()
    pos = out.positions
    owner = bonded_nitrogen(out)
    owner = np.where(owner >= 0, owner, np.arange(len(out)))
    offset, _ = find_mic(pos - pos[owner], out.cell, out.pbc)
    new_owner = pos[owner] * scale
    out.set_cell(out.cell.array * scale, scale_atoms=False)
    out.positions = new_owner + offset
    out.wrap()
    return out


# -- random packings ------------------------------------------------------------------------
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


def random_ammonia_packing(
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
    while len(atoms) < ATOMS_PER_MOLECULE * n_molecules:
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


def tiled_ammonia_packing(n_atoms: int, density: float = 0.68, seed: int = 0) -> Atoms:
    """A liquid-density NH3 box of `n_atoms` atoms (not molecules): a random packing of 27
    molecules tiled k x k x k when n_atoms / 4 is 27 times a cube (864 = 27 x 2^3 x 4,
    6,912 = 27 x 4^3 x 4), else a random packing of all molecules."""
    n_mol = n_atoms // ATOMS_PER_MOLECULE
    if ATOMS_PER_MOLECULE * n_mol != n_atoms:
        raise ConfigError(f"an ammonia box of {n_atoms} atoms: the atom count must be a multiple of "
                          f"{ATOMS_PER_MOLECULE} (one NH3); change the size option (--sizes, --atoms-per-domain)")
    rng = np.random.default_rng(seed)
    for base in (27, 1):
        k = round((n_mol / base) ** (1 / 3))
        if base * k**3 == n_mol:
            return random_ammonia_packing(base, density, rng).repeat((k, k, k))
    return random_ammonia_packing(n_mol, density, rng)


def ammonia_box(n_atoms: int) -> Atoms:
    """The benchmarks' liquid box of `n_atoms` atoms: the equilibrated 64-atom cell replicated
    k x k x k when n_atoms / 64 is a cube (64, 512, 1,728, ...), else `tiled_ammonia_packing`."""
    k = round((n_atoms / (ATOMS_PER_MOLECULE * AMMONIA_CELL_MOLECULES)) ** (1 / 3))
    if k >= 1 and ATOMS_PER_MOLECULE * AMMONIA_CELL_MOLECULES * k**3 == n_atoms:
        return liquid_ammonia(n_atoms // ATOMS_PER_MOLECULE)
    return tiled_ammonia_packing(n_atoms)


# -- which nitrogen each hydrogen belongs to ------------------------------------------------
def _h_n_distances(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hydrogen indices, nitrogen indices, their (n_H, n_N) minimum-image distances in Å),
    computed in blocks of hydrogens so that large boxes stay within memory."""
    h_idx = np.flatnonzero(atoms.numbers == 1)
    n_idx = np.flatnonzero(atoms.numbers == 7)
    d = np.empty((len(h_idx), len(n_idx)))
    if len(h_idx) and len(n_idx):
        pos, block = atoms.positions, 2048
        for start in range(0, len(h_idx), block):
            rows = h_idx[start:start + block]
            _, d[start:start + len(rows)] = get_distances(pos[rows], pos[n_idx], cell=atoms.cell, pbc=atoms.pbc)
    return h_idx, n_idx, d


def bonded_nitrogen(atoms: Atoms) -> np.ndarray:
    """For each atom, the index of the nitrogen nearest to it (minimum image) if it is a
    hydrogen, else -1."""
    h_idx, n_idx, d = _h_n_distances(atoms)
    owner = np.full(len(atoms), -1)
    if d.size:
        owner[h_idx] = n_idx[np.argmin(d, axis=1)]
    return owner


def nh_bond_lengths(atoms: Atoms) -> np.ndarray:
    """For each H, the (minimum-image) distance to its `bonded_nitrogen` (empty without N)."""
    _, _, d = _h_n_distances(atoms)
    return d.min(axis=1) if d.size else np.zeros(0)


def mean_nh_length(atoms: Atoms) -> float:
    """Mean length (Å) of the bonds of each hydrogen to its nearest nitrogen; 0 without any."""
    lengths = nh_bond_lengths(atoms)
    return float(np.mean(lengths)) if len(lengths) else 0.0


def molecules_intact(atoms: Atoms, max_nh: float = 1.3) -> bool:
    """True when every N has exactly three H within `max_nh` Å and every H belongs to one N."""
    _, _, d = _h_n_distances(atoms)
    bonded = d < max_nh
    return bool(np.all(bonded.sum(axis=1) == 1) and np.all(bonded.sum(axis=0) == 3))
