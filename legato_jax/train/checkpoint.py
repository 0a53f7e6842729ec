"""Atomic checkpoints of the whole training state (a kill leaves the last good one loadable)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

import jax
import numpy as np
from flax import serialization

from legato_jax.errors import ConfigError


def save_checkpoint(path: str | Path, state) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(serialization.to_bytes(state))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, template, missing: Mapping[str, Callable] | None = None):
    """Restore into the structure of `template` (a freshly initialized state). `missing` fills
    top-level fields an older checkpoint lacks: name -> f(restored state dict). A file that is
    cut, foreign or of another model (keys or shapes differ) is refused naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = serialization.msgpack_restore(fh.read())
        if not isinstance(data, dict):
            raise ValueError("not a mapping of training state")
        for key, fill in (missing or {}).items():
            if key not in data:
                data[key] = fill(data)
        state = serialization.from_state_dict(template, data)
    except OSError:
        raise
    except Exception as exc:  # msgpack and flax raise many kinds for a damaged file
        raise ConfigError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: "
                          f"{str(exc)[:120]}); delete the run directory and train again, or resume from a copy") from None
    want = [np.shape(x) for x in jax.tree.leaves(template)]
    got = [np.shape(x) for x in jax.tree.leaves(state)]
    if want != got:
        raise ConfigError(f"{path}: the checkpoint holds a different model (array shapes differ from the run's "
                          f"config.yaml); resume it with its own config or start a new run")
    return state
