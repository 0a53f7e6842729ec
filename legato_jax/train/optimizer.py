"""The optimizer chain: SAM -> (clip) -> Adam -> plateau scaling; and the parameter EMA."""

from __future__ import annotations

import jax
import optax

from legato_jax.train.sam import sam


def make_optimizer(lr: float, rho: float = 0.0, adaptive: bool = False, eta: float = 0.01,
                   clip_norm: float | None = None, plateau_factor: float = 0.5, plateau_patience: int = 50,
                   steps_per_epoch: int = 1) -> optax.GradientTransformationExtraArgs:
    """`update(g, state, params, grad_fn=..., value=validation_loss)`. The plateau transform
    averages `value` over one epoch of steps, so it decides once per epoch."""
    parts = [sam(rho, adaptive=adaptive, eta=eta)]
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(clip_norm))
    parts += [
        optax.adam(lr),
        optax.contrib.reduce_on_plateau(
            factor=plateau_factor, patience=plateau_patience, rtol=1e-4, accumulation_size=steps_per_epoch
        ),
    ]
    return optax.chain(*parts)


def plateau_scale(opt_state) -> jax.Array:
    """Current learning-rate multiplier of the plateau transform in the chain."""
    for s in opt_state:
        if hasattr(s, "scale") and hasattr(s, "plateau_count"):
            return s.scale
    raise ValueError("no reduce_on_plateau state in the optimizer state")


def ema_update(ema, params, step, decay: float):
    """Parameter EMA with warm-up, torch_ema's as nequip uses it (ema_use_num_updates): after the
    n-th update (n = 1, 2, ...), decay_eff = min(decay, (1 + n) / (10 + n))."""
    d = jax.numpy.minimum(decay, (1.0 + step) / (10.0 + step))
    return jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
