"""Sharpness of a trained model's loss landscape.

noise: the paper's measure, mean over draws of L(w + n) - L(w) with n ~ N(0, std^2) per weight.
sam:   the worst case SAM sees, L(w + rho g/||g||) - L(w) with g the full-data gradient.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from legato_jax.data.batching import BatchLoader
from legato_jax.data.graph import FrameGraph
from legato_jax.model.potential import Potential
from legato_jax.train.loss import LossWeights, loss_fn


def dataset_loss_fn(potential: Potential, graphs: Sequence[FrameGraph], weights: LossWeights = LossWeights(),
                    batch_size: int = 8):
    """L(params): the training loss averaged over all batches of `graphs` (frames-weighted)."""
    batches = list(BatchLoader(list(graphs), batch_size, potential.config.r_max, shuffle=False))
    sizes = np.array([float(b.graph.graph_mask.sum()) for b in batches])
    scale = potential.stats.species_scale[0]
    one = jax.jit(lambda p, b: loss_fn(potential.predict(p, b.graph), b, weights, scale))
    grad_one = jax.jit(jax.grad(lambda p, b: loss_fn(potential.predict(p, b.graph), b, weights, scale)))

    def loss(params) -> float:
        return float(sum(w * float(one(params, b)) for w, b in zip(sizes, batches)) / sizes.sum())

    def grad(params):
        total = None
        for w, b in zip(sizes, batches):
            g = jax.tree_util.tree_map(lambda x: x * (w / sizes.sum()), grad_one(params, b))
            total = g if total is None else jax.tree_util.tree_map(jnp.add, total, g)
        return total

    return loss, grad


def noise_sharpness(loss, params, std: float = 0.05, draws: int = 100, seed: int = 0) -> dict:
    base = loss(params)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    rises = []
    key = jax.random.PRNGKey(seed)
    for _ in range(draws):
        key, sub = jax.random.split(key)
        keys = jax.random.split(sub, len(leaves))
        noisy = [x + std * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
        rises.append(loss(jax.tree_util.tree_unflatten(treedef, noisy)) - base)
    rises = np.array(rises)
    return {"loss": base, "std": std, "draws": draws, "mean_rise": float(rises.mean()),
            "stderr_rise": float(rises.std(ddof=1) / np.sqrt(draws)) if draws > 1 else float("nan")}


def sam_sharpness(loss, grad, params, rho: float = 0.05) -> dict:
    base = loss(params)
    g = grad(params)
    scale = rho / (float(optax.tree.norm(g)) + 1e-12)
    adv = jax.tree_util.tree_map(lambda w, d: w + scale * d, params, g)
    return {"loss": base, "rho": rho, "rise": loss(adv) - base, "grad_norm": float(optax.tree.norm(g))}
