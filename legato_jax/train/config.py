"""Training settings as a frozen dataclass; YAML in, `--set key=value` overrides, strict keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from legato_jax.errors import ConfigError
from legato_jax.model.config import AllegroConfig
from legato_jax.train.stopping import RULES
from legato_jax.yaml_io import check_keys, read_mapping, typed_fields


INIT_STATS = ("keep", "refit")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Paths are relative to the working directory."""

    name: str = "allegro"
    out_dir: str = "runs"
    data: str = "data/ammonia.extxyz.xz"
    split: str = "data/ammonia.split.json"
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    model: dict = field(default_factory=dict)  # AllegroConfig fields
    seed: int = 0
    batch_size: int = 4
    eval_batch_size: int = 8
    lr: float = 0.002
    rho: float = 0.0  # SAM radius; 0 is plain Adam
    sam_adaptive: bool = False
    sam_eta: float = 0.01
    clip_norm: float | None = None
    energy_weight: float = 1.0
    forces_weight: float = 1.0
    stress_weight: float = 1.0  # applied to frames that carry stress
    per_species_shift: bool = False
    ema_decay: float = 0.99
    plateau_factor: float = 0.5
    plateau_patience: int = 50
    min_lr: float = 1e-5
    early_stop_patience: int = 100
    early_stop_delta: float = 0.0  # nequip rule: absolute (loss units); relative rule: a fraction
    early_stop_rule: str = "nequip"  # train/stopping.py: "nequip" (nequip 0.5's EarlyStopping) or "relative"
    max_epochs: int = 1500
    max_minutes: float | None = None
    max_train_frames: int | None = None  # use the first N training frames (tests, quick looks)
    init_from: str | None = None  # fine-tune: start from this model file's (or run's) weights
    init_stats: str = "keep"  # with init_from: "keep" the model's per-species scale/shift or "refit" them

    def __post_init__(self) -> None:
        self.model_config()  # validates the model block early
        checks = {
            "batch_size": self.batch_size >= 1, "eval_batch_size": self.eval_batch_size >= 1,
            "lr": self.lr > 0, "rho": self.rho >= 0, "ema_decay": 0 <= self.ema_decay < 1,
            "plateau_factor": 0 < self.plateau_factor < 1, "plateau_patience": self.plateau_patience >= 1,
            "max_epochs": self.max_epochs >= 1, "early_stop_patience": self.early_stop_patience >= 1,
            "early_stop_delta": self.early_stop_delta >= 0, "stress_weight": self.stress_weight >= 0,
            "energy_weight": self.energy_weight >= 0, "forces_weight": self.forces_weight >= 0,
            "max_train_frames": self.max_train_frames is None or self.max_train_frames >= 1,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"training option '{key}' has an invalid value {getattr(self, key)!r}")
        if self.init_stats not in INIT_STATS:
            raise ConfigError(f"training option 'init_stats' must be one of {', '.join(INIT_STATS)}, got {self.init_stats!r}")
        if self.early_stop_rule not in RULES:
            raise ConfigError(f"training option 'early_stop_rule' must be one of {', '.join(RULES)}, "
                              f"got {self.early_stop_rule!r}")

    def model_config(self) -> AllegroConfig:
        return AllegroConfig.from_dict(dict(self.model), "training config 'model'")

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model_config().to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict, where: str = "training config") -> "TrainConfig":
        check_keys(cls, data, where)
        data = dict(data)
        model = data.get("model", {})
        if isinstance(model, str):  # a path to a model YAML
            model = AllegroConfig.from_yaml(model).to_dict()
        data["model"] = dict(model)
        return cls(**typed_fields(cls, data, where))


def parse_overrides(items: list[str]) -> list[tuple[str, object]]:
    """`--set key=value` items as (key, YAML value) pairs, or a one-line error naming the item."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or key.endswith("."):
            raise ConfigError(f"--set {item!r}: expected key=value with a key such as lr or model.num_layers")
        try:
            out.append((key.strip(), yaml.safe_load(raw)))
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value {raw!r} is not valid YAML (quote strings, write lists "
                              f"as [1, 2])") from None
    return out


def load_train_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Read a training YAML and apply `key=value` overrides (`model.key=value` for the model)."""
    path = Path(path)
    data = read_mapping(path, "training config")
    if isinstance(data.get("model"), str):
        model_path = Path(data["model"])
        if not model_path.exists() and (path.parent / model_path).exists():
            model_path = path.parent / model_path
        data["model"] = AllegroConfig.from_yaml(model_path).to_dict()
    for key, value in parse_overrides(overrides):
        if key.startswith("model."):
            data.setdefault("model", {})[key[len("model."):]] = value
        else:
            data[key] = value
    return TrainConfig.from_dict(data, str(path))
