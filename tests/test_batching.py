"""Padded batches: padding carries zero weight, shapes come from a small reused set of buckets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from legato_jax.data.batching import BatchLoader, bucket
from legato_jax.data.graph import TypeMap, collate, edge_vectors, frame_graph
from legato_jax.data.io import frame_from_atoms
from legato_jax.errors import ConfigError
from tests.conftest import labelled, random_cell_atoms

CUTOFF = 4.0


@pytest.fixture
def graphs(rng):
    frames = []
    for k in range(23):
        n = int(rng.integers(6, 14))
        frames.append(frame_from_atoms(labelled(random_cell_atoms(rng, n=n, min_len=4.5, max_len=6.5)), f"f{k}"))
    type_map = TypeMap.from_frames(frames)
    return [frame_graph(f, type_map, CUTOFF) for f in frames]


def test_bucket_ladder_is_monotone_and_covers():
    sizes = [bucket(n, 64, 1.1) for n in range(1, 5000, 7)]
    assert all(s >= n for s, n in zip(sizes, range(1, 5000, 7)))
    assert sizes == sorted(sizes)
    assert all(s % 64 == 0 for s in sizes)
    assert len(set(sizes)) < 40


def test_padding_has_zero_weight(graphs):
    g0 = graphs[:3]
    batch = collate(g0, n_node=64, n_edge=sum(g.n_edge for g in g0) + 50, n_graph=5, cutoff=CUTOFF)
    g, t = batch
    pad_e = ~g.edge_mask
    assert pad_e.sum() == 50
    assert np.all(~g.node_mask[g.senders[pad_e]]) and np.all(~g.node_mask[g.receivers[pad_e]])
    lengths = np.linalg.norm(edge_vectors(g), axis=1)
    assert np.all(lengths[pad_e] > CUTOFF) and np.all(lengths[g.edge_mask] <= CUTOFF + 1e-5)
    assert np.all(t.forces[~g.node_mask] == 0) and np.all(t.energy[~g.graph_mask] == 0)
    assert np.all(g.node_graph[~g.node_mask] == 4) and list(g.n_node[:3]) == [x.n_node for x in g0]

    # A masked sum over edges (what a model does) is the same with and without padding.
    def edge_sum(graph):
        r = jnp.linalg.norm(edge_vectors(graph), axis=1)
        w = jnp.where(graph.edge_mask & (r < CUTOFF), jnp.cos(r), 0.0)
        return jax.ops.segment_sum(w, graph.node_graph[graph.receivers], graph.cell.shape[0])

    tight = collate(g0, n_node=sum(x.n_node for x in g0) + 1, n_edge=sum(x.n_edge for x in g0), n_graph=4, cutoff=CUTOFF)
    np.testing.assert_allclose(edge_sum(batch.graph)[:3], edge_sum(tight.graph)[:3], rtol=1e-6)
    assert float(edge_sum(batch.graph)[4]) == 0.0


def test_collate_refuses_overfull_shapes(graphs):
    with pytest.raises(ValueError, match="does not fit"):
        collate(graphs[:2], n_node=graphs[0].n_node + graphs[1].n_node, n_edge=10**6, n_graph=3, cutoff=CUTOFF)


def test_batch_size_below_one_is_a_config_error(graphs):
    with pytest.raises(ConfigError, match=r"batch_size \(--batch-size\) must be >= 1"):
        BatchLoader(graphs, batch_size=0, cutoff=CUTOFF)


def test_buckets_are_reused_and_jit_compiles_once_per_bucket(graphs):
    loader = BatchLoader(graphs, batch_size=4, cutoff=CUTOFF, node_quantum=16, edge_quantum=64, growth=1.2)
    traces = []

    @jax.jit
    def step(graph):
        traces.append(graph.positions.shape)
        return jnp.sum(jnp.where(graph.edge_mask, 1.0, 0.0))

    possible = loader.possible_shapes()
    for _ in range(8):
        counted = sum(int(step(b.graph)) for b in loader)
        assert counted == sum(g.n_edge for g in graphs)
    assert loader.stats.shapes <= possible
    assert len(traces) == len(loader.stats.shapes)  # one compile per bucket, reused afterwards
    assert 0 <= loader.stats.edge_overhead < 0.5


def test_shuffle_is_deterministic_per_seed_and_epoch(graphs):
    a = BatchLoader(graphs, 5, CUTOFF, seed=3)
    b = BatchLoader(graphs, 5, CUTOFF, seed=3)
    for _ in range(2):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.graph.positions, y.graph.positions)
    first = [x.graph.positions for x in BatchLoader(graphs, 5, CUTOFF, seed=3)]
    other = [x.graph.positions for x in BatchLoader(graphs, 5, CUTOFF, seed=4)]
    assert any(p.shape != q.shape or not np.array_equal(p, q) for p, q in zip(first, other))


def test_frames_of_one_size_need_few_buckets(rng):
    """Like MD data: same atom count, similar density -> a handful of shapes with the defaults."""
    frames = []
    for k in range(40):
        atoms = random_cell_atoms(rng, n=16, min_len=6.0, max_len=6.0001)
        atoms.set_cell(np.eye(3) * 6.0, scale_atoms=True)  # one density, as in NVT data
        frames.append(frame_from_atoms(labelled(atoms), f"f{k}", min_distance=0.0))
    type_map = TypeMap.from_frames(frames)
    graphs = [frame_graph(f, type_map, CUTOFF) for f in frames]
    loader = BatchLoader(graphs, batch_size=8, cutoff=CUTOFF)
    assert len(loader.possible_shapes()) <= 4
