"""Benchmark systems: liquid-ammonia boxes of a given number of molecules."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from legato_jax.data.ammonia import random_ammonia_box


def ammonia_box(n_atoms: int, density: float = 0.68, seed: int = 0) -> Atoms:
    """Liquid-density NH3 box with `n_atoms` atoms: a random packing of 27 molecules replicated
    k x k x k when n_atoms / 4 is 27 times a cube (864 = 27 x 2^3 x 4, 6,912 = 27 x 4^3 x 4),
    else a random packing of all molecules."""
    n_mol = n_atoms // 4
    if 4 * n_mol != n_atoms:
        raise ValueError(f"n_atoms must be a multiple of 4 (NH3), got {n_atoms}")
    rng = np.random.default_rng(seed)
    for base in (27, 1):
        k = round((n_mol / base) ** (1 / 3))
        if base * k**3 == n_mol:
            return random_ammonia_box(base, density, rng).repeat((k, k, k))
    return random_ammonia_box(n_mol, density, rng)
