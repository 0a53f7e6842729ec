"""Structure of a trajectory: partial radial distribution functions averaged over frames, and
the mass density."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from legato_jax.data.ammonia import AMU_PER_A3_TO_G_PER_CM3
from legato_jax.data.neighbors import neighbor_list
from legato_jax.errors import ConfigError


def parse_pairs(items: Sequence[str], frames: Sequence[Atoms]) -> list[tuple[str, str]]:
    """`["N-N", "N-H"]` -> [("N", "N"), ("N", "H")]; no items: every pair of the frames' elements."""
    present = sorted(set(frames[0].get_chemical_symbols()), key=lambda s: Atoms(s).numbers[0])
    if not items:
        return [(a, b) for i, a in enumerate(present) for b in present[i:]]
    pairs = []
    for item in items:
        a, sep, b = item.partition("-")
        if not sep or a not in present or b not in present:
            raise ConfigError(f"--rdf {item}: expected a pair of elements like N-H, from {present}")
        pairs.append((a, b))
    return pairs


def largest_rmax(frames: Sequence[Atoms]) -> float:
    """Half the smallest perpendicular width of any frame's cell: the largest radius a g(r) can
    reach without counting an atom's own periodic image."""
    widths = [1.0 / np.linalg.norm(np.linalg.inv(f.cell.array), axis=0) for f in frames]
    return 0.5 * float(np.min(widths))


def rdf(frames: Sequence[Atoms], pairs: Sequence[tuple[str, str]], rmax: float | None = None,
        nbins: int = 200) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(bin centres r in Å, {"A-B": g_AB(r)}) averaged over `frames`: the B atoms in a shell around
    an A atom over the shell's volume times B's number density, LAMMPS's `compute rdf` and ASE's
    partial `get_rdf` convention (g_AB = g_BA). One vesin neighbour list per frame serves every pair."""
    limit = largest_rmax(frames)
    rmax = min(limit, 8.0) if rmax is None else rmax
    if not 0 < rmax <= limit + 1e-9:
        raise ConfigError(f"--rmax {rmax}: must be > 0 and at most {limit:.2f} Å, half the smallest cell width")
    edges = np.linspace(0.0, rmax, nbins + 1)
    shell = 4.0 / 3.0 * np.pi * np.diff(edges**3)
    total = {pair: np.zeros(nbins) for pair in pairs}
    for frame in frames:
        i, j, _, d = neighbor_list(frame.positions, frame.cell.array, True, rmax, with_distances=True)
        symbols = np.array(frame.get_chemical_symbols())
        volume = frame.get_volume()
        for a, b in pairs:
            n_a, n_b = np.sum(symbols == a), np.sum(symbols == b)
            pick = (symbols[i] == a) & (symbols[j] == b)
            counts, _ = np.histogram(d[pick], bins=edges)
            total[(a, b)] += counts / (n_a * n_b / volume * shell)
    r = 0.5 * (edges[1:] + edges[:-1])
    return r, {f"{a}-{b}": g / len(frames) for (a, b), g in total.items()}


def density_g_cm3(frames: Sequence[Atoms]) -> np.ndarray:
    """Mass density of each frame (g/cm^3), from its masses and cell volume."""
    return np.array([f.get_masses().sum() / f.get_volume() * AMU_PER_A3_TO_G_PER_CM3 for f in frames])
