"""Failure criteria on constructed snapshots: each fires on its own defect and only then."""

import jax.numpy as jnp
import numpy as np
import pytest
from ase.io import read
from jax_md import partition, space

from legato_jax.data.ammonia import AMMONIA_CELL, mean_nh_length
from legato_jax.errors import ConfigError
from legato_jax.experiments.failure import CRITERIA, FailureCriteria, make_checks


@pytest.fixture(scope="module")
def cell():
    return read(AMMONIA_CELL)


def fired(cell, R, temperature=200.0, energy=-1.0, forces=None, **kw):
    side = jnp.asarray(np.diag(cell.cell.array))
    disp, _ = space.periodic(side)
    nl = partition.neighbor_list(disp, side, 3.0, format=partition.Sparse, capacity_multiplier=3.0)
    R = jnp.asarray(R)
    check = make_checks(FailureCriteria(**kw), cell, disp, 3.0)
    nbrs = nl.allocate(jnp.mod(R, side))
    forces = jnp.zeros_like(R) if forces is None else forces
    out = np.asarray(check(jnp.mod(R, side), nbrs, temperature, energy, forces))
    return {c for c, f in zip(CRITERIA, out) if f}


def test_a_healthy_liquid_fires_nothing(cell):
    assert 0.95 < mean_nh_length(cell) < 1.1
    assert fired(cell, cell.positions) == set()


def test_each_defect_fires_its_criterion(cell):
    assert fired(cell, cell.positions, temperature=350.0) == {"temperature"}
    assert fired(cell, cell.positions, temperature=float("nan")) == {"temperature"}
    f = np.zeros((64, 3))
    f[7, 1] = np.inf
    assert fired(cell, cell.positions, forces=jnp.asarray(f)) == {"non_finite"}
    h = int(np.flatnonzero(cell.numbers == 1)[0])
    n = int(np.argmin(np.where(cell.numbers == 7, cell.get_distances(h, range(64), mic=True), np.inf)))
    stretched = cell.positions.copy()
    bond = cell.get_distance(n, h, mic=True, vector=True)
    stretched[h] = cell.positions[n] + bond * (1.0 + 0.6 / np.linalg.norm(bond))  # +0.6 Å
    assert "nh_bond" in fired(cell, stretched)
    assert fired(cell, stretched, nh_stretch=0.7) <= {"lone_hydrogen"}
    close = cell.positions.copy()
    other = int(np.flatnonzero(cell.numbers == 7)[3])
    close[other] = close[n] + [0.5, 0.0, 0.0]
    assert "min_distance" in fired(cell, close)


def test_a_hydrogen_far_from_every_nitrogen_is_lone(cell):
    h = int(np.flatnonzero(cell.numbers == 1)[0])
    away = cell.positions.copy()
    # move the hydrogen to the grid point farthest from all nitrogens
    grid = np.stack(np.meshgrid(*[np.linspace(0, 8.73, 15)] * 3), -1).reshape(-1, 3)
    n_pos = cell.positions[cell.numbers == 7]
    delta = grid[:, None] - n_pos[None]
    delta -= 8.73038586075516 * np.round(delta / 8.73038586075516)
    far = grid[np.argmax(np.linalg.norm(delta, axis=-1).min(axis=1))]
    away[h] = far
    assert {"lone_hydrogen", "nh_bond"} <= fired(cell, away, min_distance=0.3)


def test_thresholds_are_validated(cell):
    with pytest.raises(ConfigError, match="temperature window"):
        FailureCriteria(t_low=300, t_high=100)
    with pytest.raises(ConfigError, match="exceeds the neighbour-list cutoff"):
        make_checks(FailureCriteria(lone_hydrogen=4.0), cell, space.free()[0], 3.0)
