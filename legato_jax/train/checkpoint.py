"""Atomic checkpoints of the whole training state (a kill leaves the last good one loadable)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

from flax import serialization


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
    top-level fields an older checkpoint lacks: name -> f(restored state dict)."""
    with open(path, "rb") as fh:
        data = serialization.msgpack_restore(fh.read())
    for key, fill in (missing or {}).items():
        if key not in data:
            data[key] = fill(data)
    return serialization.from_state_dict(template, data)
