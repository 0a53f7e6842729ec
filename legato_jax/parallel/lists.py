"""A domain's ghost plan and edge list, rebuilt when some atom has moved half a skin, and the
migration of atoms to their new owner at each rebuild. Capacities are fixed per compiled program;
going over any of them raises a flag the host answers by growing them and re-running.

The edge list is searched here rather than by jax-md: a domain's local array holds a changing set
of padded rows (owned atoms, ghosts, empty slots), which jax-md's list cannot mask. The rows are
sorted into bins at least one cutoff wide over the domain and its ghost layer, and each owned atom
tests the rows of the 27 bins around its own, at rebuilds only; in between the list is reused with
a skin. Ghosts are explicit periodic images, so the bins do not wrap."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from legato_jax.md.bitmask import compact_set, count_set, pack_mask
from legato_jax.md.energy import EDGE_SLACK
from legato_jax.parallel.domains import DomainGrid
from legato_jax.parallel.halo import HaloBackend, HaloPlan, exchange, face_capacities

BIN_ROUND = 8  # rows per bin are a multiple of this (with centres a multiple of 4: whole 32-bit words)


@dataclass(frozen=True)
class Capacities:
    owned: int  # atom slots per domain
    faces: tuple[int, int, int]  # ghosts per face and stage
    migrate: int  # atoms leaving through one face at one rebuild
    edges: int  # edges centred on owned atoms (the list's cutoff)
    per_bin: int  # rows (owned or ghost) in one search bin
    model_edges: int  # MD: the exact-edge buffer, the list's pairs within r_max the model evaluates

    def grown(self, factor: float = 1.5) -> "Capacities":
        up = lambda n: int(np.ceil(factor * n))  # noqa: E731
        return Capacities(up(self.owned), tuple(up(f) for f in self.faces), up(self.migrate), up(self.edges),
                          _round_bin(up(self.per_bin)), up(self.model_edges))


def _round_bin(n: int) -> int:
    return BIN_ROUND * math.ceil(n / BIN_ROUND)


EDGE_MULTIPLIER = 1.25  # edge slots per edge counted at the start: jax-md's capacity_multiplier
# exact-edge slots per pair within r_max at the start: a domain's count moves with the atoms that
# migrate, so more spare than the whole system's 1.05 (an overflow regrows and recompiles)
MODEL_EDGE_MARGIN = 1.15


def estimate_capacities(grid: DomainGrid, n_atoms: int, r_max: float, slack: float = 1.4,
                        positions: np.ndarray | None = None) -> Capacities:
    """Capacities from the density (with `slack` headroom); given the starting `positions`, the
    edge buffer is sized as jax-md sizes its list instead: 1.25 x the most edges (within r_max +
    skin) any domain's atoms have there, and the exact-edge buffer 1.15 x the most pairs within
    r_max, plus 16. Every padded edge costs a full model evaluation."""
    density = n_atoms / float(np.prod(grid.box))
    owned = int(np.ceil(slack * n_atoms / grid.size)) + 8
    w, h = grid.width, grid.halo
    faces = face_capacities(grid, n_atoms, slack)
    largest_face = (w[0] + 2 * h) * (w[1] + 2 * h)
    migrate = int(np.ceil(slack * density * 0.5 * (h - r_max) * largest_face)) + 8
    bin_volume = max(np.prod(SearchBins(grid, c).width) for c in (r_max, h))  # energy and MD cutoffs
    per_bin = _round_bin(int(np.ceil(slack * density * bin_volume)) + 8)
    if positions is None:
        sphere = lambda r: slack * density * 4 / 3 * np.pi * r**3 * n_atoms / grid.size  # noqa: E731
        edges, model_edges = int(np.ceil(sphere(h))) + 64, int(np.ceil(sphere(r_max))) + EDGE_SLACK
    else:
        edges = int(np.ceil(EDGE_MULTIPLIER * most_edges(grid, positions, h))) + 64
        model_edges = int(np.ceil(MODEL_EDGE_MARGIN * most_edges(grid, positions, r_max))) + EDGE_SLACK
    return Capacities(owned, faces, migrate, edges, per_bin, model_edges)


def most_edges(grid: DomainGrid, positions: np.ndarray, cutoff: float) -> int:
    """The largest number of edges within `cutoff` centred on one domain's atoms (host, vesin)."""
    from legato_jax.data.neighbors import neighbor_list

    positions = np.asarray(positions, np.float64)
    centres = neighbor_list(positions, np.diag(grid.box), True, cutoff)[0]
    return int(np.bincount(grid.owner(positions)[centres], minlength=grid.size).max())


