"""Dataset statistics: what `legato data inspect` prints, and what training fits on."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase.data import chemical_symbols

from legato_jax.data.cell import perpendicular_widths
from legato_jax.data.io import Frame
from legato_jax.data.neighbors import neighbor_list


def dataset_statistics(frames: Sequence[Frame], r_max: float = 6.0) -> dict:
    """Counts, label statistics and neighbour statistics at `r_max` Å, plus warnings."""
    n_atoms = np.array([f.n_atoms for f in frames])
    species = sorted({int(z) for f in frames for z in np.unique(f.numbers)})
    counts = {chemical_symbols[z]: int(sum((f.numbers == z).sum() for f in frames)) for z in species}
    e_per_atom = np.array([f.energy / f.n_atoms for f in frames])
    force_rms = {}
    for z in species:
        f2 = np.concatenate([(f.forces[f.numbers == z] ** 2).sum(axis=1) for f in frames])
        force_rms[chemical_symbols[z]] = float(np.sqrt(f2.mean() / 3.0))
    all_f = np.concatenate([f.forces.ravel() for f in frames])

    neighbours = []
    min_dist = np.inf
    periodic_widths = []
    warnings = []
    for k, f in enumerate(frames):
        i, _, _, d = neighbor_list(f.positions, f.cell, f.pbc, r_max, with_distances=True)
        neighbours.append(np.bincount(i, minlength=f.n_atoms))
        if d.size:
            min_dist = min(min_dist, float(d.min()))
        if f.pbc.any():
            widths = perpendicular_widths(f.cell) if f.pbc.all() else np.linalg.norm(f.cell, axis=1)
            periodic_widths.append(np.where(f.pbc, widths, np.inf))
    neighbours = np.concatenate(neighbours)
    if periodic_widths:
        w = np.array(periodic_widths)
        short = np.flatnonzero((w < 2 * r_max).any(axis=1))
        if short.size:
            warnings.append(
                f"{short.size} of {len(frames)} frames have a cell narrower than 2 x r_max = "
                f"{2 * r_max:g} Å along some axis (min width {w.min():.3f} Å): atoms see several "
                f"images of one neighbour; legato's neighbour lists handle this, minimum-image codes do not"
            )
    net = np.array([np.abs(f.forces.sum(axis=0)).max() / np.sqrt(f.n_atoms) for f in frames if f.pbc.all()])
    if net.size and net.max() > 1e-3:
        worst = int(np.argmax(net))
        warnings.append(
            f"{int((net > 1e-3).sum())} fully periodic frames have a net force (largest |sum F| / sqrt(N) = "
            f"{net[worst]:.3g} eV/Å); the forces of a periodic system sum to zero, so these labels "
            f"were probably altered by a constraint (e.g. ASE's FixCom: store get_forces(apply_constraint=False))"
        )
    cell_lengths = np.array([np.linalg.norm(f.cell, axis=1) for f in frames])
    stats = {
        "frames": len(frames),
        "atoms_per_frame": {"min": int(n_atoms.min()), "mean": float(n_atoms.mean()), "max": int(n_atoms.max())},
        "atoms_total": int(n_atoms.sum()),
        "species_counts": counts,
        "cell_lengths": {
            "min": cell_lengths.min(axis=0).round(4).tolist(),
            "max": cell_lengths.max(axis=0).round(4).tolist(),
        },
        "energy_per_atom": {"mean": float(e_per_atom.mean()), "std": float(e_per_atom.std())},
        "force_rms": float(np.sqrt((all_f**2).mean())),
        "force_rms_per_species": force_rms,
        "frames_with_stress": int(sum(f.stress is not None for f in frames)),
        "r_max": r_max,
        "neighbours": {"mean": float(neighbours.mean()), "max": int(neighbours.max())},
        "min_distance": None if not np.isfinite(min_dist) else min_dist,
        "warnings": warnings,
    }
    return stats


def format_statistics(stats: dict, path: str) -> str:
    """Human-readable summary of `dataset_statistics`."""
    a = stats["atoms_per_frame"]
    lines = [
        f"file                  {path}",
        f"frames                {stats['frames']}",
        f"atoms per frame       min {a['min']}  mean {a['mean']:.1f}  max {a['max']}  (total {stats['atoms_total']})",
        "species counts        " + "  ".join(f"{k} {v}" for k, v in stats["species_counts"].items()),
        f"cell lengths (Å)      min {stats['cell_lengths']['min']}  max {stats['cell_lengths']['max']}",
        f"energy per atom (eV)  mean {stats['energy_per_atom']['mean']:.6f}  std {stats['energy_per_atom']['std']:.6f}",
        f"force RMS (eV/Å)      all {stats['force_rms']:.4f}  "
        + "  ".join(f"{k} {v:.4f}" for k, v in stats["force_rms_per_species"].items()),
        f"frames with stress    {stats['frames_with_stress']}",
        f"neighbours at {stats['r_max']:g} Å   mean {stats['neighbours']['mean']:.2f}  max {stats['neighbours']['max']}",
        "min distance (Å)      "
        + ("none within r_max" if stats["min_distance"] is None else f"{stats['min_distance']:.4f}"),
    ]
    lines += [f"warning: {w}" for w in stats["warnings"]]
    return "\n".join(lines)
