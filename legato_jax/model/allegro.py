"""Allegro (0.2.0 semantics) as a Flax module: edge vectors and species in, atomic energies out.

Everything lives on edges (i -> j within r_max). Channels are the last array axis: tensor
features have shape (edges, irreps.dim, channels), so that the channel-wise ("uuu") tensor product
is elementwise over contiguous channels and the channel mixing is a matmul
(`legato_jax/model/tensor_product.py`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

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


class _Geometry(NamedTuple):
    r: jax.Array  # (E,) edge length
    u: jax.Array  # (E,) envelope
    mask: jax.Array  # (E, 1) 1 for real edges within r_max
    Y: jax.Array  # (E, sh dim) spherical harmonics


class Allegro(nn.Module):
    """Atomic energies E_i = scale_t * sum_j E_ij / sqrt(N_avg) + shift_t (zero for padded atoms).

    The edge work is split into stages that each see only edges: `embed`, then one `layer` per
    Allegro layer, with the per-node sums between them; `atomic_energies` runs the stages on
    all edges at once or block by block."""

    config: AllegroConfig
    stats: ModelStats

    def setup(self):
        cfg = self.config
        C, n_l = cfg.num_channels, cfg.l_max + 1
        plan = layer_irreps(cfg.l_max, cfg.parity, cfg.num_layers)
        # attribute names are the parameter paths of saved models (the Bessel basis kept its auto name)
        self.NormalizedBessel_0 = NormalizedBessel(cfg.r_max, cfg.num_bessel, cfg.bessel_trainable)
        self.two_body = ScalarMLP(cfg.two_body_mlp)
        self.env_embed = [ScalarMLP(((2 if k == 0 else 1) * C * n_l,)) for k in range(cfg.num_layers)]
        self.latent = [ScalarMLP(cfg.latent_mlp) for _ in range(cfg.num_layers)]
        self.linear = [ChannelLinear(outs, C) for _, outs in plan[:-1]]
        self.edge_energy = ScalarMLP(cfg.edge_energy_mlp + (1,), activate_hidden=False)

    def geometry(self, vectors, edge_mask) -> _Geometry:
        cfg = self.config
        r = safe_norm(vectors)
        sh_in = e3nn.IrrepsArray("1e" if cfg.parity == "so3" else "1o", vectors)
        sh = sh_irreps(cfg.l_max, cfg.parity)
        Y = e3nn.spherical_harmonics(sh, sh_in, normalize=True, normalization="component").array
        mask = (edge_mask & (r < cfg.r_max)).astype(vectors.dtype)[:, None]
        return _Geometry(r, polynomial_envelope(r, cfg.r_max, cfg.polynomial_p), mask, Y)

    def _gamma_weights(self, k: int, x, geo: _Geometry):
        """Layer k's environment embedding (E, sh dim, C) (channels last), and at k = 0 the
        initial tensor features too."""
        cfg = self.config
        sh = sh_irreps(cfg.l_max, cfg.parity)
        C, n_l = cfg.num_channels, len(sh)
        n_env = (2 if k == 0 else 1) * C * n_l
        # columns read as (l, channel) instead of the parameters' (channel, l): (E, n_l, channels)
        env_order = np.arange(n_env).reshape(-1, n_l).T.ravel()
        env = (self.env_embed[k](x, out_order=env_order) * geo.mask).reshape(-1, n_l, n_env // n_l)
        weights = _per_component(env[:, :, -C:], sh) * geo.Y[:, :, None]
        if k == 0:
            return weights, _per_component(env[:, :, :C], sh) * geo.Y[:, :, None]
        return weights

    def embed(self, vectors, species_receiver, species_sender, edge_mask):
        """Two-body latent x (E, latent), initial tensor features V and layer 0's weights."""
        cfg = self.config
        geo = self.geometry(vectors, edge_mask)
        n_types = len(cfg.species)
        basis = self.NormalizedBessel_0(geo.r) * geo.u[:, None]
        onehot = jax.nn.one_hot
        x_in = jnp.concatenate([onehot(species_receiver, n_types, dtype=vectors.dtype),
                                onehot(species_sender, n_types, dtype=vectors.dtype), basis], axis=-1)
        x = (geo.u[:, None] * geo.mask) * self.two_body(x_in)
        weights, V = self._gamma_weights(0, x, geo)
        return x, V, weights

    def layer(self, k: int, vectors, edge_mask, x, V, gamma):
        """Allegro layer k on edges given gamma (E, sh dim, C), the summed environment of each
        edge's receiver: the next (x, V, weights), or the edge energies after the last layer."""
        cfg = self.config
        geo = self.geometry(vectors, edge_mask)
        args, outs = layer_irreps(cfg.l_max, cfg.parity, cfg.num_layers)[k]
        sh = sh_irreps(cfg.l_max, cfg.parity)
        C = cfg.num_channels
        paths = tensor_product_paths(str(args), str(sh), str(outs))
        tp = channelwise_tensor_product(V, gamma, paths)
        latent_in = jnp.concatenate([x, tp[e3nn.Irrep("0e")][:, 0]], axis=-1)
        latent_order = np.concatenate([np.arange(x.shape[-1]), x.shape[-1] + np.asarray(scalar_order(paths, C))])
        update = self.latent[k](latent_in, in_order=latent_order) * geo.u[:, None] * geo.mask
        if cfg.latent_resnet:
            a, b = 1.0 / math.sqrt(1.0 + _RESNET_ALPHA**2), _RESNET_ALPHA / math.sqrt(1.0 + _RESNET_ALPHA**2)
            x = a * x + b * update
        else:
            x = update
        if k == cfg.num_layers - 1:
            return (jnp.where(edge_mask, self.edge_energy(x)[:, 0], 0.0),)
        return x, self.linear[k](paths, tp), self._gamma_weights(k + 1, x, geo)

    def __call__(self, vectors, species, senders, receivers, edge_mask, node_mask):
        return atomic_energies(self, None, vectors, species, senders, receivers, edge_mask, node_mask)


