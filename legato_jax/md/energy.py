"""A trained model as a jax-md energy function: positions (+ a jax-md neighbour list) -> energy.

Where every perpendicular width of the cell is at least 2 x (r_max + skin), minimum image is exact
and the list is jax-md's Sparse list in real coordinates: orthorhombic cells use `space.periodic`,
whose list switches to cell lists once the box holds three cells of r_max + skin per side;
triclinic cells use `space.periodic_general` (jax-md's O(N^2) candidate search). Narrower cells
(a 64-atom training cell, say) use the image-shift list of `md/image_list.py`, which holds every
image of every neighbour, with free-space integration (positions unwrapped, shifts following
them). Either way every jax-md integrator drives the model through `energy_fn(R, neighbor)`.

The list holds pairs out to r_max + skin with spare capacity, ~1.6x the pairs the model needs.
Each call compacts it to the pairs within r_max in an exact-edge buffer (`compact_edges`), so the
model evaluates only those plus a small margin. The buffer's size is a fixed fraction of the
list's, set at the first allocation from the measured count (+5 %); every list update counts the
pairs in range and raises the list's overflow flag when the buffer is too small, so the engine
re-runs the chunk with a larger list, and with it a larger buffer.

NPT needs a box that changes: positions are fractional (`space.periodic_general` with
fractional coordinates, whose derivatives are real-space forces), `energy_fn(R, neighbor, box=,
perturbation=)` takes the box and jax-md's isotropic strain, and the list (jax-md's, all pairs
with minimum image) is updated with the current box. The cell must stay wide enough for minimum
image while the box breathes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from ase.data import atomic_numbers, covalent_radii
from jax_md import partition, space

from legato_jax.data.cell import is_orthorhombic, perpendicular_widths
from legato_jax.errors import ConfigError
from legato_jax.md.image_list import ImageList, image_neighbor_list
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
    r_max: float = 0.0  # Å, of the model
    pair_geometry: Callable | None = None  # (R, neighbor) -> (lengths, mask, covalent radius sums), per list edge
    fractional: bool = False  # positions in fractional coordinates of a changing box (NPT)
    model_edges: Callable | None = None  # (neighbor) -> edge slots the model evaluates (the exact-edge buffer)
    edge_check: Callable | None = None  # (R, neighbor) -> neighbor flagged overflowed when its pairs within r_max outgrow that buffer

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.cell)))

    @property
    def orthorhombic(self) -> bool:
        return is_orthorhombic(self.cell)

    @property
    def box0(self) -> np.ndarray:
        """The starting cell as jax-md's box (columns are lattice vectors)."""
        return np.asarray(self.cell).T

    def wrap(self, R: jax.Array) -> jax.Array:
        """Cartesian positions folded into the cell (cell lists need wrapped positions); in
        fractional coordinates for an NPT system."""
        cell = jnp.asarray(self.cell, R.dtype)
        frac = jnp.mod(R @ jnp.linalg.inv(cell), 1.0)
        return frac if self.fractional else frac @ cell

    def real_positions(self, R: jax.Array, box: jax.Array | None = None) -> jax.Array:
        """Cartesian positions of the integrator's `R` (fractional ones in the `box` given)."""
        if not self.fractional:
            return R
        return R @ (jnp.asarray(self.box0, R.dtype) if box is None else box).T


def check_cell(cell: np.ndarray, where: str = "structure") -> None:
    """MD needs a periodic cell with a volume."""
    cell = np.asarray(cell)
    if cell.shape != (3, 3) or abs(np.linalg.det(cell)) < 1e-9:
        raise ConfigError(f"{where}: MD needs a periodic cell with a non-zero volume; set a cell on the structure")


def minimum_image_is_exact(cell: np.ndarray, cutoff: float) -> bool:
    """Every perpendicular width is at least 2 x cutoff, so no pair has two images in range."""
    return bool(perpendicular_widths(cell).min() >= 2 * cutoff)


def list_kind(nbrs) -> str:
    """Which search holds a list: image shifts (dense or binned), jax-md's cell list, or its
    all-pairs search."""
    if isinstance(nbrs, ImageList):
        return f"image shifts ({'binned' if nbrs.bin_capacity else 'dense'})"
    return "cell list" if getattr(nbrs, "cell_list_fn", None) is not None else "all pairs"


EDGE_MARGIN = 1.05  # exact-edge buffer over the pairs within r_max at the first allocation
EDGE_SLACK = 16  # plus this many spare edges (small cells)


