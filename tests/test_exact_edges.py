"""MD on the exact-edge buffer (the list compacted to pairs within r_max each step) equals MD on
the whole skin list, through a forced overflow of the buffer; the model sees fewer edges."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.io import read

from legato_jax.data.ammonia import AMMONIA_CELL
from legato_jax.data.graph import TypeMap
from legato_jax.md.energy import compact_edges, model_energy
from legato_jax.md.integrate import Stage, StageRunner, make_integrator, start_stage
from legato_jax.md.systems import initial_momenta, masses
from legato_jax.model.io import load_model

TINY = Path(__file__).parent / "data" / "ammonia-tiny.npz"


@pytest.fixture(scope="module")
def tiny64():
    pot, params, _ = load_model(TINY)
    pot = dataclasses.replace(pot, config=dataclasses.replace(pot.config, dtype="float64"))
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
    return pot, params


def test_compact_edges_packs_the_pairs_in_range_in_order_and_reports_overflow():
    vec = jnp.array([[1.0, 0, 0], [3.0, 0, 0], [0.5, 0, 0], [0, 2.5, 0], [0, 0, 0.2]])
    mask = jnp.array([True, True, True, True, False])
    index, valid, count = compact_edges(vec, mask, 2.6, 4)
    assert int(count) == 3 and list(np.asarray(index)[np.asarray(valid)]) == [0, 2, 3]
    assert list(np.asarray(valid)) == [True, True, True, False]
    _, valid, count = compact_edges(vec, mask, 2.6, 2)
    assert int(count) == 3 and bool(np.all(valid))  # count > capacity: the caller re-runs


@pytest.mark.slow
def test_exact_edge_md_equals_skin_list_md_through_a_forced_overflow(tiny64):
    pot, params = tiny64
    cell = read(AMMONIA_CELL).repeat((2, 1, 1))
    species = TypeMap(("H", "N")).indices(cell.numbers)
    stage = Stage("nve", 200, 1.0)
    finals = {}
    with jax.enable_x64(True):
        for name, kw in (("skin list", {"exact_edges": False}), ("exact", {}),
                         ("tight", {"edge_margin": 1.0, "edge_slack": 0})):  # tight: the first frame's pairs, no spare
            system = model_energy(pot, params, species, cell.cell.array, skin=0.5, **kw)
            init, apply = make_integrator(system, stage)
            mass = jnp.asarray(masses(cell), jnp.float64)[:, None]
            R = system.wrap(jnp.asarray(cell.positions))
            nbrs = system.neighbor_fn.allocate(R)
            slots = (nbrs.idx.shape[-1], system.model_edges(nbrs))
            state = start_stage(init, jax.random.PRNGKey(0), R, mass,
                                initial_momenta(jax.random.PRNGKey(1), mass, 300.0), nbrs)
            runner = StageRunner(system, stage, apply, every=10, chunk_steps=50)
            energies = []
            for _, state, nbrs, obs in runner.chunks(state, nbrs, stage.steps):
                assert not bool(nbrs.did_buffer_overflow)
                energies.append(obs.potential)
            finals[name] = (np.asarray(state.position), np.concatenate(energies), runner.reallocations, slots)
    assert finals["skin list"][3][1] == finals["skin list"][3][0]  # the whole list
    list_slots, exact_slots = finals["exact"][3]
    assert exact_slots < 0.75 * list_slots  # r_max 3.5 of 4.0 Å and 25 % spare in the list
    assert finals["exact"][2] == 0 and finals["tight"][2] >= 1
    for name in ("exact", "tight"):
        np.testing.assert_allclose(finals[name][0], finals["skin list"][0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(finals[name][1], finals["skin list"][1], rtol=1e-12)
