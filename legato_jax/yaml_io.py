"""Strict mapping of YAML onto frozen dataclasses: unknown keys are errors that list the valid ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from legato_jax.errors import ConfigError


def read_mapping(path: str | Path, what: str) -> dict:
    """The top-level mapping of a YAML file, or a clear error naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such {what}")
    with open(path) as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} options")
    return data


def check_keys(cls, data: dict, where: str) -> None:
    """Refuse keys of `data` that are not fields of the dataclass `cls` (or names in a set)."""
    valid = set(cls) if isinstance(cls, (set, frozenset)) else {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(valid)}")
