"""A domain's ghost plan and edge list, rebuilt when some atom has moved half a skin, and the
migration of atoms to their new owner at each rebuild. Capacities are fixed per compiled program;
going over any of them raises a flag the host answers by growing them and re-running.

The edge list is searched here rather than by jax-md: a domain's local array holds a changing set
of padded rows (owned atoms, ghosts, empty slots), which jax-md's list cannot mask. Centres are
searched in blocks against every local row, at rebuilds only; in between the list is reused with
a skin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from legato_jax.parallel.domains import DomainGrid
from legato_jax.parallel.halo import HaloBackend, HaloPlan, exchange, face_capacities


@dataclass(frozen=True)
class Capacities:
    owned: int  # atom slots per domain
    faces: tuple[int, int, int]  # ghosts per face and stage
    migrate: int  # atoms leaving through one face at one rebuild
    edges: int  # edges centred on owned atoms
    per_atom: int  # neighbours of one atom within r_max + skin, for the blocked search

    def grown(self, factor: float = 1.5) -> "Capacities":
        up = lambda n: int(np.ceil(factor * n))  # noqa: E731
        return Capacities(up(self.owned), tuple(up(f) for f in self.faces), up(self.migrate), up(self.edges),
                          up(self.per_atom))


def estimate_capacities(grid: DomainGrid, n_atoms: int, r_max: float, slack: float = 1.4) -> Capacities:
    density = n_atoms / float(np.prod(grid.box))
    owned = int(np.ceil(slack * n_atoms / grid.size)) + 8
    w, h = grid.width, grid.halo
    faces = face_capacities(grid, n_atoms, slack)
    largest_face = (w[0] + 2 * h) * (w[1] + 2 * h)
    migrate = int(np.ceil(slack * density * 0.5 * (h - r_max) * largest_face)) + 8
    per_atom = int(np.ceil(slack * density * 4 / 3 * np.pi * h**3)) + 8
    edges = int(np.ceil(slack * density * 4 / 3 * np.pi * h**3 * n_atoms / grid.size)) + 64
    return Capacities(owned, faces, migrate, edges, per_atom)


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
                mask, block: int = 128) -> Lists:
    X, spec, valid, plan, overflow = exchange(backend, grid, positions, species, mask, caps.faces)
    C, M = positions.shape[0], X.shape[0]
    n_blocks = -(-C // block)
    centres = jnp.arange(n_blocks * block).reshape(n_blocks, block)

    def one_block(rows):
        ok = rows < C
        rc = jnp.minimum(rows, C - 1)
        d = jnp.linalg.norm(X[None, :, :] - X[rc][:, None, :], axis=-1)  # (block, M)
        pair = (d < cutoff) & valid[None, :] & (ok & mask[rc])[:, None] & (jnp.arange(M)[None, :] != rc[:, None])
        count = jnp.sum(pair)
        r, s = jnp.nonzero(pair, size=block * caps.per_atom, fill_value=block)
        return jnp.where(r < block, rows[jnp.minimum(r, block - 1)], C), jnp.where(r < block, s, M), count

    rec, snd, counts = lax.map(one_block, centres)
    overflow = overflow | jnp.any(counts > block * caps.per_atom)
    rec, snd = rec.reshape(-1), snd.reshape(-1)
    keep = rec < C
    overflow = overflow | (jnp.sum(keep) > caps.edges)
    (sel,) = jnp.nonzero(keep, size=caps.edges, fill_value=rec.shape[0])
    rec = jnp.concatenate([rec, jnp.array([M])])[sel]
    snd = jnp.concatenate([snd, jnp.array([M])])[sel]
    edge_mask = rec < M
    return Lists(plan, spec, valid, jnp.where(edge_mask, snd, M), jnp.where(edge_mask, rec, M), edge_mask,
                 positions, overflow)


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
