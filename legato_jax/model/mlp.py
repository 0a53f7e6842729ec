"""Bias-free MLPs with Allegro's initialization and scaling."""

from __future__ import annotations

from typing import Sequence

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def uniform_sqrt3(key, shape, dtype=jnp.float32):
    """U(-sqrt 3, sqrt 3): unit variance."""
    return jax.random.uniform(key, shape, dtype, -jnp.sqrt(3.0), jnp.sqrt(3.0))


class ScalarMLP(nn.Module):
    """in -> widths[0] -> ... -> widths[-1]; SiLU (normalized to unit second moment) between
    layers, none after the last; each layer computes x @ W / sqrt(fan_in), no biases.

    `in_order` / `out_order` (static index tuples) read the first weight's rows / the last weight's
    columns in another order: the same parameters applied to permuted inputs / giving permuted
    outputs, which spares the caller a transpose of per-edge features."""

    widths: Sequence[int]
    activate_hidden: bool = True

    @nn.compact
    def __call__(self, x, in_order: Sequence[int] | None = None, out_order: Sequence[int] | None = None):
        act = e3nn.normalize_function(jax.nn.silu)
        for k, width in enumerate(self.widths):
            w = self.param(f"w{k}", uniform_sqrt3, (x.shape[-1], width), x.dtype)
            if k == 0 and in_order is not None:
                w = w[np.asarray(in_order)]
            if k == len(self.widths) - 1 and out_order is not None:
                w = w[:, np.asarray(out_order)]
            x = x @ (w * (1.0 / np.sqrt(x.shape[-1])).astype(x.dtype))  # scale the weight, not the edges
            if self.activate_hidden and k < len(self.widths) - 1:
                x = act(x)
        return x
