"""Sharpness-aware minimization as an optax gradient transformation.

Placed first in an `optax.chain`, it replaces the gradient g at w by the gradient at the
adversarial point w + e, e = rho * g / (||g|| + eps) (global norm; ASAM scales elementwise by
|w| + eta), computed on the same batch through the `grad_fn` extra argument. rho = 0 hands g on
unchanged, so the chain then reduces exactly to the base optimizer.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax


def sam_perturbation(grads, params, rho: float, eps: float = 1e-12, adaptive: bool = False, eta: float = 0.01):
    """The ascent step e(w) of SAM (or ASAM when `adaptive`)."""
    if adaptive:
        t = jax.tree_util.tree_map(lambda w: jnp.abs(w) + eta, params)
        tg = jax.tree_util.tree_map(jnp.multiply, t, grads)
        scale = rho / (optax.tree.norm(tg) + eps)
        return jax.tree_util.tree_map(lambda t, g: scale * t * t * g, t, grads)
    scale = rho / (optax.tree.norm(grads) + eps)
    return jax.tree_util.tree_map(lambda g: scale * g, grads)


def sam(
    rho: float,
    eps: float = 1e-12,
    adaptive: bool = False,
    eta: float = 0.01,
    axis_name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    """SAM gradient replacement. `update(g, state, params, grad_fn=f)` with f(params) -> grads on
    the current batch. With data parallelism, `axis_name` means the adversarial gradient over
    that mapped axis (the incoming g must already be averaged)."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, *, grad_fn: Callable | None = None, **extra):
        del extra
        if rho == 0:
            return updates, state
        if params is None or grad_fn is None:
            raise ValueError("sam needs params and grad_fn=f(params) -> grads in update()")
        e = sam_perturbation(updates, params, rho, eps, adaptive, eta)
        w_adv = jax.tree_util.tree_map(lambda w, d: w + jax.lax.stop_gradient(d), params, e)
        g_adv = grad_fn(w_adv)
        if axis_name is not None:
            g_adv = jax.lax.pmean(g_adv, axis_name)
        return g_adv, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
