"""MD over a grid of domains: each domain integrates its own atoms with jax-md, forces come from
its owned atoms plus ghosts, and at every neighbour-list rebuild atoms migrate to their new owner
and the ghost plan and edge list are rebuilt. All of it runs inside one shard_map body over a
device mesh, so a chunk of steps is one compiled program.

The per-domain edge list is built here rather than by jax-md: a domain's local array holds a
changing set of padded rows (owned atoms, ghosts, empty slots), which jax-md's list cannot mask.
It is searched in blocks of centres at rebuilds only and reused with a skin in between."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax_md import simulate, space

from legato_jax.md.integrate import FS
from legato_jax.model.potential import Potential
from legato_jax.parallel.domains import DomainGrid, decompose, gather
from legato_jax.parallel.energy import domain_mesh
from legato_jax.parallel.halo import AXES, HaloBackend, HaloPlan, MeshBackend, exchange, face_capacities, forward


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


def domain_energy_fn(potential: Potential, params, backend: HaloBackend):
    """E(owned positions, lists, mask): the model's energy of this domain's own atoms."""
    module = potential.module
    far_x = 2.0 * potential.config.r_max + 1.0

    def energy(positions, lists: Lists, mask):
        X = forward(backend, positions, lists.plan)
        X_pad = jnp.concatenate([X, jnp.zeros((1, 3), X.dtype)])
        far = jnp.asarray([far_x, 0.0, 0.0], X.dtype)
        vec = jnp.where(lists.edge_mask[:, None], X_pad[lists.senders] - X_pad[lists.receivers], far)
        node_mask = jnp.concatenate([lists.valid, jnp.array([False])])
        spec = jnp.concatenate([lists.species, jnp.zeros((1,), lists.species.dtype)])
        with jax.default_matmul_precision("highest"):
            atom = module.apply(params, vec, spec, lists.senders, lists.receivers, lists.edge_mask, node_mask)
        return jnp.sum(jnp.where(mask, atom[: positions.shape[0]], 0.0))

    return energy


class DomainState(NamedTuple):
    md: simulate.NVEState  # per-row position, momentum, force, mass
    species: jax.Array
    ids: jax.Array
    mask: jax.Array
    lists: Lists


def make_nve_chunk(potential: Potential, params, grid: DomainGrid, caps: Capacities, skin: float, dt_fs: float,
                   backend: HaloBackend):
    """(init(positions, momenta, masses, species, ids, mask), chunk(state, steps)) for one domain's
    view, to be run inside shard_map. chunk returns the state, the total and kinetic energy per
    step, the rebuild count and an overflow flag (all global)."""
    energy = domain_energy_fn(potential, params, backend)
    cutoff = potential.config.r_max + skin

    def force(R, lists, mask, **unused):
        return -jax.grad(energy)(R, lists, mask)

    _, shift = space.free()
    init_md, apply_md = simulate.nve(force, shift, dt_fs * FS)

    def init(positions, momenta, masses, species, ids, mask):
        lists = build_lists(backend, grid, caps, cutoff, positions, species, mask)
        md = init_md(None, positions, 0.0, mass=masses[:, None], momenta=momenta, lists=lists, mask=mask)
        return DomainState(md, species, ids, mask, lists)

    def rebuild(state: DomainState) -> DomainState:
        md = state.md
        rows = {"position": md.position, "momentum": md.momentum, "force": md.force, "mass": md.mass,
                "species": state.species, "ids": state.ids}
        rows, mask, overflow = migrate(backend, grid, caps, rows, state.mask)
        mass = jnp.where(mask[:, None], rows["mass"], 1.0)
        md = md.set(position=rows["position"], momentum=rows["momentum"], force=rows["force"], mass=mass)
        lists = build_lists(backend, grid, caps, cutoff, rows["position"], rows["species"], mask)
        lists = lists._replace(overflow=lists.overflow | overflow | state.lists.overflow)
        return DomainState(md, rows["species"], jnp.where(mask, rows["ids"], -1), mask, lists)

    def observe(state: DomainState):
        e = energy(state.md.position, state.lists, state.mask)
        ke = jnp.sum(jnp.where(state.mask, jnp.sum(state.md.momentum**2, -1) / (2 * state.md.mass[:, 0]), 0.0))
        return backend.sum(e), backend.sum(ke)

    def step(state: DomainState, _):
        moved = jnp.max(jnp.where(state.mask, jnp.sum((state.md.position - state.lists.reference) ** 2, -1), 0.0))
        need = backend.sum((moved > (0.5 * skin) ** 2).astype(jnp.int32)) > 0
        state = lax.cond(need, rebuild, lambda s: s, state)
        md = apply_md(state.md, lists=state.lists, mask=state.mask)
        state = state._replace(md=md)
        pe, ke = observe(state)
        return state, (pe + ke, ke, need)

    def chunk(state: DomainState, steps: int):
        state, (total, ke, rebuilt) = lax.scan(step, state, None, length=steps)
        overflow = backend.sum(state.lists.overflow.astype(jnp.int32)) > 0
        return state, total, ke, jnp.sum(rebuilt), overflow

    return init, chunk


@dataclass
class DecomposedRun:
    positions: np.ndarray  # (n, 3) final, wrapped, global order
    momenta: np.ndarray
    total_energy: np.ndarray  # (steps,) eV
    kinetic_energy: np.ndarray
    rebuilds: int
    capacity_growths: int


def run_nve_decomposed(potential: Potential, params, positions, momenta, masses, species, cell, shape, steps: int,
                       dt_fs: float, skin: float = 0.5, chunk_steps: int = 100, devices=None,
                       capacities: Capacities | None = None) -> DecomposedRun:
    """NVE of a periodic orthorhombic system split into `shape` domains over host or GPU devices.
    An overflow anywhere grows every capacity and re-runs the chunk from its start."""
    grid = DomainGrid.for_cell(shape, cell, potential.config.r_max + skin)
    mesh = domain_mesh(grid, devices)
    n = len(species)
    caps = capacities or estimate_capacities(grid, n, potential.config.r_max)
    dtype = potential.dtype
    R = np.mod(np.asarray(positions, float), np.asarray(grid.box))
    p = np.asarray(momenta, float)
    spec = P(AXES)
    totals, kinetic, rebuilds, growths, done = [], [], 0, 0, 0
    while done < steps:
        block = min(chunk_steps, steps - done)
        while True:
            init, chunk = make_nve_chunk(potential, params, grid, caps, skin, dt_fs, MeshBackend(grid.shape))
            caps = dataclasses.replace(caps, owned=max(caps.owned, int(np.bincount(grid.owner(R)).max())))
            dec, extra = decompose(grid, R, species, caps.owned,
                                   {"momenta": p, "masses": np.asarray(masses, float), "ids": np.arange(n)})

            def body(pos, mom, mass, spc, ids, mask):
                state = init(pos[0], mom[0], mass[0], spc[0], ids[0], mask[0])
                state, total, ke, nreb, overflow = chunk(state, block)
                return (state.md.position[None], state.md.momentum[None], state.ids[None], total, ke, nreb, overflow)

            run = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(spec,) * 6,
                                        out_specs=(spec, spec, spec, P(), P(), P(), P())))
            put = lambda a, t: jax.device_put(jnp.asarray(a, t), NamedSharding(mesh, spec))  # noqa: E731
            mass = np.where(dec.mask, extra["masses"], 1.0)
            out = run(put(dec.positions, dtype), put(extra["momenta"], dtype), put(mass, dtype),
                      put(dec.species, jnp.int32), put(np.where(dec.mask, extra["ids"], -1), jnp.int32),
                      put(dec.mask, bool))
            if not bool(out[6]):
                break
            caps = caps.grown()
            growths += 1
        pos, mom, ids = (np.asarray(x) for x in out[:3])
        R = np.mod(gather(ids, pos, n), np.asarray(grid.box))
        p = gather(ids, mom, n)
        totals.append(np.asarray(out[3]))
        kinetic.append(np.asarray(out[4]))
        rebuilds += int(out[5])
        done += block
    return DecomposedRun(R, p, np.concatenate(totals), np.concatenate(kinetic), rebuilds, growths)
