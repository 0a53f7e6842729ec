"""Atomic checkpoints of the whole training state (a kill leaves the last good one loadable)."""

from __future__ import annotations

import os
from pathlib import Path

from flax import serialization


def save_checkpoint(path: str | Path, state) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(serialization.to_bytes(state))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, template):
    """Restore into the structure of `template` (a freshly initialized state)."""
    with open(path, "rb") as fh:
        return serialization.from_bytes(template, fh.read())
