"""Strict mapping of YAML onto frozen dataclasses: unknown keys are errors that list the valid ones."""

from __future__ import annotations

import dataclasses
import types
import typing
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
            raise ConfigError(f"{path}: not valid YAML ({yaml_problem(exc)})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} options")
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML parse error as one phrase with its line and column."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def check_keys(cls, data: dict, where: str) -> None:
    """Refuse keys of `data` that are not fields of the dataclass `cls` (or names in a set)."""
    valid = set(cls) if isinstance(cls, (set, frozenset)) else {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(valid)}")


def typed_fields(cls, data: dict, where: str) -> dict:
    """`data` with each value checked against its dataclass field's type: an int where an int
    belongs (not a float, not a bool), a number for a float, a list for a tuple of numbers, None
    only where the field allows it. Values are converted (int -> float, list -> tuple) not rounded."""
    hints = typing.get_type_hints(cls)
    return {key: _typed(value, hints[key], key, where) if key in hints else value for key, value in data.items()}


def _typed(value, hint, key: str, where: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options[:-1]:  # the first alternative that takes the value
            try:
                return _typed(value, option, key, where)
            except ConfigError:
                pass
        return _typed(value, options[-1], key, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: '{key}' must be a list, got {value!r}")
        return tuple(_typed(v, args[0], key, where) for v in value)
    ok = {int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          bool: isinstance(value, bool), str: isinstance(value, str), dict: isinstance(value, dict)}.get(hint, True)
    if not ok:
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}[hint]
        raise ConfigError(f"{where}: '{key}' must be {kind}, got {value!r} ({type(value).__name__})")
    return float(value) if hint is float else value
