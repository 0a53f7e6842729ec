"""A px x py x pz grid of domains over an orthorhombic box: which domain owns which atom, in
padded per-domain arrays of fixed capacity, and the checks that make the decomposition valid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from legato_jax.errors import ConfigError
from legato_jax.data.cell import is_orthorhombic


@dataclass(frozen=True)
class DomainGrid:
    """Domains of equal size; `halo` is the ghost-layer width (r_max + skin)."""

    shape: tuple[int, int, int]
    box: tuple[float, float, float]  # Å, orthorhombic
    halo: float

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ConfigError(f"--domains needs three integers >= 1, got {list(self.shape)}")
        width = self.width
        for axis in range(3):
            if width[axis] < self.halo:
                most = int(self.box[axis] // self.halo)
                raise ConfigError(
                    f"--domains {' '.join(map(str, self.shape))}: domains are {width[axis]:.2f} Å wide along "
                    f"axis {axis}, below the ghost layer r_max + skin = {self.halo:.2f} Å; use at most "
                    f"{max(most, 1)} domains along that axis, or a larger box")
        if min(self.box) < 2 * self.halo:
            raise ConfigError(f"box {list(self.box)} Å is narrower than 2 x (r_max + skin) = {2 * self.halo:.2f} Å")

    @classmethod
    def for_cell(cls, shape, cell: np.ndarray, halo: float) -> "DomainGrid":
        cell = np.asarray(cell, float)
        if not is_orthorhombic(cell):
            raise ConfigError("domain decomposition needs an orthorhombic cell; this one is triclinic "
                              "(run it on one domain, or rebuild it as an orthorhombic supercell)")
        return cls(tuple(int(s) for s in shape), tuple(float(x) for x in np.diag(cell)), float(halo))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def width(self) -> np.ndarray:
        return np.asarray(self.box) / np.asarray(self.shape)

    def coords(self, domain: int) -> tuple[int, int, int]:
        return tuple(int(c) for c in np.unravel_index(domain, self.shape))

    def owner(self, positions: np.ndarray) -> np.ndarray:
        """Domain index (row-major over the grid) of each wrapped position."""
        frac = np.mod(np.asarray(positions) / np.asarray(self.box), 1.0)
        c = np.minimum((frac * np.asarray(self.shape)).astype(int), np.asarray(self.shape) - 1)
        return np.ravel_multi_index(c.T, self.shape)


@dataclass(frozen=True)
class Decomposed:
    """Per-domain padded arrays (leading axis: domain). Empty slots have id -1 and mask False."""

    positions: np.ndarray  # (P, C, 3)
    species: np.ndarray  # (P, C)
    ids: np.ndarray  # (P, C) global atom index, -1 for empty
    mask: np.ndarray  # (P, C)

    @property
    def capacity(self) -> int:
        return self.ids.shape[1]


def default_capacity(grid: DomainGrid, n_atoms: int, slack: float = 1.3) -> int:
    """Owned-atom slots per domain: the mean load plus `slack` headroom for density fluctuations."""
    return int(np.ceil(slack * n_atoms / grid.size)) + 8


def decompose(grid: DomainGrid, positions: np.ndarray, species: np.ndarray, capacity: int,
              extra: dict[str, np.ndarray] | None = None) -> tuple[Decomposed, dict[str, np.ndarray]]:
    """Scatter atoms to their owners. Returns the padded arrays and `extra` per-atom arrays
    (momenta, masses, ...) laid out the same way; refuses a domain over capacity."""
    positions = np.mod(np.asarray(positions, float), np.asarray(grid.box))
    owner = grid.owner(positions)
    counts = np.bincount(owner, minlength=grid.size)
    if counts.max() > capacity:
        d = int(np.argmax(counts))
        raise ConfigError(f"domain {grid.coords(d)} holds {counts[d]} atoms, over its capacity {capacity}; "
                          f"raise the capacity or use fewer domains")
    P = grid.size
    ids = np.full((P, capacity), -1)
    for d in range(P):
        mine = np.flatnonzero(owner == d)
        ids[d, : len(mine)] = mine
    mask = ids >= 0
    take = np.where(mask, ids, 0)
    out = Decomposed(np.where(mask[..., None], positions[take], 0.0), np.where(mask, np.asarray(species)[take], 0),
                     ids, mask)
    laid = {k: np.where(mask.reshape(mask.shape + (1,) * (np.ndim(v) - 1)), np.asarray(v)[take], 0)
            for k, v in (extra or {}).items()}
    return out, laid


def gather(dec_ids: np.ndarray, values: np.ndarray, n_atoms: int) -> np.ndarray:
    """Per-domain padded `values` (P, C, ...) back to global order (n_atoms, ...)."""
    ids = np.asarray(dec_ids).reshape(-1)
    vals = np.asarray(values).reshape((ids.size,) + np.shape(values)[2:])
    keep = ids >= 0
    if np.sort(ids[keep]).tolist() != list(range(n_atoms)):
        raise RuntimeError("the domains do not hold every atom exactly once")
    out = np.zeros((n_atoms,) + vals.shape[1:], vals.dtype)
    out[ids[keep]] = vals[keep]
    return out
