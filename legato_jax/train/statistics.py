"""Constants fitted on the training split: neighbour count, force scale, energy shifts."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from legato_jax.data.graph import FrameGraph
from legato_jax.errors import ConfigError
from legato_jax.model.config import ModelStats


def fit_model_stats(graphs: Sequence[FrameGraph], species: Sequence[str], per_species_shift: bool = False,
                    e0s: str | Mapping[str, float] | None = None, ridge: float = 1e-8) -> ModelStats:
    """avg_num_neighbors = edges / atoms; scale = RMS of all force components (every species);
    shift = mean energy per atom (every species), per-species least-squares energies
    (`per_species_shift` or e0s "average", MACE's name), or given isolated-atom energies (e0s)."""
    n_species = len(species)
    atoms = sum(g.n_node for g in graphs)
    edges = sum(g.n_edge for g in graphs)
    forces = np.concatenate([g.forces.ravel() for g in graphs])
    force_rms = float(np.sqrt(np.mean(forces**2)))
    if not force_rms > 0:
        force_rms = 1.0
    if isinstance(e0s, Mapping):
        missing = [s for s in species if s not in e0s]
        if missing:
            raise ConfigError(f"training option 'e0s' gives no energy for {missing}; give one per element of "
                              f"the model's species {list(species)}")
        shift = np.array([float(e0s[s]) for s in species])
    elif per_species_shift or e0s == "average":
        counts = np.stack([np.bincount(g.species, minlength=n_species) for g in graphs]).astype(float)
        energy = np.array([g.energy for g in graphs])
        a = counts.T @ counts + ridge * np.eye(n_species)
        shift = np.linalg.solve(a, counts.T @ energy)
    else:
        mean = float(np.mean([g.energy / g.n_node for g in graphs]))
        shift = np.full(n_species, mean)
    return ModelStats(
        avg_num_neighbors=edges / max(atoms, 1),
        species_scale=(force_rms,) * n_species,
        species_shift=tuple(float(x) for x in shift),
    )
