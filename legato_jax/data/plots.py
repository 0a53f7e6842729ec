"""Summary figure of a dataset: energies, forces and neighbour counts."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from legato_jax.data.io import Frame
from legato_jax.data.neighbors import neighbor_list
from legato_jax.figures import save_figure


def plot_dataset_summary(frames: Sequence[Frame], path: str | Path, r_max: float = 6.0) -> Path:
    """Write a three-panel PNG: energy per atom by temperature segment, force components per
    species, and neighbours per atom at `r_max`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.data import chemical_symbols

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    groups: dict[str, list[float]] = {}
    for f in frames:
        label = f.info.get("config_type", "all")
        groups.setdefault(str(label), []).append(f.energy / f.n_atoms)
    for label, values in sorted(groups.items(), key=lambda kv: _temperature_key(kv[0])):
        axes[0].hist(values, bins=30, histtype="step", label=label)
    axes[0].set_xlabel("energy per atom (eV)")
    axes[0].set_ylabel("frames")
    axes[0].legend(fontsize=7)

    for z in sorted({int(z) for f in frames for z in np.unique(f.numbers)}):
        comps = np.concatenate([f.forces[f.numbers == z].ravel() for f in frames])
        axes[1].hist(comps, bins=80, histtype="step", density=True, label=chemical_symbols[z])
    axes[1].set_xlabel("force component (eV/Å)")
    axes[1].set_ylabel("density")
    axes[1].set_yscale("log")
    axes[1].legend()

    counts = np.concatenate(
        [np.bincount(neighbor_list(f.positions, f.cell, f.pbc, r_max)[0], minlength=f.n_atoms) for f in frames]
    )
    axes[2].hist(counts, bins=np.arange(counts.min(), counts.max() + 2) - 0.5)
    axes[2].set_xlabel(f"neighbours within {r_max:g} Å")
    axes[2].set_ylabel("atoms")
    fig.suptitle(f"{len(frames)} frames, {sum(f.n_atoms for f in frames)} atoms")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def _temperature_key(label: str) -> float:
    digits = "".join(c for c in label if c.isdigit() or c == ".")
    try:
        return float(digits)
    except ValueError:
        return float("inf")
