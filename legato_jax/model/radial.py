"""Radial pieces: trainable, normalized Bessel basis and the polynomial cutoff envelope."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def polynomial_envelope(r, r_max: float, p: int):
    """DimeNet envelope u(r/r_max): 1 at 0, zero with p derivatives at r_max, 0 beyond."""
    x = r / r_max
    u = (
        1.0
        - (p + 1.0) * (p + 2.0) / 2.0 * x**p
        + p * (p + 2.0) * x ** (p + 1)
        - p * (p + 1.0) / 2.0 * x ** (p + 2)
    )
    return jnp.where(x < 1.0, u, 0.0)


def bessel_statistics(r_max: float, num_basis: int, n_points: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased std of the initial Bessel functions on n_points in (0, r_max]."""
    r = np.linspace(0.0, r_max, n_points + 1)[1:]
    w = np.pi * np.arange(1, num_basis + 1)
    b = (2.0 / r_max) * np.sin(w[None, :] * r[:, None] / r_max) / r[:, None]
    return b.mean(axis=0), b.std(axis=0, ddof=1)


class NormalizedBessel(nn.Module):
    """B_n(r) = (2/r_max) sin(w_n r / r_max) / r with trainable w_n (init n*pi), standardized by
    constants computed once from the initial basis (as Allegro 0.2.0's NormalizedBasis)."""

    r_max: float
    num_basis: int = 8
    trainable: bool = True

    @nn.compact
    def __call__(self, r):
        init = lambda key, shape, dtype=jnp.float32: jnp.pi * jnp.arange(1, shape[0] + 1, dtype=dtype)
        if self.trainable:
            w = self.param("frequencies", init, (self.num_basis,), r.dtype)
        else:
            w = init(None, (self.num_basis,), r.dtype)
        mean, std = bessel_statistics(self.r_max, self.num_basis)
        safe_r = jnp.where(r > 0, r, 1.0)
        b = (2.0 / self.r_max) * jnp.sin(w * safe_r[:, None] / self.r_max) / safe_r[:, None]
        return (b - jnp.asarray(mean, r.dtype)) / jnp.asarray(std, r.dtype)
