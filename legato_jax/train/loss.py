"""Training loss and error metrics on padded batches.

Loss (Allegro's recipe, in units of the force scale s): w_E * mean over frames of
((E_pred - E)/N / s)^2 + w_F * mean over force components of ((F_pred - F)/s)^2
(+ w_S * mean over stress components of frames with stress ((S_pred - S)/s)^2).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from legato_jax.data.graph import Batch
from legato_jax.model.potential import Prediction


@dataclass(frozen=True)
class LossWeights:
    energy: float = 1.0
    forces: float = 1.0
    stress: float = 0.0


def _masked_mean(x, mask):
    mask = mask.astype(x.dtype)
    while mask.ndim < x.ndim:
        mask = mask[..., None]
    count = jnp.maximum(mask.sum() * (x.size / mask.size), 1.0)
    return jnp.sum(x * mask) / count


def errors(pred: Prediction, batch: Batch) -> dict:
    """Per-frame energy-per-atom errors and per-atom force errors, masked (eV, eV/Å, eV/Å^3)."""
    g, t = batch
    n = jnp.maximum(g.n_node.astype(pred.energy.dtype), 1.0)
    return {
        "energy_per_atom": (pred.energy - t.energy) / n,
        "forces": pred.forces - t.forces,
        "stress": pred.stress - t.stress,
    }


def loss_fn(pred: Prediction, batch: Batch, weights: LossWeights, scale: float):
    g, t = batch
    err = errors(pred, batch)
    e = _masked_mean((err["energy_per_atom"] / scale) ** 2, g.graph_mask)
    f = _masked_mean((err["forces"] / scale) ** 2, g.node_mask)
    total = weights.energy * e + weights.forces * f
    if weights.stress:
        s = _masked_mean((err["stress"] / scale) ** 2, g.graph_mask & t.stress_mask)
        total = total + weights.stress * s
    return total


def batch_sums(pred: Prediction, batch: Batch) -> dict:
    """Sums needed to accumulate MAE/RMSE over many batches (exact, independent of padding)."""
    g, t = batch
    err = errors(pred, batch)
    gm = g.graph_mask.astype(pred.energy.dtype)
    nm = g.node_mask.astype(pred.energy.dtype)[:, None]
    sm = (g.graph_mask & t.stress_mask).astype(pred.energy.dtype)[:, None, None]
    out = {
        "frames": gm.sum(),
        "e_abs": jnp.sum(jnp.abs(err["energy_per_atom"]) * gm),
        "e_sq": jnp.sum(err["energy_per_atom"] ** 2 * gm),
        "f_comp": nm.sum() * 3,
        "f_abs": jnp.sum(jnp.abs(err["forces"]) * nm),
        "f_sq": jnp.sum(err["forces"] ** 2 * nm),
        "s_comp": sm.sum() * 9,
        "s_abs": jnp.sum(jnp.abs(err["stress"]) * sm),
        "s_sq": jnp.sum(err["stress"] ** 2 * sm),
    }
    return out
