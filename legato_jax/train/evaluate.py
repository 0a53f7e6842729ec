"""Accuracy of a model on labelled frames: energy per atom, forces (overall and per species),
stress; and a parity plot."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from legato_jax.data.batching import BatchLoader
from legato_jax.data.graph import FrameGraph
from legato_jax.figures import save_figure
from legato_jax.model.potential import Potential


def predict_frames(potential: Potential, params, graphs: Sequence[FrameGraph], batch_size: int = 8) -> list[dict]:
    """Per-frame predictions (energy, forces, stress) as numpy arrays."""
    predict = jax.jit(potential.predict)
    out = []
    for batch in BatchLoader(list(graphs), batch_size, potential.config.r_max, shuffle=False):
        p = jax.device_get(predict(params, batch.graph))
        g = batch.graph
        start = 0
        for k in range(int(g.graph_mask.sum())):
            n = int(g.n_node[k])
            out.append({"energy": float(p.energy[k]), "forces": np.asarray(p.forces[start:start + n], float),
                        "stress": np.asarray(p.stress[k], float)})
            start += n
    return out


def error_metrics(graphs: Sequence[FrameGraph], preds: Sequence[dict], type_map) -> dict:
    """MAE/RMSE: energy per atom (meV/atom), forces (meV/Å) overall and per species, stress (meV/Å^3)."""
    de = np.array([(p["energy"] - g.energy) / g.n_node for g, p in zip(graphs, preds)])
    df = np.concatenate([p["forces"] - g.forces for g, p in zip(graphs, preds)])
    species = np.concatenate([g.species for g in graphs])
    mae = lambda x: float(1e3 * np.mean(np.abs(x)))
    rmse = lambda x: float(1e3 * np.sqrt(np.mean(x**2)))
    out = {
        "frames": len(graphs), "atoms": int(species.size),
        "energy_per_atom_mae_meV": mae(de), "energy_per_atom_rmse_meV": rmse(de),
        "forces_mae_meV_per_A": mae(df), "forces_rmse_meV_per_A": rmse(df),
        "forces_per_species": {
            type_map.symbols[t]: {"mae_meV_per_A": mae(df[species == t]), "rmse_meV_per_A": rmse(df[species == t])}
            for t in np.unique(species)
        },
    }
    ds = [p["stress"] - g.stress for g, p in zip(graphs, preds) if g.stress is not None]
    if ds:
        ds = np.stack(ds)
        out["stress_mae_meV_per_A3"] = mae(ds)
        out["stress_rmse_meV_per_A3"] = rmse(ds)
    return out


def format_metrics(m: dict, title: str) -> str:
    lines = [
        f"{title}: {m['frames']} frames, {m['atoms']} atoms",
        f"  energy per atom   MAE {m['energy_per_atom_mae_meV']:8.3f}  RMSE {m['energy_per_atom_rmse_meV']:8.3f}  meV/atom",
        f"  forces            MAE {m['forces_mae_meV_per_A']:8.2f}  RMSE {m['forces_rmse_meV_per_A']:8.2f}  meV/Å",
    ]
    for s, v in m["forces_per_species"].items():
        lines.append(f"    {s:<15} MAE {v['mae_meV_per_A']:8.2f}  RMSE {v['rmse_meV_per_A']:8.2f}  meV/Å")
    if "stress_mae_meV_per_A3" in m:
        lines.append(f"  stress            MAE {m['stress_mae_meV_per_A3']:8.4f}  RMSE {m['stress_rmse_meV_per_A3']:8.4f}  meV/Å^3")
    return "\n".join(lines)


def parity_plot(graphs, preds, path: str | Path, title: str = "", symbols: Sequence[str] | None = None) -> Path:
    """Predicted against reference: energy per atom (relative to the reference mean, meV) and force
    components coloured by species, each panel with its MAE and RMSE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4.6))
    e_ref = np.array([g.energy / g.n_node for g in graphs])
    e_pred = np.array([p["energy"] / g.n_node for g, p in zip(graphs, preds)])
    mean = e_ref.mean()
    x, y = 1e3 * (e_ref - mean), 1e3 * (e_pred - mean)
    err = y - x
    ax[0].scatter(x, y, s=6, alpha=0.7, label=f"MAE {np.abs(err).mean():.2f}, RMSE {np.sqrt(np.mean(err**2)):.2f} meV/atom")
    lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
    ax[0].plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax[0].set_xlabel(f"reference energy per atom (meV, from the mean {mean:.4f} eV)")
    ax[0].set_ylabel("predicted (meV)")
    ax[0].legend(fontsize=8, loc="upper left")
    species = np.concatenate([g.species for g in graphs])
    f_ref = np.concatenate([g.forces for g in graphs])
    f_pred = np.concatenate([p["forces"] for p in preds])
    names = list(symbols) if symbols is not None else [str(k) for k in range(int(species.max()) + 1)]
    for k, name in enumerate(names):
        sel = species == k
        if not sel.any():
            continue
        err = 1e3 * (f_pred[sel] - f_ref[sel]).ravel()
        ax[1].scatter(f_ref[sel].ravel(), f_pred[sel].ravel(), s=1, alpha=0.25, color=f"C{k}",
                      label=f"{name}: MAE {np.abs(err).mean():.1f}, RMSE {np.sqrt(np.mean(err**2)):.1f} meV/Å")
    lim = np.abs(f_ref).max()
    ax[1].plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
    ax[1].set_xlabel("reference force component (eV/Å)")
    ax[1].set_ylabel("predicted (eV/Å)")
    ax[1].legend(fontsize=8, loc="upper left", markerscale=6)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
