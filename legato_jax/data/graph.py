"""Periodic graphs: one frame or a padded batch of frames, as a pytree of arrays.

Edge e points from the centre `receivers[e]` (i) to the neighbour `senders[e]` (j), with
r_ij = r_j - r_i + shifts[e] @ cell[graph of i]. Padded atoms, edges and graphs have mask
False; padded edges join the padding atom to itself through a shift that puts them beyond
the cutoff, so a model that multiplies by envelope x mask gives them exactly zero weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from legato_jax.data.io import Frame
from legato_jax.data.neighbors import neighbor_list
from legato_jax.errors import DataError


class Graph(NamedTuple):
    positions: np.ndarray  # (n, 3) Å
    species: np.ndarray  # (n,) int32 index into the type map
    cell: np.ndarray  # (g, 3, 3) rows are lattice vectors
    senders: np.ndarray  # (e,) int32, the neighbour j
    receivers: np.ndarray  # (e,) int32, the centre i
    shifts: np.ndarray  # (e, 3) integer cell shifts
    node_mask: np.ndarray  # (n,) bool
    edge_mask: np.ndarray  # (e,) bool
    graph_mask: np.ndarray  # (g,) bool
    node_graph: np.ndarray  # (n,) int32 frame index of each atom
    n_node: np.ndarray  # (g,) int32 real atoms per frame


class Targets(NamedTuple):
    energy: np.ndarray  # (g,) eV
    forces: np.ndarray  # (n, 3) eV/Å
    stress: np.ndarray  # (g, 3, 3) eV/Å^3, ASE sign
    stress_mask: np.ndarray  # (g,) bool, frames that carry a stress label


class Batch(NamedTuple):
    graph: Graph
    targets: Targets


@dataclass(frozen=True)
class TypeMap:
    """Chemical symbols in the order of the model's species indices."""

    symbols: tuple[str, ...]

    @classmethod
    def from_frames(cls, frames: Sequence[Frame]) -> "TypeMap":
        from ase.data import chemical_symbols

        numbers = sorted({int(z) for f in frames for z in np.unique(f.numbers)})
        return cls(tuple(chemical_symbols[z] for z in numbers))

    def indices(self, numbers: np.ndarray, where: str = "frame") -> np.ndarray:
        from ase.data import atomic_numbers, chemical_symbols

        table = np.full(119, -1, dtype=np.int32)
        for k, s in enumerate(self.symbols):
            table[atomic_numbers[s]] = k
        idx = table[np.asarray(numbers)]
        if np.any(idx < 0):
            unknown = sorted({chemical_symbols[z] for z in np.asarray(numbers)[idx < 0]})
            raise DataError(f"{where}: unknown species {unknown}; the type map is {list(self.symbols)}")
        return idx


@dataclass(frozen=True)
class FrameGraph:
    """One frame with its neighbour list, on the host, ready to be padded into batches."""

    positions: np.ndarray
    species: np.ndarray
    cell: np.ndarray
    receivers: np.ndarray
    senders: np.ndarray
    shifts: np.ndarray
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None

    @property
    def n_node(self) -> int:
        return int(self.species.shape[0])

    @property
    def n_edge(self) -> int:
        return int(self.senders.shape[0])


def frame_graph(frame: Frame, type_map: TypeMap, cutoff: float) -> FrameGraph:
    """Neighbour list of one frame at `cutoff` Å, with species mapped through `type_map`."""
    i, j, shifts = neighbor_list(frame.positions, frame.cell, frame.pbc, cutoff)
    return FrameGraph(
        positions=frame.positions,
        species=type_map.indices(frame.numbers, frame.source),
        cell=frame.cell,
        receivers=i,
        senders=j,
        shifts=shifts,
        energy=frame.energy,
        forces=frame.forces,
        stress=frame.stress,
    )