def compact_edges(vec: jax.Array, mask: jax.Array, r_max: float, capacity: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Indices of the list edges within `r_max` packed into `capacity` slots: (index, valid,
    count); count > capacity means the buffer overflowed (the excess edges are dropped)."""
    in_range = mask & (jnp.sum(vec * vec, axis=-1) < r_max * r_max)
    (index,) = jnp.nonzero(in_range, size=capacity, fill_value=0)
    count = jnp.sum(in_range)
    return index, jnp.arange(capacity) < count, count


def pack_edges(vec: jax.Array, senders: jax.Array, receivers: jax.Array, mask: jax.Array, r_max: float,
               capacity: int, pad: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """A list's pairs within `r_max` packed into the exact-edge buffer: (vec, senders, receivers,
    valid, count), empty slots pointing at row `pad`; count > capacity means it overflowed."""
    index, valid, count = compact_edges(vec, mask, r_max, capacity)
    senders, receivers = (jnp.where(valid, a[index], pad) for a in (senders, receivers))
    return vec[index], senders, receivers, valid, count


class _EdgeBudget:
    """The exact-edge buffer's size as a fraction of the list's capacity, measured once (the
    first allocation); None until then, meaning no compaction."""

    def __init__(self) -> None:
        self.fraction: float | None = None

    def capacity(self, list_capacity: int) -> int:
        if self.fraction is None:
            return list_capacity
        return min(list_capacity, math.ceil(self.fraction * list_capacity))


NPT_WIDTH_MARGIN = 1.1  # an NPT box may shrink by this factor in width before minimum image fails


def model_energy(potential: Potential, params, species: np.ndarray, cell: np.ndarray, skin: float = 0.5,
                 capacity_multiplier: float = 1.25, where: str = "structure", npt: bool = False,
                 exact_edges: bool = True, edge_margin: float = EDGE_MARGIN, edge_slack: int = EDGE_SLACK) -> MDSystem:
    """jax-md energy function and neighbour list (cutoff r_max + skin) for a periodic cell:
    jax-md's minimum-image Sparse list where that is exact, the image-shift list otherwise; with
    `npt`, fractional positions in a box that may change. `exact_edges`: the model sees only the
    list's pairs within r_max in a buffer of `edge_margin` x their count + `edge_slack` (the module
    docstring)."""
    r_max = potential.config.r_max
    if skin < 0:
        raise ConfigError(f"neighbour-list skin must be >= 0 Å, got {skin}")
    check_cell(cell, where)
    cell = np.asarray(cell, dtype=np.float64)
    dtype = potential.dtype
    n = int(len(species))
    fractional = npt
    if npt:
        need = NPT_WIDTH_MARGIN * 2 * (r_max + skin)
        width = perpendicular_widths(cell).min()
        if width < need:
            raise ConfigError(f"{where}: NPT needs every cell width >= {need:.2f} Å ({NPT_WIDTH_MARGIN} x 2 x "
                              f"(r_max + skin)), the narrowest is {width:.2f} Å; replicate the cell (--replicate)")
        box = jnp.asarray(cell.T, dtype)
        displacement, shift = space.periodic_general(box, fractional_coordinates=True)
        # list cutoff r_max + skin as elsewhere, but atoms may use only half the skin (rebuild at a
        # move of skin / 4): the other half is for the box shrinking (md/integrate.py)
        neighbor_fn = partition.neighbor_list(
            displacement, box, r_max + 0.5 * skin, dr_threshold=0.5 * skin, capacity_multiplier=capacity_multiplier,
            fractional_coordinates=True, format=partition.Sparse, disable_cell_list=True,
        )

        def edge_vectors(R_pad, neighbor, **kw):
            receivers, senders = neighbor.idx
            return jax.vmap(lambda a, b: displacement(a, b, **kw))(R_pad[senders], R_pad[receivers])
    elif minimum_image_is_exact(cell, r_max + skin):
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

        def edge_vectors(R_pad, neighbor, **unused):
            receivers, senders = neighbor.idx
            return jax.vmap(displacement)(R_pad[senders], R_pad[receivers])
    else:
        try:
            neighbor_fn = image_neighbor_list(cell, r_max + skin, skin, n, capacity_multiplier)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        # positions stay unwrapped (the list's shifts follow them); minimum image for observers
        displacement, _ = space.periodic_general(jnp.asarray(cell.T, dtype), fractional_coordinates=False)
        _, shift = space.free()
        cell_j = jnp.asarray(cell, dtype)

        def edge_vectors(R_pad, neighbor, **unused):
            return R_pad[neighbor.senders] - R_pad[neighbor.receivers] + neighbor.shifts.astype(R_pad.dtype) @ cell_j

    species_pad = jnp.asarray(np.concatenate([np.asarray(species), [0]]), jnp.int32)
    node_mask = jnp.arange(n + 1) < n
    far = jnp.array([2.0 * r_max + 1.0, 0.0, 0.0], dtype)
    volume = float(abs(np.linalg.det(cell)))
    radius = np.array([covalent_radii[atomic_numbers[s]] for s in potential.config.species])
    radius_pad = jnp.asarray(np.concatenate([radius[np.asarray(species)], [0.0]]), dtype)

    def geometry_kw(box, perturbation) -> dict:  # what the NPT displacement takes
        if not fractional:
            return {}
        return {k: v for k, v in (("box", box), ("perturbation", perturbation)) if v is not None}

    def pair_geometry(R, neighbor, box=None):
        receivers, senders = neighbor.idx
        R_pad = jnp.concatenate([R, jnp.zeros((1, 3), R.dtype)], axis=0)
        length = jnp.linalg.norm(edge_vectors(R_pad, neighbor, **geometry_kw(box, None)), axis=-1)
        return length, receivers < n, radius_pad[senders] + radius_pad[receivers]

    budget = _EdgeBudget()

    def strained_energy(R, neighbor, strain, box=None, perturbation=None):
        receivers, senders = neighbor.idx
        mask = receivers < n
        R_pad = jnp.concatenate([R, jnp.zeros((1, 3), R.dtype)], axis=0)
        vec = edge_vectors(R_pad, neighbor, **geometry_kw(box, perturbation))
        capacity = budget.capacity(receivers.shape[0])
        if exact_edges and capacity < receivers.shape[0]:
            vec, senders, receivers, mask, _ = pack_edges(vec, senders, receivers, mask, r_max, capacity, n)
        vec = jnp.where(mask[:, None], vec @ (jnp.eye(3, dtype=R.dtype) + strain), far)
        with jax.default_matmul_precision("highest"):
            atom = potential.atomic_energies(params, vec, species_pad, senders, receivers, mask, node_mask)
        return jnp.sum(atom)

    def energy_fn(R, neighbor, box=None, perturbation=None, **unused):
        return strained_energy(R, neighbor, jnp.zeros((3, 3), R.dtype), box, perturbation)

    def energy_stress_fn(R, neighbor, box=None):
        energy, d_strain = jax.value_and_grad(strained_energy, argnums=2)(R, neighbor, jnp.zeros((3, 3), R.dtype), box)
        vol = volume if box is None else jnp.abs(jnp.linalg.det(box))
        return energy, 0.5 * (d_strain + d_strain.T) / vol

    edge_check = None
    if exact_edges:
        neighbor_fn, edge_check = _budgeted(neighbor_fn, budget, pair_geometry, r_max, edge_margin, edge_slack,
                                            fractional)
    return MDSystem(energy_fn, energy_stress_fn, neighbor_fn, displacement, shift, cell, n, r_max + skin, r_max,
                    pair_geometry, fractional, lambda nbrs: budget.capacity(nbrs.idx.shape[-1]), edge_check)


def _budgeted(neighbor_fn, budget: _EdgeBudget, pair_geometry: Callable, r_max: float, margin: float, slack: int,
              fractional: bool):
    """The list functions with the exact-edge buffer's bookkeeping (the first allocation sets its
    size, every update flags an overflow when the pairs within r_max exceed it), and that check
    alone: check(R, nbrs) -> nbrs flagged, what an update that rebuilds nothing does."""
    base_allocate = neighbor_fn.allocate
    base_update = []  # the list's own update function, taken from the first allocation

    def in_range(R, nbrs, kw) -> jax.Array:
        length, mask, _ = pair_geometry(R, nbrs, **({"box": kw["box"]} if fractional and "box" in kw else {}))
        return jnp.sum(mask & (length < r_max))

    def flagged(nbrs, too_many):
        if isinstance(nbrs, ImageList):
            return nbrs.set(overflow=nbrs.overflow | too_many)
        return nbrs.set(error=nbrs.error.update(partition.PartitionErrorCode.NEIGHBOR_LIST_OVERFLOW, too_many))

    def check(R, nbrs, **kw):
        return flagged(nbrs, in_range(R, nbrs, kw) > budget.capacity(nbrs.idx.shape[-1]))

    def update(R, nbrs, **kw):
        return check(R, base_update[0](R, nbrs, **kw).set(update_fn=update), **kw)

    def allocate(R, extra_capacity: int = 0, **kw):
        nbrs = base_allocate(R, extra_capacity=extra_capacity, **kw)
        if not base_update:
            base_update.append(nbrs.update_fn)
        count = int(in_range(jnp.asarray(R), nbrs, kw))
        size = nbrs.idx.shape[-1]
        if budget.fraction is None and size:
            budget.fraction = min(1.0, (margin * count + slack) / size)
        return flagged(nbrs.set(update_fn=update), count > budget.capacity(size))

    return dataclasses.replace(neighbor_fn, allocate=allocate, update=update), check
