"""Training settings as a frozen dataclass; YAML in, `--set key=value` overrides, strict keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from legato_jax.errors import ConfigError
from legato_jax.model.config import AllegroConfig
from legato_jax.shipped import locate, portable
from legato_jax.train.stopping import RULES
from legato_jax.yaml_io import check_keys, read_mapping, typed_fields


INIT_STATS = ("keep", "refit")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Files are paths (relative to the working folder) or shipped names."""

    name: str = "allegro"
    out_dir: str = "runs"
    data: str | tuple[str, ...] = "data/ammonia.extxyz.xz"  # one file, or a list trained on together
    # a split file, None (blocks of consecutive frames dealt by `seed`), or with a list of data
    # files a list of the same length whose entries are split files or None
    split: str | tuple[str | None, ...] | None = None
    split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1)  # train, validation, test, when split is None
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
    # isolated-atom reference energies (eV), MACE's E0s: None (one mean energy per atom),
    # "average" (per-element least squares on the training split), or {element: energy}
    e0s: dict | str | None = None
    ema_decay: float = 0.99
    plateau_factor: float = 0.5
    plateau_patience: int = 50
    # epochs after which the learning rate is multiplied by plateau_factor whatever the plateau
    # rule says (torch's MultiStepLR): an annealing phase for a run whose loss still falls slowly
    lr_milestones: tuple[int, ...] = ()
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
            "lr_milestones": all(m >= 1 for m in self.lr_milestones)
            and list(self.lr_milestones) == sorted(set(self.lr_milestones)),
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"training option '{key}' has an invalid value {getattr(self, key)!r}")
        if self.e0s is not None:
            if self.per_species_shift:
                raise ConfigError("training options 'e0s' and 'per_species_shift' both set the energy shifts; keep one")
            if isinstance(self.e0s, str) and self.e0s != "average":
                raise ConfigError(f"training option 'e0s' must be 'average' or a mapping {{element: eV}}, got {self.e0s!r}")
            if isinstance(self.e0s, dict) and not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      for v in self.e0s.values()):
                raise ConfigError(f"training option 'e0s': every value must be an energy in eV, got {self.e0s}")
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or abs(sum(self.split_fractions) - 1) > 1e-6:
            raise ConfigError(f"training option 'split_fractions' must be three non-negative numbers summing to 1, "
                              f"got {list(self.split_fractions)}")
        if not self.data_files:
            raise ConfigError("training option 'data' names no file; give a data file or a list of them")
        self.split_files  # checks that a split list matches the data list
        if self.init_stats not in INIT_STATS:
            raise ConfigError(f"training option 'init_stats' must be one of {', '.join(INIT_STATS)}, got {self.init_stats!r}")
        if self.early_stop_rule not in RULES:
            raise ConfigError(f"training option 'early_stop_rule' must be one of {', '.join(RULES)}, "
                              f"got {self.early_stop_rule!r}")

    def model_config(self) -> AllegroConfig:
        """The model's config; species not yet taken from the data stand as the default's."""
        model = {k: v for k, v in self.model.items() if not (k == "species" and v is None)}
        return AllegroConfig.from_dict(model, "training config 'model'")

    @property
    def species(self) -> tuple[str, ...] | None:
        """The model's species, or None when they are to be taken from the data."""
        species = self.model.get("species")
        return None if species is None else tuple(species)

    def with_species(self, species: tuple[str, ...]) -> "TrainConfig":
        return dataclasses.replace(self, model={**self.model, "species": list(species)})

    @property
    def data_files(self) -> tuple[str, ...]:
        """The data files, one or several; their frames are trained on together."""
        return (self.data,) if isinstance(self.data, str) else tuple(self.data)

    @property
    def split_files(self) -> tuple[str | None, ...]:
        """One split file (or None: an automatic split) per data file."""
        n = len(self.data_files)
        if self.split is None or isinstance(self.split, str):
            if isinstance(self.split, str) and n > 1:
                raise ConfigError(f"training option 'split' is one file for {n} data files; give a list of "
                                  f"{n} split files (null for an automatic split of that file)")
            return (self.split,) * n
        if len(self.split) != n:
            raise ConfigError(f"training option 'split' lists {len(self.split)} files for {n} data files; "
                              f"give one per data file (null for an automatic split of that file)")
        return tuple(self.split)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model_config().to_dict()
        if self.species is None:
            d["model"]["species"] = None
        d["split_fractions"] = list(self.split_fractions)
        for key in ("data", "split"):
            if isinstance(d[key], tuple):
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: dict, where: str = "training config") -> "TrainConfig":
        check_keys(cls, data, where)
        data = dict(data)
        model = data.get("model", {})
        if isinstance(model, str):  # a path to a model YAML
            model = read_model_yaml(model)
        data["model"] = dict(model)
        return cls(**typed_fields(cls, data, where))


def read_model_yaml(ref: str | Path) -> dict:
    """A model YAML's mapping as written (species left out are taken from the data later),
    checked as a model config."""
    path = locate(ref, "model config")
    model = read_mapping(path, "model config")
    AllegroConfig.from_dict({k: v for k, v in model.items() if not (k == "species" and v is None)}, str(path))
    return model


FILE_KEYS = {"data": "dataset", "split": "split", "model": "model config", "init_from": "model"}


def _resolve_files(data: dict, base: Path | None) -> None:
    """Each file-valued key of `data` located (against `base`, then the working folder, then the
    shipped files) and stored as a path valid from any folder."""
    def resolved(ref: str, kind: str) -> str:
        found = locate(ref, kind, base)
        return portable(found) if found.exists() else ref

    for key, kind in FILE_KEYS.items():
        if isinstance(data.get(key), str):
            data[key] = resolved(data[key], kind)
        elif key in ("data", "split") and isinstance(data.get(key), (list, tuple)):
            data[key] = [resolved(v, kind) if isinstance(v, str) else v for v in data[key]]


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
    """Read a training YAML (a path, or a shipped config's name: `legato`) and apply `key=value`
    overrides (`model.key=value` for the model). Files the YAML names resolve against its own
    folder, files given in overrides against the working folder; both are stored resolved."""
    path = locate(path, "training config")
    data = read_mapping(path, "training config")
    _resolve_files(data, base=path.parent)
    pairs = parse_overrides(overrides)
    top = {k: v for k, v in pairs if not k.startswith("model.")}
    _resolve_files(top, base=None)
    data.update(top)
    if isinstance(data.get("model"), str):
        data["model"] = read_model_yaml(data["model"])
    for key, value in pairs:
        if key.startswith("model."):
            if not isinstance(data.get("model", {}), dict):
                raise ConfigError(f"--set {key}: the config's 'model' is not a mapping")
            data.setdefault("model", {})[key[len("model."):]] = value
    return TrainConfig.from_dict(data, str(path))
