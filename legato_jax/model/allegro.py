"""Allegro (0.2.0 semantics) as a Flax module: edge vectors and species in, atomic energies out.

Everything lives on edges (i -> j within r_max). Channels are the last array axis: tensor
features have shape (edges, irreps.dim, channels), so that the channel-wise ("uuu") tensor product
is elementwise over contiguous channels and the channel mixing is a matmul
(`legato_jax/model/tensor_product.py`).
"""

from __future__ import annotations

import math

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from legato_jax.model.config import AllegroConfig, ModelStats
from legato_jax.model.irreps import layer_irreps, sh_irreps
from legato_jax.model.mlp import ScalarMLP
from legato_jax.model.radial import NormalizedBessel, polynomial_envelope
from legato_jax.model.tensor_product import (
    ChannelLinear,
    channelwise_tensor_product,
    scalar_order,
    tensor_product_paths,
)

_RESNET_ALPHA = 0.5  # sigmoid(0): Allegro 0.2.0's fixed latent update ratio


def safe_norm(v):
    """|v| with a finite gradient at v = 0."""
    sq = jnp.sum(v * v, axis=-1)
    ok = sq > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)


def _per_component(per_l, irreps: e3nn.Irreps):
    """(E, n_l, C) -> (E, irreps.dim, C): each irrep's row repeated over its 2l + 1 components."""
    E, _, C = per_l.shape
    return jnp.concatenate(
        [jnp.broadcast_to(per_l[:, k : k + 1], (E, ir.dim, C)) for k, (_, ir) in enumerate(irreps)], axis=1
    )


class Allegro(nn.Module):
    """Atomic energies E_i = scale_t * sum_j E_ij / sqrt(N_avg) + shift_t (zero for padded atoms)."""

    config: AllegroConfig
    stats: ModelStats

    @nn.compact
    def __call__(self, vectors, species, senders, receivers, edge_mask, node_mask):
        cfg = self.config
        n_nodes = species.shape[0]
        n_types = len(cfg.species)
        C = cfg.num_channels
        inv_sqrt_navg = 1.0 / math.sqrt(self.stats.avg_num_neighbors)

        r = safe_norm(vectors)
        in_range = edge_mask & (r < cfg.r_max)
        u = polynomial_envelope(r, cfg.r_max, cfg.polynomial_p)

        sh = sh_irreps(cfg.l_max, cfg.parity)
        sh_in = e3nn.IrrepsArray("1e" if cfg.parity == "so3" else "1o", vectors)
        Y = e3nn.spherical_harmonics(sh, sh_in, normalize=True, normalization="component").array
        n_l = len(sh)

        # Two-body latent on (one-hot i, one-hot j, enveloped normalized Bessel).
        onehot = jax.nn.one_hot(species, n_types, dtype=vectors.dtype)
        basis = NormalizedBessel(cfg.r_max, cfg.num_bessel, cfg.bessel_trainable)(r) * u[:, None]
        x_in = jnp.concatenate([onehot[receivers], onehot[senders], basis], axis=-1)
        w0_mask = (u * in_range)[:, None]
        x = w0_mask * ScalarMLP(cfg.two_body_mlp, name="two_body")(x_in)

        mask = in_range.astype(x.dtype)[:, None]
        a = 1.0 / math.sqrt(1.0 + _RESNET_ALPHA**2)
        b = _RESNET_ALPHA / math.sqrt(1.0 + _RESNET_ALPHA**2)
        V = None
        for k, (args, outs) in enumerate(layer_irreps(cfg.l_max, cfg.parity, cfg.num_layers)):
            last = k == cfg.num_layers - 1
            n_env = 2 * C * n_l if k == 0 else C * n_l
            # columns read as (l, channel) instead of the parameters' (channel, l): (E, n_l, channels)
            env_order = np.arange(n_env).reshape(-1, n_l).T.ravel()
            env = ScalarMLP((n_env,), name=f"env_embed_{k}")(x, out_order=env_order) * mask
            env = env.reshape(-1, n_l, n_env // n_l)
            if k == 0:
                V = _per_component(env[:, :, :C], sh) * Y[:, :, None]
                env = env[:, :, C:]
            weights = _per_component(env, sh) * Y[:, :, None]  # (E, sh dim, C): channels last
            gamma = jax.ops.segment_sum(weights.reshape(-1, sh.dim * C), receivers, n_nodes) * inv_sqrt_navg
            gamma = gamma[receivers].reshape(-1, sh.dim, C)  # rows gathered whole: no transposes

            paths = tensor_product_paths(str(args), str(sh), str(outs))
            tp = channelwise_tensor_product(V, gamma, paths)
            latent_in = jnp.concatenate([x, tp[e3nn.Irrep("0e")][:, 0]], axis=-1)
            latent_order = np.concatenate([np.arange(x.shape[-1]), x.shape[-1] + np.asarray(scalar_order(paths, C))])
            update = ScalarMLP(cfg.latent_mlp, name=f"latent_{k}")(latent_in, in_order=latent_order)
            update = update * u[:, None] * mask
            x = a * x + b * update if cfg.latent_resnet else update
            if not last:
                V = ChannelLinear(outs, C, name=f"linear_{k}")(paths, tp)

        edge_energy = ScalarMLP(cfg.edge_energy_mlp + (1,), activate_hidden=False, name="edge_energy")(x)[:, 0]
        edge_energy = jnp.where(edge_mask, edge_energy, 0.0)
        atom = jax.ops.segment_sum(edge_energy, receivers, n_nodes) * inv_sqrt_navg
        scale = jnp.asarray(self.stats.species_scale, x.dtype)[species]
        shift = jnp.asarray(self.stats.species_shift, x.dtype)[species]
        return jnp.where(node_mask, scale * atom + shift, 0.0)