def _all_edges(fn, edge_args, node_args, receivers, n_nodes):
    *kept, summed = fn(*edge_args, *node_args)
    return tuple(kept), jax.ops.segment_sum(summed, receivers, n_nodes)


def _edge_blocks(block: int, fn, edge_args, node_args, receivers, n_nodes):
    """`_all_edges` over blocks of `block` edges in a scan whose body is recomputed in the
    backward pass (remat): per-edge intermediates live one block at a time, and the summed
    output goes straight into the node sums."""
    E = edge_args[0].shape[0]
    n_blocks = -(-E // block)
    pad = n_blocks * block - E

    def split(a):
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape((n_blocks, block) + a.shape[1:])

    @jax.checkpoint
    def body(total, xs):
        *args, rec = xs
        *kept, summed = fn(*args, *node_args)
        return total + jax.ops.segment_sum(summed, rec, n_nodes), tuple(kept)

    out = jax.eval_shape(fn, *(a[:1] for a in edge_args), *node_args)[-1]
    zero = jnp.zeros((n_nodes,) + out.shape[1:], out.dtype)
    total, kept = jax.lax.scan(body, zero, tuple(split(a) for a in (*edge_args, receivers)))
    return tuple(a.reshape((n_blocks * block,) + a.shape[2:])[:E] for a in kept), total


def atomic_energies(module: Allegro, params, vectors, species, senders, receivers, edge_mask, node_mask,
                    edge_block: int | None = None):
    """Allegro's atomic energies; with `params` the module is applied to them (outside a Flax
    module), and with `edge_block` the edge stages run block by block (same numbers)."""
    cfg, stats = module.config, module.stats
    n_nodes = species.shape[0]
    C = cfg.num_channels
    sh_dim = sh_irreps(cfg.l_max, cfg.parity).dim
    inv_sqrt_navg = 1.0 / math.sqrt(stats.avg_num_neighbors)

    def stage(method, *args):
        if params is None:
            return lambda *a: method(module, *args, *a)
        return lambda *a: module.apply(params, *args, *a, method=method)

    def run(fn, edge_args, node_args=()):
        """fn's outputs on every edge, its last one summed per receiving node."""
        if edge_block is None or edge_args[0].shape[0] <= edge_block:
            return _all_edges(fn, edge_args, node_args, receivers, n_nodes)
        return _edge_blocks(edge_block, fn, edge_args, node_args, receivers, n_nodes)

    def gathered(receivers_b, gamma):  # rows gathered whole: no transposes
        return gamma[receivers_b].reshape(-1, sh_dim, C)

    def flat(fn):  # the weights summed per node as rows of sh dim * C
        def f(*a):
            *kept, weights = fn(*a)
            return (*kept, weights.reshape(weights.shape[0], -1))
        return f

    (x, V), gamma = run(flat(stage(Allegro.embed)), (vectors, species[receivers], species[senders], edge_mask))
    for k in range(cfg.num_layers):
        layer = stage(Allegro.layer, k)
        step = lambda v, m, xk, Vk, rb, g: layer(v, m, xk, Vk, gathered(rb, g * inv_sqrt_navg))
        out, gamma = run(flat(step) if k < cfg.num_layers - 1 else step, (vectors, edge_mask, x, V, receivers), (gamma,))
        if k < cfg.num_layers - 1:
            x, V = out
    atom = gamma * inv_sqrt_navg
    scale = jnp.asarray(stats.species_scale, x.dtype)[species]
    shift = jnp.asarray(stats.species_shift, x.dtype)[species]
    return jnp.where(node_mask, scale * atom + shift, 0.0)
