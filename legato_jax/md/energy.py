"""A trained model as a jax-md energy function: positions (+ a jax-md neighbour list) -> energy.

The neighbour list is jax-md's Sparse list in real coordinates (edges i -> j with their minimum
image), so every jax-md integrator can drive the model. Minimum image is only exact when every
perpendicular width of the cell is at least 2 x (r_max + skin); narrower cells are refused.
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

    energy_fn: Callable
    neighbor_fn: partition.NeighborListFns
    displacement_fn: Callable
    shift_fn: Callable
    box: jax.Array  # jax-md convention: columns are lattice vectors


def check_cell(cell: np.ndarray, cutoff: float, where: str = "structure") -> None:
    """Refuse cells where minimum image would miss neighbours of the model's cutoff + skin."""
    widths = perpendicular_widths(np.asarray(cell))
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
    check_cell(cell, r_max + skin, where)
    dtype = potential.dtype
    box = jnp.asarray(np.asarray(cell).T, dtype)
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

    def energy_fn(R, neighbor, **unused):
        receivers, senders = neighbor.idx
        mask = receivers < n
        R_pad = jnp.concatenate([R, jnp.zeros((1, 3), R.dtype)], axis=0)
        vec = jax.vmap(displacement)(R_pad[senders], R_pad[receivers])
        vec = jnp.where(mask[:, None], vec, far)
        with jax.default_matmul_precision("highest"):
            atom = module.apply(params, vec, species_pad, senders, receivers, mask, node_mask)
        return jnp.sum(atom)

    return MDSystem(energy_fn, neighbor_fn, displacement, shift, box)
