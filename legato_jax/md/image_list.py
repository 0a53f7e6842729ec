"""Exact periodic neighbour lists for any cell, built inside jit.

jax-md's Sparse list uses minimum image, which misses neighbours once a cell is narrower than twice
the cutoff. This list enumerates the integer image shifts a pair needs, so it holds exactly ASE's
`neighbor_list` edges (i, j, S) for every periodic cell: triclinic, narrower than the cutoff, several
images of one neighbour, an atom's own images. Positions may be unwrapped: each build wraps the
fractional coordinates and folds the integer offsets back into the shifts, so that
r_ij = R[j] - R[i] + S @ cell holds for the positions as given and stays right while atoms move
continuously. Skin, rebuild and overflow follow jax-md's Sparse list: `allocate` (host) sizes the
buffers, `update` (jit) rebuilds once an atom has moved more than skin/2 from its reference
position, and a too-small buffer sets a sticky overflow flag.

Two searches: "dense" tests all N x N x S (i, j, shift) candidates; "binned" sorts the atoms into
bins in fractional coordinates at least one cutoff wide and tests the atoms of the bins around each
atom, the wrap of the bin index giving the image shift. "auto" picks the cheaper by a cost model fitted
to the timings of scripts/bench_image_list.py.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax_md import dataclasses

from legato_jax.data.cell import perpendicular_widths
from legato_jax.md.bitmask import compact_set, count_set, pack_mask
from legato_jax.errors import ConfigError

MIN_WIDTH = 1.0  # Å: narrowest perpendicular cell width any search accepts
MAX_SHIFTS = 1000  # image shifts beyond which a cell is refused (the cutoff spans too many cells)
METHODS = ("auto", "dense", "binned")


@dataclasses.dataclass
class ImageList:
    """Edges i -> j with integer cell shifts; padded entries have receivers = senders = N, shift 0."""

    receivers: jax.Array  # (E,) int32, centre atom i
    senders: jax.Array  # (E,) int32, neighbour atom j
    shifts: jax.Array  # (E, 3), dtype of R: r_ij = R[j] - R[i] + shifts @ cell
    reference_position: jax.Array  # (N, 3) positions at the last build
    count: jax.Array  # int32, pairs found at the last build (> E: overflow)
    overflow: jax.Array  # bool, sticky: edge buffer or a bin was too small
    bin_capacity: int = dataclasses.static_field()  # atoms per bin (binned search; 0 for dense)
    update_fn: Callable = dataclasses.static_field()

    @property
    def idx(self) -> jax.Array:
        """(2, E) = (receivers, senders), jax-md's Sparse layout."""
        return jnp.stack([self.receivers, self.senders])

    @property
    def did_buffer_overflow(self) -> jax.Array:
        return self.overflow

    @property
    def capacity(self) -> int:
        return self.receivers.shape[0]

    def update(self, R: jax.Array) -> ImageList:
        return self.update_fn(R, self)


@dataclasses.dataclass
class ImageListFns:
    """`allocate(R, extra_capacity=0)` on the host; `update(R, nbrs)` inside jit."""

    allocate: Callable = dataclasses.static_field()
    update: Callable = dataclasses.static_field()
    method: str = dataclasses.static_field()  # the search in use ("dense" or "binned")


def image_shifts(cell: np.ndarray, cutoff: float) -> np.ndarray:
    """Integer shifts (S, 3) that can reach within `cutoff` once fractional differences are reduced
    to [-0.5, 0.5): |s_a| <= floor(0.5 + cutoff / w_a), with w_a the perpendicular widths."""
    n = np.floor(0.5 + cutoff / perpendicular_widths(np.asarray(cell, np.float64))).astype(int)
    return _box_offsets(n)


