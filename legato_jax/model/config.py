"""Allegro hyper-parameters as a frozen dataclass, read from YAML with strict key checking."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from legato_jax.errors import ConfigError
from legato_jax.shipped import locate
from legato_jax.yaml_io import check_keys, read_mapping, typed_fields

PARITIES = ("o3_full", "o3_restricted", "so3")


@dataclass(frozen=True)
class AllegroConfig:
    """Allegro 0.2.0 architecture (see shared reference allegro.md). Lengths in Å."""

    species: tuple[str, ...] = ("H", "N")
    r_max: float = 6.0
    num_layers: int = 3
    l_max: int = 1
    parity: str = "o3_full"
    num_channels: int = 32  # env_embed_multiplicity
    two_body_mlp: tuple[int, ...] = (32, 64, 128)
    latent_mlp: tuple[int, ...] = (128,)
    edge_energy_mlp: tuple[int, ...] = (32,)
    num_bessel: int = 8
    bessel_trainable: bool = True
    polynomial_p: int = 7
    per_layer_cutoffs: tuple[float, ...] | None = None  # Allegro 0.2.0's option: refused until ported
    latent_resnet: bool = True
    dtype: str = "float32"
    edge_block: int | None = None  # evaluate edges in blocks of this many (bounded memory, same numbers)

    def __post_init__(self) -> None:
        for name in ("species", "two_body_mlp", "latent_mlp", "edge_energy_mlp"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.per_layer_cutoffs is not None:
            object.__setattr__(self, "per_layer_cutoffs", tuple(float(r) for r in self.per_layer_cutoffs))
        self.validate()

    def validate(self) -> None:
        def bad(key, why):
            raise ConfigError(f"model option '{key}': {why} (got {getattr(self, key)!r})")

        if len(self.species) == 0 or len(set(self.species)) != len(self.species):
            bad("species", "must be a non-empty list of distinct chemical symbols")
        if not self.r_max > 0:
            bad("r_max", "must be > 0 Å")
        if self.num_layers < 1:
            bad("num_layers", "must be >= 1")
        if not 0 <= self.l_max <= 3:
            bad("l_max", "must be 0, 1, 2 or 3")
        if self.parity not in PARITIES:
            bad("parity", f"must be one of {list(PARITIES)}")
        if self.num_channels < 1:
            bad("num_channels", "must be >= 1")
        for key in ("two_body_mlp", "latent_mlp"):
            if len(getattr(self, key)) == 0 or min(getattr(self, key)) < 1:
                bad(key, "must be a non-empty list of positive widths")
        if self.latent_resnet and self.two_body_mlp[-1] != self.latent_mlp[-1]:
            bad("latent_mlp", f"last width must equal two_body_mlp's last ({self.two_body_mlp[-1]}) with latent_resnet")
        if min(self.edge_energy_mlp, default=1) < 1:
            bad("edge_energy_mlp", "widths must be positive")
        if self.num_bessel < 1:
            bad("num_bessel", "must be >= 1")
        if self.polynomial_p < 2:
            bad("polynomial_p", "must be >= 2")
        if self.per_layer_cutoffs is not None:
            bad("per_layer_cutoffs", "is not supported yet: Allegro 0.2.0's per-layer radii (an envelope per layer "
                "radius, the layer offset, kept latents without resnet) are not ported; remove the option, "
                "every layer then uses r_max")
        if self.dtype not in ("float32", "float64"):
            bad("dtype", "must be float32 or float64")
        if self.edge_block is not None and self.edge_block < 1:
            bad("edge_block", "must be a positive number of edges, or null for all edges at once")

    @classmethod
    def from_dict(cls, data: dict, where: str = "model config") -> "AllegroConfig":
        check_keys(cls, data, where)
        return cls(**typed_fields(cls, data, where))

    @classmethod
    def from_yaml(cls, path: str | Path) -> "AllegroConfig":
        """A model YAML, or a shipped preset by name (`allegro-cpu`) or path (`configs/model/...`)."""
        path = locate(path, "model config")
        return cls.from_dict(read_mapping(path, "model config"), str(path))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class ModelStats:
    """Constants fitted on the training data, fixed inside the model (not trained).

    E_i = scale_t * (1/sqrt(avg_num_neighbors)) * sum_j E_ij + shift_t, per species t.
    """

    avg_num_neighbors: float = 1.0
    species_scale: tuple[float, ...] = field(default=(1.0, 1.0))
    species_shift: tuple[float, ...] = field(default=(0.0, 0.0))

    def __post_init__(self) -> None:
        object.__setattr__(self, "species_scale", tuple(float(x) for x in self.species_scale))
        object.__setattr__(self, "species_shift", tuple(float(x) for x in self.species_shift))
        if not self.avg_num_neighbors > 0:
            raise ConfigError(f"avg_num_neighbors must be > 0, got {self.avg_num_neighbors}")

    @classmethod
    def default(cls, n_species: int) -> "ModelStats":
        return cls(1.0, (1.0,) * n_species, (0.0,) * n_species)
