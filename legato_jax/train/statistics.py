"""Constants fitted on the training split: neighbour count, force scale, energy shifts."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from legato_jax.data.graph import FrameGraph
from legato_jax.model.config import ModelStats


def fit_model_stats(graphs: Sequence[FrameGraph], n_species: int, per_species_shift: bool = False,
                    ridge: float = 1e-8) -> ModelStats:
    """avg_num_neighbors = edges / atoms; scale = RMS of all force components (every species);
    shift = mean energy per atom (every species), or per-species least-squares energies."""
    atoms = sum(g.n_node for g in graphs)
    edges = sum(g.n_edge for g in graphs)
    forces = np.concatenate([g.forces.ravel() for g in graphs])
    force_rms = float(np.sqrt(np.mean(forces**2)))
    if not force_rms > 0:
        force_rms = 1.0
    if per_species_shift:
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
