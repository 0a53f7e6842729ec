"""A boolean candidate mask packed into 32-bit words, its set-bit count, and the flat indices of its
first set bits: the compaction step of every neighbour search here (image lists, domain lists),
~10x faster on CPU than jnp.nonzero(size=) for millions of candidates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def pack_mask(mask: jax.Array) -> jax.Array:
    """The candidate mask as 32-bit words, packed along its last axis. That axis is a multiple of 32
    by construction: padding the mask here makes XLA fuse the candidate loop into the packing
    reduction, ~10x slower on CPU."""
    assert mask.shape[-1] % 32 == 0, mask.shape
    bits = mask.reshape(-1, 32).astype(jnp.uint32)
    return jnp.sum(bits << jnp.arange(32, dtype=jnp.uint32), axis=1, dtype=jnp.uint32)


def count_set(words: jax.Array) -> jax.Array:
    return jnp.sum(lax.population_count(words), dtype=jnp.int32)


def compact_set(words: jax.Array, size: int) -> jax.Array:
    """Flat indices of the first `size` set bits of the packed mask, in order (later slots: garbage).

    Same result as jnp.nonzero(size=), which scatters once per candidate: here words are located
    by a prefix sum of their popcounts and the bit inside its word by a 5-step popcount bisection,
    ~10x faster on CPU for millions of candidates."""
    counts = lax.population_count(words).astype(jnp.int32)
    start = jnp.cumsum(counts) - counts
    ids = jnp.arange(words.size, dtype=jnp.int32)
    word = jnp.zeros(size, jnp.int32).at[jnp.where(counts > 0, start, size)].max(ids, mode="drop")
    word = lax.cummax(word)  # slot e lies in the last non-empty word starting at or before e
    rank = (jnp.arange(size, dtype=jnp.int32) - start[word]).astype(jnp.uint32)
    bits, bit = words[word], jnp.zeros(size, jnp.uint32)
    for width in (16, 8, 4, 2, 1):
        below = lax.population_count((bits >> bit) & jnp.uint32((1 << width) - 1))
        bit, rank = jnp.where(rank >= below, bit + width, bit), jnp.where(rank >= below, rank - below, rank)
    return word * 32 + bit.astype(jnp.int32)
