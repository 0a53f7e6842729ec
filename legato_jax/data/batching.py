"""Padded batches on a small ladder of size buckets, so a jitted step compiles once per bucket.

Atom and edge counts round up to the next rung of a geometric ladder (growth factor, rounded
to a multiple of a quantum); graphs pad to batch_size + 1. Over an epoch only a handful of
shapes occur, and later epochs reuse them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from legato_jax.data.graph import Batch, FrameGraph, collate
from legato_jax.errors import ConfigError


def bucket(n: int, quantum: int, growth: float) -> int:
    """Smallest rung >= n of the ladder quantum * growth^k, each rounded up to a multiple of quantum."""
    if n <= quantum:
        return quantum
    k = max(0, math.floor(math.log(n / quantum) / math.log(growth)) - 1)
    while True:
        size = _round_up(quantum * growth**k, quantum)
        if size >= n:
            return size
        k += 1


def _round_up(x: float, quantum: int) -> int:
    return int(quantum * math.ceil(x / quantum - 1e-9))


def _rungs(lo: int, hi: int, quantum: int, growth: float) -> list[int]:
    out = [bucket(int(lo), quantum, growth)]
    while out[-1] < hi:
        out.append(bucket(out[-1] + 1, quantum, growth))
    return out


@dataclass
class PaddingStats:
    """Real versus padded atoms and edges over the batches produced so far."""

    real_nodes: int = 0
    padded_nodes: int = 0
    real_edges: int = 0
    padded_edges: int = 0
    shapes: set = field(default_factory=set)

    @property
    def node_overhead(self) -> float:
        return self.padded_nodes / max(self.real_nodes, 1) - 1.0

    @property
    def edge_overhead(self) -> float:
        return self.padded_edges / max(self.real_edges, 1) - 1.0


@dataclass
class BatchLoader:
    """Iterates padded batches over `graphs`; shuffles with its own seed, epoch by epoch."""

    graphs: Sequence[FrameGraph]
    batch_size: int
    cutoff: float
    shuffle: bool = True
    seed: int = 0
    node_quantum: int = 8
    edge_quantum: int = 256
    growth: float = 1.05
    drop_last: bool = False
    dtype: type = np.float32
    stats: PaddingStats = field(default_factory=PaddingStats)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch size {self.batch_size}: batch_size (--batch-size) must be >= 1")
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass over the data the `epoch`-th (0-based): its shuffle order is then the
        one a run that never stopped would have used (resuming from a checkpoint)."""
        self._epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.graphs)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def shape_for(self, frames: Sequence[FrameGraph]) -> tuple[int, int, int]:
        nodes = sum(f.n_node for f in frames) + 1
        edges = sum(f.n_edge for f in frames)
        return (
            bucket(nodes, self.node_quantum, self.growth),
            bucket(max(edges, 1), self.edge_quantum, self.growth),
            self.batch_size + 1,
        )

    def possible_shapes(self) -> set[tuple[int, int, int]]:
        """Every padded shape any epoch can produce: a jitted step warmed on these never recompiles."""
        sizes = [self.batch_size]
        if not self.drop_last and len(self.graphs) % self.batch_size:
            sizes.append(len(self.graphs) % self.batch_size)
        nodes = np.sort([g.n_node for g in self.graphs])
        edges = np.sort([g.n_edge for g in self.graphs])
        shapes = set()
        for k in sizes:
            node_rungs = _rungs(nodes[:k].sum() + 1, nodes[-k:].sum() + 1, self.node_quantum, self.growth)
            edge_rungs = _rungs(max(edges[:k].sum(), 1), max(edges[-k:].sum(), 1), self.edge_quantum, self.growth)
            shapes |= {(n, e, self.batch_size + 1) for n in node_rungs for e in edge_rungs}
        return shapes

    def __iter__(self) -> Iterator[Batch]:
        order = np.arange(len(self.graphs))
        if self.shuffle:
            np.random.default_rng((self.seed, self._epoch)).shuffle(order)
        self._epoch += 1
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            frames = [self.graphs[k] for k in idx]
            n_node, n_edge, n_graph = self.shape_for(frames)
            self.stats.real_nodes += sum(f.n_node for f in frames)
            self.stats.real_edges += sum(f.n_edge for f in frames)
            self.stats.padded_nodes += n_node
            self.stats.padded_edges += n_edge
            self.stats.shapes.add((n_node, n_edge, n_graph))
            yield collate(frames, n_node, n_edge, n_graph, self.cutoff, self.dtype)