def image_neighbor_list(cell: np.ndarray, cutoff: float, skin: float, n_atoms: int,
                        capacity_multiplier: float = 1.25, method: str = "auto") -> ImageListFns:
    """Neighbour list of all (i, j, S) within `cutoff` Å (pass r_max + skin) in a fixed periodic
    cell (rows are lattice vectors); rebuilt when an atom moves more than `skin` / 2."""
    cell = np.asarray(cell, np.float64)
    _check(cell, cutoff, skin, method)
    dense = _DenseSearch(cell, cutoff)
    binned = _BinnedSearch(cell, cutoff)
    if method == "auto":
        method = "dense" if dense.cost(n_atoms) <= binned.cost(n_atoms) else "binned"
    search = dense if method == "dense" else binned
    threshold_sq = (0.5 * skin) ** 2

    @jax.jit
    def update(R: jax.Array, nbrs: ImageList) -> ImageList:
        R = R.astype(nbrs.reference_position.dtype)
        moved = jnp.max(jnp.sum((R - nbrs.reference_position) ** 2, axis=-1)) > threshold_sq

        def rebuild(R):
            new = build(R, nbrs.capacity, nbrs.bin_capacity)  # keeps a wrapper's update_fn (md/energy.py)
            return new.set(overflow=new.overflow | nbrs.overflow, update_fn=nbrs.update_fn)

        return lax.cond(moved, rebuild, lambda R: nbrs, R)

    def build(R: jax.Array, capacity: int, bin_capacity: int) -> ImageList:
        n = R.shape[0]
        mask, edges, bins_overflow = search(R, bin_capacity)
        words = pack_mask(mask)
        count = count_set(words)
        receivers, senders, shifts = edges(compact_set(words, capacity))
        valid = jnp.arange(capacity) < count
        return ImageList(
            receivers=jnp.where(valid, receivers, n).astype(jnp.int32),
            senders=jnp.where(valid, senders, n).astype(jnp.int32),
            shifts=jnp.where(valid[:, None], shifts, 0).astype(R.dtype),
            reference_position=R, count=count, overflow=(count > capacity) | bins_overflow,
            bin_capacity=bin_capacity, update_fn=update,
        )

    jit_build = jax.jit(build, static_argnums=(1, 2))
    jit_count = jax.jit(lambda R, bin_capacity: count_set(pack_mask(search(R, bin_capacity)[0])), static_argnums=1)

    def allocate(R: jax.Array, extra_capacity: int = 0) -> ImageList:
        R = jnp.asarray(R)
        if R.shape != (n_atoms, 3):
            raise ConfigError(f"image neighbour list was made for {n_atoms} atoms, got positions of shape {R.shape}")
        bin_capacity = search.bin_capacity(R, capacity_multiplier, extra_capacity)
        count = int(jit_count(R, bin_capacity))
        capacity = max(1, math.ceil(count * capacity_multiplier) + extra_capacity * n_atoms)
        return jit_build(R, capacity, bin_capacity)

    return ImageListFns(allocate=allocate, update=update, method=method)


def _check(cell: np.ndarray, cutoff: float, skin: float, method: str) -> None:
    """One-line ConfigErrors for what no search can handle."""
    if method not in METHODS:
        raise ConfigError(f"neighbour-list method must be one of {', '.join(METHODS)}, got {method!r}")
    if not cutoff > 0 or skin < 0:
        raise ConfigError(f"neighbour list needs cutoff > 0 and skin >= 0 Å, got cutoff {cutoff}, skin {skin}")
    if cell.shape != (3, 3) or not abs(np.linalg.det(cell)) > 1e-9:
        raise ConfigError("a periodic neighbour list needs a cell with a non-zero volume; "
                          "set the cell on the structure")
    widths = perpendicular_widths(cell)
    axis = int(np.argmin(widths))
    n_shifts = len(image_shifts(cell, cutoff))
    if widths[axis] < MIN_WIDTH:
        need = f"needs >= {MIN_WIDTH:g} Å"
    elif n_shifts > MAX_SHIFTS:
        need = f"cutoff {cutoff:g} Å needs {n_shifts} image shifts, at most {MAX_SHIFTS}"
    else:
        return
    raise ConfigError(f"cell width {widths[axis]:.3f} Å along lattice vector {axis} is too narrow for a "
                      f"neighbour search ({need}); check the cell, or replicate it")


def _box_offsets(half: np.ndarray) -> np.ndarray:
    """All integer vectors (K, 3) with |k_a| <= half_a."""
    grid = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=-1)