class SearchBins:
    """Static bin geometry over a domain and its ghost layer, [lo - halo, lo + width + halo) per
    axis: n_a = max(1, floor(extent_a / cutoff)) bins of width >= cutoff, plus an empty layer on
    each side so that every owned atom's 27 neighbour bins exist and none is counted twice."""

    def __init__(self, grid: DomainGrid, cutoff: float):
        extent = np.asarray(grid.width) + 2 * grid.halo
        self.n = np.maximum(1, np.floor(extent / cutoff)).astype(int)
        self.width = extent / self.n
        self.halo, self.domain_width = grid.halo, np.asarray(grid.width)
        padded = self.n + 2
        self.count = int(np.prod(padded))
        stencil = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
        inner = np.stack(np.unravel_index(np.arange(self.count), padded), -1)
        around = np.clip(inner[:, None, :] + stencil, 0, padded - 1)  # clipped only for the empty layer
        self.neighbours = np.ravel_multi_index(tuple(np.moveaxis(around, -1, 0)), padded).astype(np.int32)

    def of(self, backend: HaloBackend, X: jax.Array, valid: jax.Array) -> jax.Array:
        """Flat bin of each row; invalid rows get `count` (outside the table)."""
        coord = jnp.stack([backend.coord(a) for a in range(3)]).astype(X.dtype)
        origin = coord * jnp.asarray(self.domain_width, X.dtype) - self.halo
        b = jnp.floor((X - origin) / jnp.asarray(self.width, X.dtype)).astype(jnp.int32)
        b = jnp.clip(b, 0, jnp.asarray(self.n - 1)) + 1  # rows past the extent: the edge bin
        padded = self.n + 2
        flat = (b[:, 0] * padded[1] + b[:, 1]) * padded[2] + b[:, 2]
        return jnp.where(valid, flat, self.count)


class Lists(NamedTuple):
    """A domain's ghost plan and edge list, valid until some atom moves half a skin."""

    plan: HaloPlan
    species: jax.Array  # (M,) of owned + ghost rows
    valid: jax.Array  # (M,)
    senders: jax.Array  # (E,) neighbour rows
    receivers: jax.Array  # (E,) centre rows (owned)
    edge_mask: jax.Array  # (E,)
    reference: jax.Array  # (C, 3) owned positions at the build
    overflow: jax.Array


