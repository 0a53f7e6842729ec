"""Figures of MD runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from legato_jax.figures import save_figure
from legato_jax.md.observers import EV_A3_TO_GPA, Thermo


def plot_thermo(runs: dict[str, Thermo], path: str | Path, title: str = "") -> Path:
    """Against time: temperature; potential energy per atom; pressure (and density where the
    volume changes); the conserved energy per atom (total energy in NVE, the thermostat's
    invariant otherwise) relative to each stage's start. Stage boundaries are dotted and named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    npt = any(np.ptp(th.column("volume_A3")) > 0 for th in runs.values() if th.rows)
    rows = 5 if npt else 4
    fig, axes = plt.subplots(rows, 1, figsize=(7.5, 2.2 * rows + 0.6), sharex=True)
    ax_t, ax_pe, ax_p, *rest = axes
    ax_e = rest[-1]
    for name, th in runs.items():
        if not th.rows:
            continue
        t_ps = th.column("time_fs") / 1000.0
        stage = th.column("stage")
        ax_t.plot(t_ps, th.column("temperature_K"), label=name, lw=1)
        ax_pe.plot(t_ps, th.column("potential_eV") / th.n_atoms, lw=1)
        ax_p.plot(t_ps, th.column("pressure_eV_A3") * EV_A3_TO_GPA, lw=1)
        if npt:
            rest[0].plot(t_ps, th.column("density_g_cm3"), lw=1)
        e = th.column("conserved_eV") / th.n_atoms
        first = {k: e[np.argmax(stage == k)] for k in np.unique(stage)}
        ax_e.plot(t_ps, 1000.0 * (e - np.array([first[k] for k in stage])), lw=1)
    th = next(th for th in runs.values() if th.rows) if any(th.rows for th in runs.values()) else None
    if th is not None:
        t_ps, stage, ensemble = th.column("time_fs") / 1000.0, th.column("stage"), th.column("ensemble")
        for k in np.flatnonzero(np.diff(stage)):
            for ax in axes:
                ax.axvline(t_ps[k], color="0.6", ls=":", lw=1)
        for k in np.unique(stage):
            at = t_ps[np.argmax(stage == k)]
            ax_t.annotate(str(ensemble[np.argmax(stage == k)]), (at, 1.0), xycoords=("data", "axes fraction"),
                          xytext=(3, -12), textcoords="offset points", fontsize=8, color="0.35")
    ax_t.set_ylabel("T (K)")
    ax_pe.set_ylabel("E_pot (eV/atom)")
    ax_p.set_ylabel("P (GPa)")
    if npt:
        rest[0].set_ylabel("density (g/cm³)")
    ax_e.set_ylabel("conserved drift\n(meV/atom)")
    ax_e.set_xlabel("time (ps)")
    for ax in axes:
        ax.ticklabel_format(axis="y", useOffset=False)
    ax_t.legend(fontsize=8, loc="lower right")
    if title:
        ax_t.set_title(title, fontsize=10)
    fig.align_ylabels(axes)
    fig.tight_layout()
    return save_figure(fig, path)