def atoms_to_graph(atoms, type_map: TypeMap, cutoff: float) -> FrameGraph:
    """An ASE `Atoms` (unlabelled: energy 0, forces 0) with its neighbour list at `cutoff` Å,
    species mapped through `type_map`; for predictions on structures that are not data frames."""
    where = f"atoms {atoms.get_chemical_formula()}"
    species = type_map.indices(atoms.numbers, where)
    if atoms.pbc.any() and atoms.pbc.all() and abs(atoms.cell.volume) < 1e-9:
        raise DataError(f"{where}: periodic cell has zero volume; set a cell on the structure")
    i, j, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    n = len(atoms)
    return FrameGraph(
        positions=atoms.positions, species=species, cell=atoms.cell.array, receivers=i, senders=j,
        shifts=shifts, energy=0.0, forces=np.zeros((n, 3)), stress=None,
    )


def collate(
    frames: Sequence[FrameGraph],
    n_node: int,
    n_edge: int,
    n_graph: int,
    cutoff: float,
    dtype=np.float32,
) -> Batch:
    """Pack frames into one padded batch of exactly (n_node, n_edge, n_graph).

    Needs at least one spare atom and one spare graph: they hold the padding.
    """
    real_nodes = sum(f.n_node for f in frames)
    real_edges = sum(f.n_edge for f in frames)
    if real_nodes + 1 > n_node or real_edges > n_edge or len(frames) + 1 > n_graph:
        raise DataError(
            f"batch of {len(frames)} frames ({real_nodes} atoms, {real_edges} edges) does not fit "
            f"the padded shape ({n_node} atoms incl. 1 pad, {n_edge} edges, {n_graph} graphs)"
        )
    pos = np.zeros((n_node, 3), dtype)
    species = np.zeros(n_node, np.int32)
    cell = np.zeros((n_graph, 3, 3), dtype)
    senders = np.full(n_edge, n_node - 1, np.int32)
    receivers = np.full(n_edge, n_node - 1, np.int32)
    shifts = np.zeros((n_edge, 3), np.int32)
    shifts[:, 0] = 1
    node_mask = np.zeros(n_node, bool)
    edge_mask = np.zeros(n_edge, bool)
    graph_mask = np.zeros(n_graph, bool)
    node_graph = np.full(n_node, n_graph - 1, np.int32)
    counts = np.zeros(n_graph, np.int32)
    energy = np.zeros(n_graph, dtype)
    forces = np.zeros((n_node, 3), dtype)
    stress = np.zeros((n_graph, 3, 3), dtype)
    stress_mask = np.zeros(n_graph, bool)

    a = e = 0
    for g, f in enumerate(frames):
        na, ne = f.n_node, f.n_edge
        pos[a : a + na] = f.positions
        species[a : a + na] = f.species
        cell[g] = f.cell
        senders[e : e + ne] = f.senders + a
        receivers[e : e + ne] = f.receivers + a
        shifts[e : e + ne] = f.shifts
        node_mask[a : a + na] = True
        edge_mask[e : e + ne] = True
        graph_mask[g] = True
        node_graph[a : a + na] = g
        counts[g] = na
        energy[g] = f.energy
        forces[a : a + na] = f.forces
        if f.stress is not None:
            stress[g] = f.stress
            stress_mask[g] = True
        a += na
        e += ne
    # The padding graph's cell makes every padded edge (pad atom -> its own +x image) longer
    # than the cutoff.
    cell[n_graph - 1] = np.eye(3) * (2.0 * cutoff + 1.0)
    graph = Graph(
        pos, species, cell, senders, receivers, shifts, node_mask, edge_mask, graph_mask,
        node_graph, counts,
    )
    return Batch(graph, Targets(energy, forces, stress, stress_mask))


def edge_vectors(graph: Graph):
    """r_ij for every edge (works on numpy and jax arrays alike)."""
    cell = graph.cell[graph.node_graph[graph.receivers]]
    shift = (graph.shifts[:, :, None] * cell).sum(axis=1)
    return graph.positions[graph.senders] - graph.positions[graph.receivers] + shift
