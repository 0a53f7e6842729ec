"""The exact image neighbour list against ASE's `neighbor_list`: triclinic cells narrower than the
cutoff, unwrapped positions, the skin/rebuild rule, overflow and the refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from legato_jax.data.stats import perpendicular_widths
from legato_jax.errors import ConfigError
from legato_jax.md.image_list import image_neighbor_list
from tests.conftest import random_cell_atoms

METHODS = ["dense", "binned"]


def _edges(nbrs, n):
    """Valid (i, j, S) of a list, sorted like `_ase`."""
    i, j, S = (np.asarray(a) for a in (nbrs.receivers, nbrs.senders, nbrs.shifts))
    valid = i < n
    assert np.all(j[~valid] == n) and np.all(S[~valid] == 0)  # padding layout
    i, j, S = i[valid], j[valid], S[valid]
    np.testing.assert_array_equal(S, np.rint(S))
    S = np.rint(S).astype(int)
    order = np.lexsort((S[:, 2], S[:, 1], S[:, 0], j, i))
    return i[order], j[order], S[order]


def _ase(atoms, cutoff):
    i, j, S, D = ase_neighbor_list("ijSD", atoms, cutoff)
    order = np.lexsort((S[:, 2], S[:, 1], S[:, 0], j, i))
    return i[order], j[order], S[order], D[order]


def _assert_equals_ase(nbrs, atoms, cutoff):
    i, j, S = _edges(nbrs, len(atoms))
    ai, aj, aS, aD = _ase(atoms, cutoff)
    assert len(i) == len(ai) == int(nbrs.count)
    np.testing.assert_array_equal(np.stack([i, j]), np.stack([ai, aj]))
    np.testing.assert_array_equal(S, aS)
    R = atoms.positions
    np.testing.assert_allclose(R[j] - R[i] + S @ atoms.cell.array, aD, atol=1e-6)


def _random_case(seed):
    """A random triclinic cell of 2-40 atoms and a cutoff up to 1.5x its narrowest width."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 41))
    atoms = random_cell_atoms(rng, n=n, min_len=3.0 + n / 8, max_len=7.0 + n / 8)
    cutoff = float(rng.uniform(0.5, 1.5) * perpendicular_widths(atoms.cell.array).min())
    unwrapped = atoms.copy()
    unwrapped.positions += rng.integers(-2, 3, (n, 3)) @ atoms.cell.array * (rng.random((n, 1)) < 0.5)
    return atoms, unwrapped, cutoff


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(5))
def test_matches_ase_wrapped_and_unwrapped(method, seed):
    atoms, unwrapped, cutoff = _random_case(seed)
    with jax.enable_x64(True):
        fns = image_neighbor_list(atoms.cell.array, cutoff, 0.3, len(atoms), method=method)
        assert fns.method == method
        for a in (atoms, unwrapped):
            nbrs = fns.allocate(jnp.asarray(a.positions))
            assert not nbrs.did_buffer_overflow and nbrs.idx.shape == (2, nbrs.capacity)
            _assert_equals_ase(nbrs, a, cutoff)


@pytest.mark.parametrize("method", METHODS)
def test_skin_keeps_then_rebuilds(method):
    atoms, unwrapped, cutoff = _random_case(11)
    skin, n = 0.4, len(atoms)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        fns = image_neighbor_list(atoms.cell.array, cutoff, skin, n, method=method)
        R0 = jnp.asarray(unwrapped.positions)
        nbrs = fns.allocate(R0)
        step = rng.normal(size=(n, 3))
        small = R0 + 0.19 * step / np.linalg.norm(step, axis=1).max()  # every atom < skin / 2
        kept = jax.jit(lambda R, nb: nb.update(R))(small, nbrs)
        np.testing.assert_array_equal(kept.reference_position, R0)
        np.testing.assert_array_equal(kept.idx, nbrs.idx)
        moved = unwrapped.copy()
        moved.positions = np.asarray(small)
        held = {(a, b, tuple(s)) for a, b, s in zip(*_edges(kept, n))}
        ai, aj, aS, _ = _ase(moved, cutoff - skin)  # every pair within cutoff - skin is still held
        assert len(ai) and all((a, b, tuple(s)) in held for a, b, s in zip(ai, aj, aS))

        moved.positions[0] += [0.21, 0.0, 0.0]  # one atom now beyond skin / 2 from the reference
        rebuilt = fns.update(jnp.asarray(moved.positions), kept)
        np.testing.assert_array_equal(rebuilt.reference_position, moved.positions)
        _assert_equals_ase(rebuilt, moved, cutoff)


