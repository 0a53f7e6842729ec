"""The one MD engine: a stage compiles once whatever its length (partial last chunk included), for
single runs, batched replicas and decomposed domains; counted with JAX's own compile events."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from legato_jax.data.graph import TypeMap
from legato_jax.experiments.replicas import run_replicas
from legato_jax.md.engine import CompileCounter, block_scan
from legato_jax.md.energy import model_energy
from legato_jax.md.integrate import Stage
from legato_jax.md.run import MDConfig, run_md
from legato_jax.data.ammonia import liquid_ammonia
from legato_jax.model.io import load_model
from legato_jax.parallel.run import run_md_decomposed
from tests.test_md_run import TINY

# 50 + 30 steps in chunks of 20: each stage ends with a partial chunk
STAGES = (Stage("nose-hoover", 50, 1.0, 200.0, 50.0), Stage("nve", 30, 1.0))


@pytest.fixture(scope="module")
def tiny():
    pot, params, _ = load_model(TINY)
    return pot, params


def test_block_scan_runs_only_the_active_blocks_and_compiles_once():
    scan = block_scan(lambda c: (c + 1, c * 10), 4)

    @jax.jit
    def chunk(carry, n_active):
        return scan(carry, n_active)

    with CompileCounter() as counter:
        outs = [chunk(jnp.int32(0), jnp.int32(n)) for n in (4, 2, 0)]
    assert counter.count == 1
    assert [int(c) for c, _ in outs] == [4, 2, 0]
    np.testing.assert_array_equal(outs[1][1], [0, 10, 0, 0])  # skipped blocks observe zeros


def test_a_single_run_compiles_once_per_stage(tiny):
    cfg = MDConfig(STAGES, 200.0, every=10, chunk_steps=20)
    res = run_md(*tiny, liquid_ammonia(16), cfg, progress=False)
    assert res.summary["compiles"] == len(STAGES)
    assert len(res.thermo.rows) == 8


def test_batched_replicas_compile_once_per_stage(tiny):
    pot, params = tiny
    atoms = liquid_ammonia(16)
    system = model_energy(pot, params, TypeMap(("H", "N")).indices(atoms.numbers), atoms.cell.array)
    res = run_replicas(system, atoms, STAGES, 2, chunk_steps=20)
    assert res.compiles == len(STAGES)
    assert (res.stopped_at == 80).all()


def test_a_decomposed_run_compiles_once_per_stage(tiny):
    cfg = MDConfig(STAGES, 200.0, every=10, chunk_steps=20)
    res = run_md_decomposed(*tiny, liquid_ammonia(16 * 8), cfg, (2, 1, 1), devices=jax.devices()[:2])
    assert res.summary["compiles"] == len(STAGES)
    assert res.summary["nl_reallocations"] == 0