def _wrap(R: jax.Array, cell: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """Fractional coordinates in [0, 1) and the integer offsets removed: R @ cell^-1 = f + offset."""
    frac = R @ jnp.asarray(np.linalg.inv(cell), R.dtype)
    offset = jnp.floor(frac)
    return frac - offset, offset


def _norm2(x: jax.Array, cell: np.ndarray) -> jax.Array:
    """|x @ cell|^2 for fractional vectors stored component-first, x of shape (3, ...): separate
    component arrays keep XLA's fused loops vectorized (an innermost axis of 3 is ~20x slower)."""
    return sum((x[0] * cell[0, c] + x[1] * cell[1, c] + x[2] * cell[2, c]) ** 2 for c in range(3))


class _DenseSearch:
    """All (i, s, j) with s from `image_shifts`: N^2 S candidates, edges sorted by (i, s, j)."""

    def __init__(self, cell: np.ndarray, cutoff: float):
        self.cell, self.cutoff = cell, cutoff
        self.shifts = image_shifts(cell, cutoff)

    def cost(self, n_atoms: int) -> float:
        """Candidates tested (~1.7 ns each on CPU, scripts/bench_image_list.py)."""
        return n_atoms * n_atoms * len(self.shifts)

    def bin_capacity(self, R: jax.Array, capacity_multiplier: float, extra_capacity: int) -> int:
        return 0

    def __call__(self, R: jax.Array, bin_capacity: int):
        n, shifts = len(R), jnp.asarray(self.shifts.T, R.dtype)  # (3, S)
        f, offset = _wrap(R, self.cell)
        f_j = jnp.pad(f.T, ((0, 0), (0, -n % 32)))  # j axis padded to a multiple of 32 for `pack_mask`
        d = f_j[:, None, :] - f.T[:, :, None]  # (3, i, j) = f_j - f_i
        d = d - jnp.floor(d + 0.5)  # in [-0.5, 0.5)
        x = d[:, :, None, :] + shifts[:, None, :, None]  # (3, i, s, j)
        i, j = np.arange(n)[:, None, None], np.arange(f_j.shape[1])
        self_edge = (i == j) & np.all(self.shifts == 0, axis=1)[:, None]
        mask = (_norm2(x, self.cell) < self.cutoff**2) & ~self_edge & (j < n)

        def edges(flat):
            i, s, j = jnp.unravel_index(flat, mask.shape)
            j = jnp.minimum(j, n - 1)
            return i, j, shifts.T[s] - jnp.floor(f[j] - f[i] + 0.5) + offset[i] - offset[j]

        return mask, edges, jnp.zeros((), bool)


class _BinnedSearch:
    """Bins in fractional coordinates, nb_a = max(1, floor(w_a / cutoff)) along each axis; each atom
    tests the atoms of the bins b + k, |k_a| <= ceil(cutoff / (w_a / nb_a)), with bin b + k wrapped
    into the cell and the wrap as the image shift. N K C candidates (C atoms per bin), sorted by i."""

    def __init__(self, cell: np.ndarray, cutoff: float):
        self.cell, self.cutoff = cell, cutoff
        widths = perpendicular_widths(cell)
        self.n_bins = np.maximum(1, np.floor(widths / cutoff)).astype(int)
        stencil = _box_offsets(np.ceil(cutoff * self.n_bins / widths).astype(int))
        self.centre = int(np.flatnonzero(np.all(stencil == 0, axis=1))[0])
        # Per bin, its K neighbour bins and their image shifts: static tables, so that XLA gathers
        # them instead of recomputing index arithmetic inside the fused candidate loop (~5x slower).
        bins = np.stack(np.unravel_index(np.arange(np.prod(self.n_bins)), self.n_bins), axis=-1)
        target = bins[:, None, :] + stencil  # (bins, K, 3) before wrapping
        self.wrap = np.floor_divide(target, self.n_bins)
        self.neighbour_bins = np.ravel_multi_index(tuple(np.moveaxis(target - self.wrap * self.n_bins, -1, 0)),
                                                   self.n_bins)

    def cost(self, n_atoms: int) -> float:
        """Candidates tested (with a typical bin capacity: 1.6 x the mean occupancy, rounded up to
        32), x3 for their gathers: ~5 ns each on CPU against ~1.7 ns for a dense candidate."""
        per_bin = 32 * math.ceil(1.6 * n_atoms / np.prod(self.n_bins) / 32)
        return 3.0 * n_atoms * self.neighbour_bins.shape[1] * per_bin

    def _bin(self, f: jax.Array) -> jax.Array:
        """Flat bin index (C order) of each atom."""
        nb = self.n_bins
        b = jnp.clip(jnp.floor(f * nb).astype(jnp.int32), 0, nb - 1)
        return (b[:, 0] * nb[1] + b[:, 1]) * nb[2] + b[:, 2]

    def bin_capacity(self, R: jax.Array, capacity_multiplier: float, extra_capacity: int) -> int:
        occupancy = np.bincount(np.asarray(self._bin(_wrap(R, self.cell)[0])), minlength=np.prod(self.n_bins))
        return 32 * math.ceil((int(occupancy.max() * capacity_multiplier) + extra_capacity) / 32)  # see `pack_mask`

    def __call__(self, R: jax.Array, bin_capacity: int):
        n, n_bins = len(R), int(np.prod(self.n_bins))
        f, offset = _wrap(R, self.cell)
        bin_ = self._bin(f)
        order = jnp.argsort(bin_).astype(jnp.int32)
        occupancy = jnp.bincount(bin_, length=n_bins)
        slot = jnp.arange(n) - (jnp.cumsum(occupancy) - occupancy)[bin_[order]]
        table = jnp.full((n_bins, bin_capacity), n, jnp.int32)
        table = table.at[bin_[order], slot].set(order, mode="drop")  # atom ids per bin, padded n
        P = f @ jnp.asarray(self.cell, R.dtype)  # wrapped positions: r_ij = P_j - P_i + wrap @ cell
        base = jnp.asarray(self.wrap @ self.cell, R.dtype)[bin_] - P[:, None, :]  # (N, K, 3)
        j = table[jnp.asarray(self.neighbour_bins)[bin_]]  # (N, K, C)
        P_pad = jnp.concatenate([P.T, jnp.zeros((3, 1), P.dtype)], axis=1)
        dist2 = sum((P_pad[c][j] + base[:, :, c, None]) ** 2 for c in range(3))
        self_edge = (j == jnp.arange(n)[:, None, None]) & (np.arange(j.shape[1]) == self.centre)[:, None]
        mask = (j < n) & (dist2 < self.cutoff**2) & ~self_edge

        def edges(flat):
            i, k, c = jnp.unravel_index(flat, mask.shape)
            jj = jnp.minimum(j[i, k, c], n - 1)
            return i, jj, jnp.asarray(self.wrap, R.dtype)[bin_[i], k] + offset[i] - offset[jj]

        return mask, edges, jnp.max(occupancy) > bin_capacity
