"""Model files: one `.npz` holding the parameters, the architecture and the fitted constants."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from legato_jax.errors import ConfigError
from legato_jax.model.config import AllegroConfig, ModelStats
from legato_jax.model.potential import Potential

FORMAT = "legato_jax.model/1"


def save_model(path: str | Path, potential: Potential, params, extra: dict | None = None) -> Path:
    """Write the model atomically (a kill mid-write leaves any previous file intact)."""
    path = Path(path)
    flat = flatten_dict(jax.device_get(params), sep="/")
    meta = {
        "format": FORMAT,
        "config": potential.config.to_dict(),
        "stats": dataclasses.asdict(potential.stats),
        "extra": extra or {},
    }
    arrays = {f"param:{k}": np.asarray(v) for k, v in flat.items()}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_model(path: str | Path) -> tuple[Potential, dict, dict]:
    """(potential, params, extra metadata) from a model file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such model file")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["__meta__"]).decode())
            flat = {k[len("param:") :]: np.array(data[k]) for k in data.files if k.startswith("param:")}
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: not a legato model file ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path}: unknown model format {meta.get('format')!r}; expected {FORMAT}")
    config = AllegroConfig.from_dict(meta["config"], f"{path} config")
    stats = ModelStats(**meta["stats"])
    params = unflatten_dict(flat, sep="/")
    return Potential(config, stats), params, meta.get("extra", {})


def resolve_model(path: str | Path) -> tuple[Potential, dict, dict]:
    """A training run directory (its best.npz) or a model file -> (potential, params, extra)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "best.npz").exists():
            raise ConfigError(f"{path}: run directory has no best.npz yet (train at least one epoch)")
        path = path / "best.npz"
    return load_model(path)
