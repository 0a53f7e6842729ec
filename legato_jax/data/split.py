"""Deterministic train/validation/test splits by blocks of consecutive frames.

Frames sampled from one MD trajectory are correlated in time; assigning whole blocks of
consecutive frames to one split keeps near-duplicates out of the validation and test sets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from legato_jax.errors import ConfigError, DataError
from legato_jax.outputs import atomic_write_text
from legato_jax.shipped import locate, missing_hint

SPLITS = ("train", "validation", "test")


def block_split(
    n_frames: int, fractions=(0.8, 0.1, 0.1), seed: int = 0, block: int = 10
) -> dict[str, list[int]]:
    """Shuffle blocks of `block` consecutive frames with `seed` and deal them to the splits."""
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ConfigError(f"--fractions must be three non-negative numbers summing to 1, got {fractions.tolist()}")
    if block < 1:
        raise ConfigError(f"--block must be >= 1, got {block}")
    blocks = [np.arange(s, min(s + block, n_frames)) for s in range(0, n_frames, block)]
    order = np.random.default_rng(seed).permutation(len(blocks))
    targets = np.round(np.cumsum(fractions) * n_frames).astype(int)
    out = {name: [] for name in SPLITS}
    count = 0
    for b in order:
        name = SPLITS[int(np.searchsorted(targets, count, side="right"))] if count < n_frames else "test"
        out[name].extend(int(k) for k in blocks[b])
        count += len(blocks[b])
    return {k: sorted(v) for k, v in out.items()}


def write_split(path: str | Path, split: dict, meta: dict) -> None:
    atomic_write_text(path, json.dumps({"meta": meta, **split}, indent=None) + "\n")


def read_split(path: str | Path, n_frames: int | None = None) -> dict[str, list[int]]:
    """Read a split file; checks that indices are in range and disjoint."""
    path = locate(path, "split")
    if not path.exists():
        raise DataError(f"{path}: no such split file (make one with `legato data split`){missing_hint(path, 'split')}")
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a split file (invalid JSON: {exc}); make one with `legato data split`") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a split file (expected a JSON object with {list(SPLITS)})")
    missing = [k for k in SPLITS if k not in data]
    if missing:
        raise DataError(f"{path}: split file lacks {missing}")
    seen: set[int] = set()
    for k in SPLITS:
        if not isinstance(data[k], list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in data[k]):
            raise DataError(f"{path}: split '{k}' must be a list of frame indices (integers)")
        idx = set(data[k])
        if seen & idx:
            raise DataError(f"{path}: split '{k}' shares frames with another split")
        seen |= idx
        if n_frames is not None and any(i < 0 or i >= n_frames for i in idx):
            raise DataError(f"{path}: split '{k}' has indices outside 0..{n_frames - 1}")
    return {k: list(data[k]) for k in SPLITS}
