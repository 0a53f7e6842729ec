"""The one timer every benchmark uses."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import jax


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time (s) of `repeats` calls of `fn()`, each timed until its result is ready
    (`jax.block_until_ready`, which passes host values through), so that JAX's asynchronous
    dispatch does not hide the work."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