def build_lists(backend: HaloBackend, grid: DomainGrid, caps: Capacities, cutoff: float, positions, species,
                mask) -> Lists:
    """Ghosts by the halo exchange, then all (owned centre, row) pairs closer than `cutoff`, in
    centre order; sets the overflow flag when a face, a bin or the edge buffer is too small."""
    X, spec, valid, plan, overflow = exchange(backend, grid, positions, species, mask, caps.faces)
    C, M = positions.shape[0], X.shape[0]
    bins = SearchBins(grid, cutoff)
    row_bin = bins.of(backend, X, valid)
    order = jnp.argsort(row_bin).astype(jnp.int32)
    occupancy = jnp.bincount(row_bin, length=bins.count + 1)[: bins.count]
    overflow = overflow | (jnp.max(occupancy) > caps.per_bin)
    start = jnp.cumsum(occupancy) - occupancy
    sorted_bin = row_bin[order]
    slot = jnp.arange(M) - start[jnp.minimum(sorted_bin, bins.count - 1)]
    table = jnp.full((bins.count, caps.per_bin), M, jnp.int32)
    table = table.at[sorted_bin, slot].set(order, mode="drop")  # rows per bin, padded M

    n_centres = 4 * math.ceil(C / 4)  # x 27 x per_bin (a multiple of 8): whole words for pack_mask
    centre = jnp.minimum(jnp.arange(n_centres), C - 1)
    live = (jnp.arange(n_centres) < C) & mask[centre]
    j = table[jnp.asarray(bins.neighbours)[jnp.minimum(row_bin[centre], bins.count - 1)]]  # (centres, 27, per_bin)
    X_pad = jnp.concatenate([X, jnp.zeros((1, 3), X.dtype)]).T
    dist2 = sum((X_pad[c][j] - X[centre, c][:, None, None]) ** 2 for c in range(3))
    pair = (dist2 < cutoff**2) & (j < M) & (j != centre[:, None, None]) & live[:, None, None]
    words = pack_mask(pair.reshape(-1, 32))
    count = count_set(words)
    overflow = overflow | (count > caps.edges)
    flat = compact_set(words, caps.edges)
    edge_mask = jnp.arange(caps.edges) < count
    i, k, s = jnp.unravel_index(jnp.minimum(flat, pair.size - 1), pair.shape)
    receivers = jnp.where(edge_mask, centre[i], M)
    senders = jnp.where(edge_mask, j[i, k, s], M)
    return Lists(plan, spec, valid, senders, receivers, edge_mask, positions, overflow)


def migrate(backend: HaloBackend, grid: DomainGrid, caps: Capacities, rows: dict, mask):
    """Atoms outside this domain's region move to the neighbour that owns them (staged x, y, z, so
    diagonal moves take two or three hops); positions are wrapped into the box. `rows` holds
    per-row arrays (position first); returns the compacted rows, mask and an overflow flag."""
    C = mask.shape[0]
    box = jnp.asarray(grid.box, rows["position"].dtype)
    width = jnp.asarray(grid.width, rows["position"].dtype)
    overflow = jnp.array(False)
    for axis in range(3):
        c = backend.coord(axis)
        lo = c.astype(box.dtype) * width[axis]
        hi = lo + width[axis]
        x = rows["position"][:, axis]
        pad = {k: jnp.concatenate([v, jnp.zeros((1,) + v.shape[1:], v.dtype)]) for k, v in rows.items()}
        arrived, arrived_mask = [], []
        stay = mask
        for direction in (+1, -1):
            leaving = mask & ((x >= hi) if direction > 0 else (x < lo))
            stay = stay & ~leaving
            overflow = overflow | (jnp.sum(leaving) > caps.migrate)
            (idx,) = jnp.nonzero(leaving, size=caps.migrate, fill_value=C)
            valid = idx < C
            crosses = (c == grid.shape[axis] - 1) if direction > 0 else (c == 0)
            sent = {k: v[idx] for k, v in pad.items()}
            sent["position"] = sent["position"].at[:, axis].add(jnp.where(valid & crosses, -direction * box[axis], 0.0))
            got, got_valid = backend.shift((sent, valid), axis, direction)
            arrived.append(got)
            arrived_mask.append(got_valid)
        every = {k: jnp.concatenate([rows[k]] + [a[k] for a in arrived]) for k in rows}
        every_mask = jnp.concatenate([stay] + arrived_mask)
        overflow = overflow | (jnp.sum(every_mask) > C)
        (idx,) = jnp.nonzero(every_mask, size=C, fill_value=every_mask.shape[0])
        mask = idx < every_mask.shape[0]
        rows = {k: jnp.concatenate([v, jnp.zeros((1,) + v.shape[1:], v.dtype)])[idx] for k, v in every.items()}
    return rows, mask, overflow
