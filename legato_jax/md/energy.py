"""A trained model as a jax-md energy function: positions (+ a jax-md neighbour list) -> energy.

The neighbour list is jax-md's Sparse list in real coordinates (edges i -> j with their minimum
image), so every jax-md integrator can drive the model. Minimum image is only exact when every
perpendicular width of the cell is at least 2 x (r_max + skin); narrower cells are refused.
Orthorhombic cells use `space.periodic`, whose neighbour list switches to cell lists once the box
holds three cells of r_max + skin per side; triclinic cells use `space.periodic_general`, where
jax-md only offers the O(N^2) candidate search in real coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import partition, space

from legato_jax.data.stats import perpendicular_widths
from legato_jax.errors import ConfigError
from legato_jax.model.potential import Potential


@dataclass(frozen=True)
class MDSystem:
    """What the integrators need: energy(R, neighbor), the neighbour-list builder and the space."""

    energy_fn: Callable  # (R, neighbor) -> eV
    energy_stress_fn: Callable  # (R, neighbor) -> (eV, (3, 3) eV/Å^3 with ASE's sign)
    neighbor_fn: partition.NeighborListFns
    displacement_fn: Callable
    shift_fn: Callable
    cell: np.ndarray  # rows are lattice vectors (ASE convention)
    n_atoms: int
    cutoff: float  # Å, of the neighbour list: r_max + skin

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.cell)))

    @property
    def orthorhombic(self) -> bool:
        return is_orthorhombic(self.cell)

    def wrap(self, R: jax.Array) -> jax.Array:
        """Positions folded into the cell (cell lists need wrapped positions)."""
        cell = jnp.asarray(self.cell, R.dtype)
        frac = jnp.mod(R @ jnp.linalg.inv(cell), 1.0)
        return frac @ cell


def is_orthorhombic(cell: np.ndarray) -> bool:
    cell = np.asarray(cell)
    return bool(np.allclose(cell - np.diag(np.diag(cell)), 0.0, atol=1e-10))


def check_cell(cell: np.ndarray, cutoff: float, where: str = "structure") -> None:
    """Refuse cells where minimum image would miss neighbours of the model's cutoff + skin."""
    cell = np.asarray(cell)
    if cell.shape != (3, 3) or abs(np.linalg.det(cell)) < 1e-9:
        raise ConfigError(f"{where}: MD needs a periodic cell with a non-zero volume; set a cell on the structure")
    widths = perpendicular_widths(cell)
    if widths.min() < 2 * cutoff:
        axis = int(np.argmin(widths))
        need = int(np.ceil(2 * cutoff / widths[axis]))
        raise ConfigError(
            f"{where}: cell width {widths[axis]:.3f} Å along lattice vector {axis} is below "
            f"2 x (r_max + skin) = {2 * cutoff:.3f} Å, so minimum-image MD would miss neighbours; "
            f"replicate the cell (e.g. --replicate with {need} along that axis)"
        )


def model_energy(potential: Potential, params, species: np.ndarray, cell: np.ndarray, skin: float = 0.5,
                 capacity_multiplier: float = 1.25, where: str = "structure") -> MDSystem:
    """jax-md energy function and Sparse neighbour list (cutoff r_max + skin) for a periodic cell."""
    r_max = potential.config.r_max
    if skin < 0:
        raise ConfigError(f"neighbour-list skin must be >= 0 Å, got {skin}")
    check_cell(cell, r_max + skin, where)
    cell = np.asarray(cell, dtype=np.float64)
    dtype = potential.dtype
    if is_orthorhombic(cell):
        box = jnp.asarray(np.diag(cell), dtype)
        displacement, shift = space.periodic(box)
    else:
        box = jnp.asarray(cell.T, dtype)  # jax-md: columns are lattice vectors
        displacement, shift = space.periodic_general(box, fractional_coordinates=False)
    neighbor_fn = partition.neighbor_list(
        displacement, box, r_max, dr_threshold=skin, capacity_multiplier=capacity_multiplier,
        fractional_coordinates=False, format=partition.Sparse,
    )
    n = int(len(species))
    species_pad = jnp.asarray(np.concatenate([np.asarray(species), [0]]), jnp.int32)
    node_mask = jnp.arange(n + 1) < n
    far = jnp.array([2.0 * r_max + 1.0, 0.0, 0.0], dtype)
    module = potential.module
    volume = float(abs(np.linalg.det(cell)))

    def strained_energy(R, neighbor, strain):
        receivers, senders = neighbor.idx
        mask = receivers < n
        R_pad = jnp.concatenate([R, jnp.zeros((1, 3), R.dtype)], axis=0)
        vec = jax.vmap(displacement)(R_pad[senders], R_pad[receivers])
        vec = vec @ (jnp.eye(3, dtype=R.dtype) + strain)
        vec = jnp.where(mask[:, None], vec, far)
        with jax.default_matmul_precision("highest"):
            atom = module.apply(params, vec, species_pad, senders, receivers, mask, node_mask)
        return jnp.sum(atom)

    def energy_fn(R, neighbor, **unused):
        return strained_energy(R, neighbor, jnp.zeros((3, 3), R.dtype))

    def energy_stress_fn(R, neighbor):
        energy, d_strain = jax.value_and_grad(strained_energy, argnums=2)(R, neighbor, jnp.zeros((3, 3), R.dtype))
        return energy, 0.5 * (d_strain + d_strain.T) / volume

    return MDSystem(energy_fn, energy_stress_fn, neighbor_fn, displacement, shift, cell, n, r_max + skin)
