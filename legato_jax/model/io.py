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
from legato_jax.shipped import locate, missing_hint

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
    """(potential, params, extra metadata) from a model file (or a shipped model's name)."""
    path = locate(path, "model")
    if not path.is_file():
        raise ConfigError(f"{path}: no such model file{missing_hint(path, 'model')}")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["__meta__"]).decode())
            flat = {k[len("param:") :]: np.array(data[k]) for k in data.files if k.startswith("param:")}
    except OSError:
        raise
    except Exception as exc:  # zip, npy and JSON readers raise many kinds for a damaged file
        raise ConfigError(f"{path}: not a legato model file ({type(exc).__name__}: {str(exc)[:100]}); "
                          f"give a best.npz written by legato train or scripts/export_run.py") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ConfigError(f"{path}: unknown model format {found!r}; expected {FORMAT}")
    try:
        config = AllegroConfig.from_dict(meta["config"], f"{path} config")
        stats = ModelStats(**meta["stats"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: damaged model metadata ({type(exc).__name__}: {exc})") from None
    params = unflatten_dict(flat, sep="/")
    check_params(path, Potential(config, stats), params)
    return Potential(config, stats), params, meta.get("extra", {})


def check_params(path: Path, potential: Potential, params) -> None:
    """The parameter arrays are the ones the file's architecture needs (names and shapes)."""
    from legato_jax.data.graph import collate

    padding_only = collate([], 2, 2, 1, potential.config.r_max).graph
    want = jax.eval_shape(potential.init, jax.random.PRNGKey(0), padding_only)
    want = {k: tuple(v.shape) for k, v in flatten_dict(want, sep="/").items()}
    got = {k: tuple(np.shape(v)) for k, v in flatten_dict(params, sep="/").items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:2]
        raise ConfigError(f"{path}: the parameters do not fit the file's model config (first differences: {diff}); "
                          f"the file is damaged or was edited")


def resolve_model(path: str | Path) -> tuple[Potential, dict, dict]:
    """A training run directory (its best.npz), a model file or a shipped model's name
    (`legato`, `models/legato/best.npz`) -> (potential, params, extra)."""
    path = locate(path, "model")
    if path.is_dir():
        if not (path / "best.npz").exists():
            raise ConfigError(f"{path}: run directory has no best.npz yet (train at least one epoch)")
        path = path / "best.npz"
    return load_model(path)