def test_update_inside_scan():
    atoms, unwrapped, cutoff = _random_case(3)
    with jax.enable_x64(True):
        fns = image_neighbor_list(atoms.cell.array, cutoff, 0.2, len(atoms))
        R0 = jnp.asarray(unwrapped.positions)
        drift = jnp.asarray(np.random.default_rng(1).normal(0.0, 0.05, (len(atoms), 3)))

        def step(carry, _):
            R, nbrs = carry
            R = R + drift
            return (R, nbrs.update(R)), None

        (R, nbrs), _ = jax.lax.scan(step, (R0, fns.allocate(R0)), None, length=10)
        final = unwrapped.copy()
        final.positions = np.asarray(R)
        assert not nbrs.did_buffer_overflow
        _assert_equals_ase(nbrs, final, cutoff)  # rebuilt at the last step (drift > skin / 2)


@pytest.mark.parametrize("method", METHODS)
def test_overflow_is_flagged_and_extra_capacity_holds_all(method):
    atoms = random_cell_atoms(np.random.default_rng(5), n=24, min_len=8.5, max_len=9.5)
    cutoff, n = 4.0, len(atoms)  # the binned search has 2 bins per axis here
    with jax.enable_x64(True):
        fns = image_neighbor_list(atoms.cell.array, cutoff, 0.5, n, method=method)
        nbrs = fns.allocate(jnp.asarray(atoms.positions))
        squeezed = atoms.copy()
        squeezed.positions = 0.4 * atoms.positions  # more pairs, and all atoms in one bin
        over = fns.update(jnp.asarray(squeezed.positions), nbrs)
        assert bool(over.did_buffer_overflow) and int(over.count) > over.capacity
        back = fns.update(jnp.asarray(atoms.positions), over)
        assert bool(back.did_buffer_overflow)  # sticky
        roomy = fns.allocate(jnp.asarray(squeezed.positions), extra_capacity=4)
        assert not roomy.did_buffer_overflow
        assert roomy.capacity >= int(roomy.count) + 4 * n
        _assert_equals_ase(roomy, squeezed, cutoff)


@pytest.mark.parametrize("cell, cutoff, match", [
    (np.diag([5.0, 0.8, 5.0]), 3.0, "cell width 0.800 Å along lattice vector 1 is too narrow"),
    (np.eye(3) * 2.0, 30.0, "image shifts"),
    (np.array([[4.0, 0, 0], [0, 4.0, 0], [8.0, 8.0, 0]]), 3.0, "non-zero volume"),
])
def test_refusals_are_one_line(cell, cutoff, match):
    with pytest.raises(ConfigError, match=match) as err:
        image_neighbor_list(cell, cutoff, 0.5, 8)
    assert "\n" not in str(err.value)


def test_self_images_in_a_narrow_cell():
    """One atom in a 2 Å cube with a 4.5 Å cutoff: all its own images within the cutoff."""
    atoms = Atoms("H", positions=[[0.3, 0.2, 0.1]], cell=np.eye(3) * 2.0, pbc=True)
    with jax.enable_x64(True):
        for method in METHODS:
            fns = image_neighbor_list(atoms.cell.array, 4.5, 0.0, 1, method=method)
            _assert_equals_ase(fns.allocate(jnp.asarray(atoms.positions)), atoms, 4.5)
