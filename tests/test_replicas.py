"""Replicas advanced together equal the same replicas run one at a time; failures are recorded at
the right check and the failed replica is frozen there."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.io import read

from legato_jax.data.graph import TypeMap
from legato_jax.experiments.failure import CRITERIA, FailureCriteria
from legato_jax.experiments.replicas import run_replicas
from legato_jax.md.energy import model_energy
from legato_jax.md.integrate import Stage
from legato_jax.data.ammonia import AMMONIA_CELL
from legato_jax.model.io import load_model
from tests.test_md_run import TINY


@pytest.fixture(scope="module")
def setup():
    pot, params, _ = load_model(TINY)
    pot = dataclasses.replace(pot, config=dataclasses.replace(pot.config, dtype="float64"))
    cell = read(AMMONIA_CELL)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        system = model_energy(pot, params, TypeMap(("H", "N")).indices(cell.numbers), cell.cell.array)
    return system, cell


def test_batched_replicas_equal_replicas_run_one_at_a_time(setup):
    system, cell = setup
    stage = Stage("nose-hoover", 60, 1.0, 200.0, 50.0)
    with jax.enable_x64(True):
        together = run_replicas(system, cell, stage, 3, seed=4, chunk_steps=30)
        alone = [run_replicas(system, cell, stage, 1, seed=4, chunk_steps=30, replica_ids=[r]) for r in range(3)]
    for r in range(3):
        np.testing.assert_allclose(together.positions[r], alone[r].positions[0], atol=1e-10)
    assert np.ptp(together.positions[:, 0, 0]) > 1e-3  # the replicas really differ
    assert (together.first_failure == -1).all()
    t, failed = together.times_ps("temperature")
    assert not failed.any() and np.allclose(t, 0.06)


def test_a_collapsing_system_fails_at_the_right_check_and_is_frozen_there(setup):
    system, cell = setup
    base = system.energy_fn

    def collapsing(R, neighbor, **kw):  # a stiff spring pulling atoms 0 and 1 together
        d = system.displacement_fn(R[0], R[1])
        return base(R, neighbor) + 5.0 * jnp.sum(d**2)

    pulled = dataclasses.replace(system, energy_fn=collapsing)
    stage = Stage("nve", 200, 0.5)
    with jax.enable_x64(True):
        res = run_replicas(pulled, cell, stage, 2, seed=1, chunk_steps=100,
                           criteria=FailureCriteria(t_low=0.0, t_high=1e5), stop_on=("min_distance",))
        ok = run_replicas(system, cell, stage, 2, seed=1, chunk_steps=100,
                          criteria=FailureCriteria(t_low=0.0, t_high=1e5), stop_on=("min_distance",))
    k = CRITERIA.index("min_distance")
    steps = res.first_failure[:, k]
    assert (steps > 0).all() and (ok.first_failure[:, k] == -1).all()
    assert (steps % 10 == 0).all()
    assert min_pair_distance(res.positions[0], cell) < 0.6  # frozen at the check that saw the breach
    with jax.enable_x64(True):  # one check earlier nothing had fired yet
        before = run_replicas(pulled, cell, Stage("nve", int(steps[0]) - 10, 0.5), 1, seed=1, chunk_steps=100,
                              criteria=FailureCriteria(t_low=0.0, t_high=1e5), replica_ids=[0])
    assert min_pair_distance(before.positions[0], cell) >= 0.6


def min_pair_distance(R, cell):
    a = cell.copy()
    a.positions = R
    d = a.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    return d.min()


def test_a_stable_harmonic_system_is_censored_at_the_limit_through_stages(setup):
    system, cell = setup
    R_eq = jnp.asarray(cell.positions)

    def harmonic(R, neighbor, **kw):  # every atom on a spring to its start position
        d = jax.vmap(system.displacement_fn)(R, R_eq)
        return 2.0 * jnp.sum(d**2)

    stages = (Stage("nose-hoover", 30, 1.0, 200.0, 50.0), Stage("nve", 40, 0.5))
    window = FailureCriteria(t_low=0.0, t_high=1e4)  # equal springs: kinetic energy swings coherently to ~0
    with jax.enable_x64(True):
        res = run_replicas(dataclasses.replace(system, energy_fn=harmonic), cell, stages, 2, seed=3, chunk_steps=20,
                           criteria=window)
    assert (res.first_failure == -1).all() and (res.stopped_at == 70).all()
    steps, t_ps, failed = res.times("nh_bond")
    assert not failed.any() and (steps == 70).all()
    np.testing.assert_allclose(t_ps, (30 * 1.0 + 40 * 0.5) / 1000.0)


def test_criteria_outside_stop_on_are_censored_where_the_replica_stopped(setup):
    system, cell = setup
    base = system.energy_fn

    def collapsing(R, neighbor, **kw):
        d = system.displacement_fn(R[0], R[1])
        return base(R, neighbor) + 5.0 * jnp.sum(d**2)

    with jax.enable_x64(True):
        res = run_replicas(dataclasses.replace(system, energy_fn=collapsing), cell, Stage("nve", 300, 0.5), 1,
                           seed=1, chunk_steps=100, criteria=FailureCriteria(t_low=0.0, t_high=1e5),
                           stop_on=("min_distance",))
    stop = res.first_failure[0, CRITERIA.index("min_distance")]
    assert 0 < stop < 300 and res.stopped_at[0] == stop
    steps, _, failed = res.times("temperature")  # the window is never left: censored at the stop, not the limit
    assert not failed[0] and steps[0] == stop


class Interrupted(Exception):
    pass


def test_an_interrupted_batch_continues_from_its_checkpoint_exactly(setup, tmp_path):
    system, cell = setup
    stages = (Stage("nose-hoover", 60, 1.0, 200.0, 50.0), Stage("nve", 90, 1.0))
    kw = dict(seed=2, every=10, chunk_steps=30, criteria=FailureCriteria(t_low=150.0, t_high=215.0),
              stop_on=("temperature",))
    path = tmp_path / "batch.checkpoint.npz"

    def stop_at_step_120(step, first):
        if step == 120:  # in the second stage, its first chunk saved
            raise Interrupted

    with jax.enable_x64(True):
        whole = run_replicas(system, cell, stages, 4, **kw)
        with pytest.raises(Interrupted):
            run_replicas(system, cell, stages, 4, **kw, on_chunk=stop_at_step_120, checkpoint=path, checkpoint_key="a")
        saved = np.load(path)
        assert (int(saved["stage"]), int(saved["done"])) == (1, 30)
        resumed = run_replicas(system, cell, stages, 4, **kw, checkpoint=path, checkpoint_key="a")
        other = run_replicas(system, cell, stages, 4, **kw | {"seed": 3}, checkpoint=path, checkpoint_key="b")
    np.testing.assert_array_equal(resumed.first_failure, whole.first_failure)
    np.testing.assert_array_equal(resumed.stopped_at, whole.stopped_at)
    np.testing.assert_allclose(resumed.positions, whole.positions, atol=1e-12)
    assert (whole.first_failure[:, CRITERIA.index("temperature")] >= 0).any()  # the record crossed the cut
    assert not np.allclose(other.positions, whole.positions)  # another key starts afresh
