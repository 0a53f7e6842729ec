"""Figures of MD runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from legato_jax.figures import save_figure
from legato_jax.md.observers import Thermo


def plot_thermo(runs: dict[str, Thermo], path: str | Path, title: str = "") -> Path:
    """Temperature, and the conserved energy per atom (the Nose-Hoover invariant in NVT, the total
    energy in NVE) relative to its value at the start of each stage, against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_e) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for name, th in runs.items():
        t_ps = th.column("time_fs") / 1000.0
        ax_t.plot(t_ps, th.column("temperature_K"), label=name, lw=1)
        e, stage = th.column("conserved_eV") / th.n_atoms, th.column("stage")
        first = {k: e[np.argmax(stage == k)] for k in np.unique(stage)}
        ax_e.plot(t_ps, 1000.0 * (e - np.array([first[k] for k in stage])), label=name, lw=1)
        switch = np.flatnonzero(np.diff(th.column("stage")))
        for k in switch:
            for ax in (ax_t, ax_e):
                ax.axvline(t_ps[k], color="0.7", ls=":", lw=1)
    ax_t.set_ylabel("temperature (K)")
    ax_e.set_ylabel("conserved energy drift (meV/atom)")
    ax_e.set_xlabel("time (ps)")
    ax_t.legend()
    if title:
        ax_t.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
