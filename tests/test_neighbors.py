"""Neighbour lists against ASE's reference implementation on awkward cells."""

import numpy as np
import pytest
from ase.build import molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from legato_jax.data.graph import TypeMap, collate, edge_vectors, frame_graph
from legato_jax.data.io import frame_from_atoms
from legato_jax.data.neighbors import neighbor_list
from tests.conftest import labelled, random_cell_atoms


def _ase_sorted(atoms, cutoff):
    i, j, S, D = ase_neighbor_list("ijSD", atoms, cutoff)
    order = np.lexsort((S[:, 2], S[:, 1], S[:, 0], j, i))
    return i[order], j[order], S[order], D[order]


def _check_against_ase(atoms, cutoff):
    i, j, S = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    ai, aj, aS, aD = _ase_sorted(atoms, cutoff)
    assert len(i) == len(ai)
    np.testing.assert_array_equal(i, ai)
    np.testing.assert_array_equal(j, aj)
    np.testing.assert_array_equal(S, aS)
    D = atoms.positions[j] - atoms.positions[i] + S @ atoms.cell.array
    np.testing.assert_allclose(D, aD, atol=1e-6)
    return len(i)


@pytest.mark.parametrize("seed", range(6))
def test_random_triclinic_cells_match_ase(seed):
    rng = np.random.default_rng(seed)
    atoms = random_cell_atoms(rng, n=10, min_len=6.0, max_len=9.0)
    assert _check_against_ase(atoms, cutoff=4.0) > 0


@pytest.mark.parametrize("seed", range(6))
def test_cells_shorter_than_twice_the_cutoff_match_ase(seed):
    rng = np.random.default_rng(100 + seed)
    atoms = random_cell_atoms(rng, n=6, min_len=2.5, max_len=4.0)
    cutoff = 5.0
    widths = atoms.cell.volume / np.linalg.norm(np.cross(atoms.cell[[1, 2, 0]], atoms.cell[[2, 0, 1]]), axis=1)
    assert np.all(widths < 2 * cutoff)
    n = _check_against_ase(atoms, cutoff)
    i, j, S = neighbor_list(atoms.positions, atoms.cell.array, True, cutoff)
    # several images of the same neighbour, and images of an atom itself, are present
    pairs, counts = np.unique(np.stack([i, j], axis=1), axis=0, return_counts=True)
    assert counts.max() > 1 and np.any((i == j) & np.any(S != 0, axis=1))
    assert n > 0


def test_non_periodic_molecule_and_mixed_pbc_match_ase(rng):
    mol = molecule("CH3CH2OH")
    assert _check_against_ase(mol, cutoff=2.0) > 0
    slab = random_cell_atoms(rng, n=8, min_len=3.0, max_len=5.0, pbc=[True, True, False])
    assert _check_against_ase(slab, cutoff=4.5) > 0


def test_graph_edge_vectors_equal_ase_vectors(rng):
    atoms = labelled(random_cell_atoms(rng, n=8, min_len=3.0, max_len=4.0))
    frame = frame_from_atoms(atoms, "test")
    g = frame_graph(frame, TypeMap(("H", "N")), cutoff=4.5)
    batch = collate([g], n_node=16, n_edge=g.n_edge + 7, n_graph=2, cutoff=4.5, dtype=np.float64)
    vec = edge_vectors(batch.graph)[batch.graph.edge_mask]
    _, _, _, aD = _ase_sorted(atoms, 4.5)
    np.testing.assert_allclose(vec, aD, atol=1e-6)
