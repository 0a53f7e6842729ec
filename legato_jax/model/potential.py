"""The potential: energy, per-atom energies, forces = -dE/dr and stress from one function of
(params, graph), for single frames and padded batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from legato_jax.data.graph import Graph
from legato_jax.model.allegro import Allegro, atomic_energies
from legato_jax.model.config import AllegroConfig, ModelStats


class Prediction(NamedTuple):
    energy: jax.Array  # (g,) eV per graph
    energies: jax.Array  # (n,) eV per atom
    forces: jax.Array  # (n, 3) eV/Å
    stress: jax.Array  # (g, 3, 3) eV/Å^3, ASE sign (+1/V dE/dstrain); zero for non-periodic frames


@dataclass(frozen=True)
class Potential:
    """An Allegro model with its fitted constants; pure functions of (params, graph)."""

    config: AllegroConfig
    stats: ModelStats

    @property
    def module(self) -> Allegro:
        return Allegro(self.config, self.stats)

    @property
    def dtype(self):
        return jnp.float64 if self.config.dtype == "float64" else jnp.float32

    def init(self, key: jax.Array, graph: Graph):
        """Parameters for this model (shapes do not depend on the graph's size)."""
        graph = self.cast(graph)
        return self.module.init(key, *self._inputs(graph, graph.positions, _zero_strain(graph)))

    def atomic_energies(self, params, vectors, species, senders, receivers, edge_mask, node_mask):
        """Per-atom energies from edge vectors (edges in blocks of `config.edge_block` if set)."""
        return atomic_energies(self.module, params, vectors, species, senders, receivers, edge_mask, node_mask,
                               edge_block=self.config.edge_block)

    def cast(self, graph: Graph) -> Graph:
        dt = self.dtype
        return graph._replace(
            positions=jnp.asarray(graph.positions, dt), cell=jnp.asarray(graph.cell, dt)
        )

    def _inputs(self, graph: Graph, positions, strain):
        deform = jnp.eye(3, dtype=positions.dtype) + strain  # (g, 3, 3), rows transform as r (I + e)
        pos = jnp.einsum("ni,nij->nj", positions, deform[graph.node_graph])
        cell = jnp.einsum("gij,gjk->gik", graph.cell, deform)
        shift = jnp.einsum("ei,eij->ej", graph.shifts.astype(pos.dtype), cell[graph.node_graph[graph.receivers]])
        vectors = pos[graph.senders] - pos[graph.receivers] + shift
        return vectors, graph.species, graph.senders, graph.receivers, graph.edge_mask, graph.node_mask

    def energies(self, params, graph: Graph):
        """(energy per graph, energy per atom)."""
        graph = self.cast(graph)
        with jax.default_matmul_precision("highest"):
            atom = self.atomic_energies(params, *self._inputs(graph, graph.positions, _zero_strain(graph)))
        return jax.ops.segment_sum(atom, graph.node_graph, graph.cell.shape[0]), atom

    def predict(self, params, graph: Graph) -> Prediction:
        """Energy, per-atom energies, forces and stress in one pass (reverse mode)."""
        graph = self.cast(graph)

        def total(positions, strain):
            with jax.default_matmul_precision("highest"):
                atom = self.atomic_energies(params, *self._inputs(graph, positions, strain))
            per_graph = jax.ops.segment_sum(atom, graph.node_graph, graph.cell.shape[0])
            return per_graph.sum(), (per_graph, atom)

        strain = _zero_strain(graph)
        (_, (energy, atom)), (d_pos, d_strain) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
            graph.positions, strain
        )
        volume = jnp.abs(jnp.linalg.det(graph.cell))
        periodic = volume > 1e-9
        sym = 0.5 * (d_strain + jnp.swapaxes(d_strain, 1, 2))
        stress = jnp.where(periodic[:, None, None], sym / jnp.where(periodic, volume, 1.0)[:, None, None], 0.0)
        forces = jnp.where(graph.node_mask[:, None], -d_pos, 0.0)
        return Prediction(energy, atom, forces, stress)


def _zero_strain(graph: Graph):
    return jnp.zeros((graph.cell.shape[0], 3, 3), jnp.asarray(graph.positions).dtype)


def parameter_count(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
