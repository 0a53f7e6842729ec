"""The channels-last Allegro kernel equals the e3nn-jax formulation it replaced
(`tests/reference_allegro.py`): same parameters, same energies and forces, l_max 0-3, all parities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from legato_jax.model.allegro import Allegro
from legato_jax.model.config import AllegroConfig, ModelStats
from tests.reference_allegro import Allegro as ReferenceAllegro


def _graph(rng, n=10, e=70):
    vectors = rng.normal(size=(e, 3)) * 1.5
    vectors[0] = 0.0  # a zero-length (padding) edge
    return (jnp.asarray(vectors), jnp.asarray(rng.integers(0, 2, n)), jnp.asarray(rng.integers(0, n, e)),
            jnp.asarray(rng.integers(0, n, e)), jnp.asarray(rng.random(e) < 0.9), jnp.asarray(np.arange(n) < n - 1))


@pytest.mark.parametrize("l_max", [0, 1, 2, 3])
@pytest.mark.parametrize("parity", ["o3_full", "o3_restricted", "so3"])
def test_kernel_equals_e3nn_formulation(l_max, parity):
    layers = 3 if l_max == 1 else 2
    cfg = AllegroConfig(species=("H", "N"), r_max=4.0, num_layers=layers, l_max=l_max, parity=parity,
                        num_channels=3, two_body_mlp=(8, 16), latent_mlp=(16,), edge_energy_mlp=(8,),
                        latent_resnet=parity != "so3", dtype="float64")
    stats = ModelStats(avg_num_neighbors=6.0, species_scale=(1.0, 2.0), species_shift=(0.1, -0.2))
    with jax.enable_x64(True):
        args = _graph(np.random.default_rng(l_max))
        ref, new = ReferenceAllegro(cfg, stats), Allegro(cfg, stats)
        params = ref.init(jax.random.PRNGKey(1), *args)
        ours = new.init(jax.random.PRNGKey(1), *args)
        assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(params)
        assert all(a.shape == b.shape for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(params)))

        def energy(module, vectors):
            return module.apply(params, vectors, *args[1:]).sum()

        e_ref, g_ref = jax.jit(jax.value_and_grad(lambda v: energy(ref, v)))(args[0])
        e_new, g_new = jax.jit(jax.value_and_grad(lambda v: energy(new, v)))(args[0])
        np.testing.assert_allclose(e_new, e_ref, rtol=1e-12)
        np.testing.assert_allclose(g_new, g_ref, rtol=0, atol=1e-12 * float(jnp.max(jnp.abs(g_ref))))


def test_edge_blocks_equal_all_edges():
    """`edge_block` (edges evaluated block by block, recomputed in the backward pass) changes
    no number: energies, forces and the parameter gradient of a force loss, float64."""
    from legato_jax.model.allegro import atomic_energies

    cfg = AllegroConfig(species=("H", "N"), r_max=4.0, num_layers=2, l_max=2, parity="o3_full", num_channels=3,
                        two_body_mlp=(8, 16), latent_mlp=(16,), edge_energy_mlp=(8,), dtype="float64")
    stats = ModelStats(avg_num_neighbors=6.0, species_scale=(1.0, 2.0), species_shift=(0.1, -0.2))
    with jax.enable_x64(True):
        args = _graph(np.random.default_rng(7), e=70)
        module = Allegro(cfg, stats)
        params = module.init(jax.random.PRNGKey(2), *args)

        def force_loss(p, block):
            forces = jax.grad(lambda v: atomic_energies(module, p, v, *args[1:], edge_block=block).sum())(args[0])
            return jnp.sum(forces**2), forces

        (l_all, f_all), g_all = jax.jit(jax.value_and_grad(lambda p: force_loss(p, None), has_aux=True))(params)
        (l_blk, f_blk), g_blk = jax.jit(jax.value_and_grad(lambda p: force_loss(p, 16), has_aux=True))(params)
        e_all = atomic_energies(module, params, *args)
        e_blk = atomic_energies(module, params, *args, edge_block=16)  # 70 edges: 5 blocks, the last padded
        np.testing.assert_allclose(e_blk, e_all, rtol=0, atol=1e-12)
        np.testing.assert_allclose(f_blk, f_all, rtol=0, atol=1e-12)
        np.testing.assert_allclose(l_blk, l_all, rtol=1e-12)
        for a, b in zip(jax.tree_util.tree_leaves(g_blk), jax.tree_util.tree_leaves(g_all)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-11 * float(jnp.max(jnp.abs(b))) + 1e-14)
